"""Sequence diagram of one connection: capture points as lanes, packets as arrow chains.

Two steps, both pure:

1. :func:`sequence_model` turns an :class:`~meshpkt.flows.Analysis` into plain data: the lanes
   (one per hop of the connection, in path order; a point seen both plain and VXLAN-encapsulated
   gives two lanes), the logical packets (one chain of observations per packet, grouped by the
   NAT-invariant fields), where each chain ends and whether it was lost, and the translations.
2. :func:`sequence_diagram` lays the model out in inches (text is measured before drawing, so no
   label overlaps another) and draws it with matplotlib's object API.

Artists carry a ``gid`` so tests and notebooks can find them: ``lane``, ``lane-header``,
``packet-arrow``, ``packet-seen``, ``lost``, ``translation``, ``packet-label``, ``time-label``,
``note``, ``legend``, ``title``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError
from meshpkt.mesh.model import parse_point
from meshpkt.mesh.proto import proto_name
from meshpkt.plot.style import (
    CLIENT_FILL,
    NODE_FILLS,
    OKABE_ITO,
    SIZE_SMALL,
    SIZE_TEXT,
    SIZE_TITLE,
    inch_axes,
    line_height,
    new_figure,
    text_size,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from meshpkt.flows import Analysis

FWD_COLOR = OKABE_ITO["blue"]
BWD_COLOR = OKABE_ITO["orange"]
LOST_COLOR = OKABE_ITO["vermillion"]

#: kind -> (title, edge colour)
TRANSLATION_STYLE: dict[str, tuple[str, str]] = {
    "dnat": ("DNAT", OKABE_ITO["vermillion"]),
    "snat": ("SNAT", OKABE_ITO["purple"]),
    "dnat+snat": ("DNAT + SNAT", OKABE_ITO["purple"]),
    "ipvs-masq+snat": ("IPVS masq + SNAT", OKABE_ITO["purple"]),
    "vxlan-encap": ("VXLAN encap", OKABE_ITO["sky"]),
    "vxlan-decap": ("VXLAN decap", OKABE_ITO["sky"]),
    "redirect": ("REDIRECT", OKABE_ITO["green"]),
}

_FLAG_NAMES = (("SYN", 0x02), ("FIN", 0x01), ("RST", 0x04), ("PSH", 0x08), ("URG", 0x20), ("ACK", 0x10),
               ("ECE", 0x40), ("CWR", 0x80))
_ICMP_NAMES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}


@dataclass
class Lane:
    """One hop of the connection: a capture point with the 5-tuple the connection has there."""

    point: str
    node: str
    role: str
    encapsulated: bool
    src: str = ""
    dst: str = ""
    vni: int | None = None
    outer_src: str | None = None
    outer_dst: str | None = None
    ghost: bool = False  # expected on the path but never seen (the connection's ``missing_at``)


@dataclass
class PacketChain:
    """One logical packet and the lanes where it was seen, in path order."""

    forward: bool
    label: str
    lanes: list[int]
    times_ns: list[int]
    lost: bool = False
    retransmission: bool = False
    seq: tuple[int, int, int] = (-1, -1, -1)  # (tcp_seq, tcp_flags, payload_len): retransmission test

    @property
    def first_ns(self) -> int:
        return min(self.times_ns)


@dataclass
class Marker:
    """A translation between lanes ``lane_from`` and ``lane_to`` (equal for REDIRECT at a task)."""

    kind: str
    lane_from: int
    lane_to: int
    title: str
    detail: str


@dataclass
class SequenceModel:
    """Everything the sequence diagram shows, as plain data."""

    conn_id: int
    title: str
    subtitle: str
    verdict: str
    lanes: list[Lane]
    packets: list[PacketChain]  # drawn, in time order
    markers: list[Marker]
    omitted: list[PacketChain] = field(default_factory=list)  # beyond max_packets
    unmatched: int = 0  # packets of the connection not on any hop (should be 0)
    t0_ns: int = 0


def flags_text(flags: int) -> str:
    """``0x12`` -> ``SYN+ACK``."""
    if flags < 0:
        return ""
    names = [n for n, bit in _FLAG_NAMES if flags & bit]
    return "+".join(names) if names else "no flags"


def _packet_label(proto: int, flags: int, payload_len: int, icmp_type: int, icmp_code: int) -> str:
    if proto == 6:
        text = flags_text(flags)
    elif proto == 17:
        text = "UDP"
    elif proto == 1:
        name = _ICMP_NAMES.get(icmp_type)
        text = f"ICMP {name}" if name else f"ICMP {icmp_type}/{icmp_code}"
    else:
        text = f"proto {proto}"
    if payload_len > 0:
        text += f" · {payload_len} B"
    return text


def _nullable_int(v: Any) -> int | None:
    try:
        import pandas as pd

        if v is None or pd.isna(v):
            return None
    except (TypeError, ValueError):
        return None
    return int(v)


def _nullable_str(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    text = str(v)
    return text if text and text not in ("nan", "None", "<NA>") else None


def _lanes(hops: Any) -> list[Lane]:
    lanes = []
    for h in hops.itertuples():
        vni = _nullable_int(h.vni)
        lanes.append(Lane(point=str(h.point), node=str(h.node), role=str(h.role), encapsulated=vni is not None,
                          src=str(h.src), dst=str(h.dst), vni=vni,
                          outer_src=_nullable_str(h.outer_src), outer_dst=_nullable_str(h.outer_dst)))
    return lanes


def _markers(translations: Any, hop_to_lane: dict[int, int], lanes: list[Lane]) -> list[Marker]:
    out = []
    for t in translations.itertuples():
        i = hop_to_lane.get(int(t.hop))
        if i is None:
            continue
        kind = str(t.kind)
        j = i if kind == "redirect" else min(i + 1, len(lanes) - 1)
        title, _ = TRANSLATION_STYLE.get(kind, (kind.upper(), OKABE_ITO["black"]))
        before, after = str(t.before), str(t.after)
        b_src, _, b_dst = before.partition(" > ")
        a_src, _, a_dst = after.partition(" > ")
        if kind in ("vxlan-encap", "vxlan-decap"):
            enc_lane = lanes[j] if kind == "vxlan-encap" else lanes[i]
            vni = enc_lane.vni
            title = f"{title} VNI {vni}" if vni is not None else title
            if kind == "vxlan-encap":
                detail = f"to {enc_lane.outer_dst}" if enc_lane.outer_dst else ""
            else:
                detail = f"from {enc_lane.outer_src}" if enc_lane.outer_src else ""
        elif kind == "dnat":
            detail = f"dst → {a_dst}"
        elif kind == "snat":
            detail = f"src → {a_src}"
        elif kind == "redirect":
            old = b_dst.rsplit(":", 1)[-1]
            new = a_dst.rsplit(":", 1)[-1]
            detail = f"port {old} → {new}"
        else:
            detail = f"src → {a_src}\ndst → {a_dst}"
        del b_src
        out.append(Marker(kind, i, j, title, detail))
    return out


def _connection(analysis: Analysis, conn_id: int) -> tuple[Any, Any]:
    """The connection's row and its hops (in path order); UsageError when there is nothing to draw."""
    conns = analysis.connections
    if conns is None or len(conns) == 0:
        raise UsageError("nothing to draw: no connection was found in the captures")
    sel = conns[conns["conn_id"] == conn_id]
    if sel.empty:
        ids = sorted(int(c) for c in conns["conn_id"])
        raise UsageError(f"no connection {conn_id} (there are {len(ids)}: ids {ids[0]}..{ids[-1]})")
    hops = analysis.hops[analysis.hops["conn_id"] == conn_id].sort_values("hop")
    if hops.empty:
        raise UsageError(f"nothing to draw: connection {conn_id} has no hops")
    return sel.iloc[0], hops


def _ghost_lane(analysis: Analysis, conn: Any, lanes: list[Lane]) -> None:
    """The point where the connection should have been seen next (``missing_at``), as a lane."""
    missing = _nullable_str(conn.get("missing_at"))
    if missing and missing not in {ln.point for ln in lanes}:
        info = analysis.topology.point(missing) if analysis.topology is not None else parse_point(missing)
        lanes.append(Lane(point=missing, node=info.node, role=str(info.role), encapsulated=False, ghost=True))


LaneKey = tuple[str, bool, int, int, int, int]


def _lane_keys(hops: Any) -> dict[LaneKey, tuple[int, bool]]:
    """(point, encapsulated, src, sport, dst, dport) -> (lane, forward) for both directions of every hop."""
    out: dict[LaneKey, tuple[int, bool]] = {}
    for k, h in enumerate(hops.itertuples()):
        enc = _nullable_int(h.vni) is not None
        a, ap, b, bp = int(h.src_ip), int(h.sport), int(h.dst_ip), int(h.dport)
        out.setdefault((str(h.point), enc, a, ap, b, bp), (k, True))
        out.setdefault((str(h.point), enc, b, bp, a, ap), (k, False))
    return out


_INVARIANTS = ("tcp_seq", "tcp_ack", "tcp_flags", "tcp_tsval", "ip_id", "payload_len", "icmp_type", "icmp_code")


@dataclass
class _Observations:
    """The connection's packets grouped by their NAT-invariant fields: one group per logical packet."""

    groups: dict[tuple[int, ...], list[tuple[int, int]]] = field(default_factory=dict)  # -> [(lane, ts)]
    meta: dict[tuple[int, ...], tuple[int, int, int, int, int]] = field(default_factory=dict)  # -> label fields
    unmatched: int = 0


def _observations(analysis: Analysis, conn_id: int, keys: dict[LaneKey, tuple[int, bool]]) -> _Observations:
    import numpy as np

    from meshpkt.flows.view import transport_view

    packets = analysis.packets
    packets = packets[(packets["conn_id"] == conn_id).fillna(False).to_numpy(dtype=bool)]
    view = transport_view(packets)
    if "ts_corr_ns" in packets.columns:
        ts = packets["ts_corr_ns"].astype("Int64").fillna(packets["ts_ns"]).to_numpy(dtype=np.int64)
    else:
        ts = packets["ts_ns"].to_numpy(dtype=np.int64)
    points = packets["point"].astype(str).to_numpy()
    enc = view["enc"].to_numpy()
    src, sport, dst, dport = (view[c].to_numpy().astype(np.int64) for c in ("src", "sport", "dst", "dport"))
    proto = view["proto"].to_numpy().astype(np.int64)
    inv = {c: packets[c].to_numpy().astype(np.int64) for c in _INVARIANTS}
    phash = packets["payload_hash"].to_numpy().astype(np.uint64)
    obs = _Observations()
    for r in np.argsort(ts, kind="stable"):
        hit = keys.get((points[r], bool(enc[r]), int(src[r]), int(sport[r]), int(dst[r]), int(dport[r])))
        if hit is None:
            obs.unmatched += 1
            continue
        lane, fwd = hit
        f = {c: int(inv[c][r]) for c in _INVARIANTS}
        key = (int(fwd), f["tcp_seq"], f["tcp_ack"], f["tcp_flags"], f["tcp_tsval"], f["ip_id"], f["payload_len"],
               int(phash[r]), f["icmp_type"], f["icmp_code"])
        obs.groups.setdefault(key, []).append((lane, int(ts[r])))
        obs.meta.setdefault(key, (int(proto[r]), f["tcp_flags"], f["payload_len"], f["icmp_type"], f["icmp_code"]))
    return obs


def _split_duplicates(obs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Same fields seen twice at one lane = another packet (e.g. a duplicate)."""
    split: list[list[tuple[int, int]]] = []
    for lane, t in obs:
        for ch in split:
            if all(lane != lane2 for lane2, _ in ch):
                ch.append((lane, t))
                break
        else:
            split.append([(lane, t)])
    return split


def _chains(obs: _Observations, lanes: list[Lane], conn: Any, bwd_seen: bool) -> list[PacketChain]:
    """One chain per logical packet, in time order, with where it ended and whether it was lost there."""
    # where a request should end: the ghost lane if the connection died before a point, else the backend's
    # task lane (later lanes can be flooded copies), else the last lane seen
    task_lanes = [k for k, ln in enumerate(lanes) if ln.role == "task" and not ln.ghost]
    dest = len(lanes) - 1 if lanes[-1].ghost else (task_lanes[-1] if task_lanes else len(lanes) - 1)
    # without a task lane or a reply, requests that got as far as anything was seen died there too
    dead_end = not lanes[-1].ghost and not task_lanes and not bwd_seen and conn.get("verdict") != "ok"
    chains: list[PacketChain] = []
    for key, seen in obs.groups.items():
        fwd = bool(key[0])
        for ch in _split_duplicates(seen):
            ch.sort(key=lambda o: o[0] if fwd else -o[0])
            lanes_ch = [o[0] for o in ch]
            end = lanes_ch[-1]
            lost = (end < dest or (dead_end and end == dest)) if fwd else end > 0
            chains.append(PacketChain(fwd, _packet_label(*obs.meta[key]), lanes_ch, [o[1] for o in ch], lost,
                                      seq=(key[1], key[3], key[6])))
    chains.sort(key=lambda c: (c.first_ns, not c.forward))
    _mark_retransmissions(chains)
    return chains


def _titles(conn: Any, conn_id: int) -> tuple[str, str]:
    proto = int(conn["proto"])
    title = f"Connection {conn_id} · {proto_name(proto).upper()} · {conn['status']}"
    backend = _nullable_str(conn.get("backend"))
    btask = _nullable_str(conn.get("backend_task"))
    bnode = _nullable_str(conn.get("backend_node"))
    enode = _nullable_str(conn.get("entry_node"))
    parts = [f"client {conn['client']}", f"entry {conn['entry']}" + (f" ({enode})" if enode else "")]
    if backend:
        where = " on ".join(x for x in (btask, bnode) if x)
        parts.append(f"backend {backend}" + (f" ({where})" if where else ""))
    return title, "  →  ".join(parts)


def sequence_model(analysis: Analysis, conn_id: int, *, max_packets: int = 40) -> SequenceModel:
    """The plain-data content of the sequence diagram of connection ``conn_id``."""
    conn, hops = _connection(analysis, conn_id)
    lanes = _lanes(hops)
    hop_to_lane = {int(h): k for k, h in enumerate(hops["hop"])}
    _ghost_lane(analysis, conn, lanes)
    obs = _observations(analysis, conn_id, _lane_keys(hops))
    chains = _chains(obs, lanes, conn, bwd_seen=int(hops["bwd_packets"].sum()) > 0)
    t0 = min((c.first_ns for c in chains), default=int(conn["first_ts_ns"]))
    title, subtitle = _titles(conn, conn_id)
    verdict = str(conn.get("verdict") or "")
    markers = _markers(analysis.translations[analysis.translations["conn_id"] == conn_id], hop_to_lane, lanes)
    return SequenceModel(conn_id=int(conn_id), title=title, subtitle=subtitle,
                         verdict="" if verdict == "ok" else verdict, lanes=lanes, packets=chains[:max_packets],
                         markers=markers, omitted=chains[max_packets:], unmatched=obs.unmatched, t0_ns=t0)


def _mark_retransmissions(chains: list[PacketChain]) -> None:
    """A chain repeating an earlier chain's direction, sequence number, flags and length (for segments that
    occupy sequence space: SYN, FIN or payload) is a retransmission."""
    seen: set[tuple[bool, tuple[int, int, int]]] = set()
    for c in chains:
        seq, flags, plen = c.seq
        sig = (c.forward, c.seq)
        occupies = seq >= 0 and (plen > 0 or (flags >= 0 and flags & 0x03))
        c.retransmission = bool(occupies and sig in seen)
        seen.add(sig)


# ---------------------------------------------------------------------------------------------- drawing

ROW_H = 0.34  # inches per packet row
DROP = 0.10  # how far an arrow chain descends across all lanes (time flows down)
PAD = 0.12


def _lane_lines(lane: Lane) -> tuple[str, str, str]:
    """Header text of a lane: node (bold), namespace.iface, role."""
    rest = lane.point[len(lane.node) + 1:] if lane.point.startswith(lane.node + ".") else lane.point
    rest = rest.replace(".", " · ") if rest.count(".") == 1 else rest
    role = lane.role
    if lane.ghost:
        role = "never seen"
    elif lane.encapsulated:
        role = f"{role} · VXLAN"
    return lane.node, _ellipsize(rest, 26), role


def _ellipsize(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tuple_text(lane: Lane) -> str:
    if lane.ghost:
        return "(no packet of this\nconnection seen here)"
    lines = [f"src {lane.src}", f"dst {lane.dst}"]
    if lane.encapsulated:
        lines.append(f"outer {lane.outer_src or '?'}")
        lines.append(f"   → {lane.outer_dst or '?'}")
    return "\n".join(lines)


def _fmt_time(ns: int) -> str:
    if ns < 10_000_000_000:
        return f"+{ns / 1e6:.3f} ms"
    return f"+{ns / 1e9:.3f} s"


def _wrap_to(text: str, width_in: float, size: float) -> str:
    """Wrap ``text`` at spaces so that no line is wider than ``width_in`` (measured, not estimated)."""
    if not text or text_size(text, size)[0] <= width_in:
        return text
    lines: list[str] = []
    cur = ""
    for word in text.split(" "):
        cand = f"{cur} {word}" if cur else word
        if cur and text_size(cand, size)[0] > width_in:
            lines.append(cur)
            cur = word
        else:
            cur = cand
        while text_size(cur, size)[0] > width_in and len(cur) > 8:  # a single over-long word
            cut = len(cur)
            while cut > 1 and text_size(cur[:cut], size)[0] > width_in:
                cut -= 1
            lines.append(cur[:cut])
            cur = cur[cut:]
    if cur:
        lines.append(cur)
    return "\n".join(lines)


def _pack_rows(items: list[tuple[float, float]], gap: float) -> list[int]:
    """Greedy interval packing: row index for each (centre, width) so no two in a row overlap."""
    rows: list[list[tuple[float, float]]] = []
    out = []
    for c, w in items:
        lo, hi = c - w / 2, c + w / 2
        for k, row in enumerate(rows):
            if all(hi + gap <= a or lo >= b + gap for a, b in row):
                row.append((lo, hi))
                out.append(k)
                break
        else:
            rows.append([(lo, hi)])
            out.append(len(rows) - 1)
    return out


def sequence_diagram(analysis: Analysis, conn_id: int, *, max_packets: int = 40) -> Figure:
    """A sequence diagram of connection ``conn_id`` of ``analysis``.

    Lanes are the capture points in path order; each packet is a chain of arrows across the lanes
    where it was seen (requests blue, replies orange), labelled with its TCP flags and payload
    size; the 5-tuple at each hop is printed under the lane; DNAT, IPVS masq + SNAT, VXLAN
    encap/decap (with the VNI) and REDIRECT are marked between the lanes where they happen; a lost
    packet ends with a cross at the last point it was seen. Packets beyond ``max_packets`` are
    summarised in a note. Raises :class:`~meshpkt.errors.UsageError` when there is nothing to draw.
    """
    model = sequence_model(analysis, conn_id, max_packets=max_packets)
    return draw_sequence(model)


@dataclass
class _Layout:
    """Positions (inches) of every block of the diagram, computed from measured text before drawing."""

    head: list[tuple[str, str, str]]
    tuples: list[str]
    labels: list[str]
    times: list[str]
    lane_w: float = 0.0
    x0: float = 0.0
    xs: list[float] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    title_y: float = 0.18
    sub: str = ""
    sub_y: float = 0.0
    verdict: str = ""
    verdict_y: float = 0.0
    head_h: float = 0.0
    head_top: float = 0.0
    tup_top: float = 0.0
    badge_texts: list[str] = field(default_factory=list)
    badge_sizes: list[tuple[float, float]] = field(default_factory=list)
    badge_x: list[float] = field(default_factory=list)
    badge_rows: list[int] = field(default_factory=list)
    badge_row_h: float = 0.0
    badge_top: float = 0.0
    rows_top: float = 0.0
    bottom: float = 0.0
    note: str = ""
    note_y: float = 0.0
    legend_items: list[tuple[str, str]] = field(default_factory=list)
    legend_y: float = 0.0


def _measure_lanes(model: SequenceModel) -> _Layout:
    """Lane width and x positions, from the widest header, 5-tuple, packet label and time label."""
    lay = _Layout(head=[_lane_lines(ln) for ln in model.lanes], tuples=[_tuple_text(ln) for ln in model.lanes],
                  labels=[c.label + (" (retrans.)" if c.retransmission else "") for c in model.packets],
                  times=[_fmt_time(c.first_ns - model.t0_ns) for c in model.packets])
    head_w = max(max(text_size(a, SIZE_TEXT, "bold")[0], text_size(b, SIZE_TEXT)[0],
                     text_size(c, SIZE_SMALL, style="italic")[0]) for a, b, c in lay.head)
    tup_w = max(text_size(t, SIZE_SMALL)[0] for t in lay.tuples)
    lane_w = max(1.85, head_w + 2 * PAD + 0.15, tup_w + 0.25)
    label_w = max((text_size(lb, SIZE_SMALL)[0] for lb in lay.labels), default=0.0)
    lay.lane_w = max(lane_w, min(label_w + 0.35, 2.6))
    time_w = max((text_size(t, SIZE_SMALL)[0] for t in lay.times), default=0.5)
    lay.x0 = max(lay.lane_w / 2 + 0.15, time_w + 0.35)
    lay.xs = [lay.x0 + k * lay.lane_w for k in range(len(model.lanes))]
    lay.width = lay.xs[-1] + lay.lane_w / 2 + 0.25
    return lay


def _layout_top(lay: _Layout, model: SequenceModel) -> float:
    """Title block (wrapped to the width), lane headers, 5-tuples and translation badges; returns the y below."""
    lay.sub = _wrap_to(model.subtitle, lay.width - 0.4, SIZE_TEXT)
    lay.verdict = _wrap_to(model.verdict, lay.width - 0.4, SIZE_TEXT)
    y = lay.title_y + line_height(SIZE_TITLE) + 0.04
    lay.sub_y = y
    y += text_size(lay.sub, SIZE_TEXT)[1]
    lay.verdict_y = y
    if lay.verdict:
        y += text_size(lay.verdict, SIZE_TEXT)[1]
    y += 0.18
    lay.head_h = line_height(SIZE_TEXT) * 2 + line_height(SIZE_SMALL) + 2 * 0.06
    lay.head_top = y
    y += lay.head_h + 0.08
    lay.tup_top = y
    y += max(text_size(t, SIZE_SMALL)[1] for t in lay.tuples) + 0.12
    # translation badges, packed in rows so none overlaps another
    lay.badge_texts = [f"{m.title}\n{m.detail}" if m.detail else m.title for m in model.markers]
    lay.badge_sizes = [text_size(b, SIZE_SMALL) for b in lay.badge_texts]
    lay.badge_x = [(lay.xs[m.lane_from] + lay.xs[m.lane_to]) / 2 for m in model.markers]
    lay.badge_rows = _pack_rows([(x, w + 0.16) for x, (w, _) in zip(lay.badge_x, lay.badge_sizes, strict=True)], 0.1)
    n_rows = max(lay.badge_rows, default=-1) + 1
    lay.badge_row_h = max((h for _, h in lay.badge_sizes), default=0.0) + 0.16
    lay.badge_top = y
    return y + n_rows * lay.badge_row_h + (0.1 if n_rows else 0)


def _layout(model: SequenceModel) -> _Layout:
    lay = _measure_lanes(model)
    lay.rows_top = _layout_top(lay, model) + 0.12
    y = lay.bottom = lay.rows_top + max(len(model.packets), 1) * ROW_H
    lay.note = _wrap_to(_note(model), lay.width - 0.4, SIZE_TEXT)
    lay.note_y = y + 0.08
    if lay.note:
        y = lay.note_y + text_size(lay.note, SIZE_TEXT)[1] + 0.1
    lay.legend_items = [("fwd", "request (client → backend)"), ("bwd", "reply"), ("dot", "seen at this capture point")]
    if any(c.lost for c in model.packets + model.omitted):
        lay.legend_items.append(("lost", "lost: last seen here"))
    lay.legend_y = y + 0.2
    lay.height = lay.legend_y + 0.3
    # the legend may need more width than the lanes
    legend_w = sum(text_size(t, SIZE_SMALL)[0] + 0.78 for _, t in lay.legend_items) + 0.2
    lay.width = max(lay.width, legend_w + 0.3, text_size(model.title, SIZE_TITLE, "bold")[0] + 0.5)
    return lay


def _draw_lanes(ax: Axes, lay: _Layout, model: SequenceModel) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch

    node_fill = _node_fills(model.lanes)
    for k, (ln, (h_node, h_ns, h_role)) in enumerate(zip(model.lanes, lay.head, strict=True)):
        x, box_w = lay.xs[k], lay.lane_w - 2 * 0.09
        ax.add_patch(FancyBboxPatch((x - box_w / 2, lay.head_top), box_w, lay.head_h,
                                    boxstyle="round,pad=0,rounding_size=0.06", linewidth=1.0,
                                    linestyle="--" if ln.ghost else "-",
                                    edgecolor=OKABE_ITO["sky"] if ln.encapsulated else "#555555",
                                    facecolor="white" if ln.ghost else node_fill.get(ln.node, CLIENT_FILL),
                                    gid="lane-header", zorder=2))
        ty = lay.head_top + 0.06
        ax.text(x, ty, h_node, size=SIZE_TEXT, weight="bold", ha="center", va="top", gid="lane-header", zorder=3)
        ax.text(x, ty + line_height(SIZE_TEXT), h_ns, size=SIZE_TEXT, ha="center", va="top", gid="lane-header",
                zorder=3)
        ax.text(x, ty + 2 * line_height(SIZE_TEXT), h_role, size=SIZE_SMALL, style="italic", ha="center", va="top",
                color="#333333", gid="lane-header", zorder=3)
        ax.text(x, lay.tup_top, lay.tuples[k], size=SIZE_SMALL, ha="center", va="top", color="#222222",
                gid="lane-tuple", zorder=3)
        ax.add_line(Line2D([x, x], [lay.tup_top + text_size(lay.tuples[k], SIZE_SMALL)[1] + 0.04, lay.bottom],
                           color=OKABE_ITO["sky"] if ln.encapsulated else "#9a9a9a",
                           linewidth=2.2 if ln.encapsulated else 1.0,
                           linestyle=(0, (4, 3)) if ln.ghost else "-", zorder=1, gid="lane"))


def _draw_markers(ax: Axes, lay: _Layout, model: SequenceModel) -> None:
    from matplotlib.patches import Rectangle

    xs = lay.xs
    for m, text, (_, h), bx, row in zip(model.markers, lay.badge_texts, lay.badge_sizes, lay.badge_x,
                                        lay.badge_rows, strict=True):
        _, color = TRANSLATION_STYLE.get(m.kind, ("", OKABE_ITO["black"]))
        by = lay.badge_top + row * lay.badge_row_h
        ax.text(bx, by + 0.08, text, size=SIZE_SMALL, ha="center", va="top", gid="translation", zorder=4,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": color, "linewidth": 1.4})
        # the band where it happens: between the two lanes (on the lane for REDIRECT)
        if m.lane_from == m.lane_to:
            bx0, bw = xs[m.lane_from] - 0.12, 0.24
        else:
            bx0, bw = xs[m.lane_from] + 0.1, xs[m.lane_to] - xs[m.lane_from] - 0.2
        ax.add_patch(Rectangle((bx0, by + h + 0.12), bw, lay.bottom - (by + h + 0.12), facecolor=color, alpha=0.10,
                               edgecolor="none", zorder=0, gid="translation-band"))


def _draw_packet(ax: Axes, lay: _Layout, n: int, row: int, c: PacketChain, label: str, tlabel: str) -> None:
    """One packet: arrows across the lanes where it was seen, dots, a cross where it was lost, labels."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    xs, step = lay.xs, DROP / max(n - 1, 1)
    ry = lay.rows_top + row * ROW_H + 0.2
    color = FWD_COLOR if c.forward else BWD_COLOR
    start = c.lanes[0]
    pts = [(xs[ln], ry + abs(ln - start) * step) for ln in c.lanes]
    for (xa, ya), (xb, yb) in zip(pts, pts[1:], strict=False):
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=10, linewidth=1.4,
                                     color=color, shrinkA=2, shrinkB=3, zorder=3, gid="packet-arrow"))
    ax.add_line(Line2D([p[0] for p in pts], [p[1] for p in pts], linestyle="none", marker="o", markersize=3.6,
                       color=color, zorder=4, gid="packet-seen"))
    if c.lost:
        xe, ye = pts[-1]
        nxt = c.lanes[-1] + (1 if c.forward else -1)
        if 0 <= nxt < n:
            ax.add_line(Line2D([xe, (xe + xs[nxt]) / 2], [ye, ye + step / 2], linestyle=(0, (1.5, 2.5)), color=color,
                               linewidth=1.2, zorder=3, gid="lost-stub"))
        ax.add_line(Line2D([xe], [ye], linestyle="none", marker="X", markersize=12, color=LOST_COLOR,
                           markeredgecolor="black", markeredgewidth=0.7, zorder=5, gid="lost"))
    # the label sits above the first arrow, on the side the packet travels to (a packet seen only at
    # the first or last lane would otherwise push its label into the time column or off the figure)
    rightward = c.forward if 0 < start < n - 1 else start == 0
    lx = xs[start] + (0.1 if rightward else -0.1)
    ax.text(lx, ry - 0.05, label, size=SIZE_SMALL, ha="left" if rightward else "right", va="bottom",
            color="black", gid="packet-label", zorder=5)
    ax.text(lay.x0 - 0.2, ry, tlabel, size=SIZE_SMALL, ha="right", va="center", color="#444444",
            gid="time-label", zorder=5)


def _draw_legend(ax: Axes, lay: _Layout) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    lx, ly = 0.2, lay.legend_y
    for kind, text in lay.legend_items:
        if kind in ("fwd", "bwd"):
            ax.add_patch(FancyArrowPatch((lx, ly), (lx + 0.4, ly), arrowstyle="-|>", mutation_scale=10,
                                         linewidth=1.4, color=FWD_COLOR if kind == "fwd" else BWD_COLOR,
                                         shrinkA=0, shrinkB=0, gid="legend"))
        elif kind == "dot":
            ax.add_line(Line2D([lx + 0.2], [ly], linestyle="none", marker="o", markersize=3.6, color="#444444",
                               gid="legend"))
        else:
            ax.add_line(Line2D([lx + 0.2], [ly], linestyle="none", marker="X", markersize=11, color=LOST_COLOR,
                               markeredgecolor="black", markeredgewidth=0.7, gid="legend"))
        ax.text(lx + 0.48, ly, text, size=SIZE_SMALL, ha="left", va="center", gid="legend")
        lx += 0.48 + text_size(text, SIZE_SMALL)[0] + 0.3


def draw_sequence(model: SequenceModel) -> Figure:
    """Draw a :class:`SequenceModel` (see :func:`sequence_diagram`)."""
    lay = _layout(model)
    fig = new_figure(lay.width, lay.height)
    ax = inch_axes(fig)
    ax.text(0.2, lay.title_y, model.title, size=SIZE_TITLE, weight="bold", va="top", ha="left", gid="title")
    ax.text(0.2, lay.sub_y, lay.sub, size=SIZE_TEXT, va="top", ha="left", gid="title")
    if lay.verdict:
        ax.text(0.2, lay.verdict_y, lay.verdict, size=SIZE_TEXT, va="top", ha="left", color=LOST_COLOR, gid="title")
    _draw_lanes(ax, lay, model)
    _draw_markers(ax, lay, model)
    for r, (c, label, tlabel) in enumerate(zip(model.packets, lay.labels, lay.times, strict=True)):
        _draw_packet(ax, lay, len(model.lanes), r, c, label, tlabel)
    if not model.packets:
        ax.text(lay.xs[0] + 0.1, lay.rows_top + 0.2, "no packet of this connection could be placed on a hop",
                size=SIZE_TEXT, va="center", ha="left", gid="note")
    if lay.note:
        ax.text(0.2, lay.note_y, lay.note, size=SIZE_TEXT, ha="left", va="top", style="italic", gid="note")
    _draw_legend(ax, lay)
    return fig


def _node_fills(lanes: list[Lane]) -> dict[str, str]:
    fills: dict[str, str] = {}
    k = 0
    for ln in lanes:
        if ln.node in fills:
            continue
        if ln.role == "client" or ln.node == "client":
            fills[ln.node] = CLIENT_FILL
        else:
            fills[ln.node] = NODE_FILLS[k % len(NODE_FILLS)]
            k += 1
    return fills


def _note(model: SequenceModel) -> str:
    parts = []
    if model.omitted:
        om = model.omitted
        req = sum(1 for c in om if c.forward)
        lost = sum(1 for c in om if c.lost)
        t1 = _fmt_time(min(c.first_ns for c in om) - model.t0_ns)
        t2 = _fmt_time(max(c.first_ns for c in om) - model.t0_ns)
        shown = len(model.packets)
        parts.append(f"Showing the first {shown} of {shown + len(om)} packets; {len(om)} more from {t1} to {t2} "
                     f"({req} requests, {len(om) - req} replies" + (f", {lost} lost" if lost else "") +
                     ") are not drawn.")
    if model.unmatched:
        parts.append(f"{model.unmatched} packet(s) of the connection matched no hop and are not drawn.")
    return " ".join(parts)
