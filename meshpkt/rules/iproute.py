"""Parsers for iproute2 output: ``ip [-d] link show`` / ``ip addr`` (text and ``-j`` JSON),
``ip route``, ``ip neigh`` and ``bridge fdb show``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, ip_address, ip_interface
from typing import Any

from meshpkt.rules.types import parse_mac


@dataclass
class VxlanInfo:
    """The vxlan part of ``ip -d link``: VNI, UDP destination port, local/remote VTEP, lower device."""

    vni: int
    dstport: int | None = None
    local: IPv4Address | None = None
    remote: IPv4Address | None = None
    group: IPv4Address | None = None
    dev: str | None = None
    learning: bool | None = None
    proxy: bool = False
    l2miss: bool = False
    l3miss: bool = False
    text: str = ""


@dataclass
class IfAddr:
    """One address of an interface (``inet``/``inet6``)."""

    iface: str
    addr: IPv4Interface | IPv6Interface
    scope: str | None = None
    label: str | None = None


@dataclass
class Link:
    """One interface: index, name, ``@ifN`` peer index, flags, mtu, bridge master, MAC,
    link-netns(id), kind (vxlan / veth / bridge / ...), vxlan details and addresses."""

    index: int
    name: str
    peer_index: int | None = None
    peer_name: str | None = None
    flags: list[str] = field(default_factory=list)
    mtu: int | None = None
    master: str | None = None
    state: str | None = None
    mac: bytes | None = None
    link_type: str | None = None
    link_netnsid: int | None = None
    link_netns: str | None = None
    kind: str | None = None
    slave_kind: str | None = None
    vxlan: VxlanInfo | None = None
    addresses: list[IfAddr] = field(default_factory=list)
    text: str = ""


@dataclass
class LinkTable:
    """The interfaces of one namespace and the lines not understood."""

    links: list[Link] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> Link | None:
        """The interface called ``name`` or None."""
        return next((lk for lk in self.links if lk.name == name), None)


@dataclass
class Route:
    """One ``ip route`` entry; ``dest`` None is the default route."""

    dest: IPv4Network | None
    type: str = "unicast"
    via: IPv4Address | None = None
    dev: str | None = None
    src: IPv4Address | None = None
    proto: str | None = None
    scope: str | None = None
    metric: int | None = None
    table: str | None = None
    text: str = ""


@dataclass
class Neighbour:
    """One ``ip neigh`` entry."""

    addr: IPv4Address
    dev: str | None
    lladdr: bytes | None
    state: list[str] = field(default_factory=list)
    text: str = ""


@dataclass
class FdbEntry:
    """One ``bridge fdb`` entry: MAC, device, remote VTEP (``dst``) for vxlan entries, master,
    ``self``, state (permanent / static / learned)."""

    mac: bytes
    dev: str | None
    dst: IPv4Address | None = None
    master: str | None = None
    self_: bool = False
    state: str = "learned"
    vlan: int | None = None
    link_netnsid: int | None = None
    flags: list[str] = field(default_factory=list)
    text: str = ""


def _v4(text: str | None) -> IPv4Address | None:
    if not text:
        return None
    try:
        a = ip_address(text)
    except ValueError:
        return None
    return a if isinstance(a, IPv4Address) else None


_ADDR_FLAGS = {"dynamic", "noprefixroute", "secondary", "permanent", "deprecated", "tentative", "temporary",
               "mngtmpaddr", "home", "nodad", "optimistic", "stable-privacy"}
_LINK_HDR = re.compile(
    r"^(?P<index>\d+):\s+(?P<name>[^:@\s]+)(?:@(?P<peer>[^:\s]+))?:\s+<(?P<flags>[^>]*)>(?P<rest>.*)$")


def _parse_vxlan(line: str) -> VxlanInfo | None:
    m = re.search(r"\bvxlan id (\d+)", line)
    if not m:
        return None
    info = VxlanInfo(vni=int(m.group(1)), text=line.strip())
    toks = line.split()
    for i, t in enumerate(toks[:-1]):
        nxt = toks[i + 1]
        if t == "dstport":
            info.dstport = int(nxt) if nxt.isdigit() else None
        elif t == "local":
            info.local = _v4(nxt)
        elif t == "remote":
            info.remote = _v4(nxt)
        elif t == "group":
            info.group = _v4(nxt)
        elif t == "dev":
            info.dev = nxt
    info.learning = "nolearning" not in toks  # iproute2 prints only "nolearning"
    info.proxy = "proxy" in toks
    info.l2miss = "l2miss" in toks
    info.l3miss = "l3miss" in toks
    return info


def _link_header(m: re.Match[str], line: str) -> Link:
    """``5: eth0@if6: <BROADCAST,...> mtu 1450 master br0 state UP``."""
    link = Link(index=int(m.group("index")), name=m.group("name"), flags=m.group("flags").split(","), text=line)
    peer = m.group("peer")
    if peer:
        pm = re.fullmatch(r"if(\d+)", peer)
        if pm:
            link.peer_index = int(pm.group(1))
        elif peer != "NONE":
            link.peer_name = peer
    rest = m.group("rest").split()
    for i, t in enumerate(rest[:-1]):
        if t == "mtu" and rest[i + 1].isdigit():
            link.mtu = int(rest[i + 1])
        elif t == "master":
            link.master = rest[i + 1]
        elif t == "state":
            link.state = rest[i + 1]
    return link


def _link_layer(link: Link, toks: list[str]) -> None:
    """``link/ether 02:42:... brd ... link-netnsid 0``."""
    link.link_type = toks[0][5:]
    if len(toks) > 1:
        link.mac = parse_mac(toks[1])
    for i, t in enumerate(toks[:-1]):
        if t == "link-netnsid" and toks[i + 1].isdigit():
            link.link_netnsid = int(toks[i + 1])
        elif t == "link-netns":
            link.link_netns = toks[i + 1]


def _address(link: Link, toks: list[str]) -> bool:
    """``inet 10.0.0.2/24 brd ... scope global eth0``; False when the address does not parse."""
    try:
        addr = ip_interface(toks[1])
    except ValueError:
        return False
    ia = IfAddr(iface=link.name, addr=addr)
    for i, t in enumerate(toks[:-1]):
        if t == "scope":
            ia.scope = toks[i + 1]
    if toks[0] == "inet" and toks[-1] not in _ADDR_FLAGS and toks[-2:-1] != ["scope"]:
        ia.label = toks[-1]
    link.addresses.append(ia)
    return True


_LINK_KINDS = ("veth", "bridge", "macvlan", "ipvlan", "dummy", "ipip", "gre", "vrf", "bond", "tun")
_IGNORED = ("valid_lft", "altname", "alias", "prop", "vf", "geneve", "openvswitch")


def _detail_line(link: Link, line: str) -> bool:
    """One indented line under a link header; False when it is not understood."""
    toks = line.split()
    head = toks[0]
    if head.startswith("link/"):
        _link_layer(link, toks)
    elif head in ("inet", "inet6") and len(toks) > 1:
        return _address(link, toks)
    elif head == "vxlan":
        link.kind = "vxlan"
        link.vxlan = _parse_vxlan(line)
    elif head in _LINK_KINDS:
        link.kind = head
    elif head in ("bridge_slave", "bond_slave", "vrf_slave"):
        link.slave_kind = head.replace("_slave", "")
    else:
        return head in _IGNORED
    return True


def parse_ip_link(text: str) -> LinkTable:
    """Parse ``ip [-d] link show`` or ``ip addr show`` text (indented or flattened lines)."""
    tbl = LinkTable()
    cur: Link | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LINK_HDR.match(line)
        if m:
            cur = _link_header(m, line)
            tbl.links.append(cur)
        elif cur is None or not _detail_line(cur, line):
            tbl.unparsed.append(raw)
    return tbl


def parse_ip_json(text: str) -> LinkTable:
    """Parse ``ip -j [-d] addr show`` / ``ip -j -d link show`` JSON."""
    tbl = LinkTable()
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        tbl.unparsed.append(f"not JSON: {exc}")
        return tbl
    if not isinstance(data, list):
        tbl.unparsed.append("not a JSON list")
        return tbl
    for obj in data:
        if not isinstance(obj, dict) or "ifname" not in obj:
            tbl.unparsed.append(json.dumps(obj)[:200])
            continue
        lk = Link(index=int(obj.get("ifindex", 0)), name=str(obj["ifname"]), flags=list(obj.get("flags", [])),
                  mtu=obj.get("mtu"), master=obj.get("master"), state=obj.get("operstate"),
                  link_type=obj.get("link_type"), text=json.dumps(obj, separators=(",", ":"))[:500])
        if isinstance(obj.get("address"), str):
            lk.mac = parse_mac(obj["address"])
        if isinstance(obj.get("link_index"), int):
            lk.peer_index = obj["link_index"]
        elif isinstance(obj.get("link"), str):
            lk.peer_name = obj["link"]
        if isinstance(obj.get("link_netnsid"), int):
            lk.link_netnsid = obj["link_netnsid"]
        info: dict[str, Any] = obj.get("linkinfo") or {}
        lk.kind = info.get("info_kind")
        lk.slave_kind = info.get("info_slave_kind")
        if lk.kind == "vxlan":
            d = info.get("info_data") or {}
            lk.vxlan = VxlanInfo(vni=int(d.get("id", 0)), dstport=d.get("port"), local=_v4(d.get("local")),
                                 remote=_v4(d.get("remote")), group=_v4(d.get("group")), dev=d.get("link"),
                                 learning=d.get("learning"), proxy=bool(d.get("proxy")),
                                 l2miss=bool(d.get("l2miss")), l3miss=bool(d.get("l3miss")),
                                 text=json.dumps(d, separators=(",", ":")))
        for ai in obj.get("addr_info", []) or []:
            try:
                addr = ip_interface(f"{ai['local']}/{ai.get('prefixlen', 32)}")
            except (KeyError, ValueError):
                continue
            lk.addresses.append(IfAddr(iface=lk.name, addr=addr, scope=ai.get("scope"), label=ai.get("label")))
        tbl.links.append(lk)
    return tbl


_ROUTE_TYPES = {"unicast", "local", "broadcast", "multicast", "unreachable", "prohibit", "blackhole", "throw",
                "nat", "anycast"}


def parse_ip_route(text: str) -> tuple[list[Route], list[str]]:
    """Parse ``ip route [show [table X]]``; returns (routes, unparsed lines)."""
    routes: list[Route] = []
    unparsed: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        toks = line.split()
        rtype = "unicast"
        if toks[0] in _ROUTE_TYPES:
            rtype = toks.pop(0)
        if not toks:
            unparsed.append(raw)
            continue
        if toks[0] == "default":
            dest = None
        else:
            try:
                dest = IPv4Network(toks[0], strict=False)
            except ValueError:
                unparsed.append(raw)
                continue
        r = Route(dest=dest, type=rtype, text=line)
        for i, t in enumerate(toks[1:-1], start=1):
            nxt = toks[i + 1]
            if t == "via":
                r.via = _v4(nxt)
            elif t == "dev":
                r.dev = nxt
            elif t == "src":
                r.src = _v4(nxt)
            elif t == "proto":
                r.proto = nxt
            elif t == "scope":
                r.scope = nxt
            elif t == "metric" and nxt.isdigit():
                r.metric = int(nxt)
            elif t == "table":
                r.table = nxt
        routes.append(r)
    return routes, unparsed


def parse_ip_neigh(text: str) -> tuple[list[Neighbour], list[str]]:
    """Parse ``ip neigh show``; returns (IPv4 entries, unparsed lines). IPv6 entries are skipped."""
    out: list[Neighbour] = []
    unparsed: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        toks = line.split()
        addr = _v4(toks[0])
        if addr is None:
            if ":" not in toks[0]:
                unparsed.append(raw)
            continue
        n = Neighbour(addr=addr, dev=None, lladdr=None, text=line)
        i = 1
        while i < len(toks):
            t = toks[i]
            if t == "dev" and i + 1 < len(toks):
                n.dev = toks[i + 1]
                i += 2
                continue
            if t == "lladdr" and i + 1 < len(toks):
                n.lladdr = parse_mac(toks[i + 1])
                i += 2
                continue
            if t.isupper():
                n.state.append(t)
            i += 1
        out.append(n)
    return out, unparsed


def parse_bridge_fdb(text: str, dev: str | None = None) -> tuple[list[FdbEntry], list[str]]:
    """Parse ``bridge [-d] fdb show [dev X]``; ``dev`` fills entries printed without ``dev``
    (output of ``... show dev vxlan0``). Returns (entries, unparsed lines)."""
    out: list[FdbEntry] = []
    unparsed: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        toks = line.split()
        mac = parse_mac(toks[0])
        if mac is None:
            unparsed.append(raw)
            continue
        e = FdbEntry(mac=mac, dev=dev, text=line)
        i = 1
        while i < len(toks):
            t = toks[i]
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if t == "dev" and nxt:
                e.dev = nxt
                i += 2
                continue
            if t == "dst" and nxt:
                e.dst = _v4(nxt)
                i += 2
                continue
            if t == "master" and nxt:
                e.master = nxt
                i += 2
                continue
            if t == "vlan" and nxt and nxt.isdigit():
                e.vlan = int(nxt)
                i += 2
                continue
            if t == "link-netnsid" and nxt and nxt.isdigit():
                e.link_netnsid = int(nxt)
                i += 2
                continue
            if t in ("port", "vni", "via", "src_vni", "nhid") and nxt:
                e.flags.append(f"{t} {nxt}")
                i += 2
                continue
            if t == "self":
                e.self_ = True
            elif t in ("permanent", "static", "dynamic"):
                e.state = t
            else:
                e.flags.append(t)
            i += 1
        out.append(e)
    return out, unparsed
