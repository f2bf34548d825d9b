"""Parser for ``nft -j list ruleset`` (libnftables JSON).

Rules become the same normalized :class:`~meshpkt.rules.types.Rule` as iptables dumps.
Expressions meshpkt models: payload ip saddr/daddr, th/tcp/udp sport/dport, meta
l4proto/iifname/oifname/mark, ct state/status, fib daddr type, counter, accept/drop/
return/jump/goto, dnat/snat/masquerade/redirect, meta mark set, and the IPVS emulation
``dnat to numgen inc mod N map { 0 : a, 1 : b ... }`` (``Rule.lb_backends``). Any other
expression is kept as text in ``Rule.other`` (``xt`` expressions written by iptables-nft carry
no arguments in JSON: the iptables-save dump of the same namespace is the exact one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshpkt.rules.types import Chain, Rule, Ruleset, norm_proto, parse_net

IPTABLES_NFT_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
"""Table names iptables-nft owns in family ``ip``."""

_VERDICT_TARGET = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "continue": "CONTINUE",
                   "reject": "REJECT", "queue": "QUEUE", "masquerade": "MASQUERADE"}


def _render(v: Any) -> str:
    """A compact nft-like rendering of a JSON expression value."""
    if isinstance(v, dict):
        if "payload" in v:
            p = v["payload"]
            return f"{p.get('protocol', p.get('base', '?'))} {p.get('field', p.get('offset', '?'))}"
        if "meta" in v:
            return f"meta {v['meta'].get('key')}"
        if "ct" in v:
            return f"ct {v['ct'].get('key')}"
        if "fib" in v:
            f = v["fib"]
            flags = f.get("flags", [])
            flags = flags if isinstance(flags, list) else [flags]
            return f"fib {' . '.join(flags)} {f.get('result')}"
        if "prefix" in v:
            return f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}"
        if "range" in v:
            lo, hi = v["range"]
            return f"{_render(lo)}-{_render(hi)}"
        if "set" in v:
            return "{ " + ", ".join(_render(x) for x in v["set"]) + " }"
        if "numgen" in v:
            n = v["numgen"]
            return f"numgen {n.get('mode')} mod {n.get('mod')}"
        if "map" in v:
            return f"{_render(v['map'].get('key'))} map {_render(v['map'].get('data'))}"
        if "&" in v:
            a, b = v["&"]
            return f"{_render(a)} & {_render(b)}"
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, list):
        if len(v) == 2 and not isinstance(v[0], (dict, list)):
            return f"{_render(v[0])} : {_render(v[1])}"
        return "{ " + ", ".join(_render(x) for x in v) + " }"
    if v is None:
        return ""
    return str(v)


def _ports(v: Any) -> tuple[tuple[int, int], ...] | None:
    if isinstance(v, int):
        return ((v, v),)
    if isinstance(v, dict) and "range" in v:
        lo, hi = v["range"]
        return ((int(lo), int(hi)),)
    if isinstance(v, dict) and "set" in v:
        out: list[tuple[int, int]] = []
        for x in v["set"]:
            p = _ports(x)
            if p is None:
                return None
            out.extend(p)
        return tuple(out)
    return None


def _net(v: Any) -> IPv4Network | None:
    if isinstance(v, str):
        return parse_net(v)
    if isinstance(v, dict) and "prefix" in v:
        return parse_net(f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}")
    return None


def _words(v: Any) -> frozenset[str]:
    if isinstance(v, str):
        return frozenset(x.strip().upper() for x in v.split(","))
    if isinstance(v, list):
        return frozenset(str(x).upper() for x in v)
    if isinstance(v, dict) and "set" in v:
        return frozenset(str(x).upper() for x in v["set"])
    return frozenset()


def _match_payload(rule: Rule, p: Any, right: Any, neg: bool) -> bool:
    """``ip saddr/daddr``, ``tcp/udp/th dport/sport``, ``ip protocol``."""
    proto, fld = p.get("protocol"), p.get("field")
    if proto == "ip" and fld in ("saddr", "daddr"):
        net = _net(right)
        if net is None and not (isinstance(right, str) and right.startswith("0.0.0.0")):
            return False
        if fld == "saddr":
            rule.src, rule.src_neg = net, neg
        else:
            rule.dst, rule.dst_neg = net, neg
        return True
    if fld in ("sport", "dport") and proto in ("tcp", "udp", "sctp", "th", "dccp"):
        ports = _ports(right)
        if ports is None:
            return False
        if proto != "th" and rule.proto is None:
            rule.proto = proto
        if fld == "dport":
            rule.dports, rule.dports_neg = ports, neg
        else:
            rule.sports, rule.sports_neg = ports, neg
        return True
    if proto == "ip" and fld == "protocol" and isinstance(right, str | int):
        rule.proto, rule.proto_neg = norm_proto(str(right)), neg
        return True
    return False


def _match_meta(rule: Rule, meta: Any, right: Any, neg: bool) -> bool:
    """``meta l4proto``, ``iifname``/``oifname``, ``mark``."""
    key = meta.get("key")
    if key == "l4proto" and isinstance(right, str | int):
        rule.proto, rule.proto_neg = norm_proto(str(right)), neg
    elif key in ("iifname", "iif") and isinstance(right, str):
        rule.in_iface, rule.in_neg = right, neg
    elif key in ("oifname", "oif") and isinstance(right, str):
        rule.out_iface, rule.out_neg = right, neg
    elif key == "mark" and isinstance(right, int):
        rule.mark, rule.mark_neg = (right, 0xFFFFFFFF), neg
    else:
        return False
    return True


def _match_ct(rule: Rule, ct: Any, right: Any, neg: bool) -> bool:
    """``ct state``, ``ct status``."""
    key = ct.get("key")
    if key == "state":
        rule.ctstate, rule.ctstate_neg = _words(right), neg
    elif key == "status":
        rule.ctstatus = _words(right)
    else:
        return False
    return True


def _match_fib(rule: Rule, f: Any, right: Any, neg: bool) -> bool:
    """``fib daddr type local`` (= ``-m addrtype --dst-type LOCAL``)."""
    flags = f.get("flags", [])
    flags = flags if isinstance(flags, list) else [flags]
    if f.get("result") != "type" or not isinstance(right, str):
        return False
    if "daddr" in flags:
        rule.dst_type, rule.dst_type_neg = right.upper(), neg
    elif "saddr" in flags:
        rule.src_type, rule.src_type_neg = right.upper(), neg
    else:
        return False
    return True


_MATCH_KINDS: dict[str, Callable[[Rule, Any, Any, bool], bool]] = {
    "payload": _match_payload, "meta": _match_meta, "ct": _match_ct, "fib": _match_fib}


def _apply_match(rule: Rule, m: Mapping[str, Any]) -> bool:
    """Apply one ``match`` expression; False when it is not a modelled match."""
    op = m.get("op", "==")
    left, right = m.get("left"), m.get("right")
    if op not in ("==", "!=", "in") or not isinstance(left, dict):
        return False
    kind = next((k for k in _MATCH_KINDS if k in left), None)
    return kind is not None and _MATCH_KINDS[kind](rule, left[kind], right, op == "!=")


def _nat_stmt(rule: Rule, kind: str, body: Any) -> None:
    rule.target = {"dnat": "DNAT", "snat": "SNAT", "redirect": "REDIRECT", "masquerade": "MASQUERADE"}[kind]
    if not isinstance(body, dict):
        return
    addr = body.get("addr")
    port = body.get("port")
    if isinstance(addr, str):
        try:
            rule.to_addr = IPv4Address(addr)
        except ValueError:
            rule.other.append(f"{kind} to {addr}")
    elif isinstance(addr, dict) and "map" in addr:
        key = addr["map"].get("key", {})
        data = addr["map"].get("data", {})
        elems = data.get("set", []) if isinstance(data, dict) else []
        backends: list[tuple[int, IPv4Address]] = []
        for el in elems:
            if isinstance(el, list) and len(el) == 2:
                try:
                    backends.append((int(el[0]), IPv4Address(str(el[1]))))
                except ValueError:
                    continue
        if isinstance(key, dict) and "numgen" in key and backends:
            rule.lb_backends = tuple(a for _, a in sorted(backends))
            rule.lb_mode = "rr" if key["numgen"].get("mode") == "inc" else key["numgen"].get("mode")
        else:
            rule.other.append(f"{kind} to {_render(addr)}")
    if isinstance(port, int):
        rule.to_ports = (port, port)
    elif isinstance(port, dict) and "range" in port:
        rule.to_ports = (int(port["range"][0]), int(port["range"][1]))
    parts = [kind]
    if addr is not None:
        parts.append(f"to {_render(addr)}")
    if port is not None:
        parts.append(f"port {_render(port)}")
    rule.target_args = " ".join(parts)


def _rule_from_json(r: dict[str, Any], index: int) -> Rule:
    rule = Rule(table=str(r.get("table")), chain=str(r.get("chain")), index=index, text="", source="nft",
                family=str(r.get("family", "ip")))
    words: list[str] = []
    for expr in r.get("expr", []) or []:
        if not isinstance(expr, dict) or not expr:
            continue
        kind, body = next(iter(expr.items()))
        if kind == "match" and isinstance(body, dict):
            op = body.get("op", "==")
            opw = "" if op in ("==", "in") else f"{op} "
            right = body.get("right")
            left = body.get("left")
            shown = f"{right:#x}" if isinstance(right, int) and isinstance(left, dict) and \
                left.get("meta", {}).get("key") == "mark" else _render(right)
            words.append(f"{_render(left)} {opw}{shown}")
            if not _apply_match(rule, body):
                rule.other.append(words[-1])
        elif kind == "counter" and isinstance(body, dict):
            rule.pkts, rule.bytes = body.get("packets"), body.get("bytes")
            words.append(f"counter packets {rule.pkts} bytes {rule.bytes}")
        elif kind in _VERDICT_TARGET:
            rule.target = _VERDICT_TARGET[kind]
            words.append(kind)
        elif kind in ("jump", "goto") and isinstance(body, dict):
            rule.target = str(body.get("target"))
            rule.goto = kind == "goto"
            words.append(f"{kind} {rule.target}")
        elif kind in ("dnat", "snat", "redirect", "masquerade"):
            _nat_stmt(rule, kind, body)
            words.append(rule.target_args)
        elif kind == "mangle" and isinstance(body, dict):
            key = body.get("key", {})
            val = body.get("value")
            if isinstance(key, dict) and key.get("meta", {}).get("key") == "mark" and isinstance(val, int):
                rule.target = "MARK"
                rule.set_mark = (val, 0xFFFFFFFF)
                rule.target_args = f"meta mark set {val:#x}"
                words.append(rule.target_args)
            else:
                words.append(f"{_render(key)} set {_render(val)}")
                rule.other.append(words[-1])
        elif kind == "xt" and isinstance(body, dict):
            words.append(f"xt {body.get('type')} {body.get('name')}")
            if body.get("type") == "target":
                rule.target = str(body.get("name"))
            else:
                rule.other.append(words[-1])
        elif kind == "log":
            rule.target = rule.target or "LOG"
            words.append("log")
        else:
            words.append(f"{kind} {_render(body)}".strip())
            rule.other.append(words[-1])
    rule.text = " ".join(w for w in words if w)
    if r.get("comment"):
        rule.comment = str(r["comment"])
        rule.text += f' comment "{rule.comment}"'
    return rule


def parse_nft_json(text: str) -> Ruleset:
    """Parse ``nft -j list ruleset``. Tables are keyed ``"<family> <name>"`` (e.g. ``"ip nat"``)
    with ``Chain.table`` set to the same key; base chains carry hook and priority."""
    rs = Ruleset(source="nft", backend="nf_tables")
    try:
        doc = json.loads(text) if text.strip() else {"nftables": []}
    except json.JSONDecodeError as exc:
        rs.unparsed.append(f"not JSON: {exc}")
        rs.unparsed.extend(text.splitlines()[:5])
        return rs
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    counts: dict[tuple[str, str], int] = {}
    for obj in items:
        if not isinstance(obj, dict) or not obj:
            continue
        kind, body = next(iter(obj.items()))
        if not isinstance(body, dict):
            rs.unparsed.append(json.dumps(obj))
            continue
        fam = str(body.get("family", "ip"))
        if kind == "metainfo":
            continue
        if kind == "table":
            rs.tables.setdefault(f"{fam} {body.get('name')}", {})
        elif kind == "chain":
            key = f"{fam} {body.get('table')}"
            ch = Chain(table=key, name=str(body.get("name")), family=fam, hook=body.get("hook"),
                       priority=body.get("prio"), policy=(str(body["policy"]).upper() if body.get("policy")
                                                         else None))
            rs.add_chain(ch)
        elif kind == "rule":
            key = f"{fam} {body.get('table')}"
            chain_name = str(body.get("chain"))
            counts[(key, chain_name)] = counts.get((key, chain_name), 0) + 1
            rule = _rule_from_json(body, counts[(key, chain_name)])
            rule.table = key
            ch = rs.chain(key, chain_name) or rs.add_chain(Chain(table=key, name=chain_name, family=fam))
            ch.rules.append(rule)
        elif kind in ("set", "map", "element", "flowtable", "counter", "quota", "ct helper", "limit",
                      "ct timeout", "ct expectation", "secmark", "synproxy"):
            continue
        else:
            rs.unparsed.append(json.dumps(obj))
    return rs
