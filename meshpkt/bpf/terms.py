"""Filter expressions as data: terms combined with :class:`And`/:class:`Or`, rendered at the end.

Every byte offset of a VXLAN term is counted from the first byte of the *outer UDP header*
(that is what libpcap's ``udp[N]`` addresses over IPv4, whatever the IPv4 header length)::

    udp[0]   outer UDP header (8 bytes; destination port at udp[2:2])
    udp[8]   VXLAN header (8 bytes; flags udp[8], VNI udp[12:3], udp[12:4] >> 8)
    udp[16]  inner Ethernet: destination MAC udp[16:6], source MAC udp[22:6], EtherType udp[28:2]
    udp[30]  inner IPv4 header (udp[34] when the inner frame carries one 802.1Q tag)
    udp[30 + ((udp[30] & 0xf) << 2)]   inner TCP/UDP/ICMP header (IHL-aware)

libpcap 1.10's ``udp[]`` only works over IPv4 (it is "IPv4, protocol UDP, not a later
fragment", then an IHL-relative load). Over an outer IPv6 header the same bytes are
``ip6[40 + N]`` (40-byte fixed header; extension headers are not followed -- neither does
``udp dst port`` in libpcap 1.10). Terms whose rendering depends on the outer family are
*family dependent*; :func:`render` then emits ``(ip and ...) or (ip6 and ...)`` branches
(or a single one when the spec pins the family).

Terms also evaluate themselves over meshpkt's packet table (``decode/schema.py``) with
BPF's semantics, see :mod:`meshpkt.bpf.match`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, TypeAlias

from meshpkt.mesh.addr import mac_str
from meshpkt.mesh.proto import PROTO_NAMES, TCP_FLAGS, VXLAN_PORT

Family = Literal[4, 6]
Direction = Literal["src", "dst"]
Dialect = Literal["pcap", "wireshark"]
IPNet: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

ETH_IPV4 = 0x0800
ETH_8021Q = 0x8100

TCP_FLAG_BITS = TCP_FLAGS  # flag name -> bit, as pcap-filter spells them
_WS_FLAG_FIELD = {"fin": "fin", "syn": "syn", "rst": "reset", "psh": "push", "ack": "ack", "urg": "urg",
                  "ece": "ece", "cwr": "cwr"}


# --- expression nodes --------------------------------------------------------------------
class Expr:
    """Base of every expression node."""

    family_dependent = False
    """True when the pcap rendering differs between an outer IPv4 and an outer IPv6 header."""
    ws_family_dependent: bool | None = None
    """Same for the Wireshark rendering (``None``: as ``family_dependent``)."""

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True)
class And(Expr):
    items: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.items


@dataclass(frozen=True)
class Or(Expr):
    items: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.items


@dataclass(frozen=True)
class Const(Expr):
    """Always true / always false (results of folding; rendered only if nothing else is left)."""

    value: bool


TRUE, FALSE = Const(True), Const(False)


def all_of(*items: Expr) -> Expr:
    """And of the items, flattened; a single item stands alone."""
    flat: list[Expr] = []
    for it in items:
        flat.extend(it.items if isinstance(it, And) else (it,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(*items: Expr) -> Expr:
    """Or of the items, flattened; a single item stands alone."""
    flat: list[Expr] = []
    for it in items:
        flat.extend(it.items if isinstance(it, Or) else (it,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


class Term(Expr):
    """A leaf test. Subclasses render to both dialects and explain themselves."""

    def pcap(self, fam: Family | None) -> str:
        raise NotImplementedError

    def wireshark(self, fam: Family | None) -> str:
        raise NotImplementedError

    def explain(self) -> str:
        raise NotImplementedError

    def fold(self, fam: Family | None) -> Const | None:
        """A constant when the outer family alone decides the term, else None."""
        return None


# --- byte-offset helpers -----------------------------------------------------------------
def _ip_off(vlan: bool) -> int:
    return 34 if vlan else 30


def _load(fam: Family | None, off: int, size: int) -> str:
    """``udp[off:size]`` over IPv4, ``ip6[40+off:size]`` over IPv6."""
    suffix = "" if size == 1 else f":{size}"
    if fam == 6:
        return f"ip6[{40 + off}{suffix}]"
    return f"udp[{off}{suffix}]"


def _l4_load(fam: Family | None, vlan: bool, k: int, size: int) -> str:
    """Load ``size`` bytes at offset ``k`` of the inner L4 header (after a variable-length IPv4 header)."""
    ip = _ip_off(vlan) + (40 if fam == 6 else 0)
    proto = "ip6" if fam == 6 else "udp"
    plus = f" + {k}" if k else ""
    suffix = "" if size == 1 else f":{size}"
    return f"{proto}[{ip} + (({proto}[{ip}] & 0xf) << 2){plus}{suffix}]"


def _hex(v: int, size: int) -> str:
    return f"0x{v:0{2 * size}x}"


def _inner_ip_words(vlan: bool) -> str:
    return "8 UDP + 8 VXLAN + 14 inner Ethernet" + (" + 4 inner 802.1Q tag" if vlan else "")


def _inner_l4_words(vlan: bool) -> str:
    ip = _ip_off(vlan)
    return (f"the inner L4 header starts after the inner IPv4 header: udp[{ip}] is its first byte, whose low "
            f"nibble (IHL) times 4 is its length (20 bytes, up to 60 with options), so "
            f"udp[{ip} + ((udp[{ip}] & 0xf) << 2)] is the first L4 byte")


def _ws_inner_ip_layer(fam: Family | None) -> int:
    return 1 if fam == 6 else 2


# --- VXLAN / outer terms ------------------------------------------------------------------
@dataclass(frozen=True)
class VxlanPort(Term):
    """Outer UDP destination port = the VXLAN data-path port."""

    port: int

    def pcap(self, fam: Family | None) -> str:
        return f"udp dst port {self.port}"

    def wireshark(self, fam: Family | None) -> str:
        return f"udp.dstport#1 == {self.port}"

    def explain(self) -> str:
        std = " (IANA VXLAN, Docker's default)" if self.port == VXLAN_PORT else " (the swarm's --data-path-port)"
        return (f"udp dst port {self.port}: outer UDP destination port {self.port}{std}; libpcap checks "
                f"IPv4 or IPv6 next header 17 and, over IPv4, that this is not a later fragment")


@dataclass(frozen=True)
class OuterVlan(Term):
    """The captured frame carries one 802.1Q tag; libpcap's ``vlan`` shifts later offsets by 4.

    Must come first: without it libpcap sees EtherType 0x8100 and no IP at all."""

    def pcap(self, fam: Family | None) -> str:
        return "vlan"

    def wireshark(self, fam: Family | None) -> str:
        return 'frame.protocols matches "^eth:ethertype:vlan:"'

    def explain(self) -> str:
        return ("vlan: the captured frame carries an 802.1Q tag; libpcap's vlan keyword checks it and moves "
                "every following offset 4 bytes further")


@dataclass(frozen=True)
class OuterFamily(Term):
    """The outer IP header is IPv4 (4) or IPv6 (6)."""

    version: Family

    def fold(self, fam: Family | None) -> Const | None:
        return None if fam is None else Const(fam == self.version)

    def pcap(self, fam: Family | None) -> str:
        return "ip" if self.version == 4 else "ip6"

    def wireshark(self, fam: Family | None) -> str:
        return f'frame.protocols contains ":{"ip" if self.version == 4 else "ipv6"}:udp:vxlan"'

    def explain(self) -> str:
        return f"{self.pcap(None)}: the outer header is IPv{self.version}"


@dataclass(frozen=True)
class OuterAddr(Term):
    """Outer (underlay, or the only) IP source/destination address or network."""

    net: IPNet
    dir: Direction

    @property
    def version(self) -> Family:
        return 4 if self.net.version == 4 else 6

    def fold(self, fam: Family | None) -> Const | None:
        if fam is not None and fam != self.version:
            return FALSE
        return None

    def _what(self) -> str:
        one = self.net.prefixlen == self.net.max_prefixlen
        return f"host {self.net.network_address}" if one else f"net {self.net}"

    def pcap(self, fam: Family | None) -> str:
        return f"{'ip' if self.version == 4 else 'ip6'} {self.dir} {self._what()}"

    def wireshark(self, fam: Family | None) -> str:
        field = "ip" if self.version == 4 else "ipv6"
        one = self.net.prefixlen == self.net.max_prefixlen
        value = self.net.network_address if one else self.net
        return f"{field}.{self.dir}#1 == {value}"

    def explain(self) -> str:
        word = "source" if self.dir == "src" else "destination"
        return f"{self.pcap(None)}: outer IPv{self.version} {word} is {self._what().split(' ', 1)[1]}"


@dataclass(frozen=True)
class OuterProto(Term):
    """Protocol of a plain (non-VXLAN) packet: ``tcp``, ``udp``, ``icmp`` or ``ip proto N``."""

    proto: int

    def pcap(self, fam: Family | None) -> str:
        return {6: "tcp", 17: "udp", 1: "icmp"}.get(self.proto, f"ip proto {self.proto}")

    def wireshark(self, fam: Family | None) -> str:
        return {6: "tcp", 17: "udp", 1: "icmp"}.get(self.proto, f"ip.proto == {self.proto}")

    def explain(self) -> str:
        return f"{self.pcap(None)}: the packet's own IP protocol is {_proto_name(self.proto)}"


@dataclass(frozen=True)
class OuterPort(Term):
    """TCP/UDP port of a plain (non-VXLAN) packet."""

    port: int
    dir: Direction

    def pcap(self, fam: Family | None) -> str:
        return f"{self.dir} port {self.port}"

    def wireshark(self, fam: Family | None) -> str:
        w = "srcport" if self.dir == "src" else "dstport"
        return f"(tcp.{w} == {self.port} || udp.{w}#1 == {self.port})"

    def explain(self) -> str:
        return f"{self.pcap(None)}: the packet's own TCP/UDP {self.dir} port is {self.port}"


@dataclass(frozen=True)
class Vni(Term):
    """VXLAN network identifier: ``udp[12:4] >> 8 = N``."""

    vni: int
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        return f"{_load(fam, 12, 4)}>>8={self.vni}"

    def wireshark(self, fam: Family | None) -> str:
        return f"vxlan.vni == {self.vni}"

    def explain(self) -> str:
        return (f"{self.pcap(4)}: 8 UDP + 4 (VXLAN flags and reserved) = the 24-bit VNI, followed by one "
                f"reserved byte, hence the 4-byte load shifted right by 8; {self.vni} = "
                f"{_hex(self.vni, 3)}")


# --- inner terms ---------------------------------------------------------------------------
@dataclass(frozen=True)
class InnerMac(Term):
    """Inner Ethernet source/destination MAC (two loads: 4 + 2 bytes)."""

    mac: int
    dir: Direction
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        off = 16 if self.dir == "dst" else 22
        hi, lo = self.mac >> 16, self.mac & 0xFFFF
        return f"({_load(fam, off, 4)}={_hex(hi, 4)} and {_load(fam, off + 4, 2)}={_hex(lo, 2)})"

    def wireshark(self, fam: Family | None) -> str:
        return f"eth.{self.dir}#2 == {mac_str(self.mac)}"

    def explain(self) -> str:
        off = 16 if self.dir == "dst" else 22
        what = "destination" if self.dir == "dst" else "source"
        return (f"{self.pcap(4)}: 8 UDP + 8 VXLAN{' + 6' if self.dir == 'src' else ''} = inner Ethernet "
                f"{what} MAC, bytes udp[{off}..{off + 5}] (BPF loads at most 4 bytes: 4 + 2); "
                f"= {mac_str(self.mac)}")


@dataclass(frozen=True)
class InnerEtherType(Term):
    """The inner frame carries IPv4 (``vlan``: behind exactly one 802.1Q tag)."""

    vlan: bool
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        if self.vlan:
            return f"{_load(fam, 28, 2)}={_hex(ETH_8021Q, 2)} and {_load(fam, 32, 2)}={_hex(ETH_IPV4, 2)}"
        return f"{_load(fam, 28, 2)}={_hex(ETH_IPV4, 2)}"

    def wireshark(self, fam: Family | None) -> str:
        chain = ":vxlan:eth:ethertype:vlan:ethertype:ip" if self.vlan else ":vxlan:eth:ethertype:ip"
        return f'frame.protocols contains "{chain}"'

    def explain(self) -> str:
        if self.vlan:
            return (f"{self.pcap(4)}: 8 UDP + 8 VXLAN + 12 (inner MACs) = inner TPID 0x8100 (802.1Q tag), "
                    f"then + 4 (tag) = the EtherType behind the tag, 0x0800 = IPv4; the inner IPv4 header "
                    f"then starts at udp[34]")
        return (f"{self.pcap(4)}: 8 UDP + 8 VXLAN + 12 (inner destination and source MACs) = inner "
                f"EtherType; 0x0800 = IPv4 (untagged), so the inner IPv4 header starts at udp[30]")


@dataclass(frozen=True)
class InnerVlan(Term):
    """The inner frame carries an 802.1Q tag (``vid=None``) or one with this VLAN id."""

    vid: int | None = None
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        if self.vid is None:  # TPID and TCI in one load: a frame cut inside the tag is not "tagged"
            return f"{_load(fam, 28, 4)}&0xffff0000=0x81000000"
        return f"{_load(fam, 30, 2)}&0x0fff={self.vid}"

    def wireshark(self, fam: Family | None) -> str:
        if self.vid is None:
            return 'frame.protocols contains ":vxlan:eth:ethertype:vlan"'
        return f"vlan.id#1 == {self.vid}"

    def explain(self) -> str:
        if self.vid is None:
            return (f"{self.pcap(4)}: 8 UDP + 8 VXLAN + 12 (inner MACs) = inner TPID (2 bytes) and TCI (2 "
                    f"bytes) loaded together; TPID 0x8100 = 802.1Q tag")
        return (f"{self.pcap(4)}: 8 UDP + 8 VXLAN + 14 (inner MACs and TPID) = the tag's TCI; its low 12 "
                f"bits are the VLAN id {self.vid}")


@dataclass(frozen=True)
class InnerProto(Term):
    """Inner IPv4 protocol byte."""

    proto: int
    vlan: bool = False
    family_dependent = True

    def pcap(self, fam: Family | None) -> str:
        return f"{_load(fam, _ip_off(self.vlan) + 9, 1)}={self.proto}"

    def wireshark(self, fam: Family | None) -> str:
        return f"ip.proto#{_ws_inner_ip_layer(fam)} == {self.proto}"

    def explain(self) -> str:
        return (f"{self.pcap(4)}: {_inner_ip_words(self.vlan)} + 9 = protocol byte of the inner IPv4 header; "
                f"{self.proto} = {_proto_name(self.proto)}")


@dataclass(frozen=True)
class InnerAddr(Term):
    """Inner IPv4 source/destination address (``/32``) or network (masked compare)."""

    net: ipaddress.IPv4Network
    dir: Direction
    vlan: bool = False
    family_dependent = True

    def _off(self) -> int:
        return _ip_off(self.vlan) + (12 if self.dir == "src" else 16)

    def pcap(self, fam: Family | None) -> str:
        load = _load(fam, self._off(), 4)
        value = _hex(int(self.net.network_address), 4)
        if self.net.prefixlen == 32:
            return f"{load}={value}"
        if self.net.prefixlen == 0:
            return f"{load}&0=0"
        return f"{load}&{_hex(int(self.net.netmask), 4)}={value}"

    def wireshark(self, fam: Family | None) -> str:
        value = self.net.network_address if self.net.prefixlen == 32 else self.net
        return f"ip.{self.dir}#{_ws_inner_ip_layer(fam)} == {value}"

    def explain(self) -> str:
        what = "source" if self.dir == "src" else "destination"
        k = 12 if self.dir == "src" else 16
        value = (f"{_hex(int(self.net.network_address), 4)} = {self.net.network_address}"
                 if self.net.prefixlen == 32 else f"{self.net} (mask {self.net.netmask})")
        return f"{self.pcap(4)}: {_inner_ip_words(self.vlan)} + {k} = inner IPv4 {what} address; {value}"


@dataclass(frozen=True)
class InnerFirstFragment(Term):
    """The inner IPv4 packet is unfragmented or the first fragment (ports only exist there)."""

    vlan: bool = False
    family_dependent = True

    def pcap(self, fam: Family | None) -> str:
        return f"{_load(fam, _ip_off(self.vlan) + 6, 2)}&0x1fff=0"

    def wireshark(self, fam: Family | None) -> str:
        return f"ip.frag_offset#{_ws_inner_ip_layer(fam)} == 0"

    def explain(self) -> str:
        return (f"{self.pcap(4)}: {_inner_ip_words(self.vlan)} + 6 = inner IPv4 flags and fragment offset; "
                f"offset 0 = not a later fragment (only the first fragment carries the L4 header)")


@dataclass(frozen=True)
class InnerPort(Term):
    """Inner TCP/UDP source/destination port, IHL-aware."""

    port: int
    dir: Direction
    vlan: bool = False
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        return f"{_l4_load(fam, self.vlan, 0 if self.dir == 'src' else 2, 2)}={self.port}"

    def wireshark(self, fam: Family | None) -> str:
        w = "srcport" if self.dir == "src" else "dstport"
        return f"(tcp.{w} == {self.port} || udp.{w}#2 == {self.port})"

    def explain(self) -> str:
        k = 0 if self.dir == "src" else 2
        what = "source" if self.dir == "src" else "destination"
        return f"{self.pcap(4)}: {_inner_l4_words(self.vlan)}; + {k} = inner TCP/UDP {what} port, {self.port}"


@dataclass(frozen=True)
class InnerTcpFlags(Term):
    """Inner TCP flags: all bits of ``set`` on, all bits of ``clear`` off."""

    set: int
    clear: int = 0
    vlan: bool = False
    family_dependent = True
    ws_family_dependent = False

    def pcap(self, fam: Family | None) -> str:
        load = _l4_load(fam, self.vlan, 13, 1)
        mask = self.set | self.clear
        return f"{load}&{_hex(mask, 1)}={_hex(self.set, 1)}"

    def wireshark(self, fam: Family | None) -> str:
        parts = [f"tcp.flags.{_WS_FLAG_FIELD[n]} == {1 if b & self.set else 0}"
                 for n, b in TCP_FLAG_BITS.items() if b & (self.set | self.clear)]
        return parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")"

    def explain(self) -> str:
        on = [n.upper() for n, b in TCP_FLAG_BITS.items() if b & self.set]
        off = [n.upper() for n, b in TCP_FLAG_BITS.items() if b & self.clear]
        words = (f"{'+'.join(on)} set" if on else "") + (", " if on and off else "") + (
            f"{'+'.join(off)} clear" if off else "")
        return f"{self.pcap(4)}: {_inner_l4_words(self.vlan)}; + 13 = inner TCP flags byte; {words}"


# --- helpers used above and by the spec --------------------------------------------------
def _proto_name(p: int) -> str:
    return PROTO_NAMES[p].upper() if p in PROTO_NAMES else f"protocol {p}"


def walk(expr: Expr) -> list[Expr]:
    """Every node of the expression, depth first, parents before children."""
    out = [expr]
    for c in expr.children():
        out.extend(walk(c))
    return out


def terms(expr: Expr) -> list[Term]:
    """The leaf terms of the expression in order, without duplicates."""
    seen: list[Term] = []
    for n in walk(expr):
        if isinstance(n, Term) and n not in seen:
            seen.append(n)
    return seen


def is_family_dependent(expr: Expr, dialect: Dialect = "pcap") -> bool:
    """Whether rendering ``expr`` in ``dialect`` needs to know the outer IP version."""
    def dep(n: Expr) -> bool:
        if isinstance(n, OuterFamily | OuterAddr):
            return True
        if dialect == "wireshark" and n.ws_family_dependent is not None:
            return n.ws_family_dependent
        return n.family_dependent

    return any(dep(n) for n in walk(expr))


def fold(expr: Expr, fam: Family | None) -> Expr:
    """Fold constants for one outer family (``None``: no family assumed)."""
    if isinstance(expr, Term):
        c = expr.fold(fam)
        return expr if c is None else c
    if isinstance(expr, And | Or):
        is_and = isinstance(expr, And)
        out: list[Expr] = []
        for it in expr.items:
            f = fold(it, fam)
            if isinstance(f, Const):
                if f.value != is_and:  # False in And / True in Or decides everything
                    return f
                continue
            out.append(f)
        if not out:
            return Const(is_and)
        return all_of(*out) if is_and else any_of(*out)
    return expr
