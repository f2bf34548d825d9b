"""Render an expression to pcap-filter (tcpdump/libpcap) or Wireshark display-filter syntax,
and explain it term by term.

Outer IPv4 vs IPv6: family-dependent conjuncts of the top-level And are rendered once per
outer family that can still match, as ``(ip and ...) or (ip6 and ...)``; the family-free
conjuncts (``udp dst port P``) stay outside.

Wireshark (tshark 4.0, checked): ``ip.src`` alone matches the outer *or* the inner header,
so inner fields use the layer operator ``field#N`` (available since Wireshark 4.0): the
inner IPv4 header is ``ip#2`` under an outer IPv4 header and ``ip#1`` under an outer IPv6
header, the inner UDP header ``udp#2``, the inner Ethernet header ``eth#2`` (Ethernet
captures; a Linux-cooked capture has no outer ``eth``). Which outer family a frame has is
read from ``frame.protocols`` (``...:ip:udp:vxlan...`` vs ``...:ipv6:udp:vxlan...``).
Wireshark only dissects VXLAN on UDP 4789 by itself: for other ports run tshark with
``-d udp.port==P,vxlan``.
"""

from __future__ import annotations

from meshpkt.bpf.terms import (
    FALSE,
    TRUE,
    And,
    Const,
    Dialect,
    Expr,
    Family,
    Or,
    OuterFamily,
    Term,
    VxlanPort,
    all_of,
    fold,
    is_family_dependent,
    terms,
)
from meshpkt.errors import UsageError
from meshpkt.mesh.proto import VXLAN_PORT

_OPS = {"pcap": (" and ", " or ", "not "), "wireshark": (" && ", " || ", "!")}


def _family_guard(fam: Family, dialect: Dialect) -> str:
    term = OuterFamily(fam)
    return term.pcap(None) if dialect == "pcap" else term.wireshark(None)


def _r(expr: Expr, fam: Family | None, dialect: Dialect, parent: str | None) -> str:
    if isinstance(expr, Const):
        raise UsageError("these options contradict each other: the filter would match no packet")
    if isinstance(expr, Term):
        s = expr.pcap(fam) if dialect == "pcap" else expr.wireshark(fam)
        and_op = _OPS[dialect][0]
        if parent == "or" and and_op in s and not (s.startswith("(") and s.endswith(")")):
            s = f"({s})"
        return s
    if isinstance(expr, And | Or):
        kind = "and" if isinstance(expr, And) else "or"
        op = _OPS[dialect][0 if kind == "and" else 1]
        s = op.join(_r(i, fam, dialect, kind) for i in expr.items)
        if parent is not None and (parent != kind or dialect == "wireshark"):
            s = f"({s})"
        return s
    raise TypeError(f"not an expression node: {expr!r}")


def branches(expr: Expr, families: tuple[Family, ...] = (4, 6), dialect: Dialect = "pcap"
             ) -> tuple[list[Expr], list[tuple[Family, Expr]]]:
    """Split the top-level And into family-free conjuncts and one folded expression per outer
    family that can still match (``[]`` when the expression does not depend on the family)."""
    items = list(expr.items) if isinstance(expr, And) else [expr]
    if not is_family_dependent(expr, dialect):
        return items, []
    free = [i for i in items if not is_family_dependent(i, dialect)]
    dep = all_of(*[i for i in items if is_family_dependent(i, dialect)])
    out: list[tuple[Family, Expr]] = []
    for fam in families:
        b = fold(dep, fam)
        if b != FALSE:
            out.append((fam, b))
    if not out:
        raise UsageError("these options contradict each other: the filter would match no packet")
    return free, out


def render(expr: Expr, dialect: Dialect = "pcap") -> str:
    """The expression as a pcap-filter string (``dialect="pcap"``, for tcpdump/libpcap) or a
    Wireshark display filter (``"wireshark"``)."""
    if dialect not in _OPS:
        raise UsageError(f"unknown dialect {dialect!r} (pcap or wireshark)")
    free, fams = branches(expr, dialect=dialect)
    parts = [_r(f, None, dialect, "and") for f in free]
    and_op, or_op = _OPS[dialect][0], _OPS[dialect][1]
    if len(fams) == 1:
        fam, b = fams[0]
        if b == TRUE or dialect == "wireshark":
            parts.append(_family_guard(fam, dialect))
        if b != TRUE:
            parts.append(_r(b, fam, dialect, "and"))
    elif fams:
        alts = []
        for fam, b in fams:
            inner = [_family_guard(fam, dialect)] + ([] if b == TRUE else [_r(b, fam, dialect, "and")])
            alts.append("(" + and_op.join(inner) + ")")
        parts.append("(" + or_op.join(alts) + ")")
    if not parts:
        return "" if dialect == "pcap" else "frame"
    return and_op.join(parts)


def explain(expr: Expr, dialect: Dialect = "pcap") -> list[str]:
    """One plain-words line per term: the byte map that justifies its offset (pcap syntax,
    offsets over an outer IPv4 header), plus notes on IPv6 and on Wireshark when relevant."""
    lines = [t.explain() for t in terms(expr) if not isinstance(t, OuterFamily)]
    free, fams = branches(expr)
    fam_set = {f for f, _ in fams}
    if fams:
        lines.insert(0, "offsets count from the first byte of the outer UDP header: udp[0] UDP, udp[8] VXLAN, "
                        "udp[16] inner Ethernet, udp[30] inner IPv4 (udp[34] behind an inner 802.1Q tag)")
    if fam_set == {6}:
        lines.append("outer IPv6 only: every udp[N] above is written ip6[40 + N] (libpcap's udp[] only works "
                     "over IPv4; 40 = fixed IPv6 header, extension headers are not followed)")
    elif fam_set == {4, 6}:
        lines.append("outer IPv4 or IPv6: libpcap's udp[] only works over IPv4, so the filter repeats the "
                     "tests as ip6[40 + N] for an outer IPv6 header (40 = fixed header, extension headers "
                     "not followed), e.g. udp[39] -> ip6[79]")
    elif fam_set == {4}:
        lines.append("outer IPv4 only: libpcap's udp[] skips the outer IPv4 header whatever its length")
    if dialect == "wireshark":
        lines.append("wireshark: ip.src alone matches outer or inner; the layer operator picks the inner one: "
                     "ip#2 under outer IPv4, ip#1 under outer IPv6 (frame.protocols tells which), udp#2, "
                     "eth#2 (Ethernet captures)")
        ports = sorted({t.port for t in terms(expr) if isinstance(t, VxlanPort)} - {VXLAN_PORT})
        if ports:
            lines.append("wireshark decodes VXLAN only on 4789: run tshark with "
                         + " ".join(f"-d udp.port=={p},vxlan" for p in ports))
    return lines


__all__ = ["render", "explain", "branches", "And", "Or"]
