"""Load-balancing picture: requests per backend per entry node, and which backend each request got
over time (round-robin shows as a repeating colour/shape pattern per entry node)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError
from meshpkt.mesh.addr import try_ip4
from meshpkt.plot.style import CYCLE, HATCHES, MARKERS, SIZE_SMALL, SIZE_TEXT, SIZE_TITLE, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

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


@dataclass
class _Backends:
    """The backends in address order, the most informative label and the (colour, marker, hatch) of each."""

    names: list[str]
    label: dict[str, str]
    style: dict[str, tuple[str, str, str]]


def _backends(tab: Any) -> _Backends:
    names = sorted(tab["backend"].unique(), key=_ip_key)
    label: dict[str, str] = {}
    for b, lb in zip(tab["backend"], tab["label"], strict=True):  # the most informative label per backend
        if len(lb) > len(label.get(b, "")):
            label[b] = lb
    style = {b: (CYCLE[k % len(CYCLE)], MARKERS[k % len(MARKERS)], HATCHES[k % len(HATCHES)])
             for k, b in enumerate(names)}
    return _Backends(names, label, style)


def _bars(ax: Axes, tab: Any, entries: list[str], bk: _Backends) -> dict[str, Rectangle]:
    """Entry node groups, one bar per backend with its count; returns a bar patch per backend (legend)."""
    from matplotlib.ticker import MaxNLocator

    nb, ne = len(bk.names), len(entries)
    bar_w = 0.8 / nb
    handles: dict[str, Rectangle] = {}
    for k, b in enumerate(bk.names):
        color, _, hatch = bk.style[b]
        counts = [int(((tab["entry_node"] == e) & (tab["backend"] == b)).sum()) for e in entries]
        xs = [i - 0.4 + bar_w * (k + 0.5) for i in range(ne)]
        bars = ax.bar(xs, counts, width=bar_w * 0.92, color=color, hatch=hatch, edgecolor="black",
                      linewidth=0.6, label=bk.label[b], gid="balance-bar")
        handles[b] = bars.patches[0]
        ax.bar_label(bars, labels=[str(v) if v else "" for v in counts], fontsize=SIZE_SMALL, padding=2)
    ax.set_xticks(range(ne), entries, fontsize=SIZE_TEXT)
    ax.set_xlabel("entry node (where the request came in)", fontsize=SIZE_TEXT)
    ax.set_ylabel("requests", fontsize=SIZE_TEXT)
    ax.set_title("Requests per backend, by entry node", fontsize=SIZE_TITLE, loc="left")
    ymax = max(1, int(tab.groupby(["entry_node", "backend"]).size().max()))
    ax.set_ylim(0, ymax * 1.18 + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=SIZE_SMALL)
    ax.spines[["top", "right"]].set_visible(False)
    return handles


def _timeline(ax: Axes, tab: Any, entries: list[str], bk: _Backends) -> None:
    """One row per entry node: each request at its time, colour and marker = backend."""
    from meshpkt.flows.balance import is_round_robin

    ylabels = []
    for i, e in enumerate(entries):
        sub = tab[tab["entry_node"] == e]
        rr = is_round_robin(list(sub["backend"]))
        ylabels.append(f"{e}\n{'round-robin' if rr else 'not round-robin'}")
        for b in bk.names:
            s = sub[sub["backend"] == b]
            if s.empty:
                continue
            color, marker, _ = bk.style[b]
            ax.scatter(s["t_s"], [i] * len(s), s=46, color=color, marker=marker, edgecolors="black",
                       linewidths=0.5, zorder=3, gid="balance-point")
    ax.set_yticks(range(len(entries)), ylabels, fontsize=SIZE_SMALL)
    ax.set_ylim(len(entries) - 0.5, -0.5)
    ax.set_xlabel("seconds since the first request", fontsize=SIZE_TEXT)
    ax.set_title("Which backend each request reached, over time", fontsize=SIZE_TITLE, loc="left")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.tick_params(axis="x", labelsize=SIZE_SMALL)
    ax.spines[["top", "right"]].set_visible(False)
    if tab["t_s"].max() <= 0:
        ax.set_xlim(-1, 1)


def balance_plot(analysis: Analysis) -> Figure:
    """Two panels: requests per backend grouped by entry node (bars with counts), and each request
    over time per entry node (colour and marker = backend). The y labels say whether each entry
    node's choices cycle round-robin (``meshpkt.flows.balance``)."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    tab = balance_table(analysis)
    entries = sorted(tab["entry_node"].unique())
    bk = _backends(tab)
    nb, ne = len(bk.names), len(entries)
    width = max(10.0, 2.2 + ne * (0.45 * nb + 0.5) + 6.0)
    height = max(4.2, 2.4 + 0.5 * ne + 0.25 * ((nb + 2) // 3))
    fig = new_figure(width, height, layout="constrained")
    left_w = max(3.5, ne * (0.45 * nb + 0.5) + 1.2)
    gs = fig.add_gridspec(1, 2, width_ratios=[left_w, max(5.0, width - left_w)])
    bar_handles = _bars(fig.add_subplot(gs[0, 0]), tab, entries, bk)
    _timeline(fig.add_subplot(gs[0, 1]), tab, entries, bk)
    handles: list[Any] = [(bar_handles[b], Line2D([], [], linestyle="none", marker=bk.style[b][1],
                                                  color=bk.style[b][0], markeredgecolor="black",
                                                  markeredgewidth=0.5, markersize=7))
                          for b in bk.names]  # bar + marker: the backend reads without colour too
    fig.legend(handles, [bk.label[b] for b in bk.names], handler_map={tuple: HandlerTuple(ndivide=None)},
               loc="outside lower center", ncol=min(nb, 3), fontsize=SIZE_SMALL, frameon=False, title="backend",
               title_fontsize=SIZE_SMALL)
    return fig


def _ip_key(text: str) -> tuple[int, int]:
    ip = try_ip4(text)
    return (0, int(ip)) if ip is not None else (1, 0)
