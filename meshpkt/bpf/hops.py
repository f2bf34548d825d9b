"""Per-hop filters for one connection: "what to type on each node".

A connection crosses the mesh with a different 5-tuple on every hop (DNAT, IPVS + SNAT,
REDIRECT) and inside VXLAN on the underlay. Given the hops as the flows module describes
them, :func:`filters_for_hops` returns, per capture point, a filter that catches exactly that
connection there, both directions.

A hop is a mapping with keys ``point``, ``src`` and ``dst`` (``"ip:port"``, the client-side
end first), ``vni`` (``None``/-1: not encapsulated at this point), ``outer_src`` and
``outer_dst`` (VTEP addresses, for VXLAN hops), and optionally ``proto`` (``"tcp"``/6,
default tcp) and ``port`` (VXLAN UDP port, default 4789).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from meshpkt.bpf.render import render
from meshpkt.bpf.spec import FilterSpec, build, parse_net, parse_port, parse_proto
from meshpkt.bpf.terms import Dialect, Expr, OuterAddr, OuterPort, OuterProto, all_of, any_of
from meshpkt.errors import UsageError
from meshpkt.mesh.proto import VXLAN_PORT


def _endpoint(v: Any, what: str) -> tuple[str, int | None]:
    s = str(v).strip()
    if s.startswith("["):  # [v6]:port
        host, _, port = s[1:].partition("]")
        port = port.lstrip(":")
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    else:
        host, port = s, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"hop {what} must be ip:port, got {v!r}") from None
    return host, (parse_port(port) if port else None)


def hop_expr(hop: Mapping[str, Any]) -> Expr:
    """The expression catching one hop's packets of the connection, both directions."""
    (a, ap), (b, bp) = _endpoint(hop.get("src"), "src"), _endpoint(hop.get("dst"), "dst")
    proto = parse_proto(hop.get("proto") or "tcp")
    vni = hop.get("vni")
    if vni is not None and int(vni) >= 0:
        conv = f"{a}{':' + str(ap) if ap is not None else ''},{b}{':' + str(bp) if bp is not None else ''}"
        outer = [x for x in (hop.get("outer_src"), hop.get("outer_dst")) if x]
        spec = FilterSpec.from_flags(ports=hop.get("port") or VXLAN_PORT, vni=int(vni), inner_proto=proto,
                                     conversation=conv)
        expr = build(spec)
        if len(outer) == 2:
            s, d = parse_net(outer[0], "outer_src"), parse_net(outer[1], "outer_dst")
            vtep = any_of(all_of(OuterAddr(s, "src"), OuterAddr(d, "dst")),
                          all_of(OuterAddr(d, "src"), OuterAddr(s, "dst")))
            items = list(expr.items) if hasattr(expr, "items") else [expr]
            expr = all_of(items[0], vtep, *items[1:])
        return expr

    def one_way(x: str, xp: int | None, y: str, yp: int | None) -> Expr:
        items: list[Expr] = [OuterAddr(parse_net(x, "src"), "src"), OuterAddr(parse_net(y, "dst"), "dst")]
        if xp is not None:
            items.append(OuterPort(xp, "src"))
        if yp is not None:
            items.append(OuterPort(yp, "dst"))
        return all_of(*items)

    return all_of(OuterProto(proto), any_of(one_way(a, ap, b, bp), one_way(b, bp, a, ap)))


def filters_for_hops(hops: Sequence[Mapping[str, Any]], dialect: Dialect = "pcap") -> dict[str, str]:
    """``{point: filter}`` for the hops of one connection (see the module docstring).

    Several hops seen at the same point (e.g. the underlay both ways) are ORed.
    """
    by_point: dict[str, list[Expr]] = {}
    for hop in hops:
        point = str(hop.get("point") or "")
        if not point:
            raise UsageError(f"hop without a capture point: {dict(hop)!r}")
        e = hop_expr(hop)
        if e not in by_point.setdefault(point, []):
            by_point[point].append(e)
    out: dict[str, str] = {}
    for point, exprs in by_point.items():
        out[point] = (render(exprs[0], dialect) if len(exprs) == 1 else
                      (" or " if dialect == "pcap" else " || ").join(f"({render(e, dialect)})" for e in exprs))
    return out
