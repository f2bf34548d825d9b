"""Topology picture of a lab (or any cluster described by a :class:`~meshpkt.mesh.model.Mesh`).

One column per node, the namespaces stacked inside it (host, ingress_sbox, lb_*, tasks, overlay
``1-*``), each interface a chip with its addresses (VIPs marked), veth pairs and bridge ports as
lines coloured by docker network (underlay, docker_gwbridge, ingress, user overlays -- the colours of
seed 001's figure, from the Okabe-Ito palette, with a distinct line style each), the underlay bridge
as a bus across the top and each VXLAN network (VNI, UDP port, VTEPs) as a dashed bus along the
bottom that every node's ``vxlan0`` joins.

Input: a :class:`Mesh`, a lab status document (docs/status-schema.md) or a
:class:`meshpkt.rules.model.MeshModel` built from dumps. Layout is computed in inches from measured text;
artists carry gids (``node``, ``namespace``, ``iface``, ``link``, ``vxlan-bus``, ``underlay-bus``,
``legend``, ``title``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError
from meshpkt.mesh.model import Interface, Mesh, Namespace, Network, Role
from meshpkt.mesh.proto import VXLAN_PORT
from meshpkt.mesh.status import load_status, status_document
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

    from meshpkt.rules.model import MeshModel

UNDERLAY = "underlay"
GWBRIDGE = "docker_gwbridge"
_NET_COLORS = (OKABE_ITO["green"], OKABE_ITO["purple"], OKABE_ITO["sky"], OKABE_ITO["vermillion"],
               OKABE_ITO["yellow"], OKABE_ITO["black"])
_NET_STYLES: tuple[object, ...] = ((0, (5, 2)), (0, (6, 2, 1.5, 2)), (0, (1.5, 1.5)),
                                   (0, (8, 2, 1.5, 2, 1.5, 2)), (0, (3, 3)), (0, (1, 3)))
_ROLE_ORDER = {Role.HOST: 0, Role.INGRESS_SBOX: 1, Role.LB: 2, Role.TASK: 3, Role.OVERLAY: 4}

CHIP_PAD = 0.07
CHIP_GAP = 0.12
NS_PAD = 0.1
NS_GAP = 0.46
CHANNEL = 0.42
TRACK = 0.07
COL_GAP = 0.35

Point = tuple[float, float]


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


@dataclass
class _Palette:
    """Colour, line style and width of each network's links."""

    net_names: list[str]
    colors: dict[str, str]
    styles: dict[str, object]
    widths: dict[str, float]

    def color(self, net: str | None, default: str = "#555555") -> str:
        return self.colors.get(net or "", default)

    def style(self, net: str, default: str = "-") -> Any:  # a matplotlib linestyle (name or dash tuple)
        return self.styles.get(net, default)


@dataclass
class _Scene:
    """Everything placed, in inches, before anything is drawn."""

    mesh: Mesh
    palette: _Palette
    title: str
    columns: list[_Column] = field(default_factory=list)
    chips: dict[tuple[str, str], _Chip] = field(default_factory=dict)
    ifaces: dict[tuple[str, str], Interface] = field(default_factory=dict)
    client_col: _Column | None = None
    title_y: float = 0.2
    width: float = 0.0
    height: float = 0.0
    bus_y: float = 0.0
    bottom: float = 0.0
    links: list[tuple[str, list[Point]]] = field(default_factory=list)
    underlay_drops: list[Point] = field(default_factory=list)
    bus_rows: list[tuple[Network, float, list[float]]] = field(default_factory=list)
    caption: str = ""
    caption_y: float = 0.0
    legend_y: float = 0.0
    legend_items: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------- input


def _check_document(status: Mapping[str, Any]) -> None:
    nodes = status.get("nodes")
    if not isinstance(nodes, list):
        raise UsageError("not a lab status document (expected an object with \"nodes\"; "
                         "see `meshpkt lab status --json`)")
    if not nodes:
        raise UsageError("nothing to draw: the lab status lists no nodes")
    if not all(isinstance(nd, Mapping) and isinstance(nd.get("namespaces", []), list) for nd in nodes):
        raise UsageError("not a lab status document (a node without a namespaces list)")


def as_mesh(status: Mesh | Mapping[str, Any] | MeshModel) -> Mesh:
    """A :class:`Mesh` from a Mesh, a lab status document or a dump model; UsageError otherwise."""
    if isinstance(status, Mesh):
        return status
    if isinstance(status, Mapping):
        _check_document(status)
        return load_status(status)
    if hasattr(status, "nodes") and hasattr(status, "namespaces"):
        from meshpkt.rules.to_mesh import mesh_from_model

        return mesh_from_model(status)
    raise UsageError("not a lab status document (expected an object with \"nodes\"; "
                     "see `meshpkt lab status --json`)")


def status_from_model(model: MeshModel) -> dict[str, Any]:
    """The lab status document of the mesh dumps describe (see :func:`meshpkt.rules.to_mesh.mesh_from_model`)."""
    from meshpkt.rules.to_mesh import mesh_from_model

    return status_document(mesh_from_model(model))


# ---------------------------------------------------------------- chips and columns


def _chip_text(iface: Interface) -> str:
    lines = [iface.name]
    if iface.vxlan is not None:
        lines.append(f"VNI {iface.vxlan.vni} · udp/{iface.vxlan.port or VXLAN_PORT}")
    elif iface.kind == "bridge":
        lines[0] += " (bridge)"
    lines += [f"VIP {a.ip}" if a.network.prefixlen == 32 else str(a) for a in iface.addresses]
    return "\n".join(lines)


def _is_chip(iface: Interface) -> bool:
    """Bridge ports (veths enslaved to a bridge) are drawn as the bridge's links, not as chips."""
    return not (iface.bridge and iface.kind == "veth")


def _ns_header(ns: Namespace) -> str:
    short = ns.short or ns.name or "?"
    if ns.role == Role.TASK:
        return f"{(ns.task.name if ns.task else '') or short} · task"
    if ns.role in (Role.OVERLAY, Role.LB):
        return f"{short} · {ns.role} {ns.network}" if ns.network else f"{short} · {ns.role}"
    if ns.role == Role.HOST:
        return f"host · {ns.name}"
    return short if short == ns.role else f"{short} · {ns.role}"


def _palette(mesh: Mesh) -> _Palette:
    names = [n.name for n in mesh.networks if n.name != GWBRIDGE]
    pal = _Palette(names, {UNDERLAY: OKABE_ITO["orange"], GWBRIDGE: OKABE_ITO["blue"]},
                   {UNDERLAY: "-", GWBRIDGE: "-"}, {UNDERLAY: 2.2, GWBRIDGE: 1.5})
    for k, name in enumerate(names):
        pal.colors[name] = _NET_COLORS[k % len(_NET_COLORS)]
        pal.styles[name] = _NET_STYLES[k % len(_NET_STYLES)]
        pal.widths[name] = 1.5
    return pal


def _make_ns(scene: _Scene, ns: Namespace) -> _Ns:
    items = []
    for iface in ns.interfaces:
        scene.ifaces[(ns.name, iface.name)] = iface
        if not _is_chip(iface):
            continue
        chip = _Chip(ns.name, iface.name, _chip_text(iface), iface.network or UNDERLAY)
        scene.chips[(ns.name, chip.iface)] = chip
        items.append(chip)
    if ns.role == Role.HOST:  # gwbridge first (left channel), eth0 last (up to the underlay)
        items.sort(key=lambda c: (c.network != GWBRIDGE, c.network == UNDERLAY, c.iface))
    return _Ns(ns.name, _ns_header(ns), str(ns.role), items)


def _net_rank(ns: Namespace, net_names: list[str]) -> int:
    return net_names.index(ns.network) if ns.network in net_names else len(net_names)


def _build_columns(scene: _Scene) -> None:
    """A client column (when the mesh has client namespaces), then one column per node."""
    mesh = scene.mesh
    clients = [ns for ns in mesh.underlay_namespaces if ns.role == Role.CLIENT]
    if clients:
        col = _Column("clients", CLIENT_FILL)
        for ns in clients:
            drawn = _make_ns(scene, ns)
            drawn.header = f"client · {ns.name}"
            col.namespaces.append(drawn)
        scene.columns.append(col)
        scene.client_col = col
    names = scene.palette.net_names
    for k, nd in enumerate(mesh.nodes):
        bits = [nd.name or f"node{k + 1}"]
        if nd.underlay_ip is not None:
            bits.append(str(nd.underlay_ip))
        if nd.ingress_ip is not None:
            bits.append(f"ingress {nd.ingress_ip}")
        col = _Column(" · ".join(bits), NODE_FILLS[k % len(NODE_FILLS)])
        ordered = sorted(nd.namespaces, key=lambda ns: (_ROLE_ORDER.get(ns.role, 3), _net_rank(ns, names), ns.short))
        col.namespaces = [_make_ns(scene, ns) for ns in ordered]
        scene.columns.append(col)
    if not scene.chips:
        raise UsageError("nothing to draw: the lab status lists no interfaces")


# ---------------------------------------------------------------- layout


def _measure(scene: _Scene) -> tuple[float, float, int]:
    """(namespace width, chip width, chips per row); places the node columns side by side."""
    cols = scene.columns
    chip_w = max(max(text_size(c.text, SIZE_SMALL)[0] for c in scene.chips.values()) + 2 * CHIP_PAD, 1.0)
    per_row = min(max(1, max(len(ns.chips) for col in cols for ns in col.namespaces)), 3)
    inner_w = per_row * chip_w + (per_row - 1) * CHIP_GAP
    ns_w = max(inner_w + 2 * NS_PAD,
               max(text_size(ns.header, SIZE_TEXT, "bold")[0] + 2 * NS_PAD for col in cols for ns in col.namespaces))
    col_w = max([ns_w + 2 * CHANNEL] + [text_size(col.title, SIZE_TEXT + 1, "bold")[0] + 0.3 for col in cols])
    x = 0.3
    for col in cols:
        if col is scene.client_col:  # above the underlay bus, at the left
            col.x, col.w = 0.3, col_w
            continue
        col.x, col.w = x, col_w
        x += col_w + COL_GAP
    scene.width = x - COL_GAP + 0.3
    return col_w - 2 * CHANNEL, chip_w, per_row


def _layout_rows(scene: _Scene, ns_w: float, chip_w: float, per_row: int) -> None:
    """Title, client column, underlay bus, then the node columns (all as tall as the tallest)."""
    head_y = scene.title_y + line_height(SIZE_TITLE) + 0.15
    cc = scene.client_col
    if cc is not None:
        _layout_column(cc, head_y, ns_w, chip_w, per_row)
        scene.bus_y = cc.y + cc.h + 0.35
    else:
        scene.bus_y = head_y + 0.1
    node_top = scene.bus_y + 0.45
    nodes = [col for col in scene.columns if col is not cc]
    for col in nodes:
        _layout_column(col, node_top, ns_w, chip_w, per_row)
    scene.bottom = max([node_top] + [col.y + col.h for col in nodes])
    for col in nodes:  # equal node heights look tidier
        col.h = scene.bottom - col.y


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


# ---------------------------------------------------------------- links


def _peer_chip(scene: _Scene, iface: Interface) -> _Chip | None:
    """The chip at the other end of a veth: the peer itself, or the bridge it is enslaved to."""
    assert iface.peer is not None
    key = (iface.peer.netns, iface.peer.iface)
    target = scene.chips.get(key)
    if target is None:
        peer = scene.ifaces.get(key)
        if peer is not None and peer.bridge:
            target = scene.chips.get((key[0], peer.bridge))
    return target


def _veth_links(scene: _Scene) -> None:
    """veth pairs (once each), vxlan0 -> br0, and drops from host NICs to the underlay bus."""
    underlay_ns = {ns.name for ns in scene.mesh.underlay_namespaces if ns.role == Role.UNDERLAY}
    underlay_ns.add(scene.mesh.underlay.netns)
    done: set[frozenset[tuple[str, str]]] = set()
    col_of = {ns.name: col for col in scene.columns for ns in col.namespaces}
    ns_of = {ns.name: ns for col in scene.columns for ns in col.namespaces}
    for (nsname, ifname), chip in scene.chips.items():
        iface = scene.ifaces[(nsname, ifname)]
        if iface.vxlan is not None and iface.bridge:
            br = scene.chips.get((nsname, iface.bridge))
            if br is not None:
                scene.links.append((chip.network or UNDERLAY, _straight(chip, br)))
        if iface.peer is None:
            continue
        if iface.peer.netns in underlay_ns:
            scene.underlay_drops.append((chip.cx, chip.y))
            continue
        target = _peer_chip(scene, iface)
        if target is None:
            continue
        key = frozenset({(nsname, ifname), (target.netns, target.iface)})
        if key in done:
            continue
        done.add(key)
        net = (chip.network if chip.network != UNDERLAY else target.network) or UNDERLAY
        col = col_of.get(nsname)
        if col is None or col is not col_of.get(target.netns):
            scene.links.append((net, _straight(chip, target)))
        else:
            scene.links.append((net, _route(col, ns_of[nsname], chip, ns_of[target.netns], target,
                                            left=net == GWBRIDGE)))


def _vxlan_buses(scene: _Scene) -> float:
    """One bus per VXLAN network below the columns, joined by every vxlan0; returns the y under them."""
    col_of = {ns.name: col for col in scene.columns for ns in col.namespaces}
    ns_of = {ns.name: ns for col in scene.columns for ns in col.namespaces}
    by = scene.bottom + 0.45
    for vnet in scene.mesh.overlays():
        xs_bus = []
        for (nsname, ifname), chip in scene.chips.items():
            if scene.ifaces[(nsname, ifname)].vxlan is None or chip.network != vnet.name:
                continue
            col, ns = col_of[nsname], ns_of[nsname]
            if ns is col.namespaces[-1]:
                pts = [(chip.cx, chip.y + chip.h), (chip.cx, by)]
                xs_bus.append(chip.cx)
            else:
                k = col.tracks_right
                col.tracks_right += 1
                tx = col.x + col.w - 0.12 - k * TRACK
                gy = ns.y + ns.h + 0.1 + (k % 4) * TRACK
                pts = [(chip.cx, chip.y + chip.h), (chip.cx, gy), (tx, gy), (tx, by)]
                xs_bus.append(tx)
            scene.links.append((vnet.name, pts))
        if xs_bus:
            scene.bus_rows.append((vnet, by, xs_bus))
            by += 0.55
    return by


# ---------------------------------------------------------------- captions


def _vxlan_line(mesh: Mesh, net: Network) -> str:
    vteps = [str(v.ip) for v in mesh.vteps() if v.network == net.name]
    subnet = str(net.subnet) if net.subnet is not None else ""
    return (f"VXLAN VNI {net.vni}: network {net.name} {subnet}, UDP port {net.port or VXLAN_PORT}"
            + (f", VTEPs {', '.join(vteps)}" if vteps else ""))


def _service_lines(mesh: Mesh) -> list[str]:
    lines = []
    for s in mesh.services:
        parts = [f"service {s.name}"]
        if s.vips:
            parts.append("VIP " + ", ".join(f"{k} {v}" for k, v in s.vips.items()))
        if s.published:
            parts.append("published " + ", ".join(f"{p.published}→{p.target}/{p.protocol}" for p in s.published))
        if s.backends:
            parts.append("tasks " + ", ".join(f"{b.task} {b.ip} ({b.node})" for b in s.backends))
        lines.append(" · ".join(parts))
    return lines


def _captions(scene: _Scene, by: float) -> None:
    """VXLAN and service lines under the buses, the legend under them; the figure's final size."""
    lines = [_vxlan_line(scene.mesh, net) for net, _, _ in scene.bus_rows] + _service_lines(scene.mesh)
    avail = scene.width - 0.6
    scene.caption = "\n".join(
        textwrap.fill(s, max(40, int(len(s) * avail / max(text_size(s, SIZE_SMALL)[0], 0.01)) - 2),
                      subsequent_indent="    ") for s in lines)
    scene.caption_y = by + 0.05
    scene.legend_y = scene.caption_y + (text_size(scene.caption, SIZE_SMALL)[1] + 0.2 if scene.caption else 0.0)
    scene.legend_items = [(UNDERLAY, "underlay (host eth0, client)"), (GWBRIDGE, "docker_gwbridge")] + [
        (n, f"{n} overlay") for n in scene.palette.net_names]
    legend_w = sum(text_size(t, SIZE_SMALL)[0] + 0.83 for _, t in scene.legend_items)
    for net, _, xs_bus in scene.bus_rows:
        label_w = text_size(f"VXLAN VNI {net.vni} ({net.name})", SIZE_SMALL)[0]
        scene.width = max(scene.width, max(xs_bus) + 0.3 + label_w + 0.2)
    scene.height = scene.legend_y + 0.45
    scene.width = max(scene.width, legend_w + 0.6, text_size(scene.title, SIZE_TITLE, "bold")[0] + 0.6)


def _default_title(mesh: Mesh) -> str:
    return f"Lab {mesh.name or '?'}: {len(mesh.nodes)} node(s)" + (f", load balancer {mesh.lb}" if mesh.lb else "")


def _scene(mesh: Mesh, title: str | None) -> _Scene:
    if not mesh.nodes:
        raise UsageError("nothing to draw: the lab status lists no nodes")
    scene = _Scene(mesh, _palette(mesh), title if title is not None else _default_title(mesh))
    _build_columns(scene)
    ns_w, chip_w, per_row = _measure(scene)
    _layout_rows(scene, ns_w, chip_w, per_row)
    _veth_links(scene)
    _captions(scene, _vxlan_buses(scene))
    return scene


# ---------------------------------------------------------------- drawing


def _draw_columns(ax: Axes, scene: _Scene) -> None:
    from matplotlib.patches import FancyBboxPatch

    for col in scene.columns:
        ax.add_patch(FancyBboxPatch((col.x, col.y), col.w, col.h, boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor=col.fill, edgecolor="#666666", linewidth=1.0, zorder=0, gid="node"))
        ax.text(col.x + 0.12, col.y + 0.08, col.title, size=SIZE_TEXT + 1, weight="bold", va="top", ha="left",
                zorder=5, gid="node")
        for ns in col.namespaces:
            ax.add_patch(FancyBboxPatch((ns.x, ns.y), ns.w, ns.h, boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor="white", edgecolor="#777777", linewidth=0.9, zorder=2,
                                        gid="namespace"))
            ax.text(ns.x + NS_PAD, ns.y + 0.06, ns.header, size=SIZE_TEXT, weight="bold", va="top", ha="left",
                    zorder=5, gid="namespace", bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                                     "edgecolor": "none"})
            for c in ns.chips:
                ax.add_patch(FancyBboxPatch((c.x, c.y), c.w, c.h, boxstyle="round,pad=0,rounding_size=0.04",
                                            facecolor="#F4F4F4", edgecolor=scene.palette.color(c.network),
                                            linewidth=1.4, zorder=4, gid="iface"))
                ax.text(c.x + CHIP_PAD, c.y + CHIP_PAD * 0.7, c.text, size=SIZE_SMALL, va="top", ha="left",
                        zorder=5, gid="iface")


def _draw_links(ax: Axes, scene: _Scene) -> None:
    from matplotlib.lines import Line2D

    pal = scene.palette
    for net, pts in scene.links:
        ax.add_line(Line2D([p[0] for p in pts], [p[1] for p in pts], color=pal.color(net),
                           linestyle=pal.style(net), linewidth=pal.widths.get(net, 1.4), zorder=3,
                           gid="link"))


def _underlay_label(scene: _Scene) -> str:
    u = scene.mesh.underlay
    parts = [str(u.subnet) if u.subnet is not None else "", f"bridge {u.bridge}" if u.bridge else "", u.netns]
    return "underlay " + " · ".join(p for p in parts if p)


def _draw_underlay_bus(ax: Axes, scene: _Scene) -> None:
    from matplotlib.lines import Line2D

    if not scene.underlay_drops:
        return
    color, width, bus_y = scene.palette.colors[UNDERLAY], scene.palette.widths[UNDERLAY], scene.bus_y
    xs = [p[0] for p in scene.underlay_drops]
    for xu, yu in scene.underlay_drops:
        ax.add_line(Line2D([xu, xu], [bus_y, yu], color=color, linewidth=width, zorder=1 if yu > bus_y else 3,
                           gid="link"))
    ax.add_line(Line2D([min(xs) - 0.1, max(xs) + 0.1], [bus_y, bus_y], color=color, linewidth=3.5,
                       solid_capstyle="round", zorder=3, gid="underlay-bus"))
    cc = scene.client_col
    lx = (cc.x + cc.w + 0.25) if cc is not None else 0.3
    ax.text(lx, bus_y - 0.07, _underlay_label(scene), size=SIZE_SMALL, va="bottom", ha="left", color="#333333",
            zorder=5, gid="underlay-bus")


def _draw_buses_and_legend(ax: Axes, scene: _Scene) -> None:
    from matplotlib.lines import Line2D

    pal = scene.palette
    for net, yb, xs_bus in scene.bus_rows:
        ax.add_line(Line2D([min(xs_bus) - 0.1, max(xs_bus) + 0.1], [yb, yb], color=pal.color(net.name, "#555"),
                           linestyle=pal.style(net.name, "--"), linewidth=3.0, zorder=3, gid="vxlan-bus"))
        ax.text(max(xs_bus) + 0.2, yb, f"VXLAN VNI {net.vni} ({net.name})", size=SIZE_SMALL, va="center",
                ha="left", color="#222222", zorder=5, gid="vxlan-bus")
    if scene.caption:
        ax.text(0.3, scene.caption_y + 0.1, scene.caption, size=SIZE_SMALL, va="top", ha="left", zorder=5,
                gid="services")
    lx, ly = 0.3, scene.legend_y + 0.2
    for key, text in scene.legend_items:
        ax.add_line(Line2D([lx, lx + 0.5], [ly, ly], color=pal.color(key, "#555"), linestyle=pal.style(key),
                           linewidth=pal.widths.get(key, 1.5), gid="legend"))
        ax.text(lx + 0.58, ly, text, size=SIZE_SMALL, va="center", ha="left", gid="legend")
        lx += 0.58 + text_size(text, SIZE_SMALL)[0] + 0.25


def topology_diagram(status: Mesh | Mapping[str, Any] | MeshModel, *, title: str | None = None) -> Figure:
    """Draw a mesh: nodes, their namespaces, interfaces and addresses, veth pairs, bridges, the underlay
    and the VXLAN networks with their VNIs.

    ``status``: a :class:`Mesh`, a lab status document (``meshpkt lab status --json``) or a
    :class:`meshpkt.rules.model.MeshModel` built from dumps. Raises UsageError when there is nothing to
    draw."""
    scene = _scene(as_mesh(status), title)
    fig = new_figure(scene.width, scene.height)
    ax = inch_axes(fig)
    ax.text(0.3, scene.title_y, scene.title, size=SIZE_TITLE, weight="bold", va="top", ha="left", gid="title")
    _draw_columns(ax, scene)
    _draw_links(ax, scene)
    _draw_underlay_bus(ax, scene)
    _draw_buses_and_legend(ax, scene)
    return fig
