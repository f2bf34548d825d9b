"""The typed filter spec (one field per ``meshpkt filter`` flag) and :func:`build`.

Repeating a flag ORs its values, different flags AND. Values may be given as strings (as the
CLI does) and are normalised to typed values (networks, ints) when the spec is created.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from typing import Any, Literal

from meshpkt.bpf.terms import (
    TCP_FLAG_BITS,
    Direction,
    Expr,
    InnerAddr,
    InnerEtherType,
    InnerFirstFragment,
    InnerMac,
    InnerPort,
    InnerProto,
    InnerTcpFlags,
    InnerVlan,
    IPNet,
    OuterAddr,
    OuterFamily,
    OuterVlan,
    Vni,
    VxlanPort,
    all_of,
    any_of,
)
from meshpkt.errors import UsageError
from meshpkt.mesh.proto import PROTO_NUMBERS, VXLAN_PORT

PROTO_BY_NAME = PROTO_NUMBERS
OuterIP = Literal["any", "4", "6"]


def _tuple(v: Any) -> tuple[Any, ...]:
    if v is None:
        return ()
    if isinstance(v, str | int | bytes) or not hasattr(v, "__iter__"):
        return (v,)
    return tuple(v)


def _int(v: str | int, what: str, high: int) -> int:
    """A number in 0..high (decimal, or 0x.. hex in strings)."""
    try:
        n = int(v, 0) if isinstance(v, str) else int(v)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {v!r}") from None
    if not 0 <= n <= high:
        raise UsageError(f"{what} must be in 0..{high}, got {n}")
    return n


def parse_port(v: str | int, what: str = "port") -> int:
    return _int(v, what, 65535)


def parse_proto(v: str | int) -> int:
    s = str(v).strip().lower()
    if s in PROTO_BY_NAME:
        return PROTO_BY_NAME[s]
    try:
        p = int(s, 0)
    except ValueError:
        raise UsageError(f"protocol must be tcp, udp, icmp or a number 0..255, got {v!r}") from None
    if not 0 <= p <= 255:
        raise UsageError(f"protocol must be in 0..255, got {p}")
    return p


def parse_net4(v: str | int | ipaddress.IPv4Network | ipaddress.IPv4Address, what: str) -> ipaddress.IPv4Network:
    if isinstance(v, ipaddress.IPv4Network):
        return v
    try:
        return ipaddress.IPv4Network(v, strict=False)
    except (ValueError, TypeError):
        raise UsageError(f"{what} must be an IPv4 address or CIDR (inner frames in the mesh are IPv4), "
                         f"got {v!r}") from None


def parse_net(v: str | IPNet | ipaddress.IPv4Address | ipaddress.IPv6Address, what: str) -> IPNet:
    if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return v
    try:
        return ipaddress.ip_network(v, strict=False)
    except (ValueError, TypeError):
        raise UsageError(f"{what} must be an IP address or CIDR, got {v!r}") from None


_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$|^[0-9a-f]{12}$")


def parse_mac(v: str | int) -> int:
    if isinstance(v, int):
        if not 0 <= v < 1 << 48:
            raise UsageError(f"MAC out of range: {v}")
        return v
    s = str(v).strip().lower()
    if not _MAC_RE.match(s):
        raise UsageError(f"not a MAC address: {v!r} (expected aa:bb:cc:dd:ee:ff)")
    return int(re.sub(r"[:-]", "", s), 16)


def parse_tcp_flags(v: str | tuple[int, int]) -> tuple[int, int]:
    """``"syn,!ack"`` -> (set bits, clear bits). ``!`` or ``-`` before a name: must be clear."""
    if isinstance(v, tuple):
        return v
    on = off = 0
    for tok in str(v).lower().replace("+", ",").split(","):
        tok = tok.strip()
        if not tok:
            continue
        neg = tok[0] in "!-"
        name = tok[1:] if neg else tok
        name = {"reset": "rst", "push": "psh", "urgent": "urg", "ecn": "ece"}.get(name, name)
        if name not in TCP_FLAG_BITS:
            raise UsageError(f"unknown TCP flag {tok!r} (known: {', '.join(TCP_FLAG_BITS)}; '!ack' = ACK clear)")
        if neg:
            off |= TCP_FLAG_BITS[name]
        else:
            on |= TCP_FLAG_BITS[name]
    if not on | off:
        raise UsageError(f"empty TCP flag list {v!r}")
    if on & off:
        raise UsageError(f"TCP flags {v!r} ask for a flag to be both set and clear")
    return on, off


def parse_endpoint(v: str) -> tuple[ipaddress.IPv4Network, int | None]:
    """``"10.0.0.2:60559"`` or ``"10.0.0.2"`` -> (address, port)."""
    s = str(v).strip()
    host, _, port = s.rpartition(":") if s.count(":") == 1 else (s, "", "")
    return parse_net4(host, "endpoint"), (parse_port(port) if port else None)


@dataclass(frozen=True)
class FilterSpec:
    """What to select among VXLAN packets on an underlay capture.

    Repeated values of one field are ORed; different fields are ANDed.

    - ``ports``: VXLAN UDP destination ports (default 4789; Swarm's ``--data-path-port``).
    - ``vni``: VXLAN network identifiers.
    - ``inner_proto``: inner IPv4 protocol numbers (``"tcp"``/``"udp"``/``"icmp"`` accepted).
    - ``inner_src`` / ``inner_dst`` / ``inner_host`` / ``inner_net``: inner IPv4 address or CIDR;
      host and net match source or destination.
    - ``inner_sport`` / ``inner_dport`` / ``inner_port``: inner TCP/UDP ports (port: either).
    - ``inner_tcp_flags``: each value ``"syn,!ack"`` = SYN set and ACK clear.
    - ``inner_mac``: inner Ethernet source or destination MAC.
    - ``inner_vlan``: the inner frame carries one 802.1Q tag (shifts the inner IPv4 header by 4);
      ``inner_vlan_id`` (implies ``inner_vlan``) selects tag ids.
    - ``outer_src`` / ``outer_dst`` / ``outer_host``: underlay (VTEP) address or CIDR, IPv4 or IPv6.
    - ``outer_ip``: ``"any"`` (default), ``"4"`` or ``"6"``: the outer IP version.
    - ``outer_vlan``: the captured frames carry one 802.1Q tag (trunk port capture): the filter
      starts with libpcap's ``vlan`` keyword, which shifts every later offset by 4.
    - ``conversation``: ``"A:P,B:Q"`` (ports optional): inner packets between these two
      endpoints, both directions.
    """

    ports: tuple[int, ...] = (VXLAN_PORT,)
    vni: tuple[int, ...] = ()
    inner_proto: tuple[int, ...] = ()
    inner_src: tuple[ipaddress.IPv4Network, ...] = ()
    inner_dst: tuple[ipaddress.IPv4Network, ...] = ()
    inner_host: tuple[ipaddress.IPv4Network, ...] = ()
    inner_net: tuple[ipaddress.IPv4Network, ...] = ()
    inner_sport: tuple[int, ...] = ()
    inner_dport: tuple[int, ...] = ()
    inner_port: tuple[int, ...] = ()
    inner_tcp_flags: tuple[tuple[int, int], ...] = ()
    inner_mac: tuple[int, ...] = ()
    inner_vlan: bool = False
    inner_vlan_id: tuple[int, ...] = ()
    outer_src: tuple[IPNet, ...] = ()
    outer_dst: tuple[IPNet, ...] = ()
    outer_host: tuple[IPNet, ...] = ()
    outer_ip: OuterIP = "any"
    outer_vlan: bool = False
    conversation: tuple[tuple[tuple[ipaddress.IPv4Network, int | None], tuple[ipaddress.IPv4Network, int | None]],
                        ...] = ()

    @classmethod
    def from_flags(cls, **flags: Any) -> FilterSpec:
        """The spec from CLI-like values: strings or numbers, one value or a sequence per field
        (``FilterSpec.from_flags(inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"])``).

        Direct construction normalises the same way; this entry point is the typed one.
        """
        unknown = set(flags) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown filter option(s): {', '.join(sorted(unknown))}")
        return cls(**flags)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        ports = tuple(dict.fromkeys(parse_port(p, "VXLAN port") for p in _tuple(self.ports)))
        put("ports", ports or (VXLAN_PORT,))
        put("vni", tuple(dict.fromkeys(_int(v, "VNI", (1 << 24) - 1) for v in _tuple(self.vni))))
        put("inner_proto", tuple(dict.fromkeys(parse_proto(p) for p in _tuple(self.inner_proto))))
        for name in ("inner_src", "inner_dst", "inner_host", "inner_net"):
            put(name, tuple(dict.fromkeys(parse_net4(v, "--" + name.replace("_", "-"))
                                          for v in _tuple(getattr(self, name)))))
        for name in ("inner_sport", "inner_dport", "inner_port"):
            put(name, tuple(dict.fromkeys(parse_port(v) for v in _tuple(getattr(self, name)))))
        flags: Any = self.inner_tcp_flags
        flag_vals: Any = [flags] if isinstance(flags, tuple) and len(flags) == 2 and all(
            isinstance(x, int) for x in flags) else _tuple(flags)
        put("inner_tcp_flags", tuple(dict.fromkeys(parse_tcp_flags(v) for v in flag_vals)))
        put("inner_mac", tuple(dict.fromkeys(parse_mac(v) for v in _tuple(self.inner_mac))))
        vids = [_int(v, "VLAN id", 4095) for v in _tuple(self.inner_vlan_id)]
        put("inner_vlan_id", tuple(dict.fromkeys(vids)))
        put("inner_vlan", bool(self.inner_vlan) or bool(vids))
        for name in ("outer_src", "outer_dst", "outer_host"):
            put(name, tuple(dict.fromkeys(parse_net(v, "--" + name.replace("_", "-"))
                                          for v in _tuple(getattr(self, name)))))
        oip = str(self.outer_ip).lower().removeprefix("ipv")
        if oip not in ("any", "4", "6"):
            raise UsageError(f"outer IP version must be any, 4 or 6, got {self.outer_ip!r}")
        put("outer_ip", oip)
        put("outer_vlan", bool(self.outer_vlan))
        convs = []
        for c in _tuple(self.conversation):
            if isinstance(c, tuple):
                convs.append(c)
                continue
            sides = re.split(r"\s*(?:,|<->|<>|-)\s*", str(c).strip())
            if len(sides) != 2:
                raise UsageError(f"conversation must look like 10.0.0.2:60559,10.0.0.20:9090, got {c!r}")
            convs.append((parse_endpoint(sides[0]), parse_endpoint(sides[1])))
        put("conversation", tuple(convs))
        self._check_consistent()

    # ---
    def _check_consistent(self) -> None:
        needs_l4 = bool(self.inner_sport or self.inner_dport or self.inner_port
                        or any(p is not None for c in self.conversation for _, p in c))
        if needs_l4 and self.inner_proto and not set(self.inner_proto) & {6, 17}:
            raise UsageError("inner ports need --inner-proto tcp or udp")
        if self.inner_tcp_flags and self.inner_proto and 6 not in self.inner_proto:
            raise UsageError("--inner-tcp-flags needs --inner-proto tcp")
        fams = {str(n.version) for n in (*self.outer_src, *self.outer_dst, *self.outer_host)}
        if self.outer_ip != "any" and fams and self.outer_ip not in fams:
            raise UsageError(f"--outer-ip {self.outer_ip} contradicts the outer addresses given")

    @property
    def tests_inner_ip(self) -> bool:
        return bool(self.inner_proto or self.inner_src or self.inner_dst or self.inner_host or self.inner_net
                    or self.conversation or self.tests_inner_l4)

    @property
    def tests_inner_l4(self) -> bool:
        return bool(self.inner_sport or self.inner_dport or self.inner_port or self.inner_tcp_flags
                    or any(p is not None for c in self.conversation for _, p in c))

    def describe(self) -> dict[str, Any]:
        """The spec as plain JSON-able values (addresses as strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, bool | str) else [str(x) for x in v]
        return out


def _addr(net: ipaddress.IPv4Network, d: Direction, vlan: bool) -> InnerAddr:
    return InnerAddr(net, d, vlan)


def _either(parts: list[Expr], items: list[Expr]) -> None:
    """Append the Or of ``items`` (nothing when there is none: the flag was not given)."""
    if items:
        parts.append(any_of(*items))


def _outer(spec: FilterSpec) -> list[Expr]:
    """VXLAN port(s), outer family and addresses, VNI."""
    parts: list[Expr] = [OuterVlan()] if spec.outer_vlan else []
    parts.append(any_of(*[VxlanPort(p) for p in spec.ports]))
    if spec.outer_ip != "any":
        parts.append(OuterFamily(4 if spec.outer_ip == "4" else 6))
    _either(parts, [OuterAddr(n, "src") for n in spec.outer_src])
    _either(parts, [OuterAddr(n, "dst") for n in spec.outer_dst])
    _either(parts, [a for n in spec.outer_host for a in (OuterAddr(n, "src"), OuterAddr(n, "dst"))])
    _either(parts, [Vni(n) for n in spec.vni])
    return parts


def _inner_guards(spec: FilterSpec) -> list[Expr]:
    """Inner MAC, tag and EtherType, protocol, and the guards before L4 loads (TCP/UDP, first fragment)."""
    v = spec.inner_vlan
    parts: list[Expr] = []
    # all destinations (earlier bytes) before all sources: see match.py on partial loads
    _either(parts, [InnerMac(m, d) for d in ("dst", "src") for m in spec.inner_mac])
    if spec.tests_inner_ip:
        parts.append(InnerEtherType(v))
    elif spec.inner_vlan:
        parts.append(InnerVlan(None))
    _either(parts, [InnerVlan(i) for i in spec.inner_vlan_id])
    _either(parts, [InnerProto(p, v) for p in spec.inner_proto])
    if spec.tests_inner_l4:
        if spec.inner_tcp_flags:
            if set(spec.inner_proto) != {6}:
                parts.append(InnerProto(6, v))
        elif not spec.inner_proto or not set(spec.inner_proto) <= {6, 17}:
            parts.append(any_of(InnerProto(6, v), InnerProto(17, v)))
        parts.append(InnerFirstFragment(v))
    return parts


def _inner_fields(spec: FilterSpec) -> list[Expr]:
    """Inner addresses, ports, TCP flags and conversations."""
    v = spec.inner_vlan
    parts: list[Expr] = []
    _either(parts, [_addr(n, "src", v) for n in spec.inner_src])
    _either(parts, [_addr(n, "dst", v) for n in spec.inner_dst])
    _either(parts, [_addr(n, d, v) for n in (*spec.inner_host, *spec.inner_net) for d in ("src", "dst")])
    _either(parts, [InnerPort(p, "src", v) for p in spec.inner_sport])
    _either(parts, [InnerPort(p, "dst", v) for p in spec.inner_dport])
    _either(parts, [InnerPort(p, d, v) for p in spec.inner_port for d in ("src", "dst")])
    _either(parts, [InnerTcpFlags(on, off, v) for on, off in spec.inner_tcp_flags])
    _either(parts, [_conversation(a, b, v) for a, b in spec.conversation])
    return parts


def build(spec: FilterSpec) -> Expr:
    """The expression for ``spec``: an And of, in this order (cheap and guarding tests first)::

        VXLAN port(s) -> outer family -> outer addresses -> VNI -> inner MAC -> inner tag and
        EtherType (IPv4) -> inner protocol -> guards for L4 fields (TCP/UDP, first fragment)
        -> inner addresses -> inner ports -> TCP flags -> conversations

    Guards come before the loads they protect, as BPF evaluates left to right and stops at the
    first false conjunct.
    """
    return all_of(*_outer(spec), *_inner_guards(spec), *_inner_fields(spec))


def _conversation(a: tuple[ipaddress.IPv4Network, int | None], b: tuple[ipaddress.IPv4Network, int | None],
                  vlan: bool) -> Expr:
    def one_way(x: tuple[ipaddress.IPv4Network, int | None], y: tuple[ipaddress.IPv4Network, int | None]) -> Expr:
        items: list[Expr] = [InnerAddr(x[0], "src", vlan), InnerAddr(y[0], "dst", vlan)]
        if x[1] is not None:
            items.append(InnerPort(x[1], "src", vlan))
        if y[1] is not None:
            items.append(InnerPort(y[1], "dst", vlan))
        return all_of(*items)

    return any_of(one_way(a, b), one_way(b, a))
