"""Pure judging: what the captures saw (the packet table of :mod:`meshpkt.decode`) + rule counters
before/after + connection results -> a verdict and evidence for every check.

Probes are recognised on every hop by their TCP sequence number (NAT rewrites addresses and ports,
never sequence numbers): a probe's SYN has ``seq == s``, its SYN-ACK ``ack == s + 1``, a RST
answering it ``ack == s + 1``. UDP probes carry a unique payload: they are recognised by its hash (the
packet table's ``payload_hash``, low 32 bits, stands in for the sequence number) and their answers by the
reversed addresses and ports. Real connections (MTU probes) are found by their client port at the
client, then followed by their first data segment's sequence number.

Each check kind is one class (:class:`DnatKind`, :class:`LbKind`, ...) registered in :data:`KINDS`; its
typed parameters are the matching :class:`~meshpkt.verify.types.Params` subclass.

A check only judges the probes whose prerequisite checks passed (a SYN that was never DNATed says
nothing about the MARK rule): with none left it is UNTESTED, not FAIL.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

from meshpkt.verify.types import (
    FAIL,
    PASS,
    UNTESTED,
    Check,
    DnatParams,
    Evidence,
    FdbParams,
    LbParams,
    LinkParams,
    MarkParams,
    MtuParams,
    Params,
    Probe,
    RedirectParams,
    ServerParams,
    SnatParams,
    UnpublishedParams,
    VipmarkParams,
    XfrmParams,
)

SYN, RST, ACK = 0x02, 0x04, 0x10
UDP, TCP = 17, 6


def _ip(v: int) -> str:
    return str(ipaddress.IPv4Address(int(v)))


def flags_str(f: int) -> str:
    """tcpdump-style flags: ``S``, ``S.``, ``R``, ``P.``, ``F.``."""
    out = "".join(c for bit, c in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P")) if f & bit)
    if f & ACK:
        out += "."
    return out or "none"


@dataclass(frozen=True)
class Pkt:
    """One captured TCP packet (innermost headers; ``vx`` when it was inside VXLAN)."""

    point: str
    ts: int
    vx: bool
    vni: int
    osrc: int
    odst: int
    osport: int
    odport: int
    src: int
    dst: int
    sport: int
    dport: int
    eth_dst: int
    seq: int
    ack: int
    flags: int
    plen: int
    wirelen: int
    df: bool
    mss: int = -1
    tsopt: bool = False
    proto: int = TCP

    def summary(self) -> str:
        """``10.211.55.2:40001 > 10.211.55.10:9090 S`` (``... VXLAN vni 4096 | inner`` when encapsulated)."""
        what = "udp" if self.proto == UDP else flags_str(self.flags)
        inner = f"{_ip(self.src)}:{self.sport} > {_ip(self.dst)}:{self.dport} {what}"
        if self.plen > 0:
            inner += f" len {self.plen}"
        if self.vx:
            return f"{_ip(self.osrc)}:{self.osport} > {_ip(self.odst)}:{self.odport} VXLAN vni {self.vni} | {inner}"
        return inner

    def ev(self) -> Evidence:
        """As evidence."""
        return Evidence(self.point, self.summary())


@dataclass(frozen=True)
class EspPkt:
    """One captured ESP packet (IP protocol 50) on the underlay."""

    point: str
    ts: int
    src: int
    dst: int
    spi: int

    def ev(self) -> Evidence:
        return Evidence(self.point, f"{_ip(self.src)} > {_ip(self.dst)} ESP spi {self.spi:#010x}")


class Packets:
    """Index of the captured TCP packets and UDP datagrams by point, sequence (UDP: payload key) and
    acknowledgement number; ESP packets apart (``esp``)."""

    def __init__(self, pkts: Iterable[Pkt], esp: Iterable[EspPkt] = ()) -> None:
        self.esp = sorted(esp, key=lambda p: p.ts)
        self.all = sorted(pkts, key=lambda p: p.ts)
        self.by_seq: dict[int, list[Pkt]] = defaultdict(list)
        self.by_ack: dict[int, list[Pkt]] = defaultdict(list)
        self.by_point: dict[str, list[Pkt]] = defaultdict(list)
        for p in self.all:
            self.by_seq[p.seq].append(p)
            self.by_ack[p.ack].append(p)
            self.by_point[p.point].append(p)

    @classmethod
    def from_table(cls, df: Any) -> Packets:
        """From the packet table (``meshpkt.decode.read``): TCP, UDP (innermost) and ESP rows."""
        if df is None or len(df) == 0:
            return cls([])
        vxr = df["vni"] >= 0
        inner_udp = (vxr & (df["inner_proto"] == UDP)) | (~vxr & (df["outer_proto"] == UDP))
        t = df[(df["tcp_flags"] >= 0) | (inner_udp & (df["tcp_flags"] < 0))]
        e = df[df["outer_proto"] == 50]
        esp = [EspPkt(str(pt), int(ts), int(a), int(b), int(spi)) for pt, ts, a, b, spi in zip(
            e["point"].astype(str), e["ts_ns"], e["outer_src"], e["outer_dst"], e["esp_spi"], strict=True)]
        return cls(_rows(t), esp)

    def syns(self, seq: int, point: str, vx: bool | None = False) -> list[Pkt]:
        """Copies of the SYN with sequence number ``seq`` (or of the UDP probe with key ``seq``) seen at ``point``."""
        return [p for p in self.by_seq.get(seq, []) if p.point == point and _request(p)
                and (vx is None or p.vx == vx)]

    def answers(self, req: Pkt, point: str) -> list[Pkt]:
        """Answers to ``req`` seen at ``point``: SYN-ACKs (TCP), datagrams back to its source (UDP)."""
        if req.proto != UDP:
            return self.synacks(req.seq, point)
        return [p for p in self.by_point.get(point, []) if p.proto == UDP and not p.vx and p.src == req.dst
                and p.sport == req.dport and p.dst == req.src and p.dport == req.sport and p.ts >= req.ts]

    def synacks(self, seq: int, point: str, vx: bool | None = False) -> list[Pkt]:
        """SYN-ACKs answering the SYN ``seq`` seen at ``point``."""
        return [p for p in self.by_ack.get((seq + 1) & 0xFFFFFFFF, []) if p.point == point
                and p.flags & (SYN | ACK) == SYN | ACK and (vx is None or p.vx == vx)]

    def rsts(self, seq: int, point: str) -> list[Pkt]:
        """RSTs answering the SYN ``seq`` (``ack == seq + 1``) seen at ``point``."""
        return [p for p in self.by_ack.get((seq + 1) & 0xFFFFFFFF, []) if p.point == point and p.flags & RST]

    def related(self, seqs: set[int]) -> list[Pkt]:
        """Every packet of the probes ``seqs``: their SYNs, answers and the client's RSTs."""
        out = []
        for p in self.all:
            if p.seq in seqs or (p.flags & RST and (p.seq - 1) & 0xFFFFFFFF in seqs) or (
                    p.ack and (p.ack - 1) & 0xFFFFFFFF in seqs):
                out.append(p)
        return out


def _request(p: Pkt) -> bool:
    return p.proto == UDP or p.flags & (SYN | ACK) == SYN


def _rows(t: Any) -> list[Pkt]:
    """Pkt objects of the (small: verify's probes) TCP/UDP part of a packet table."""
    vx = (t["vni"] >= 0).to_numpy()
    cols = {c: t[c].to_numpy() for c in ("outer_src", "outer_dst", "outer_sport", "outer_dport", "inner_src",
                                         "inner_dst", "inner_sport", "inner_dport", "eth_dst", "inner_eth_dst",
                                         "tcp_seq", "tcp_ack", "tcp_flags", "payload_len", "wirelen",
                                         "outer_df", "ts_ns", "vni", "tcp_mss", "tcp_tsval", "payload_hash")}
    points = t["point"].astype(str).to_numpy()
    out = []
    for i in range(len(t)):
        x = bool(vx[i])
        udp = int(cols["tcp_flags"][i]) < 0

        def col(name: str, inner: str, i: int = i, x: bool = x) -> int:
            return int(cols[inner][i] if x else cols[name][i])

        out.append(Pkt(
            point=str(points[i]), ts=int(cols["ts_ns"][i]), vx=x, vni=int(cols["vni"][i]),
            osrc=int(cols["outer_src"][i]), odst=int(cols["outer_dst"][i]),
            osport=int(cols["outer_sport"][i]), odport=int(cols["outer_dport"][i]),
            src=col("outer_src", "inner_src"), dst=col("outer_dst", "inner_dst"),
            sport=col("outer_sport", "inner_sport"), dport=col("outer_dport", "inner_dport"),
            eth_dst=col("eth_dst", "inner_eth_dst"),
            seq=int(cols["payload_hash"][i]) & 0xFFFFFFFF if udp else int(cols["tcp_seq"][i]),
            ack=0 if udp else int(cols["tcp_ack"][i]), flags=0 if udp else int(cols["tcp_flags"][i]),
            plen=int(cols["payload_len"][i]), wirelen=int(cols["wirelen"][i]), df=bool(cols["outer_df"][i]),
            mss=int(cols["tcp_mss"][i]), tsopt=int(cols["tcp_tsval"][i]) >= 0, proto=UDP if udp else TCP))
    return out


def _mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


class Judge:
    """Judges checks in order (prerequisites first)."""

    def __init__(self, checks: list[Check], probes: Mapping[str, Probe], pk: Packets,
                 counters_before: Mapping[tuple[str, str, str, str], int],
                 counters_after: Mapping[tuple[str, str, str, str], int],
                 conns: Mapping[str, dict[str, Any]] | None = None,
                 mtus: Mapping[str, list[tuple[str, str, str, int]]] | None = None, underlay_rules: list[dict[str, Any]] | None = None) -> None:
        self.checks = checks
        self.by_id = {c.id: c for c in checks}
        self.probes = probes
        self.pk = pk
        self.cb = counters_before
        self.ca = counters_after
        self.conns = conns or {}
        self.mtus = mtus or {}
        self.underlay_rules = underlay_rules or []
        self.seqs = {p.seq for p in probes.values() if p.seq is not None}

    # -------------------------------------------------------------- helpers
    def ok_probes(self, c: Check) -> tuple[list[Probe], list[str]]:
        """Probes of ``c`` whose prerequisites all passed; and the failed/untested prerequisites."""
        out: list[Probe] = []
        blocked: list[str] = []
        for pid, pre in c.probes.items():
            p = self.probes.get(pid)
            if p is None:
                continue
            bad = [x for x in pre if x in self.by_id and self.by_id[x].verdict != PASS]
            if bad:
                blocked.extend(b for b in bad if b not in blocked)
                continue
            out.append(p)
        return out, blocked

    def untested(self, c: Check, why: str) -> None:
        c.verdict = UNTESTED
        c.message = c.reason = why

    def fail(self, c: Check, why: str) -> None:
        c.verdict = FAIL
        c.reason = why
        c.message = f"{c.location()}: {c.rule}: {why}"

    def blocked_msg(self, blocked: list[str]) -> str:
        return "not reached: upstream " + ", ".join(
            f"{b} {self.by_id[b].verdict}" for b in blocked[:3]) + (" ..." if len(blocked) > 3 else "")

    def counters(self, c: Check) -> None:
        if c.counter_key is not None:
            c.counter_before = self.cb.get(c.counter_key)
            c.counter_after = self.ca.get(c.counter_key)

    def _counter_ok(self, c: Check, n: int) -> bool:
        d = c.counter_delta
        return d is None or d >= n

    # -------------------------------------------------------------- per kind
    def judge(self) -> list[Check]:
        for c in self.checks:
            self.counters(c)
            kind = KINDS.get(c.kind)
            if kind is None:
                self.untested(c, f"no judge for check kind {c.kind!r}")
                continue
            kind.run(self, c)
        return self.checks

    def _chain_step(self, c: Check, before_pt: str, before_dst: str, after_pt: str, after_ok: Any, what: str,
                    missing_alt: Any = None, silent_ok: bool = False, skip_unseen: bool = False) -> None:
        """Generic: probes seen at ``before_pt`` (dst ``before_dst``) must be seen again at ``after_pt``
        (translated: another destination) with ``after_ok(pkt)``; ``what`` describes success.

        ``missing_alt(probe)``: packets showing what happened instead (e.g. a local RST). ``silent_ok``:
        a probe not seen after, with nothing happening instead, still passed this rule (it was handled
        and then stalled further on, e.g. no neighbour for the chosen backend). ``skip_unseen``: such a
        probe does not count at all (it never reached this rule)."""
        probes, blocked = self.ok_probes(c)
        dst = int(ipaddress.IPv4Address(before_dst)) if before_dst else None
        reached = ok = stalled = 0
        first_ok: tuple[Pkt, Evidence] | None = None
        first_bad: tuple[Pkt, list[Pkt], Probe] | None = None
        for p in probes:
            assert p.seq is not None
            bef = [x for x in self.pk.syns(p.seq, before_pt) if dst is None or x.dst == dst]
            if not bef:
                continue
            b0 = bef[0]
            copies = [x for x in self.pk.syns(p.seq, after_pt) if x.dst != b0.dst and x.ts >= b0.ts - 1_000_000]
            if skip_unseen and not copies:
                continue
            reached += 1
            good = [x for x in copies if after_ok(x)]
            alt = missing_alt(p) if missing_alt else []
            if good:
                ok += 1
                if first_ok is None:
                    first_ok = (b0, good[0].ev())
            elif silent_ok and not copies and not alt:
                ok += 1
                stalled += 1
                if first_ok is None:
                    first_ok = (b0, Evidence(after_pt, "(handled, then not transmitted: no neighbour for the "
                                                       "chosen backend?)"))
            elif first_bad is None:
                first_bad = (b0, alt or copies, p)
        c.reached, c.passed = reached, ok
        if first_bad is not None:
            c.before = first_bad[0].ev()
            c.after = first_bad[1][0].ev() if first_bad[1] else Evidence(after_pt, "(not seen)")
        elif first_ok is not None:
            c.before, c.after = first_ok[0].ev(), first_ok[1]
        if c.present is False:
            self.fail(c, "rule missing from the dumps" + (f"; {reached - ok}/{reached} probes not {what}"
                                                          if reached else ""))
            return
        if reached == 0:
            self.untested(c, self.blocked_msg(blocked) if blocked else f"no probe reached {before_pt}")
            return
        if ok < reached:
            self.fail(c, f"{reached - ok}/{reached} probes not {what}")
            return
        if not self._counter_ok(c, ok):
            self.fail(c, f"{ok} probes {what} but the rule counted {c.counter_delta} packets (another rule acts)")
            return
        c.verdict = PASS
        c.message = f"{ok}/{reached} probes {what}" + (f" ({stalled} not transmitted after it)" if stalled else "")

    def _related(self, p: Pkt) -> bool:
        s = self.seqs
        return p.seq in s or (p.flags & RST != 0 and (p.seq - 1) & 0xFFFFFFFF in s) or (
            p.ack != 0 and (p.ack - 1) & 0xFFFFFFFF in s)

    def _underlay_drop(self, src: str, dst: str) -> dict[str, Any] | None:
        for r in self.underlay_rules:
            t = r["text"]
            if "drop" not in t:
                continue
            directed = "saddr" in t or "daddr" in t
            if directed and f"saddr {src}" in t and f"daddr {dst}" in t:
                return r
            if not directed and src in t and dst in t:
                return r
        return None

    def _set_culprit(self, c: Check, culprit: tuple[str, str, str, int], size: int) -> None:
        netns, short, iface, mtu = culprit
        c.netns, c.namespace, c.where = netns, short, f"link {iface}"
        c.rule = f"{iface} mtu {mtu} < {size}"

    def _blame_mtu(self, c: Check, path: list[tuple[str, bool]], full: int) -> None:
        """Name the first link of ``path`` whose MTU cannot carry a full-size segment."""
        ip_len = full + 40 + 12
        for point, vx in path:
            size = ip_len + (50 if vx else 0)
            for netns, short, iface, mtu in self.mtus.get(point, []):
                if mtu < size:
                    self._set_culprit(c, (netns, short, iface, mtu), size)
                    return

    def _client_isn(self, p: Probe, point: str) -> int | None:
        for x in self.pk.by_point.get(point, []):
            if x.sport == p.sport and x.dport == p.dport and x.flags & (SYN | ACK) == SYN and not x.vx:
                return x.seq
        return None

    def _segment_sizes(self, isn: int, point: str, client_mss: int) -> tuple[int, int]:
        """(full segment payload: the smaller of the server's MSS and the client interface's, minus the
        timestamp option; largest data segment the client sent)."""
        sa = [x for x in self.pk.by_ack.get((isn + 1) & 0xFFFFFFFF, []) if x.point == point
              and x.flags & (SYN | ACK) == SYN | ACK]
        if not sa or sa[0].mss <= 0:
            return 0, 0
        syn = [x for x in self.pk.by_seq.get(isn, []) if x.point == point and x.flags & (SYN | ACK) == SYN]
        full = min(sa[0].mss, client_mss) - (12 if sa[0].tsopt else 0)
        biggest = 0
        sport = syn[0].sport if syn else -1
        for x in self.pk.by_point.get(point, []):
            if not x.vx and x.plen > 0 and x.sport == sport and 0 < ((x.seq - isn) & 0xFFFFFFFF) < 1 << 20:
                biggest = max(biggest, x.plen)
        return full, biggest

    def _big(self, seq: int, point: str, vx: bool, min_len: int = 1000) -> Pkt | None:
        for x in self.pk.by_seq.get(seq, []):
            if x.point == point and x.vx == vx and x.plen >= max(1, min_len):
                return x
        return None

    def _mtu_culprit(self, seen: str, lost: str, size: int) -> tuple[str, str, str, int] | None:
        """(netns, short namespace, iface, mtu) of the first link too small for ``size`` at the point where
        the segment was lost (its interface, then the veth peer), then at the last point it was seen."""
        for pt in (lost, seen):
            for netns, short, iface, mtu in self.mtus.get(pt, []):
                if mtu < size:
                    return netns, short, iface, mtu
        return None


P = TypeVar("P", bound=Params)


class Kind(Generic[P]):
    """One check kind: its parameter type and how a check of that kind is judged."""

    kind: ClassVar[str]
    params: type[P]

    def run(self, j: Judge, c: Check) -> None:
        """Judge ``c`` (its params must be of this kind's type)."""
        if not isinstance(c.params, self.params):
            raise TypeError(f"check {c.id}: params {type(c.params).__name__}, expected {self.params.__name__}")
        self.judge(j, c, c.params)

    def judge(self, j: Judge, c: Check, prm: P) -> None:
        raise NotImplementedError


KINDS: dict[str, Kind[Any]] = {}
"""Check kind -> its judge (filled by :func:`register`)."""

K = TypeVar("K", bound=type[Kind[Any]])


def register(cls: K) -> K:
    """Class decorator: add a :class:`Kind` to :data:`KINDS`."""
    KINDS[cls.kind] = cls()
    return cls


@register
class DnatKind(Kind[DnatParams]):
    kind = "dnat"
    params = DnatParams

    def judge(self, j: Judge, c: Check, prm: DnatParams) -> None:
        to = int(ipaddress.IPv4Address(prm.to)) if prm.to else -1
        port = prm.port

        def alt(p: Probe) -> list[Pkt]:
            assert p.seq is not None
            return j.pk.rsts(p.seq, prm.before_point)

        j._chain_step(c, prm.before_point, prm.dst, prm.after_point,
                         lambda x: x.dst == to and x.dport == port, f"DNATed to {prm.to}:{port}", alt)


@register
class HostdnatKind(DnatKind):
    """Host-mode publishing: the host's nat DOCKER DNAT straight to the task's docker_gwbridge address."""

    kind = "hostdnat"


@register
class MarkKind(Kind[MarkParams]):
    kind = "mark"
    params = MarkParams

    def judge(self, j: Judge, c: Check, prm: MarkParams) -> None:
        if c.present is not False and prm.lb_present is False:
            j.untested(c, f"the load balancer of fwmark {prm.fwmark:#x} is missing: whether this rule marks "
                          "cannot be seen")
            return
        def alt(p: Probe) -> list[Pkt]:
            assert p.seq is not None
            return j.pk.rsts(p.seq, prm.before_point)

        to = int(ipaddress.IPv4Address(prm.to)) if prm.to else -1
        j._chain_step(c, prm.before_point, prm.to, prm.after_point,
                         lambda x: x.dst != to, f"marked {prm.fwmark:#x} and balanced", alt, silent_ok=True)


@register
class VipmarkKind(Kind[VipmarkParams]):
    kind = "vipmark"
    params = VipmarkParams

    def judge(self, j: Judge, c: Check, prm: VipmarkParams) -> None:
        if c.present is not False and prm.lb_present is False:
            j.untested(c, f"the load balancer of fwmark {prm.fwmark:#x} is missing: whether this rule marks "
                          "cannot be seen")
            return
        vip = int(ipaddress.IPv4Address(prm.dst))

        def alt(p: Probe) -> list[Pkt]:
            assert p.seq is not None
            return j.pk.rsts(p.seq, prm.before_point) + j.pk.synacks(p.seq, prm.before_point)

        j._chain_step(c, prm.before_point, prm.dst, prm.after_point,
                         lambda x: x.dst != vip, f"marked {prm.fwmark:#x} and balanced", alt, silent_ok=True)


@register
class SnatKind(Kind[SnatParams]):
    kind = "snat"
    params = SnatParams

    def judge(self, j: Judge, c: Check, prm: SnatParams) -> None:
        to = int(ipaddress.IPv4Address(prm.to))
        before = int(ipaddress.IPv4Address(prm.dst))
        net = ipaddress.IPv4Network(prm.subnet)
        j._chain_step(c, prm.before_point, prm.dst, prm.after_point,
                         lambda x: x.dst != before and ipaddress.IPv4Address(x.dst) in net and x.src == to,
                         f"source-translated to {prm.to}", skip_unseen=True)


@register
class LbKind(Kind[LbParams]):
    kind = "lb"
    params = LbParams

    def judge(self, j: Judge, c: Check, prm: LbParams) -> None:
        probes, blocked = j.ok_probes(c)
        vip = int(ipaddress.IPv4Address(prm.dst))
        backends = {int(ipaddress.IPv4Address(b)) for b in prm.backends}
        chosen: dict[int, Pkt] = {}
        reached = balanced = 0
        stray: Pkt | None = None
        first: Pkt | None = None
        for p in probes:
            assert p.seq is not None
            bef = [x for x in j.pk.syns(p.seq, prm.before_point) if x.dst == vip]
            if not bef:
                continue
            reached += 1
            first = first or bef[0]
            aft = [x for x in j.pk.syns(p.seq, prm.after_point) if x.dst != vip]
            if not aft:
                continue  # balanced but not transmitted (judged by the MARK and server checks)
            balanced += 1
            if aft[0].dst in backends:
                chosen.setdefault(aft[0].dst, aft[0])
            elif stray is None:
                stray = aft[0]
        c.reached, c.passed = reached, balanced
        if first is not None:
            c.before = first.ev()
        if chosen:
            c.after = next(iter(chosen.values())).ev()
        names = ", ".join(sorted((_ip(b) for b in chosen), key=ipaddress.IPv4Address))
        if c.present is False:
            j.fail(c, "load balancer service missing from the dumps")
            return
        if reached == 0:
            j.untested(c, j.blocked_msg(blocked) if blocked else f"no probe reached {prm.before_point}")
            return
        if stray is not None:
            c.after = stray.ev()
            j.fail(c, f"balanced to {_ip(stray.dst)}, not a backend of {prm.label}")
            return
        if balanced == 0:
            j.untested(c, f"{reached} probes reached the LB but none left it (no neighbour for the backends?)")
            return
        missing = [b for b in sorted(backends) if b not in chosen]
        if missing and balanced >= len(backends):
            j.fail(c, f"{balanced} probes reached only {names}; never {', '.join(_ip(m) for m in missing)}")
            return
        exp = set(prm.expected_backends or [])
        extra = sorted(set(prm.backends) - exp)
        lacking = sorted(exp - set(prm.backends))
        c.verdict = PASS
        c.message = f"{reached} probes balanced round-robin to {{{names}}}"
        if balanced < reached:
            c.message += f", {reached - balanced} not transmitted (backend without neighbour?)"
        if extra or lacking:
            c.message += " (backends differ from the lab's tasks:" + (f" extra {extra}" if extra else "") + (
                f" missing {lacking}" if lacking else "") + ")"


@register
class FdbKind(Kind[FdbParams]):
    kind = "fdb"
    params = FdbParams

    def judge(self, j: Judge, c: Check, prm: FdbParams) -> None:
        mac = _mac_int(prm.mac)
        vtep = int(ipaddress.IPv4Address(prm.vtep))
        vni = int(prm.vni)
        frames = [p for p in j.pk.by_point.get(prm.before_point, [])
                  if p.eth_dst == mac and not p.vx and j._related(p)]
        # encrypted overlay: ESP hides VXLAN on the underlay, the frame is found again at the peer's vxlan0
        enc = [p for p in j.pk.by_point.get(prm.after_point, []) if p.eth_dst == mac
               and ((p.vx and p.vni == vni) or (prm.encrypted and not p.vx))]
        keyed: dict[tuple[int, int, int], list[Pkt]] = defaultdict(list)
        for e in enc:
            keyed[(e.seq, e.ack, e.flags)].append(e)
        reached = ok = 0
        bad: tuple[Pkt, Pkt | None] | None = None
        good: tuple[Pkt, Pkt] | None = None
        for f in frames:
            reached += 1
            copies = [e for e in keyed.get((f.seq, f.ack, f.flags), []) if e.ts >= f.ts - 1_000_000]
            right = [e for e in copies if prm.encrypted or e.odst == vtep]
            if not right and prm.encrypted:
                right = FdbKind.towards(j, prm, f, vtep)
            if right:
                ok += 1
                good = good or (f, right[0])
            elif bad is None:
                bad = (f, copies[0] if copies else None)
        c.reached, c.passed = reached, ok
        if bad is not None:
            c.before = bad[0].ev()
            c.after = bad[1].ev() if bad[1] else Evidence(prm.after_point, "(no VXLAN copy)")
        elif good is not None:
            c.before, c.after = good[0].ev(), good[1].ev()
        if c.present is False:
            dev = prm.before_point.rsplit(".", 1)[-1]
            if reached and ok == reached:
                how = f"; {ok}/{reached} frames still reached {prm.peer} through a learned entry" + (
                    f" ({prm.learned})" if prm.learned else "") + ", which expires"
            elif reached:
                how = f"; {reached - ok}/{reached} frames entering {dev} were not encapsulated to {prm.vtep}"
            else:
                how = ""
            j.fail(c, f"permanent fdb entry missing from the dumps{how}")
            return
        if reached == 0:
            j.untested(c, f"no probe frame to {prm.mac} crossed {prm.before_point}")
            return
        if ok < reached:
            where = (f"encapsulated to {_ip(bad[1].odst)} instead of {prm.vtep}" if bad and bad[1]
                     else "not encapsulated")
            j.fail(c, f"{reached - ok}/{reached} frames to {prm.mac} {where}")
            return
        c.verdict = PASS
        c.message = f"{ok}/{reached} frames encapsulated to {prm.vtep} (VNI {vni})"


    @staticmethod
    def towards(j: Judge, prm: FdbParams, f: Pkt, vtep: int) -> list[Pkt]:
        """Encrypted overlay, frame not delivered: it still went to ``vtep`` if it left the sender's eth0 as
        cleartext VXLAN to it, or ESP to it left then (the IPsec checks judge what happened next)."""
        leak = [p for p in j.pk.by_point.get(prm.out_point, []) if p.vx and p.odst == vtep
                and (p.seq, p.ack, p.flags) == (f.seq, f.ack, f.flags)]
        if leak:
            return leak
        esp = [e for e in j.pk.esp if e.point == prm.out_point and e.dst == vtep and abs(e.ts - f.ts) < 1_000_000_000]
        return [replace(f, point=prm.out_point)] if esp else []


@register
class LinkKind(Kind[LinkParams]):
    kind = "link"
    params = LinkParams

    def judge(self, j: Judge, c: Check, prm: LinkParams) -> None:
        src = int(ipaddress.IPv4Address(prm.src))
        dst = int(ipaddress.IPv4Address(prm.dst))
        out = [p for p in j.pk.by_point.get(prm.before_point, [])
               if p.vx and p.osrc == src and p.odst == dst and j._related(p)]
        arrived = {(p.osport, p.seq, p.ack, p.flags) for p in j.pk.by_point.get(prm.after_point, [])
                   if p.vx and p.osrc == src and p.odst == dst}
        reached = ok = 0
        bad = good = None
        for p in out:
            reached += 1
            if (p.osport, p.seq, p.ack, p.flags) in arrived:
                ok += 1
                good = good or p
            elif bad is None:
                bad = p
        c.reached, c.passed = reached, ok
        drop = j._underlay_drop(prm.src, prm.dst)
        if drop is not None:
            c.where = f"nft {drop['family']} {drop['table']} {drop['chain']}"
            c.rule = drop["text"]
            c.present = True
        if bad is not None:
            c.before = bad.ev()
            c.after = Evidence(prm.after_point, "(not seen)")
        elif good is not None:
            c.before = good.ev()
            c.after = Evidence(prm.after_point, good.summary())
        if reached == 0:
            j.untested(c, f"no VXLAN probe frame from {prm.src} to {prm.dst}")
            return
        if ok < reached:
            why = f"{reached - ok}/{reached} VXLAN frames left {prm.before_point} and never reached " \
                  f"{prm.after_point}"
            if drop is not None:
                why += f" (underlay rule drops them: counted {drop.get('delta', '?')} packets)"
            j.fail(c, why)
            return
        c.verdict = PASS
        c.message = f"{ok}/{reached} VXLAN frames arrived"


@register
class ServerKind(Kind[ServerParams]):
    kind = "server"
    params = ServerParams

    def judge(self, j: Judge, c: Check, prm: ServerParams) -> None:
        probes, _blocked = j.ok_probes(c)
        pt = prm.point
        ip = int(ipaddress.IPv4Address(prm.ip))
        reached = ok = 0
        bad = None
        for p in probes:
            assert p.seq is not None
            sent = j.pk.syns(p.seq, pt)
            if not sent:
                continue
            reached += 1
            sa = [x for x in j.pk.answers(sent[0], pt) if x.src == ip]
            if sa:
                ok += 1
                c.before, c.after = sent[0].ev(), sa[0].ev()
            elif bad is None:
                bad = (sent[0], j.pk.rsts(p.seq, pt) + (j.pk.syns(p.seq, prm.task_point)
                                                             if prm.task_point else []))
        c.reached, c.passed = reached, ok
        lbs = prm.lbs or []
        if bad is not None:
            c.before = bad[0].ev()
            rst = [x for x in bad[1] if x.flags & RST]
            c.after = rst[0].ev() if rst else Evidence(pt, "(no SYN-ACK)")
        if reached == 0:
            j.untested(c, f"the probe was not sent from {pt}")
            return
        if ok == reached:
            c.verdict = PASS
            c.message = f"{prm.ip}:{prm.port} answered " + ("the datagram" if prm.proto == "udp" else "SYN-ACK")
            return
        if not prm.alive:
            j.fail(c, f"stale backend: task namespace {c.netns} is gone, no SYN-ACK from "
                         f"{prm.ip}:{prm.port}; still a backend of "
                         + (", ".join(lbs) if lbs else "no load balancer"))
            return
        reset = bad is not None and any(x.flags & RST for x in bad[1])
        j.fail(c, (f"RST from {prm.ip}:{prm.port}: nothing listens" if reset else
                      f"no SYN-ACK from {prm.ip}:{prm.port}")
                  + (f" (backend of {', '.join(lbs)})" if lbs else ""))


@register
class DnsrrKind(ServerKind):
    """A dnsrr task reached straight at its address from a task on another node (judged after the fdb
    entries and links it depends on)."""

    kind = "dnsrr"


@register
class UnpublishedKind(Kind[UnpublishedParams]):
    kind = "unpublished"
    params = UnpublishedParams

    def judge(self, j: Judge, c: Check, prm: UnpublishedParams) -> None:
        probes, _ = j.ok_probes(c)
        reached = ok = 0
        for p in probes:
            assert p.seq is not None
            bef = [x for x in j.pk.syns(p.seq, prm.entry_point)]
            if not bef:
                continue
            reached += 1
            fwd = j.pk.syns(p.seq, prm.after_point) if prm.after_point else []
            ans = j.pk.rsts(p.seq, prm.entry_point)
            c.before = bef[0].ev()
            if fwd:
                c.after = fwd[0].ev()
            else:
                ok += 1
                c.after = ans[0].ev() if ans else Evidence(prm.after_point, "(not forwarded)")
        c.reached, c.passed = reached, ok
        if prm.dnat:
            j.fail(c, f"port {prm.port} is DNATed by `{prm.dnat}`")
            return
        if reached == 0:
            j.untested(c, f"no probe reached {prm.entry_point}")
            return
        if ok < reached:
            j.fail(c, f"SYN to unpublished port {prm.port} was forwarded to the ingress sandbox")
            return
        if c.present is False:
            j.fail(c, "DOCKER-INGRESS has no RETURN rule")
            return
        c.verdict = PASS
        c.message = f"port {prm.port} not DNATed (host answered itself)"


@register
class RedirectKind(Kind[RedirectParams]):
    kind = "redirect"
    params = RedirectParams

    def judge(self, j: Judge, c: Check, prm: RedirectParams) -> None:
        if c.present is None and not prm.alive:
            j.untested(c, f"task namespace {c.netns} is gone")
            return
        probes, blocked = j.ok_probes(c)
        pt = prm.point
        ip = int(ipaddress.IPv4Address(prm.ip))
        port = prm.port
        reached = ok = 0
        bad = None
        for p in probes:
            assert p.seq is not None
            bef = [x for x in j.pk.syns(p.seq, pt) if x.dst == ip and x.dport == port]
            if not bef:
                continue
            reached += 1
            sa = [x for x in j.pk.answers(bef[0], pt) if x.src == ip and x.sport == port]
            if sa:
                ok += 1
                if bad is None:
                    c.before, c.after = bef[0].ev(), Evidence(sa[0].point, sa[0].summary()
                                                              + f" (answered on :{prm.target})")
            elif bad is None:
                bad = (bef[0], j.pk.rsts(p.seq, pt))
        c.reached, c.passed = reached, ok
        if bad is not None:
            c.before = bad[0].ev()
            c.after = bad[1][0].ev() if bad[1] else Evidence(pt, "(no answer)" if prm.proto == "udp" else "(no SYN-ACK)")
        what = f"{'datagrams' if prm.proto == 'udp' else 'SYNs'} to :{port}"
        if c.present is False:
            j.fail(c, "rule missing from the dumps" + (f"; {reached - ok}/{reached} {what} unanswered"
                                                       if reached else ""))
            return
        if reached == 0:
            j.untested(c, j.blocked_msg(blocked) if blocked else f"no probe reached {pt}")
            return
        if ok < reached:
            j.fail(c, f"{reached - ok}/{reached} {what} unanswered")
            return
        if not j._counter_ok(c, ok):
            j.fail(c, f"answered but the rule counted {c.counter_delta} packets")
            return
        c.verdict = PASS
        c.message = f"{ok}/{reached} {what} answered by the server on :{prm.target}"


@register
class MtuKind(Kind[MtuParams]):
    kind = "mtu"
    params = MtuParams

    def judge(self, j: Judge, c: Check, prm: MtuParams) -> None:
        probes, blocked = j.ok_probes(c)
        ip = int(ipaddress.IPv4Address(prm.ip))
        path: list[tuple[str, bool]] = [(str(a), bool(b)) for a, b in prm.path]
        cpt = prm.client_point
        reached = ok = 0
        bad: tuple[Probe, int, int, int] | None = None
        for p in probes:
            isn = j._client_isn(p, cpt)
            if isn is None:
                continue
            syn = j.pk.syns(isn, prm.sbox_point)
            if not syn or syn[0].dst != ip:
                continue
            reached += 1
            res = j.conns.get(p.id, {})
            data_seq = (isn + 1) & 0xFFFFFFFF
            full, biggest = j._segment_sizes(isn, cpt, int(prm.client_mss or 1460))
            arrived = j._big(data_seq, path[-1][0], path[-1][1], full)
            if res.get("ok") and arrived is not None and biggest >= full:
                ok += 1
                if c.before is None:
                    first = j._big(data_seq, cpt, False, full)
                    c.before, c.after = (first or arrived).ev(), arrived.ev()
            elif bad is None:
                bad = (p, data_seq, full, biggest)
        c.reached, c.passed = reached, ok
        if reached == 0:
            j.untested(c, j.blocked_msg(blocked) if blocked else "no MTU connection was balanced to "
                          f"{prm.task}")
            return
        if bad is None:
            c.verdict = PASS
            c.message = f"{ok}/{reached} connections delivered full-size segments (DF) and got the answer"
            return
        self.blame(j, c, prm, path, bad)

    @staticmethod
    def blame(j: Judge, c: Check, prm: MtuParams, path: list[tuple[str, bool]],
              bad: tuple[Probe, int, int, int]) -> None:
        """Fail ``c`` for the first bad connection: segments too small, or where the full-size one vanished."""
        cpt = prm.client_point
        p, data_seq, full, biggest = bad
        res = j.conns.get(p.id, {})
        if full and biggest < full:
            c.before = Evidence(cpt, f"largest data segment {biggest} bytes, full size {full}")
            c.after = Evidence("", "(smaller segments only)")
            j._blame_mtu(c, path, full)
            j.fail(c, f"the client sent only {biggest}-byte segments instead of {full}: the path MTU it "
                         "learned is smaller than the overlay MTU + headers")
            return
        last_seen: tuple[str, bool, Pkt] | None = None
        lost_at: tuple[str, bool] | None = None
        for point, vx in path:
            pkt = j._big(data_seq, point, vx, full)
            if pkt is not None:
                last_seen = (point, vx, pkt)
            else:
                lost_at = (point, vx)
                break
        if last_seen is None:
            c.before = Evidence(cpt, f"(no full-size segment sent: {res.get('error') or res.get('status')})")
            j.fail(c, f"connection failed before data: {res.get('error') or res.get('status')}")
            return
        c.before = last_seen[2].ev()
        if lost_at is None:
            c.after = Evidence("", f"segments arrived but no answer: {res.get('error') or res.get('status')}")
            j.fail(c, f"full-size segments reached {prm.task} but no answer came back "
                         f"({res.get('error') or res.get('status')})")
            return
        c.after = Evidence(lost_at[0], "(not seen)")
        size = last_seen[2].wirelen - 14 + (50 if lost_at[1] and not last_seen[1] else 0)
        culprit = j._mtu_culprit(last_seen[0], lost_at[0], size)
        if culprit is not None:
            j._set_culprit(c, culprit, size)
        j.fail(c, f"full-size segment ({size}-byte IP packet, DF) seen at {last_seen[0]} never reached "
                     f"{lost_at[0]}")


@register
class XfrmKind(Kind[XfrmParams]):
    """Encrypted overlay A -> B: the probe frames of the VNI entering A's vxlan0 must leave A's eth0 as ESP
    with the pair's SPI (never as cleartext VXLAN) and arrive at B's vxlan0."""

    kind = "xfrm"
    params = XfrmParams

    def judge(self, j: Judge, c: Check, prm: XfrmParams) -> None:
        seen = self.observe(j, prm)
        c.reached = len(seen.frames)
        if seen.frames:
            c.before = seen.frames[0].ev()
            c.after = (seen.leaks[0].ev() if seen.leaks else seen.esp[0].ev() if seen.esp
                       else Evidence(prm.out_point, "(nothing left: no ESP, no VXLAN)"))
        if prm.what == "policy":
            self.policy(j, c, prm, seen)
        elif prm.what == "out":
            self.sa_out(j, c, prm, seen)
        else:
            self.sa_in(j, c, prm, seen)

    @staticmethod
    def observe(j: Judge, prm: XfrmParams) -> _XfrmSeen:
        macs = {_mac_int(m) for m in prm.macs}
        frames = [p for p in j.pk.by_point.get(prm.vxlan_point, []) if not p.vx and p.eth_dst in macs
                  and j._related(p)]
        keys = {(p.seq, p.ack, p.flags) for p in frames}
        src, dst = int(ipaddress.IPv4Address(prm.src)), int(ipaddress.IPv4Address(prm.dst))
        leaks = [p for p in j.pk.by_point.get(prm.out_point, []) if p.vx and p.vni == prm.vni and p.odst == dst
                 and (p.seq, p.ack, p.flags) in keys]
        arrived = [p for p in j.pk.by_point.get(prm.peer_vxlan_point, []) if not p.vx
                   and (p.seq, p.ack, p.flags) in keys]
        lo = min((p.ts for p in frames), default=0) - 1_000_000_000
        hi = max((p.ts for p in frames), default=0) + 1_000_000_000
        esp = [e for e in j.pk.esp if e.point == prm.out_point and e.src == src and e.dst == dst
               and e.spi == prm.spi and lo <= e.ts <= hi]
        esp_in = [e for e in j.pk.esp if e.point == prm.in_point and e.src == src and e.dst == dst
                  and e.spi == prm.spi and lo <= e.ts <= hi]
        return _XfrmSeen(frames, leaks, arrived, esp, esp_in)

    @staticmethod
    def policy(j: Judge, c: Check, prm: XfrmParams, seen: _XfrmSeen) -> None:
        n = len(seen.frames)
        if seen.leaks:
            j.fail(c, f"{len(seen.leaks)} VXLAN frames of VNI {prm.vni} left {prm.out_point} in cleartext "
                      f"(no ESP)" + ("; the policy is missing from the dumps" if c.present is False else ""))
            return
        if c.present is False:
            j.fail(c, "policy missing from the dumps")
            return
        if n == 0:
            j.untested(c, f"no probe frame to {prm.dst} crossed {prm.vxlan_point}")
            return
        if not seen.esp:
            j.untested(c, f"{n} frames entered {prm.vxlan_point}; nothing left {prm.out_point} (see the SA)")
            return
        c.passed = n
        c.verdict = PASS
        c.message = f"{n} frames left as ESP spi {prm.spi:#010x} ({len(seen.esp)} ESP packets), none in cleartext"

    @staticmethod
    def sa_out(j: Judge, c: Check, prm: XfrmParams, seen: _XfrmSeen) -> None:
        n = len(seen.frames)
        if seen.leaks:
            j.untested(c, "the traffic left in cleartext: the policy did not select this state")
            return
        if c.present is False:
            j.fail(c, "state missing from the dumps" + (f"; {n} frames entered {prm.vxlan_point} and nothing left "
                                                        f"{prm.out_point}" if n and not seen.esp else ""))
            return
        if n == 0:
            j.untested(c, f"no probe frame to {prm.dst} crossed {prm.vxlan_point}")
            return
        if not seen.esp:
            j.fail(c, f"{n} frames entered {prm.vxlan_point}; no ESP spi {prm.spi:#010x} left {prm.out_point}")
            return
        c.passed = n
        c.verdict = PASS
        c.message = f"{len(seen.esp)} ESP packets spi {prm.spi:#010x} left {prm.out_point}"

    @staticmethod
    def sa_in(j: Judge, c: Check, prm: XfrmParams, seen: _XfrmSeen) -> None:
        n = len(seen.frames)
        if c.present is False:
            j.fail(c, "state missing from the dumps" + (f"; ESP arrived at {prm.in_point} but {n - len(seen.arrived)}"
                                                        f"/{n} frames never reached {prm.peer_vxlan_point}"
                                                        if seen.esp_in else ""))
            return
        if not seen.esp_in:
            j.untested(c, f"no ESP spi {prm.spi:#010x} reached {prm.in_point}")
            return
        if not seen.arrived:
            j.fail(c, f"ESP spi {prm.spi:#010x} arrived at {prm.in_point} but none of {n} frames reached "
                      f"{prm.peer_vxlan_point} (not decrypted)")
            return
        c.passed = len(seen.arrived)
        c.verdict = PASS
        c.message = f"{len(seen.arrived)}/{n} frames decrypted and delivered to {prm.peer_vxlan_point}"


@dataclass
class _XfrmSeen:
    frames: list[Pkt]
    leaks: list[Pkt]
    arrived: list[Pkt]
    esp: list[EspPkt]
    esp_in: list[EspPkt]

def judge(checks: list[Check], probes: Mapping[str, Probe], table: Any,
          counters_before: Mapping[tuple[str, str, str, str], int],
          counters_after: Mapping[tuple[str, str, str, str], int], conns: Mapping[str, dict[str, Any]] | None = None,
          mtus: Mapping[str, list[tuple[str, str, str, int]]] | None = None,
          underlay_rules: list[dict[str, Any]] | None = None) -> list[Check]:
    """Judge ``checks`` (in order) from the packet ``table`` and the counters; returns them, filled in.

    ``conns``: probe id -> injector result of MTU connections. ``mtus``: capture point -> the MTUs of its
    interface and of the veth peer, ``[(netns, short namespace, iface, mtu), ...]``, as dumped.
    ``underlay_rules``: rules of the underlay switch (``{"family","table","chain","text","delta"}``).
    """
    pk = table if isinstance(table, Packets) else Packets.from_table(table)
    return Judge(checks, probes, pk, counters_before, counters_after, conns, mtus, underlay_rules).judge()

