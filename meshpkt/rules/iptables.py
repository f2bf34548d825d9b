"""Parsers for ``iptables-save [-c]``, ``iptables -S`` and ``iptables -L -n [-v] [-x] [--line-numbers]``.

Both produce a :class:`~meshpkt.rules.types.Ruleset` of normalized :class:`Rule` objects.
Unknown lines land in ``Ruleset.unparsed``; matches meshpkt does not model land in
``Rule.other``. Nothing here raises on odd input.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from ipaddress import IPv4Address

from meshpkt.rules.types import (
    BUILTIN_HOOKS,
    IPTABLES_PRIORITY,
    Chain,
    Rule,
    Ruleset,
    norm_proto,
    parse_counter,
    parse_int,
    parse_net,
    parse_ports,
)

_ELISION = re.compile(r"^\s*(\.{3,}|…+)\s*$")


def _builtin(table: str, name: str, family: str = "ip") -> Chain:
    hook = BUILTIN_HOOKS.get(name)
    prio = IPTABLES_PRIORITY.get(table)
    if table == "nat" and name in ("INPUT", "POSTROUTING"):
        prio = 100
    return Chain(table=table, name=name, family=family, hook=hook, priority=prio if hook else None)


def _nat_to(rule: Rule, value: str) -> None:
    """``172.18.0.2:9090``, ``10.0.0.2``, ``:80``, ``10.0.0.2-10.0.0.3:1024-2000`` -> to_addr/to_ports."""
    addr_part, _, port_part = value.partition(":")
    addr_part = addr_part.split("-")[0]
    if addr_part:
        try:
            rule.to_addr = IPv4Address(addr_part)
        except ValueError:
            rule.other.append(f"to:{value}")
    if port_part:
        ports = parse_ports(port_part)
        if ports:
            rule.to_ports = ports[0]


def _set_mark(rule: Rule, value: str, *, xmark: bool) -> None:
    val, _, mask = value.partition("/")
    v = parse_int(val)
    m = parse_int(mask) if mask else 0xFFFFFFFF
    if v is not None and m is not None:
        rule.set_mark = (v, m)


# ------------------------------------------------------------------ iptables-save / -S


class _Tokens:
    """A cursor over the tokens of one rule, tracking a pending ``!``."""

    def __init__(self, toks: list[str]) -> None:
        self.toks, self.i, self.neg = toks, 0, False

    def val(self) -> str:
        """The next token (the current option's value); ``-s ! 1.2.3.4`` (old syntax) sets ``neg``."""
        self.i += 1
        v = self.toks[self.i] if self.i < len(self.toks) else ""
        if v == "!":
            self.neg = True
            self.i += 1
            v = self.toks[self.i] if self.i < len(self.toks) else ""
        return v

    def words_of_option(self) -> list[str]:
        """The current (unmodelled) option and the arguments that follow it."""
        words = [("! " if self.neg else "") + self.toks[self.i]]
        toks = self.toks
        while self.i + 1 < len(toks) and not toks[self.i + 1].startswith("-") and toks[self.i + 1] != "!":
            self.i += 1
            words.append(toks[self.i])
        return words


def _m_src(rule: Rule, v: str, neg: bool) -> None:
    rule.src, rule.src_neg = parse_net(v), neg
    if "," in v:
        rule.other.append(f"-s {v}")


def _m_dst(rule: Rule, v: str, neg: bool) -> None:
    rule.dst, rule.dst_neg = parse_net(v), neg
    if "," in v:
        rule.other.append(f"-d {v}")


def _m_mark(rule: Rule, v: str, neg: bool) -> None:
    value, _, mask = v.partition("/")
    mv, mm = parse_int(value), parse_int(mask) if mask else 0xFFFFFFFF
    if mv is not None and mm is not None:
        rule.mark, rule.mark_neg = (mv, mm), neg


def _setter(*attrs: str, conv: Callable[[str], object] = str) -> Callable[[Rule, str, bool], None]:
    """A match option that sets ``attrs[0]`` to ``conv(value)`` (and ``attrs[1]`` to the negation)."""
    def put(rule: Rule, v: str, neg: bool) -> None:
        setattr(rule, attrs[0], conv(v))
        if len(attrs) > 1:
            setattr(rule, attrs[1], neg)
    return put


def _states(v: str) -> frozenset[str]:
    return frozenset(v.upper().split(","))


_MATCHES: dict[str, Callable[[Rule, str, bool], None]] = {
    **dict.fromkeys(("-p", "--protocol"), _setter("proto", "proto_neg", conv=norm_proto)),
    **dict.fromkeys(("-s", "--source", "--src"), _m_src),
    **dict.fromkeys(("-d", "--destination", "--dst"), _m_dst),
    **dict.fromkeys(("-i", "--in-interface"), _setter("in_iface", "in_neg")),
    **dict.fromkeys(("-o", "--out-interface"), _setter("out_iface", "out_neg")),
    **dict.fromkeys(("-m", "--match"), lambda rule, v, neg: None),  # module name; its options follow
    **dict.fromkeys(("--dport", "--destination-port", "--dports", "--destination-ports"),
                    _setter("dports", "dports_neg", conv=parse_ports)),
    **dict.fromkeys(("--sport", "--source-port", "--sports", "--source-ports"),
                    _setter("sports", "sports_neg", conv=parse_ports)),
    "--ports": lambda rule, v, neg: rule.other.append(f"--ports {v}"),
    "--dst-type": _setter("dst_type", "dst_type_neg"),
    "--src-type": _setter("src_type", "src_type_neg"),
    **dict.fromkeys(("--ctstate", "--state"), _setter("ctstate", "ctstate_neg", conv=_states)),
    "--ctstatus": _setter("ctstatus", conv=_states),
    "--mark": _m_mark,
    "--comment": _setter("comment"),
}


def _target_option(rule: Rule, cur: _Tokens, t: str, target_args: list[str]) -> None:
    """One token after ``-j TARGET``: NAT destinations, REDIRECT ports and marks are modelled."""
    target_args.append(t)
    if t not in ("--to-destination", "--to-source", "--to", "--to-ports", "--set-mark", "--set-xmark"):
        return
    v = cur.val()
    target_args.append(v)
    if t == "--to-ports":
        ports = parse_ports(v)
        if ports:
            rule.to_ports = ports[0]
    elif t in ("--set-mark", "--set-xmark"):
        _set_mark(rule, v, xmark=t == "--set-xmark")
    else:
        _nat_to(rule, v)


def _apply_save_tokens(rule: Rule, toks: list[str]) -> None:
    """Fill ``rule`` from the tokens of one ``-A CHAIN ...`` line (after the chain name)."""
    cur = _Tokens(toks)
    in_target = False
    target_args: list[str] = []
    while cur.i < len(toks):
        t = toks[cur.i]
        if t == "!":
            cur.neg = True
        elif in_target:
            _target_option(rule, cur, t, target_args)
        elif t in _MATCHES:
            _MATCHES[t](rule, cur.val(), cur.neg)
        elif t == "--ipvs":
            rule.ipvs = not cur.neg
        elif t in ("-c", "--set-counters") and cur.i + 2 < len(toks) and toks[cur.i + 1].isdigit():
            rule.pkts, rule.bytes = int(toks[cur.i + 1]), int(toks[cur.i + 2])
            cur.i += 2
        elif t in ("-j", "--jump", "-g", "--goto"):
            rule.goto = t in ("-g", "--goto")
            rule.target = cur.val()
            in_target = True
        else:  # an option meshpkt does not model, with its arguments, or a stray word
            rule.other.append(" ".join(cur.words_of_option()) if t.startswith("-") else t)
        if t != "!" and not in_target:
            cur.neg = False
        cur.i += 1
    rule.target_args = " ".join(target_args)


def parse_rule_spec(spec: str, table: str = "filter", index: int = 1, source: str = "iptables-save") -> Rule | None:
    """Parse one ``-A CHAIN ...`` rule (optionally prefixed by ``[pkts:bytes]``). None when not a rule."""
    line = spec.strip()
    pkts = byts = None
    m = re.match(r"^\[(\d+):(\d+)\]\s+", line)
    if m:
        pkts, byts = int(m.group(1)), int(m.group(2))
        line = line[m.end():]
    try:
        toks = shlex.split(line, posix=True)
    except ValueError:
        toks = line.split()
    if len(toks) < 2 or toks[0] not in ("-A", "--append", "-I", "--insert"):
        return None
    rule = Rule(table=table, chain=toks[1], index=index, text=spec.strip(), source=source,
                pkts=pkts, bytes=byts)
    _apply_save_tokens(rule, toks[2:])
    return rule


def parse_iptables_save(text: str, default_table: str = "filter") -> Ruleset:
    """Parse ``iptables-save [-c]`` (legacy or nft backend) or ``iptables -S`` output.

    ``-S`` output has no ``*table`` lines: its rules go to ``default_table``.
    """
    rs = Ruleset(source="iptables-save")
    table = default_table
    counts: dict[tuple[str, str], int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "COMMIT":
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*Generated by (ip6?tables)-save v([\d.]+)(?: \((\w+)\))?", line)
            if m:
                rs.backend = m.group(3) or "legacy"
            elif line.lower().startswith("# warning"):
                rs.warnings.append(line)
            elif not line.startswith("# Completed"):
                rs.unparsed.append(raw)
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            rs.tables.setdefault(table, {})
            continue
        m = re.match(r"^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?$", line)
        if m:
            name, policy = m.group(1), m.group(2)
            ch = _builtin(table, name) if policy != "-" else Chain(table=table, name=name)
            ch.policy = None if policy == "-" else policy
            if m.group(3) is not None:
                ch.pkts, ch.bytes = int(m.group(3)), int(m.group(4))
            rs.add_chain(ch)
            continue
        m = re.match(r"^-P\s+(\S+)\s+(\S+)", line)
        if m:  # iptables -S policy line
            ch = rs.add_chain(_builtin(table, m.group(1)))
            ch.policy = m.group(2)
            continue
        m = re.match(r"^-N\s+(\S+)$", line)
        if m:
            rs.add_chain(Chain(table=table, name=m.group(1)))
            continue
        rule_line = line
        if re.match(r"^(\[\d+:\d+\]\s+)?(-A|--append)\s", rule_line):
            tmp = parse_rule_spec(rule_line, table=table)
            if tmp is None:
                rs.unparsed.append(raw)
                continue
            key = (table, tmp.chain)
            counts[key] = counts.get(key, 0) + 1
            tmp.index = counts[key]
            tmp.text = re.sub(r"^\[\d+:\d+\]\s+", "", rule_line)
            existing = rs.chain(table, tmp.chain)
            new = _builtin(table, tmp.chain) if tmp.chain in BUILTIN_HOOKS else Chain(table=table, name=tmp.chain)
            ch = existing if existing is not None else rs.add_chain(new)
            ch.rules.append(tmp)
            continue
        rs.unparsed.append(raw)
    return rs


# ------------------------------------------------------------------ iptables -L -n -v


_CHAIN_RE = re.compile(
    r"^Chain\s+(?P<name>\S+)\s+\((?:policy\s+(?P<policy>\w+)"
    r"(?:\s+(?P<pkts>\d+[KMGTP]?)\s+packets,\s+(?P<bytes>\d+[KMGTP]?)\s+bytes)?"
    r"|(?P<refs>\d+)\s+references?)\)\s*$")
_HEADER_RE = re.compile(r"^\s*(num\s+)?(pkts\s+bytes\s+)?target\s+prot\s+opt\s+(in\s+out\s+)?source\s+destination\s*$")


def _list_rule_re(num: bool, verbose: bool) -> re.Pattern[str]:
    p = r"^\s*"
    if num:
        p += r"(?P<num>\d+)\s+"
    if verbose:
        p += r"(?P<pkts>\d+[KMGTP]?)\s+(?P<bytes>\d+[KMGTP]?)\s+"
    p += r"(?:(?P<target>\S+)\s+)??(?P<prot>\S+)\s+(?P<opt>--|-f|!f)\s+"
    if verbose:
        p += r"(?P<iin>\S+)\s+(?P<iout>\S+)\s+"
    p += r"(?P<src>\S+)\s+(?P<dst>\S+)(?:\s+(?P<rest>.*?))?\s*$"
    return re.compile(p)


def _neg_value(v: str) -> tuple[str, bool]:
    return (v[1:], True) if v.startswith("!") else (v, False)


class _Extras:
    """The free text after the destination column of ``iptables -L``, consumed match by match."""

    def __init__(self, text: str) -> None:
        self.s = text

    def take(self, pattern: str) -> re.Match[str] | None:
        """The first match of ``pattern``, cut out of the text."""
        m = re.search(pattern, self.s)
        if m:
            self.s = self.s[: m.start()] + " " + self.s[m.end():]
        return m


def _list_target(rule: Rule, ex: _Extras) -> None:
    """The target's part, printed after the matches: NAT addresses, REDIRECT/MASQUERADE ports, MARK."""
    tgt = rule.target or ""
    if tgt in ("DNAT", "SNAT", "NETMAP"):
        m = ex.take(r"\bto:(\S+)")
        if m:
            _nat_to(rule, m.group(1))
            rule.target_args = f"to:{m.group(1)}"
    elif tgt in ("REDIRECT", "MASQUERADE"):
        m = ex.take(r"\bredir ports (\S+)" if tgt == "REDIRECT" else r"\bmasq ports: (\S+)")
        if m:
            ports = parse_ports(m.group(1))
            rule.to_ports = ports[0] if ports else None
            rule.target_args = f"redir ports {m.group(1)}" if tgt == "REDIRECT" else m.group(0)
    m = ex.take(r"\bMARK (set|xset|and|or|xor) (\S+)")
    if m:
        rule.target_args = m.group(0)
        if m.group(1) in ("set", "xset"):
            _set_mark(rule, m.group(2), xmark=m.group(1) == "xset")
    m = ex.take(r"\breject-with (\S+)")
    if m:
        rule.target_args = m.group(0)


def _list_ports(rule: Rule, ex: _Extras) -> None:
    ex.take(r"\b(tcp|udp|sctp|dccp)\s+(?=[ds]pts?:|flags:|option=)")
    while m := ex.take(r"\b(dpts?|spts?):(!?)(\d+(?::\d+)?)"):
        ports = parse_ports(m.group(3))
        if m.group(1).startswith("d"):
            rule.dports, rule.dports_neg = ports, m.group(2) == "!"
        else:
            rule.sports, rule.sports_neg = ports, m.group(2) == "!"
    m = ex.take(r"\bmultiport (dports|sports|ports) (!\s*)?(\S+)")
    if m:
        ports = parse_ports(m.group(3))
        if m.group(1) == "dports":
            rule.dports, rule.dports_neg = ports, bool(m.group(2))
        elif m.group(1) == "sports":
            rule.sports, rule.sports_neg = ports, bool(m.group(2))
        else:
            rule.other.append(m.group(0))


def _list_state(rule: Rule, ex: _Extras) -> None:
    """addrtype, conntrack state/status, mark and ipvs matches."""
    m = ex.take(r"\bADDRTYPE match((?:\s+(?:src|dst)-type\s+!?\s*\S+)+)")
    if m:
        for kind, neg, value in re.findall(r"(src|dst)-type\s+(!?)\s*(\S+)", m.group(1)):
            if kind == "dst":
                rule.dst_type, rule.dst_type_neg = value, bool(neg)
            else:
                rule.src_type, rule.src_type_neg = value, bool(neg)
    m = ex.take(r"(!\s*)?\b(ctstate|state)\s+(!\s*)?([A-Z,]+)")
    if m:
        rule.ctstate = frozenset(m.group(4).split(","))
        rule.ctstate_neg = bool(m.group(1) or m.group(3))
    m = ex.take(r"\bctstatus\s+([A-Z,]+)")
    if m:
        rule.ctstatus = frozenset(m.group(1).split(","))
    m = ex.take(r"\bmark match\s+(!\s*)?(\S+)")
    if m:
        _m_mark(rule, m.group(2), bool(m.group(1)))
    m = ex.take(r"(!\s*)?\bipvs\b((?:\s+(?:vaddr|vport|vdir|vproto|vportctl|vmethod)\s+\S+)*)")
    if m:
        rule.ipvs = not m.group(1)
        if m.group(2).strip():
            rule.other.append("ipvs" + m.group(2))


def _apply_list_extras(rule: Rule, rest: str) -> None:
    """Interpret the free text after the destination column of ``iptables -L`` output."""
    ex = _Extras(rest)
    m = ex.take(r"/\*\s*(.*?)\s*\*/")
    if m:
        rule.comment = m.group(1)
    _list_target(rule, ex)
    _list_ports(rule, ex)
    _list_state(rule, ex)
    # a DNAT/SNAT printed without its target name keyword, e.g. "to:1.2.3.4" for other targets
    m = ex.take(r"\bto:(\S+)")
    if m:
        _nat_to(rule, m.group(1))
        rule.target_args = f"to:{m.group(1)}"
    left = " ".join(ex.s.split())
    if left:
        rule.other.append(left)


def parse_iptables_list(text: str, table: str = "filter") -> Ruleset:
    """Parse ``iptables -L -n [-v] [-x] [--line-numbers] [-t TABLE]`` output (the table is not in
    the text: pass it). Works with and without ``-v``; K/M counters become approximate ints."""
    rs = Ruleset(source="iptables -L")
    rs.tables.setdefault(table, {})
    chain: Chain | None = None
    rule_re = _list_rule_re(False, True)
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.lstrip().lower().startswith("# warning"):
            rs.warnings.append(line.strip())
            continue
        m = _CHAIN_RE.match(line.strip())
        if m:
            name = m.group("name")
            chain = _builtin(table, name) if m.group("policy") else Chain(table=table, name=name)
            chain.policy = m.group("policy")
            if m.group("refs"):
                chain.references = int(m.group("refs"))
            if m.group("pkts"):
                pk, bt = parse_counter(m.group("pkts")), parse_counter(m.group("bytes"))
                chain.pkts = pk[0] if pk else None
                chain.bytes = bt[0] if bt else None
            chain = rs.add_chain(chain)
            continue
        m = _HEADER_RE.match(line)
        if m:
            rule_re = _list_rule_re(bool(m.group(1)), bool(m.group(2)))
            continue
        m = rule_re.match(line) if chain is not None else None
        if not m or chain is None:
            rs.unparsed.append(raw)
            continue
        g = m.groupdict()
        rule = Rule(table=table, chain=chain.name, index=len(chain.rules) + 1, text=line.strip(),
                    source="iptables -L")
        if g.get("num"):
            rule.index = int(g["num"])
        if g.get("pkts") is not None:
            pk, bt = parse_counter(g["pkts"]), parse_counter(g["bytes"])
            if pk and bt:
                rule.pkts, rule.bytes, rule.counters_exact = pk[0], bt[0], pk[1] and bt[1]
        rule.target = g.get("target")
        prot, rule.proto_neg = _neg_value(g["prot"])
        rule.proto = norm_proto(prot)
        if g["opt"] != "--":
            rule.other.append(f"opt {g['opt']}")
        for key, attr in (("iin", "in_iface"), ("iout", "out_iface")):
            v = g.get(key)
            if v and v != "*":
                name, neg = _neg_value(v)
                setattr(rule, attr, name)
                setattr(rule, attr.replace("_iface", "_neg"), neg)
        for key in ("src", "dst"):
            v, neg = _neg_value(g[key])
            setattr(rule, key, parse_net(v))
            setattr(rule, f"{key}_neg", neg)
        if g.get("rest"):
            _apply_list_extras(rule, g["rest"])
        chain.rules.append(rule)
    return rs
