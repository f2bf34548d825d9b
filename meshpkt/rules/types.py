"""Normalized data types shared by every dump parser of :mod:`meshpkt.rules`.

A netfilter rule looks the same whichever dump it came from (``iptables-save``,
``iptables -L -n -v``, ``nft -j list ruleset``): :class:`Rule` holds its table, chain,
the matches meshpkt models (protocol, addresses, ports, interfaces, mark, addrtype,
conntrack state, ``-m ipvs``), the target with its arguments, the counters and the
original text. Addresses are :mod:`ipaddress` objects (ints underneath), MACs are 6 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshpkt.mesh import addr as mesh_addr
from meshpkt.mesh.proto import PROTO_NAMES

PortRange = tuple[int, int]
"""An inclusive port range ``(low, high)``; one port is ``(p, p)``."""

PROTO_NUMBERS = {"0": "all"} | {str(num): name for num, name in PROTO_NAMES.items()}
"""Protocol numbers as dumps print them -> names (``"6"`` -> ``"tcp"``)."""

# iptables tables as netfilter hooks: (hook, priority) of each built-in chain.
IPTABLES_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
BUILTIN_HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
                 "OUTPUT": "output", "POSTROUTING": "postrouting"}


def norm_proto(proto: str | None) -> str | None:
    """``"6"`` -> ``"tcp"``, ``"all"``/``"0"``/None -> None (any protocol)."""
    if proto is None:
        return None
    p = proto.lower()
    p = PROTO_NUMBERS.get(p, p)
    return None if p in ("all", "ip") else p


def parse_mac(text: str) -> bytes | None:
    """``"02:42:0a:00:00:14"`` -> 6 bytes; None when ``text`` is not a MAC."""
    parts = text.strip().split(":")
    if len(parts) != 6:
        return None
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        return None
    return raw if all(len(p) in (1, 2) for p in parts) else None


def mac_str(mac: bytes | None) -> str:
    """6 bytes -> ``"02:42:0a:00:00:14"`` (``"-"`` for None)."""
    return "-" if mac is None else mesh_addr.mac_str(mac)


def docker_mac(addr: IPv4Address) -> bytes:
    """The MAC Docker gives an overlay endpoint: ``02:42`` + the IPv4 bytes."""
    return mesh_addr.docker_mac(addr).to_bytes(6, "big")


def parse_net(text: str) -> IPv4Network | None:
    """``"10.0.0.0/24"``, ``"10.0.0.20"`` -> network; ``0.0.0.0/0`` and non-IPv4 -> None (= any)."""
    try:
        net = IPv4Network(text.strip(), strict=False)
    except ValueError:
        return None
    return None if net.prefixlen == 0 else net


def parse_ports(text: str) -> tuple[PortRange, ...] | None:
    """``"9090"``, ``"1000:2000"``, ``"80,443"``, ``"1000-2000"`` -> ranges; None when not ports."""
    out: list[PortRange] = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:[:-](\d+))?", part.strip())
        if not m:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        out.append((lo, hi))
    return tuple(out) if out else None


def parse_int(text: str) -> int | None:
    """``"0x102"`` or ``"258"`` -> 258; None when not a number."""
    try:
        return int(text, 0)
    except ValueError:
        return None


def parse_counter(text: str) -> tuple[int, bool] | None:
    """An ``iptables -L -v`` counter: ``"585K"`` -> (585000, False) (1000-based, approximate);
    ``"9629"`` -> (9629, True)."""
    m = re.fullmatch(r"(\d+)([KMGTP]?)", text)
    if not m:
        return None
    mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}[m.group(2)]
    return int(m.group(1)) * mult, m.group(2) == ""


def ports_str(ports: tuple[PortRange, ...] | None) -> str:
    """Ranges -> ``"80,1000:2000"``."""
    if not ports:
        return "*"
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ports)


@dataclass
class Rule:
    """One netfilter rule, normalized whatever dump it came from.

    ``None`` in a match field means "any". ``*_neg`` is True for a negated match (``!``).
    ``other`` lists matches meshpkt does not model (kept as text, e.g. ``"-m physdev ..."``).
    ``target`` is upper-case for verdicts and NAT targets (ACCEPT, DROP, RETURN, DNAT, SNAT,
    MASQUERADE, REDIRECT, MARK ...) and keeps its case for user chains (jumps).
    """

    table: str
    chain: str
    index: int
    text: str
    source: str
    family: str = "ip"
    proto: str | None = None
    proto_neg: bool = False
    src: IPv4Network | None = None
    src_neg: bool = False
    dst: IPv4Network | None = None
    dst_neg: bool = False
    in_iface: str | None = None
    in_neg: bool = False
    out_iface: str | None = None
    out_neg: bool = False
    sports: tuple[PortRange, ...] | None = None
    sports_neg: bool = False
    dports: tuple[PortRange, ...] | None = None
    dports_neg: bool = False
    mark: tuple[int, int] | None = None
    mark_neg: bool = False
    src_type: str | None = None
    src_type_neg: bool = False
    dst_type: str | None = None
    dst_type_neg: bool = False
    ctstate: frozenset[str] | None = None
    ctstate_neg: bool = False
    ctstatus: frozenset[str] | None = None
    ipvs: bool | None = None
    comment: str | None = None
    other: list[str] = field(default_factory=list)
    target: str | None = None
    goto: bool = False
    target_args: str = ""
    to_addr: IPv4Address | None = None
    to_ports: PortRange | None = None
    set_mark: tuple[int, int] | None = None
    lb_backends: tuple[IPv4Address, ...] | None = None
    lb_mode: str | None = None
    pkts: int | None = None
    bytes: int | None = None
    counters_exact: bool = True

    @property
    def is_jump(self) -> bool:
        """True when the target is a user chain (not a built-in target)."""
        return self.target is not None and self.target not in BUILTIN_TARGETS

    @property
    def dport(self) -> int | None:
        """The single destination port matched (None when none or a range)."""
        if self.dports and len(self.dports) == 1 and self.dports[0][0] == self.dports[0][1]:
            return self.dports[0][0]
        return None

    def counters(self) -> str:
        """``"75 pkts 4800 bytes"`` (``~`` marks approximate K/M counters, ``-`` unknown)."""
        if self.pkts is None:
            return "-"
        approx = "" if self.counters_exact else "~"
        return f"{approx}{self.pkts} pkts {approx}{self.bytes} bytes"

    def where(self) -> str:
        """``"nat DOCKER-INGRESS #1"``."""
        return f"{self.table} {self.chain} #{self.index}"


BUILTIN_TARGETS = frozenset({
    "ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK",
    "CONNMARK", "LOG", "NFLOG", "TCPMSS", "CT", "NOTRACK", "TRACE", "CLASSIFY", "TPROXY", "NETMAP",
    "CHECKSUM", "DSCP", "TOS", "TTL", "SET", "AUDIT", "CONTINUE", "COUNTER", "XT",
})


@dataclass
class Chain:
    """A chain of a table: built-in (``policy`` set, ``hook``/``priority`` known) or user chain."""

    table: str
    name: str
    family: str = "ip"
    policy: str | None = None
    hook: str | None = None
    priority: int | None = None
    pkts: int | None = None
    bytes: int | None = None
    references: int | None = None
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Ruleset:
    """The chains of one dump (one namespace): ``tables[table][chain]``.

    ``source`` is ``"iptables-save"``, ``"iptables -L"`` or ``"nft"``; ``backend`` is
    ``"nf_tables"``/``"legacy"`` when the dump says so. ``unparsed`` keeps every line the
    parser did not understand; ``warnings`` keeps tool warnings (``# Warning: ...``).
    """

    source: str
    backend: str | None = None
    tables: dict[str, dict[str, Chain]] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def chain(self, table: str, name: str) -> Chain | None:
        """The chain ``table``/``name`` or None."""
        return self.tables.get(table, {}).get(name)

    def add_chain(self, chain: Chain) -> Chain:
        """Add (or return the existing) chain of that table and name."""
        tbl = self.tables.setdefault(chain.table, {})
        if chain.name in tbl:
            return tbl[chain.name]
        tbl[chain.name] = chain
        return chain

    def rules(self) -> Iterator[Rule]:
        """Every rule, table by table, chain by chain."""
        for chains in self.tables.values():
            for ch in chains.values():
                yield from ch.rules
