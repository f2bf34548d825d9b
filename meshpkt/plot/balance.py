"""Load-balancing picture: requests per backend per entry node, and which backend each request got
over time (round-robin shows as a repeating colour/shape pattern per entry node)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError
from meshpkt.plot.style import CYCLE, HATCHES, MARKERS, SIZE_SMALL, SIZE_TEXT, SIZE_TITLE, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from meshpkt.flows import Analysis


def balance_table(analysis: Analysis) -> Any:
    """Connections that reached a backend: ``entry_node, backend, label, t_s`` (seconds since the first),
    sorted by time. Raises UsageError when there is none."""
    import pandas as pd

    c = analysis.connections
    if c is None or len(c) == 0:
        raise UsageError("nothing to draw: no connection was found in the captures")
    c = c[c["backend"].notna() & c["entry_node"].notna()].sort_values("first_ts_ns", kind="stable")
    if c.empty:
        raise UsageError("nothing to draw: no connection reached a backend (no backend could be named)")
    ip = c["backend"].astype(str).str.rsplit(":", n=1).str[0]
    task = c["backend_task"] if "backend_task" in c.columns else pd.Series(None, index=c.index)
    node = c["backend_node"] if "backend_node" in c.columns else pd.Series(None, index=c.index)
    labels = []
    for b, t, nd in zip(ip, task, node, strict=True):
        extra = " on ".join(str(x) for x in (t, nd) if x is not None and x == x and str(x))
        labels.append(f"{b} ({extra})" if extra else str(b))
    t0 = int(c["first_ts_ns"].min())
    return pd.DataFrame({
        "conn_id": c["conn_id"].to_numpy(),
        "entry_node": c["entry_node"].astype(str).to_numpy(),
        "backend": ip.to_numpy(),
        "label": labels,
        "t_s": (c["first_ts_ns"].astype("int64").to_numpy() - t0) / 1e9,
    })


def balance_plot(analysis: Analysis) -> Figure:
    """Two panels: requests per backend grouped by entry node (bars with counts), and each request
    over time per entry node (colour and marker = backend). The y labels say whether each entry
    node's choices cycle round-robin (``meshpkt.flows.balance``)."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from meshpkt.flows.balance import is_round_robin

    tab = balance_table(analysis)
    entries = sorted(tab["entry_node"].unique())
    backends = sorted(tab["backend"].unique(), key=_ip_key)
    label_of: dict[str, str] = {}
    for b, lb in zip(tab["backend"], tab["label"], strict=True):  # the most informative label per backend
        if len(lb) > len(label_of.get(b, "")):
            label_of[b] = lb
    style = {b: (CYCLE[k % len(CYCLE)], MARKERS[k % len(MARKERS)], HATCHES[k % len(HATCHES)])
             for k, b in enumerate(backends)}

    nb, ne = len(backends), len(entries)
    width = max(10.0, 2.2 + ne * (0.45 * nb + 0.5) + 6.0)
    height = max(4.2, 2.4 + 0.5 * ne + 0.25 * ((nb + 2) // 3))
    fig = new_figure(width, height, layout="constrained")
    left_w = max(3.5, ne * (0.45 * nb + 0.5) + 1.2)
    gs = fig.add_gridspec(1, 2, width_ratios=[left_w, max(5.0, width - left_w)])
    ax1 = fig.add_subplot(gs[0, 0])
    ax2 = fig.add_subplot(gs[0, 1])

    # bars: entry node groups, one bar per backend
    bar_w = 0.8 / nb
    bar_handles: dict[str, Any] = {}
    for k, b in enumerate(backends):
        color, _, hatch = style[b]
        counts = [int(((tab["entry_node"] == e) & (tab["backend"] == b)).sum()) for e in entries]
        xs = [i - 0.4 + bar_w * (k + 0.5) for i in range(ne)]
        bars = ax1.bar(xs, counts, width=bar_w * 0.92, color=color, hatch=hatch, edgecolor="black",
                       linewidth=0.6, label=label_of[b], gid="balance-bar")
        bar_handles[b] = bars.patches[0]
        ax1.bar_label(bars, labels=[str(v) if v else "" for v in counts], fontsize=SIZE_SMALL, padding=2)
    ax1.set_xticks(range(ne), entries, fontsize=SIZE_TEXT)
    ax1.set_xlabel("entry node (where the request came in)", fontsize=SIZE_TEXT)
    ax1.set_ylabel("requests", fontsize=SIZE_TEXT)
    ax1.set_title("Requests per backend, by entry node", fontsize=SIZE_TITLE, loc="left")
    ymax = max(1, int(tab.groupby(["entry_node", "backend"]).size().max()))
    ax1.set_ylim(0, ymax * 1.18 + 0.5)
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.tick_params(labelsize=SIZE_SMALL)
    ax1.spines[["top", "right"]].set_visible(False)

    # timeline: one row per entry node
    ylabels = []
    for i, e in enumerate(entries):
        sub = tab[tab["entry_node"] == e]
        rr = is_round_robin(list(sub["backend"]))
        ylabels.append(f"{e}\n{'round-robin' if rr else 'not round-robin'}")
        for b in backends:
            s = sub[sub["backend"] == b]
            if s.empty:
                continue
            color, marker, _ = style[b]
            ax2.scatter(s["t_s"], [i] * len(s), s=46, color=color, marker=marker, edgecolors="black",
                        linewidths=0.5, zorder=3, gid="balance-point")
    ax2.set_yticks(range(ne), ylabels, fontsize=SIZE_SMALL)
    ax2.set_ylim(ne - 0.5, -0.5)
    ax2.set_xlabel("seconds since the first request", fontsize=SIZE_TEXT)
    ax2.set_title("Which backend each request reached, over time", fontsize=SIZE_TITLE, loc="left")
    ax2.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax2.tick_params(axis="x", labelsize=SIZE_SMALL)
    ax2.spines[["top", "right"]].set_visible(False)
    if tab["t_s"].max() <= 0:
        ax2.set_xlim(-1, 1)

    handles: list[Any] = [(bar_handles[b], Line2D([], [], linestyle="none", marker=style[b][1], color=style[b][0],
                                                  markeredgecolor="black", markeredgewidth=0.5, markersize=7))
                          for b in backends]  # bar + marker: the backend reads without colour too
    fig.legend(handles, [label_of[b] for b in backends], handler_map={tuple: HandlerTuple(ndivide=None)},
               loc="outside lower center", ncol=min(nb, 3), fontsize=SIZE_SMALL, frameon=False, title="backend",
               title_fontsize=SIZE_SMALL)
    return fig


def _ip_key(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return (1 << 30,)
