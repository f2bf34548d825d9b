"""Topology picture of a lab (or any cluster described by a lab status document).

One column per node, the namespaces stacked inside it (host, ingress_sbox, lb_*, tasks, overlay
``1-*``), each interface a chip with its addresses (VIPs marked), veth pairs and bridge ports as
lines coloured by docker network (underlay, docker_gwbridge, ingress, user overlays -- the colours of
seed 001's figure, from the Okabe-Ito palette, with a distinct line style each), the underlay bridge
as a bus across the top and each VXLAN network (VNI, UDP port, VTEPs) as a dashed bus along the
bottom that every node's ``vxlan0`` joins.

The status schema is documented in :mod:`meshpkt.lab.status`. Layout is computed in inches from
measured text; artists carry gids (``node``, ``namespace``, ``iface``, ``link``, ``vxlan-bus``,
``underlay-bus``, ``legend``, ``title``).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError
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
    from matplotlib.figure import Figure

UNDERLAY = "underlay"
GWBRIDGE = "docker_gwbridge"
_NET_COLORS = (OKABE_ITO["green"], OKABE_ITO["purple"], OKABE_ITO["sky"], OKABE_ITO["vermillion"],
               OKABE_ITO["yellow"], OKABE_ITO["black"])
_NET_STYLES: tuple[Any, ...] = ((0, (5, 2)), (0, (6, 2, 1.5, 2)), (0, (1.5, 1.5)), (0, (8, 2, 1.5, 2, 1.5, 2)),
                                (0, (3, 3)), (0, (1, 3)))
_ROLE_ORDER = {"host": 0, "ingress_sbox": 1, "lb": 2, "task": 3, "overlay": 4}

CHIP_PAD = 0.07
CHIP_GAP = 0.12
NS_PAD = 0.1
NS_GAP = 0.46
CHANNEL = 0.42
TRACK = 0.07


@dataclass
class _Chip:
    netns: str
    iface: str
    text: str
    network: str | None
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class _Ns:
    name: str
    header: str
    role: str
    chips: list[_Chip]
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    row: int = 0


@dataclass
class _Column:
    title: str
    fill: str
    namespaces: list[_Ns] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    tracks_left: int = 0
    tracks_right: int = 0


def _addr_lines(iface: dict[str, Any]) -> list[str]:
    out = []
    for a in iface.get("addresses") or []:
        a = str(a)
        out.append(f"VIP {a.split('/')[0]}" if a.endswith("/32") else a)
    return out


def _chip_text(iface: dict[str, Any]) -> str:
    lines = [str(iface.get("name", "?"))]
    vx = iface.get("vxlan")
    if vx:
        lines.append(f"VNI {vx.get('vni')} · udp/{vx.get('port', 4789)}")
    elif iface.get("kind") == "bridge":
        lines[0] += " (bridge)"
    lines += _addr_lines(iface)
    return "\n".join(lines)


def _is_chip(iface: dict[str, Any]) -> bool:
    """Bridge ports (veths enslaved to a bridge) are drawn as the bridge's links, not as chips."""
    return not (iface.get("bridge") and iface.get("kind") == "veth")


def _ns_header(ns: dict[str, Any]) -> str:
    role = str(ns.get("role") or "")
    short = str(ns.get("short") or ns.get("name") or "?")
    net = ns.get("network")
    if role == "task":
        task = ns.get("task") or {}
        return f"{task.get('name') or short} · task"
    if role in ("overlay", "lb"):
        return f"{short} · {role} {net}" if net else f"{short} · {role}"
    if role == "host":
        return f"host · {ns.get('name')}"
    return short if short == role else f"{short} · {role}"


def _check_status(status: Any) -> None:
    if not isinstance(status, dict) or not isinstance(status.get("nodes"), list):
        raise UsageError("not a lab status document (expected an object with \"nodes\"; "
                         "see `meshpkt lab status --json`)")
    if not status["nodes"]:
        raise UsageError("nothing to draw: the lab status lists no nodes")
    for nd in status["nodes"]:
        if not isinstance(nd, dict) or not isinstance(nd.get("namespaces", []), list):
            raise UsageError("not a lab status document (a node without a namespaces list)")


def topology_diagram(status: dict[str, Any] | Any, *, title: str | None = None) -> Figure:
    """Draw the lab status document ``status`` (``meshpkt lab status --json``; schema in
    :mod:`meshpkt.lab.status`): nodes, their namespaces, interfaces and addresses, veth pairs,
    bridges, the underlay and the VXLAN networks with their VNIs.

    ``status`` may also be a :class:`meshpkt.rules.model.MeshModel` built from dumps (converted
    with :func:`status_from_model`). Raises UsageError when there is nothing to draw."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch

    if not isinstance(status, dict) and hasattr(status, "nodes") and hasattr(status, "namespaces"):
        status = status_from_model(status)
    _check_status(status)
    networks = [n for n in status.get("networks") or [] if isinstance(n, dict)]
    net_names = [str(n.get("name")) for n in networks if n.get("name") not in (None, GWBRIDGE)]
    colors = {UNDERLAY: OKABE_ITO["orange"], GWBRIDGE: OKABE_ITO["blue"]}
    styles: dict[str, Any] = {UNDERLAY: "-", GWBRIDGE: "-"}
    widths = {UNDERLAY: 2.2, GWBRIDGE: 1.5}
    for k, name in enumerate(net_names):
        colors[name] = _NET_COLORS[k % len(_NET_COLORS)]
        styles[name] = _NET_STYLES[k % len(_NET_STYLES)]
        widths[name] = 1.5

    def net_of(iface: dict[str, Any]) -> str:
        n = iface.get("network")
        return str(n) if n else UNDERLAY

    # ---- build columns and chips
    chips: dict[tuple[str, str], _Chip] = {}
    ifaces: dict[tuple[str, str], dict[str, Any]] = {}
    underlay_ns = {str(ns.get("name")) for ns in status.get("underlay_namespaces") or []
                   if ns.get("role") == "underlay"}
    underlay_ns.add(str((status.get("underlay") or {}).get("netns") or ""))
    columns: list[_Column] = []

    def make_ns(ns: dict[str, Any]) -> _Ns:
        items = []
        nsname = str(ns.get("name"))
        for iface in ns.get("interfaces") or []:
            ifaces[(nsname, str(iface.get("name")))] = iface
            if not _is_chip(iface):
                continue
            c = _Chip(nsname, str(iface.get("name")), _chip_text(iface), net_of(iface))
            chips[(nsname, c.iface)] = c
            items.append(c)
        if ns.get("role") == "host":  # gwbridge first (left channel), eth0 last (up to the underlay)
            items.sort(key=lambda c: (c.network != GWBRIDGE, c.network == UNDERLAY, c.iface))
        return _Ns(nsname, _ns_header(ns), str(ns.get("role") or ""), items)

    clients = [ns for ns in status.get("underlay_namespaces") or [] if ns.get("role") == "client"]
    if clients:
        col = _Column("clients", CLIENT_FILL)
        for ns in clients:
            n = make_ns(ns)
            n.header = f"client · {ns.get('name')}"
            col.namespaces.append(n)
        columns.append(col)
    for k, nd in enumerate(status["nodes"]):
        bits = [str(nd.get("name", f"node{k + 1}"))]
        if nd.get("underlay_ip"):
            bits.append(str(nd["underlay_ip"]))
        if nd.get("ingress_ip"):
            bits.append(f"ingress {nd['ingress_ip']}")
        col = _Column(" · ".join(bits), NODE_FILLS[k % len(NODE_FILLS)])
        nss = sorted(nd.get("namespaces") or [], key=lambda ns: (_ROLE_ORDER.get(str(ns.get("role")), 3),
                                                                 _net_rank(ns, net_names), str(ns.get("short"))))
        col.namespaces = [make_ns(ns) for ns in nss]
        columns.append(col)
    if not chips:
        raise UsageError("nothing to draw: the lab status lists no interfaces")

    # ---- sizes
    chip_w = max(text_size(c.text, SIZE_SMALL)[0] for c in chips.values()) + 2 * CHIP_PAD
    chip_w = max(chip_w, 1.0)
    per_row = max(1, max(len(ns.chips) for col in columns for ns in col.namespaces))
    per_row = min(per_row, 3)
    inner_w = per_row * chip_w + (per_row - 1) * CHIP_GAP
    ns_w = max(inner_w + 2 * NS_PAD,
               max(text_size(ns.header, SIZE_TEXT, "bold")[0] + 2 * NS_PAD
                   for col in columns for ns in col.namespaces))
    col_w = ns_w + 2 * CHANNEL
    for col in columns:
        col_w = max(col_w, text_size(col.title, SIZE_TEXT + 1, "bold")[0] + 0.3)
    ns_w = col_w - 2 * CHANNEL
    col_gap = 0.35

    if title is None:
        title = f"Lab {status.get('name', '?')}: {len(status['nodes'])} node(s)" + (
            f", load balancer {status['lb']}" if status.get("lb") else "")
    y = 0.2
    title_y = y
    y += line_height(SIZE_TITLE) + 0.15
    head_y = y  # client column and underlay bus
    x = 0.3
    for col in columns:
        if col.title == "clients":  # above the underlay bus, at the left
            col.x, col.w = 0.3, col_w
            continue
        col.x, col.w = x, col_w
        x += col_w + col_gap
    width = x - col_gap + 0.3

    # vertical layout inside columns
    node_top = head_y
    client_cols = [c for c in columns if c.title == "clients"]
    bus_y = 0.0
    if client_cols:
        cc = client_cols[0]
        _layout_column(cc, head_y, ns_w, chip_w, per_row)
        bus_y = cc.y + cc.h + 0.35
        node_top = bus_y + 0.45
    else:
        bus_y = head_y + 0.1
        node_top = bus_y + 0.45
    bottom = node_top
    for col in columns:
        if col in client_cols:
            continue
        _layout_column(col, node_top, ns_w, chip_w, per_row)
        bottom = max(bottom, col.y + col.h)
    # equal node heights look tidier
    for col in columns:
        if col not in client_cols:
            col.h = bottom - col.y

    # ---- links
    links: list[tuple[str, list[tuple[float, float]]]] = []  # (network, polyline)
    done: set[frozenset[tuple[str, str]]] = set()
    col_of_ns = {ns.name: col for col in columns for ns in col.namespaces}
    ns_of = {ns.name: ns for col in columns for ns in col.namespaces}
    underlay_drops: list[tuple[float, float]] = []
    for (nsname, ifname), chip in chips.items():
        iface = ifaces[(nsname, ifname)]
        if iface.get("vxlan") and iface.get("bridge"):
            br = chips.get((nsname, str(iface["bridge"])))
            if br is not None:
                links.append((chip.network or UNDERLAY, _straight(chip, br)))
        peer = iface.get("peer") or None
        if not peer:
            continue
        pns, pif = str(peer.get("netns")), str(peer.get("iface"))
        if pns in underlay_ns:
            underlay_drops.append((chip.cx, chip.y))
            continue
        target = chips.get((pns, pif))
        if target is None:
            pi = ifaces.get((pns, pif))
            if pi is not None and pi.get("bridge"):
                target = chips.get((pns, str(pi["bridge"])))
        if target is None:
            continue
        key = frozenset({(nsname, ifname), (target.netns, target.iface)})
        if key in done:
            continue
        done.add(key)
        net = chip.network if chip.network != UNDERLAY else (target.network or UNDERLAY)
        lcol = col_of_ns.get(nsname)
        if lcol is None or lcol is not col_of_ns.get(target.netns):
            links.append((net or UNDERLAY, _straight(chip, target)))
            continue
        links.append((net or UNDERLAY, _route(lcol, ns_of[nsname], chip, ns_of[target.netns], target,
                                              left=net == GWBRIDGE)))

    # VXLAN buses along the bottom
    vx_nets = [n for n in networks if n.get("vni") is not None]
    bus_rows: list[tuple[dict[str, Any], float, list[float]]] = []
    by = bottom + 0.45
    for vnet in vx_nets:
        name = str(vnet.get("name"))
        xs_bus = []
        for (nsname, ifname), chip in chips.items():
            iface = ifaces[(nsname, ifname)]
            vx = iface.get("vxlan")
            if not vx or chip.network != name:
                continue
            col = col_of_ns[nsname]
            ns = ns_of[nsname]
            last = ns is col.namespaces[-1]
            if last:
                pts = [(chip.cx, chip.y + chip.h), (chip.cx, by)]
                xs_bus.append(chip.cx)
            else:
                k = col.tracks_right
                col.tracks_right += 1
                tx = col.x + col.w - 0.12 - k * TRACK
                gy = ns.y + ns.h + 0.1 + (k % 4) * TRACK
                pts = [(chip.cx, chip.y + chip.h), (chip.cx, gy), (tx, gy), (tx, by)]
                xs_bus.append(tx)
            links.append((name, pts))
        if xs_bus:
            bus_rows.append((vnet, by, xs_bus))
            by += 0.55

    # ---- text blocks under the buses: services
    svc_lines = [_vxlan_line(status, bnet) for bnet, _, _ in bus_rows] + _service_lines(status)
    svc_text = "\n".join(textwrap.fill(s, max(40, int(len(s) * (width - 0.6) / max(text_size(s, SIZE_SMALL)[0],
                                                                                          0.01)) - 2),
                                       subsequent_indent="    ") for s in svc_lines)
    svc_y = by + 0.05
    legend_y = svc_y + (text_size(svc_text, SIZE_SMALL)[1] + 0.2 if svc_text else 0.0)
    legend_items = [(UNDERLAY, "underlay (host eth0, client)"), (GWBRIDGE, "docker_gwbridge")] + [
        (n, f"{n} overlay") for n in net_names]
    legend_w = sum(text_size(t, SIZE_SMALL)[0] + 0.83 for _, t in legend_items)
    for bnet, _, xs_bus in bus_rows:
        width = max(width, max(xs_bus) + 0.3 + text_size(f"VXLAN VNI {bnet.get('vni')} ({bnet.get('name')})",
                                                          SIZE_SMALL)[0] + 0.2)
    height = legend_y + 0.45
    width = max(width, legend_w + 0.6, text_size(title, SIZE_TITLE, "bold")[0] + 0.6)

    fig = new_figure(width, height)
    ax = inch_axes(fig)
    ax.text(0.3, title_y, title, size=SIZE_TITLE, weight="bold", va="top", ha="left", gid="title")

    # columns, namespaces, chips
    for col in columns:
        ax.add_patch(FancyBboxPatch((col.x, col.y), col.w, col.h, boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor=col.fill, edgecolor="#666666", linewidth=1.0, zorder=0, gid="node"))
        ax.text(col.x + 0.12, col.y + 0.08, col.title, size=SIZE_TEXT + 1, weight="bold", va="top", ha="left",
                zorder=5, gid="node")
        for ns in col.namespaces:
            ax.add_patch(FancyBboxPatch((ns.x, ns.y), ns.w, ns.h, boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor="white", edgecolor="#777777", linewidth=0.9, zorder=2,
                                        gid="namespace"))
            ax.text(ns.x + NS_PAD, ns.y + 0.06, ns.header, size=SIZE_TEXT, weight="bold", va="top", ha="left",
                    zorder=5, gid="namespace", bbox=dict(boxstyle="square,pad=0.1", facecolor="white",
                                                         edgecolor="none"))
            for c in ns.chips:
                ax.add_patch(FancyBboxPatch((c.x, c.y), c.w, c.h, boxstyle="round,pad=0,rounding_size=0.04",
                                            facecolor="#F4F4F4", edgecolor=colors.get(c.network or "", "#555555"),
                                            linewidth=1.4, zorder=4, gid="iface"))
                ax.text(c.x + CHIP_PAD, c.y + CHIP_PAD * 0.7, c.text, size=SIZE_SMALL, va="top", ha="left",
                        zorder=5, gid="iface")

    for net, pts in links:
        ax.add_line(Line2D([p[0] for p in pts], [p[1] for p in pts], color=colors.get(net, "#555555"),
                           linestyle=styles.get(net, "-"), linewidth=widths.get(net, 1.4), zorder=3, gid="link"))

    # underlay bus
    if underlay_drops:
        xs_u = [p[0] for p in underlay_drops]
        for xu, yu in underlay_drops:
            ax.add_line(Line2D([xu, xu], [bus_y, yu], color=colors[UNDERLAY], linewidth=widths[UNDERLAY],
                               zorder=1 if yu > bus_y else 3, gid="link"))
        ax.add_line(Line2D([min(xs_u) - 0.1, max(xs_u) + 0.1], [bus_y, bus_y], color=colors[UNDERLAY],
                           linewidth=3.5, solid_capstyle="round", zorder=3, gid="underlay-bus"))
        und = status.get("underlay") or {}
        label = "underlay " + " · ".join(str(v) for v in (und.get("subnet"),
                                                          f"bridge {und.get('bridge')}" if und.get("bridge")
                                                          else None, und.get("netns")) if v)
        lx = (client_cols[0].x + client_cols[0].w + 0.25) if client_cols else 0.3
        ax.text(lx, bus_y - 0.07, label, size=SIZE_SMALL, va="bottom", ha="left", color="#333333",
                zorder=5, gid="underlay-bus")

    for bnet, yb, xs_bus in bus_rows:
        name = str(bnet.get("name"))
        ax.add_line(Line2D([min(xs_bus) - 0.1, max(xs_bus) + 0.1], [yb, yb], color=colors.get(name, "#555"),
                           linestyle=styles.get(name, "--"), linewidth=3.0, zorder=3, gid="vxlan-bus"))
        ax.text(max(xs_bus) + 0.2, yb, f"VXLAN VNI {bnet.get('vni')} ({name})", size=SIZE_SMALL, va="center",
                ha="left", color="#222222", zorder=5, gid="vxlan-bus")
    if svc_text:
        ax.text(0.3, svc_y + 0.1, svc_text, size=SIZE_SMALL, va="top", ha="left", zorder=5, gid="services")

    lx = 0.3
    ly = legend_y + 0.2
    for net, text in legend_items:
        ax.add_line(Line2D([lx, lx + 0.5], [ly, ly], color=colors.get(net, "#555"), linestyle=styles.get(net, "-"),
                           linewidth=widths.get(net, 1.5), gid="legend"))
        ax.text(lx + 0.58, ly, text, size=SIZE_SMALL, va="center", ha="left", gid="legend")
        lx += 0.58 + text_size(text, SIZE_SMALL)[0] + 0.25
    return fig


def _net_rank(ns: dict[str, Any], net_names: list[str]) -> int:
    net = ns.get("network")
    return net_names.index(net) if net in net_names else len(net_names)


def _layout_column(col: _Column, top: float, ns_w: float, chip_w: float, per_row: int) -> None:
    col.y = top
    y = top + line_height(SIZE_TEXT + 1) + 0.2
    for r, ns in enumerate(col.namespaces):
        ns.row = r
        ns.x = col.x + CHANNEL
        ns.y = y
        ns.w = ns_w
        head_h = line_height(SIZE_TEXT) + 0.1
        cy = y + head_h
        chip_h = max((text_size(c.text, SIZE_SMALL)[1] for c in ns.chips), default=0.0) + 2 * CHIP_PAD * 0.7
        for k, c in enumerate(ns.chips):
            row, pos = divmod(k, per_row)
            n_in_row = min(per_row, len(ns.chips) - row * per_row)
            row_w = n_in_row * chip_w + (n_in_row - 1) * CHIP_GAP
            x0 = ns.x + (ns.w - row_w) / 2
            c.x = x0 + pos * (chip_w + CHIP_GAP)
            c.y = cy + row * (chip_h + CHIP_GAP)
            c.w = chip_w
            c.h = chip_h
        rows = (len(ns.chips) + per_row - 1) // per_row
        ns.h = head_h + rows * chip_h + max(rows - 1, 0) * CHIP_GAP + NS_PAD
        y += ns.h + NS_GAP
    col.h = y - NS_GAP + 0.15 - top


def _straight(a: _Chip, b: _Chip) -> list[tuple[float, float]]:
    if abs(a.y - b.y) < 1e-6:  # same row: side to side
        left, right = (a, b) if a.x < b.x else (b, a)
        yy = a.y + a.h / 2
        return [(left.x + left.w, yy), (right.x, yy)]
    upper, lower = (a, b) if a.y < b.y else (b, a)
    return [(upper.cx, upper.y + upper.h), (lower.cx, lower.y)]


def _route(col: _Column, ns_a: _Ns, a: _Chip, ns_b: _Ns, b: _Chip, *, left: bool) -> list[tuple[float, float]]:
    """Manhattan route between chips of one column: straight across one gap, else via a side channel."""
    if ns_a is ns_b:
        return _straight(a, b)
    if ns_a.row > ns_b.row:
        ns_a, a, ns_b, b = ns_b, b, ns_a, a
    if ns_b.row == ns_a.row + 1:
        return [(a.cx, a.y + a.h), (b.cx, b.y)]
    if left:
        k = col.tracks_left
        col.tracks_left += 1
        tx = col.x + 0.12 + k * TRACK
    else:
        k = col.tracks_right
        col.tracks_right += 1
        tx = col.x + col.w - 0.12 - k * TRACK
    ya = ns_a.y + ns_a.h + 0.1 + (k % 4) * TRACK
    yb = ns_b.y - 0.1 - (k % 4) * TRACK
    return [(a.cx, a.y + a.h), (a.cx, ya), (tx, ya), (tx, yb), (b.cx, yb), (b.cx, b.y)]


def _vxlan_line(status: dict[str, Any], net: dict[str, Any]) -> str:
    name = str(net.get("name"))
    vteps = _vteps(status, name)
    return (f"VXLAN VNI {net.get('vni')}: network {name} {net.get('subnet', '')}, UDP port {net.get('port') or 4789}"
            + (f", VTEPs {', '.join(vteps)}" if vteps else ""))


def _vteps(status: dict[str, Any], network: str) -> list[str]:
    nodes_on = None
    for n in status.get("networks") or []:
        if n.get("name") == network:
            nodes_on = n.get("nodes")
    out = []
    for nd in status["nodes"]:
        if nodes_on is not None and nd.get("name") not in nodes_on:
            continue
        if nd.get("underlay_ip"):
            out.append(str(nd["underlay_ip"]))
    return out


def _service_lines(status: dict[str, Any]) -> list[str]:
    lines = []
    for s in status.get("services") or []:
        if not isinstance(s, dict):
            continue
        vips = s.get("vips") or {}
        vip_txt = ", ".join(f"{k} {v}" for k, v in vips.items()) if isinstance(vips, dict) else str(vips)
        pub = ", ".join(f"{p.get('published')}→{p.get('target')}/{p.get('protocol', 'tcp')}"
                        for p in s.get("published") or [])
        backends = ", ".join(f"{b.get('task')} {b.get('ip')} ({b.get('node')})" for b in s.get("backends") or [])
        parts = [f"service {s.get('name')}"]
        if vip_txt:
            parts.append(f"VIP {vip_txt}")
        if pub:
            parts.append(f"published {pub}")
        if backends:
            parts.append(f"tasks {backends}")
        lines.append(" · ".join(parts))
    return lines


# ------------------------------------------------------------------------------ dumps -> status document


def status_from_model(model: Any) -> dict[str, Any]:
    """A lab-status-shaped document (the subset :func:`topology_diagram` draws) from a
    :class:`meshpkt.rules.model.MeshModel` built from dumps (``meshpkt.rules.model.load_dumps``).

    veth peers are resolved from ``link-netns`` names when the dump has them, else by the mutual
    ``@ifN`` indices of two interfaces of one node; docker network names come from ``docker network
    inspect`` dumps when present, else the overlay namespace's VNI names the network."""
    from ipaddress import IPv4Interface

    nodes_out: list[dict[str, Any]] = []
    vni_net: dict[int, dict[str, Any]] = {}
    underlay_subnets: list[str] = []
    for nname, node in model.nodes.items():
        nss = list(node.namespaces.values())
        full = {ns.name: f"{nname}/{ns.name}" for ns in nss}
        # network name of each overlay namespace (1-<netid>) and of its bridge
        ns_net: dict[str, str] = {}
        for ns in nss:
            vx = next((lk for lk in ns.links if lk.vxlan is not None), None)
            if ns.role.value != "overlay":
                continue
            netid = ns.name[2:] if ns.name.startswith("1-") else ns.name
            dn = next((n for n in node.networks if n.id.startswith(netid)), None)
            vni = vx.vxlan.vni if vx is not None and vx.vxlan is not None else None
            name = dn.name if dn is not None else (f"vxlan {vni}" if vni is not None else ns.name)
            ns_net[ns.name] = name
            if vni is not None:
                subnet = ""
                br = next((lk for lk in ns.links if lk.kind == "bridge"), None)
                if br is not None and br.addresses:
                    subnet = str(br.addresses[0].addr.network)
                port = vx.vxlan.dstport if vx is not None and vx.vxlan is not None else None
                net = vni_net.setdefault(vni, {"name": name, "vni": vni, "port": port or 4789, "subnet": subnet,
                                               "nodes": []})
                net["nodes"].append(nname)

        by_index = {(ns.name, lk.index): lk for ns in nss for lk in ns.links}

        # first pass: every interface, with its peer and bridge
        raw: dict[str, list[dict[str, Any]]] = {}
        for ns in nss:
            items = []
            for lk in ns.links:
                if lk.name == "lo" or lk.kind in ("dummy",):
                    continue
                addrs = [str(a.addr) for a in lk.addresses if isinstance(a.addr, IPv4Interface)
                         and not a.addr.ip.is_loopback]
                peer = _peer_of(node, nss, by_index, ns, lk)
                item: dict[str, Any] = {"name": lk.name, "kind": lk.kind or "", "addresses": addrs,
                                        "bridge": lk.master, "network": None,
                                        "peer": {"netns": full[peer[0]], "iface": peer[1]} if peer else None}
                if lk.vxlan is not None:
                    item["vxlan"] = {"vni": lk.vxlan.vni, "port": lk.vxlan.dstport or 4789}
                items.append(item)
            raw[ns.name] = items
        # networks: overlay namespaces' own links, gwbridge, then veth peers inherit them
        for ns in nss:
            for it in raw[ns.name]:
                if ns.name in ns_net:
                    it["network"] = ns_net[ns.name]
                elif it["name"] == "docker_gwbridge" or it["bridge"] == "docker_gwbridge":
                    it["network"] = "docker_gwbridge"
        lookup = {(full[ns.name], it["name"]): it for ns in nss for it in raw[ns.name]}
        for ns in nss:
            for it in raw[ns.name]:
                if it["network"] is None and it["peer"]:
                    p = lookup.get((it["peer"]["netns"], it["peer"]["iface"]))
                    if p is not None and p["network"]:
                        it["network"] = p["network"]
        # the host's underlay interface(s): addressed, not docker's
        underlay_ip = None
        host = node.host
        if host is not None:
            for it in raw[host.name]:
                if it["network"] is None and it["addresses"] and it["kind"] not in ("bridge", "vxlan") \
                        and not it["name"].startswith(("docker", "br-", "veth")):
                    it["peer"] = {"netns": "underlay", "iface": ""}
                    underlay_ip = underlay_ip or it["addresses"][0].split("/")[0]
                    subnet = str(IPv4Interface(it["addresses"][0]).network)
                    if subnet not in underlay_subnets:
                        underlay_subnets.append(subnet)
        ns_out = []
        for ns in nss:
            role = ns.role.value if ns.role.value != "unknown" else "task"
            ns_out.append({"name": full[ns.name], "short": ns.name, "role": role,
                           "network": ns_net.get(ns.name), "interfaces": raw[ns.name],
                           "task": {"name": ns.name} if role == "task" else None})
        nodes_out.append({"name": nname, "underlay_ip": underlay_ip, "namespaces": ns_out})
    networks = [vni_net[k] for k in sorted(vni_net)]
    networks.append({"name": "docker_gwbridge", "vni": None})
    return {"schema": "meshpkt.lab.status/1", "name": "from dumps", "lb": None,
            "underlay": {"netns": "underlay", "subnet": ", ".join(underlay_subnets)},
            "networks": networks, "nodes": nodes_out, "underlay_namespaces": [], "services": []}


def _find_ns(node: Any, nss: list[Any], link_netns: str | None, exclude: str) -> str | None:
    """The namespace a ``link-netns`` name points to: ``<lab>-node1-ingress_sbox`` -> ingress_sbox, else
    the host namespace."""
    if not link_netns:
        return None
    for ns in nss:
        if ns.name != exclude and (link_netns == ns.name or link_netns.endswith("-" + ns.name)):
            return str(ns.name)
    host = node.host
    return str(host.name) if host is not None and host.name != exclude else None


def _peer_of(node: Any, nss: list[Any], by_index: dict[tuple[str, int], Any], ns: Any,
             lk: Any) -> tuple[str, str] | None:
    """(namespace, interface) at the other end of veth ``lk`` of namespace ``ns``, when it can be told."""
    if lk.peer_index is None or lk.kind not in (None, "veth"):
        return None
    pns = _find_ns(node, nss, lk.link_netns, ns.name)
    if pns is not None:
        plk = by_index.get((pns, lk.peer_index))
        return (pns, str(plk.name)) if plk is not None else None
    cands = [(str(other.name), str(o.name)) for other in nss if other.name != ns.name for o in other.links
             if o.index == lk.peer_index and o.peer_index == lk.index]
    return cands[0] if len(cands) == 1 else None
