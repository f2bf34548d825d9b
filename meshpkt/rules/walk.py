"""A small netfilter evaluator: which rules of a namespace act on one (first) packet.

It walks the base chains of a hook in priority order, follows jumps/gotos/RETURN, applies
MARK, DNAT, SNAT, MASQUERADE, REDIRECT and verdicts, and records every rule that matched.
Matches it cannot decide (unknown interface, unmodelled ``-m`` options) are assumed to match
and noted. Pure: model in, :class:`WalkResult` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from meshpkt.rules.model import Namespace
from meshpkt.rules.types import Chain, Rule


@dataclass
class Pkt:
    """The packet being followed (first packet of a connection: conntrack state NEW)."""

    proto: str
    dst: IPv4Address | None
    dport: int
    src: IPv4Address | None = None
    sport: int | None = None
    iif: str | None = None
    oif: str | None = None
    mark: int = 0
    ipvs: bool = False
    ct_dnat: bool = False
    ctstate: str = "NEW"

    def show(self) -> str:
        """``"10.211.55.2:51883 > 10.211.55.10:9090 tcp"`` (``?`` for unknown parts)."""
        src = f"{self.src or '?'}:{self.sport or '?'}"
        mark = f" mark {self.mark:#x}" if self.mark else ""
        return f"{src} > {self.dst or '?'}:{self.dport} {self.proto}{mark}"


@dataclass
class WalkResult:
    """Rules that matched (jumps included, in order), the packet after them, the verdict
    (ACCEPT, DROP, REJECT or the NAT/mark changes only), and notes on assumptions."""

    pkt: Pkt
    rules: list[Rule] = field(default_factory=list)
    verdict: str = "ACCEPT"
    notes: list[str] = field(default_factory=list)
    lb_rule: Rule | None = None

    def acting(self, *targets: str) -> list[Rule]:
        """Matched rules with one of those targets."""
        return [r for r in self.rules if r.target in targets]


def _ports_match(ranges: tuple[tuple[int, int], ...] | None, port: int | None, neg: bool) -> bool | None:
    if ranges is None:
        return True
    if port is None:
        return None
    hit = any(lo <= port <= hi for lo, hi in ranges)
    return hit != neg


def _rule_matches(r: Rule, p: Pkt, local: list[IPv4Address], notes: list[str]) -> bool:
    """True when ``r`` matches ``p``; undecidable parts count as matching (and are noted)."""
    checks: list[bool | None] = []
    if r.proto is not None:
        checks.append((r.proto == p.proto) != r.proto_neg)
    for net, neg, addr in ((r.src, r.src_neg, p.src), (r.dst, r.dst_neg, p.dst)):
        if net is not None:
            checks.append(None if addr is None else ((addr in net) != neg))
    for name, neg, iface in ((r.in_iface, r.in_neg, p.iif), (r.out_iface, r.out_neg, p.oif)):
        if name is not None:
            if iface is None:
                checks.append(None)
            else:
                hit = iface == name or (name.endswith("+") and iface.startswith(name[:-1]))
                checks.append(hit != neg)
    checks.append(_ports_match(r.dports, p.dport, r.dports_neg))
    checks.append(_ports_match(r.sports, p.sport, r.sports_neg))
    if r.mark is not None:
        checks.append(((p.mark & r.mark[1]) == r.mark[0]) != r.mark_neg)
    if r.dst_type is not None:
        if r.dst_type.upper() == "LOCAL":
            checks.append(None if not local or p.dst is None else ((p.dst in local) != r.dst_type_neg))
        else:
            checks.append(None)
    if r.src_type is not None:
        if r.src_type.upper() == "LOCAL":
            checks.append(False if p.src is None else ((p.src in local) != r.src_type_neg))
        else:
            checks.append(None)
    if r.ctstate is not None:
        checks.append((p.ctstate in r.ctstate or ("DNAT" in r.ctstate and p.ct_dnat)) != r.ctstate_neg)
    if r.ctstatus is not None:
        checks.append(("DNAT" in r.ctstatus and p.ct_dnat) or ("SNAT" in r.ctstatus and False))
    if r.ipvs is not None:
        checks.append(p.ipvs == r.ipvs)
    if any(c is False for c in checks):
        return False
    unknown = [c for c in checks if c is None]
    if unknown or r.other:
        notes.append(f"assumed to match: {r.where()} `{r.text}`"
                     + (f" (unmodelled: {'; '.join(r.other)})" if r.other else ""))
    return True


_TERMINAL_NAT = {"DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP"}


def _apply_nat(r: Rule, p: Pkt, res: WalkResult) -> str:
    """The translation a NAT target makes to the packet (a load-balancing DNAT only marks the rule)."""
    t = str(r.target)
    if t == "DNAT" and r.lb_backends:
        res.lb_rule = r
    elif t in ("SNAT", "MASQUERADE", "NETMAP"):
        if r.to_addr is not None:
            p.src = r.to_addr
        return t
    elif t == "DNAT" and r.to_addr is not None:
        p.dst = r.to_addr
    if r.to_ports is not None and not (t == "DNAT" and r.lb_backends):
        p.dport = r.to_ports[0]
    p.ct_dnat = True
    return t


def _walk_chain(tables: dict[str, dict[str, Chain]], chain: Chain, p: Pkt, local: list[IPv4Address],
                res: WalkResult, depth: int = 0) -> str | None:
    """Walk one chain; returns a terminal verdict (ACCEPT/DROP/REJECT/NAT) or None (fell through/RETURN)."""
    if depth > 32:
        res.notes.append(f"jump depth exceeded in {chain.table} {chain.name}")
        return None
    tbl = tables.get(chain.table, {})
    for r in chain.rules:
        if not _rule_matches(r, p, local, res.notes):
            continue
        t = r.target
        if t is None or t in ("LOG", "NFLOG", "COUNTER", "TRACE", "CONTINUE"):
            if t is not None:
                res.rules.append(r)
            continue
        res.rules.append(r)
        if t == "MARK" and r.set_mark is not None:
            val, mask = r.set_mark
            p.mark = (p.mark & ~mask & 0xFFFFFFFF) ^ val
            continue
        if t == "RETURN":
            return None
        if t in ("ACCEPT", "DROP", "REJECT", "QUEUE"):
            return t
        if t in _TERMINAL_NAT:
            return _apply_nat(r, p, res)
        if r.is_jump:
            sub = tbl.get(t)
            if sub is None:
                res.notes.append(f"chain {chain.table} {t} not in the dump (jump from {r.where()})")
                continue
            v = _walk_chain(tables, sub, p, local, res, depth + 1)
            if v is not None and (v in ("ACCEPT", "DROP", "REJECT", "QUEUE") or v in _TERMINAL_NAT):
                return v
            if r.goto:
                return None
            continue
        # other built-in, non-terminating targets (CONNMARK, TCPMSS, CT...)
    return None


def walk_hook(ns: Namespace, hook: str, pkt: Pkt, local: list[IPv4Address] | None = None,
              max_priority: int | None = None, tables: set[str] | None = None) -> WalkResult:
    """Follow ``pkt`` through every base chain of ``hook`` in ``ns`` (priority order), optionally
    only chains with priority < ``max_priority`` or of some tables. ``local`` are the addresses
    ``addrtype LOCAL`` means (default: the namespace's addresses). ``pkt`` is not modified."""
    p = replace(pkt)
    res = WalkResult(pkt=p)
    all_tables = ns.tables()
    loc = local if local is not None else [a.ip for a in ns.addresses()]
    for ch in ns.base_chains(hook):
        prio = ch.priority if ch.priority is not None else 0
        if max_priority is not None and prio >= max_priority:
            continue
        if tables is not None and ch.table not in tables:
            continue
        v = _walk_chain(all_tables, ch, p, loc, res)
        if v in ("DROP", "REJECT"):
            res.verdict = v
            return res
        if v is None and ch.policy in ("DROP", "REJECT"):
            res.verdict = "DROP"
            res.notes.append(f"policy {ch.policy} of {ch.table} {ch.name}")
            return res
    return res


def walk_chain(ns: Namespace, table: str, chain: str, pkt: Pkt, local: list[IPv4Address] | None = None) -> WalkResult:
    """Follow ``pkt`` through one chain (and what it jumps to)."""
    p = replace(pkt)
    res = WalkResult(pkt=p)
    tables = ns.tables()
    ch = tables.get(table, {}).get(chain)
    if ch is None:
        res.notes.append(f"chain {table} {chain} not in the dump")
        return res
    loc = local if local is not None else [a.ip for a in ns.addresses()]
    v = _walk_chain(tables, ch, p, loc, res)
    if v is not None:
        res.verdict = v
    return res
