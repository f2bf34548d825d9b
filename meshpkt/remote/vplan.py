"""Verify a real cluster (pure part): what every node should have, the checks, the probes, the verdicts.

A real cluster has no plan to compare with, so the expectation comes from the cluster itself: Swarm
programs the routing mesh the same way on every node, so a published port seen on *any* node (a
DOCKER-INGRESS DNAT, an ingress_sbox MARK or a task REDIRECT) must be published on *every* node, and
every overlay namespace must have a permanent fdb entry for every task of that network on every other
node (its MAC -> that node's VTEP). Checks (one row each, ids as in the lab's verify):

* ``dnat:<node>:<P>`` host nat DOCKER-INGRESS DNAT to the sandbox -- probe: a TCP connection from where
  meshpkt runs to ``<node>:P``; PASS when its SYN (followed by TCP sequence number) reaches
  ``ingress_sbox`` eth1 with the sandbox's address;
* ``mark:<node>:<P>`` ingress_sbox mangle MARK, and ``lb:<node>:ingress`` the load balancer -- PASS when
  the SYN leaves ingress_sbox eth0 toward a backend (every backend reached, for ``lb``);
* ``snat:<node>:ingress`` -- the SYN leaves with the node's ingress address as source;
* ``fdb:<node>/<overlay>:<mac>`` -- probe: a SYN frame (built here with scapy) written from the node's
  ingress_sbox or ``lb_<net>`` namespace to a remote task; PASS when it leaves the node's underlay
  VXLAN-encapsulated toward the peer's VTEP (needs python3 on the node, else UNTESTED);
* ``redirect:<task>`` task nat REDIRECT -- the task answers the probe's SYN with a SYN-ACK (RST: FAIL).

A rule missing from the dumps while present on the other nodes is a FAIL even before any probe.
Probes are marked by their source ports (:data:`PORT_RANGE`); a SYN-ACK is answered with RST.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpkt.remote.discover import Iface, Namespace, NodeInfo
from meshpkt.verify.types import FAIL, PASS, UNTESTED, Check, Evidence, Params, Probe

PORT_RANGE = (61000, 61999)
"""Source ports of every probe (documented: filter them out of your monitoring)."""


@dataclass
class RemoteParams(Params):
    """What a remote check needs to be judged (addresses, ports, peer), as plain values."""

    data: dict[str, Any] = field(default_factory=dict)


def _p(c: Check) -> dict[str, Any]:
    return c.params.data if isinstance(c.params, RemoteParams) else {}


@dataclass
class RemotePlan:
    """Checks, probes (``kind`` "conn": from meshpkt's host; "frame": written inside a node's namespace)."""

    checks: list[Check] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _v4(i: Iface) -> list[ipaddress.IPv4Interface]:
    out = []
    for a in i.addresses:
        try:
            out.append(ipaddress.IPv4Interface(a))
        except ValueError:
            continue
    return out


def _iface_ip(ns: Namespace | None, name: str = "eth0") -> tuple[Iface | None, str | None]:
    i = next((x for x in (ns.interfaces if ns else []) if x.name == name), None)
    ip = next((str(a.ip) for a in (_v4(i) if i else []) if a.network.prefixlen < 32), None)
    return i, ip


def _role(node: NodeInfo, role: str) -> list[Namespace]:
    return [ns for ns in node.namespaces if ns.role == role]


class Cluster:
    """Read-only view of the discovered nodes and their rule model (from the collected dumps)."""

    def __init__(self, nodes: Sequence[NodeInfo], model: Any) -> None:
        self.nodes = [n for n in nodes if not n.error]
        self.model = model

    def underlay_ip(self, node: NodeInfo) -> str | None:
        from meshpkt.remote.taps import underlay_ifaces

        host = next(iter(_role(node, "host")), None)
        under = underlay_ifaces(host) if host else []
        return str(_v4(under[0])[0].ip) if under else None

    def published(self) -> dict[int, set[str]]:
        """Published port -> nodes whose dumps show it (DNAT, MARK or REDIRECT)."""
        out: dict[int, set[str]] = {}
        for p in self.model.published_ports():
            if (p.proto or "tcp") == "tcp":
                out.setdefault(p.port, set()).add(p.node)
        for m in self.model.marks():
            if m.port is not None and m.vip is None and (m.proto or "tcp") == "tcp":
                out.setdefault(m.port, set()).add(m.node)
        return out

    def backends(self, port: int) -> set[str]:
        """Backend addresses of published ``port``: the load balancers behind the sandboxes' MARK for it."""
        out: set[str] = set()
        for m in self.model.marks():
            if m.port != port or m.vip is not None:
                continue
            ns = self.ns_model(m.node, m.namespace)
            for lb in (ns.lb_services() if ns is not None else []):
                if lb.fwmark == m.fwmark:
                    out |= {str(b.addr) for b in lb.backends}
        return out

    def ns_model(self, node: str, ns: str) -> Any:
        n = self.model.nodes.get(node)
        return n.namespaces.get(ns) if n is not None else None

    def tasks_on(self, subnet: ipaddress.IPv4Network) -> list[tuple[NodeInfo, Namespace, Iface, str]]:
        """(node, task namespace, interface, ip) of every task with an address in ``subnet``."""
        out = []
        for n in self.nodes:
            for ns in _role(n, "task"):
                for i in ns.interfaces:
                    for a in _v4(i):
                        if a.ip in subnet:
                            out.append((n, ns, i, str(a.ip)))
        return out


class _Ids:
    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)
        self.port = PORT_RANGE[0] + self.rng.randrange(0, 200)
        self.n = 0

    def sport(self) -> int:
        self.port = self.port + 1 if self.port < PORT_RANGE[1] else PORT_RANGE[0]
        return self.port

    def pid(self) -> str:
        self.n += 1
        return f"r{self.n}"


def _rule_text(rules: Iterable[Any], pred: Any) -> str | None:
    return next((r.text for r in rules if pred(r)), None)


def plan_remote(cluster: Cluster, *, origin: str, seed: int | None = None, per_backend: int = 1) -> RemotePlan:
    """Checks and probes for the cluster (``origin``: the address probes to published ports come from)."""
    rp = RemotePlan()
    ids = _Ids(seed)
    published = cluster.published()
    if not published:
        rp.notes.append("no published port found in any node's dumps: ingress checks skipped")
    for node in cluster.nodes:
        for port in sorted(published):
            _ingress_checks(rp, cluster, node, port, published[port], ids, origin, per_backend)
        _fdb_checks(rp, cluster, node, ids)
    _redirect_checks(rp, cluster, published)
    return rp


def _ingress_checks(rp: RemotePlan, cl: Cluster, node: NodeInfo, port: int, seen_on: set[str], ids: _Ids,
                    origin: str, per_backend: int) -> None:
    addr = cl.underlay_ip(node)
    sbox = next(iter(_role(node, "ingress_sbox")), None)
    if addr is None or sbox is None:
        rp.notes.append(f"{node.name}: no underlay address or no ingress_sbox: port {port} not checked there")
        return
    _eth1, sbox_ip = _iface_ip(sbox, "eth1")
    _eth0, ingress_ip = _iface_ip(sbox, "eth0")
    others = ", ".join(sorted(seen_on - {node.name})) or "no other node"
    host_m, sbox_m = cl.ns_model(node.name, "host"), cl.ns_model(node.name, "ingress_sbox")
    dnat = _rule_text(host_m.rules("nat") if host_m else [],
                      lambda r: r.target == "DNAT" and r.dport == port)
    mark = _rule_text(sbox_m.rules("mangle") if sbox_m else [],
                      lambda r: r.target == "MARK" and r.dport == port)
    backends = sorted(cl.backends(port))
    n_probes = max(1, len(backends) * per_backend)
    pids = []
    for _ in range(n_probes):
        p = Probe(id=ids.pid(), kind="conn", group="ingress", netns="", iface=None, src=origin,
                  sport=ids.sport(), dst=addr, dport=port, entry=node.name)
        rp.probes.append(p)
        pids.append(p.id)
    base: dict[str, Any] = {"port": port, "addr": addr, "sbox_ip": sbox_ip, "ingress_ip": ingress_ip, "node_name": node.name,
            "backends": backends}
    rp.checks += [
        Check(f"dnat:{node.name}:{port}", "dnat", node.name, "host", "host", "nat DOCKER-INGRESS",
              dnat or f"-A DOCKER-INGRESS -p tcp -m tcp --dport {port} -j DNAT --to-destination {sbox_ip}:{port}",
              present=dnat is not None, probes={p: [] for p in pids}, params=RemoteParams({**base, "others": others})),
        Check(f"mark:{node.name}:{port}", "mark", node.name, "ingress_sbox", "ingress_sbox", "mangle PREROUTING",
              mark or f"-A PREROUTING -p tcp -m tcp --dport {port} -j MARK --set-xmark <fwmark>",
              present=mark is not None, probes={p: [f"dnat:{node.name}:{port}"] for p in pids},
              params=RemoteParams({**base, "others": others})),
        Check(f"lb:{node.name}:ingress:{port}", "lb", node.name, "ingress_sbox", "ingress_sbox", "load balancer",
              "round robin over " + (", ".join(base["backends"]) or "no backend found"), present=None,
              probes={p: [f"mark:{node.name}:{port}"] for p in pids}, params=RemoteParams(base)),
        Check(f"snat:{node.name}:ingress:{port}", "snat", node.name, "ingress_sbox", "ingress_sbox",
              "nat POSTROUTING", f"SNAT to {ingress_ip}", present=None,
              probes={p: [f"mark:{node.name}:{port}"] for p in pids}, params=RemoteParams(base)),
    ]


def probe_ports_ok(plan: RemotePlan) -> bool:
    """True when every probe's source port is in the documented :data:`PORT_RANGE`."""
    return all(PORT_RANGE[0] <= p.sport <= PORT_RANGE[1] for p in plan.probes)


def _syn_frame(src_mac: str, dst_mac: str, src: str, sport: int, dst: str, seq: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=64, flags="DF")
                 / TCP(sport=sport, dport=9, flags="S", seq=seq, window=64240, options=[("MSS", 1410)]))


def _fdb_checks(rp: RemotePlan, cl: Cluster, node: NodeInfo, ids: _Ids) -> None:
    for ov in _role(node, "overlay"):
        br0, gw = _iface_ip(ov, "br0")
        vx = next((i for i in ov.interfaces if i.kind == "vxlan"), None)
        if br0 is None or vx is None or gw is None:
            continue
        subnet = ipaddress.IPv4Interface(f"{gw}/{_v4(br0)[0].network.prefixlen}").network
        src_ns = _writer_ns(node, subnet)
        mov = cl.ns_model(node.name, ov.name)
        for peer, _tns, tif, tip in cl.tasks_on(subnet):
            if peer is node:
                continue
            vtep = cl.underlay_ip(peer)
            ent = next((e for e in (mov.fdb if mov else []) if str(e.dst) == vtep and e.state in ("permanent", "static")
                        and _mac(e.mac) == tif.mac.lower()), None)
            c = Check(f"fdb:{node.name}/{ov.name}:{tif.mac.lower()}", "fdb", node.name, ov.name, ov.name,
                      f"fdb {vx.name}", ent.text if ent else f"{tif.mac.lower()} dev {vx.name} dst {vtep} self permanent",
                      present=ent is not None, params=RemoteParams({
                          "vtep": vtep, "vni": vx.vni, "peer": peer.name, "ip": tip, "mac": tif.mac.lower(),
                          "vxlan_port": vx.vxlan_port or 4789}))
            if src_ns is not None:
                ns, (src_if, src_ip) = src_ns
                seq = ids.rng.randrange(1 << 20, 1 << 31)
                p = Probe(id=ids.pid(), kind="frame", group="fdb", netns=ns.path or "", iface=src_if.name,
                          src=src_ip, sport=ids.sport(), dst=tip, dport=9, seq=seq, entry=node.name, target=peer.name,
                          frame=_syn_frame(src_if.mac, tif.mac, src_ip, ids.port, tip, seq))
                rp.probes.append(p)
                c.probes = {p.id: []}
            else:
                _p(c)["why"] = "no ingress_sbox/lb namespace on that network to write the probe from"
            rp.checks.append(c)


def _mac(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return ":".join(f"{b:02x}" for b in v)
    if isinstance(v, int):
        return ":".join(f"{(v >> s) & 0xff:02x}" for s in range(40, -8, -8))
    return str(v).lower()


def _writer_ns(node: NodeInfo, subnet: ipaddress.IPv4Network) -> tuple[Namespace, tuple[Iface, str]] | None:
    for ns in node.namespaces:
        if ns.role in ("ingress_sbox", "lb"):
            for i in ns.interfaces:
                for a in _v4(i):
                    if a.network.prefixlen < 32 and a.ip in subnet:
                        return ns, (i, str(a.ip))
    return None


def _redirect_checks(rp: RemotePlan, cl: Cluster, published: dict[int, set[str]]) -> None:
    backends = {port: cl.backends(port) for port in sorted(published)}
    for node in cl.nodes:
        for ns in _role(node, "task"):
            m = cl.ns_model(node.name, ns.name)
            rules = [r for r in (m.rules("nat") if m else []) if r.target == "REDIRECT"]
            ips = {str(a.ip) for i in ns.interfaces for a in _v4(i)}
            for port, bks in backends.items():
                ip = next(iter(sorted(ips & bks)), None)
                if ip is None:
                    continue
                txt = _rule_text(rules, lambda r, p=port: r.dport == p)
                rp.checks.append(Check(
                    f"redirect:{node.name}/{ns.display}:{port}", "redirect", node.name, ns.display, ns.name,
                    "nat PREROUTING", txt or f"-A PREROUTING -p tcp -m tcp --dport {port} -j REDIRECT --to-ports <target>",
                    present=txt is not None, params=RemoteParams({"ip": ip, "port": port, "task_ns": ns.display, "iface": next(
                        i.name for i in ns.interfaces if ip in {str(a.ip) for a in _v4(i)})}),
                    probes={p.id: [] for p in rp.probes if p.group == "ingress" and p.dport == port}))


# ---------------------------------------------------------------------- judging (pure over a packet list)


@dataclass(frozen=True)
class Seen:
    """One captured TCP packet (innermost headers) at a point; ``vxlan``: (outer dst, vni) when encapsulated."""

    point: str
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    vxlan: tuple[str, int] | None = None

    def __str__(self) -> str:
        f = "".join(c for c, b in (("S", 2), ("R", 4), ("F", 1), (".", 16)) if self.flags & b)
        vx = f" (VXLAN vni {self.vxlan[1]} to {self.vxlan[0]})" if self.vxlan else ""
        return f"{self.src}:{self.sport} > {self.dst}:{self.dport} {f}{vx}"


def judge_remote(plan: RemotePlan, seen: Sequence[Seen], writer_errors: dict[str, str]) -> None:
    """Set every check's verdict from the packets seen at the taps (see the module docstring)."""
    by_probe = {p.id: p for p in plan.probes}
    isn: dict[str, int] = {}
    for p in plan.probes:
        if p.kind == "frame" and p.seq is not None:
            isn[p.id] = p.seq
        for s in seen:
            if p.kind == "conn" and s.flags & 0x12 == 0x02 and s.sport == p.sport and s.dst == p.dst \
                    and s.point.startswith(f"{p.entry}.host."):
                isn[p.id] = s.seq
    state: dict[str, str] = {}
    for c in plan.checks:
        _judge_one(c, by_probe, isn, seen, writer_errors, state)
        state[c.id] = c.verdict


def _judge_one(c: Check, probes: dict[str, Probe], isn: dict[str, int], seen: Sequence[Seen],
               writer_errors: dict[str, str], state: dict[str, str]) -> None:
    if c.present is False:
        others = _p(c).get("others")
        _set(c, FAIL, "rule missing" + (f" (present on {others})" if others else ""))
        return
    usable = [pid for pid, pre in c.probes.items() if all(state.get(x) == PASS for x in pre)]
    if not c.probes:
        _set(c, UNTESTED, _p(c).get("why") or "no probe can exercise it")
        return
    errs = [writer_errors[p] for p in c.probes if p in writer_errors]
    if errs:
        _set(c, UNTESTED, errs[0])
        return
    if not usable:
        _set(c, UNTESTED, "an earlier rule on its path failed")
        return
    getattr(_Judges, c.kind)(c, [probes[p] for p in usable], isn, seen)


def _set(c: Check, verdict: str, reason: str = "", before: Seen | None = None, after: Seen | None = None) -> None:
    c.verdict = verdict
    c.reason = "" if verdict == PASS else reason
    c.before = Evidence(before.point, str(before)) if before else None
    c.after = Evidence(after.point, str(after)) if after else None
    c.message = (f"{c.node}/{c.namespace} {c.where}: {c.rule}: {reason}" if verdict != PASS else
                 f"{c.id}: {reason or 'proven'}")


def _find(seen: Sequence[Seen], seq: int, point: str, syn: bool = True) -> Seen | None:
    for s in seen:
        if s.point == point and s.seq == seq and (not syn or s.flags & 0x12 == 0x02):
            return s
    return None


class _Judges:
    @staticmethod
    def dnat(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        n = _p(c)["node_name"]
        for p in probes:
            if p.id not in isn:
                continue
            before = _find(seen, isn[p.id], f"{n}.host.eth0") or next(
                (s for s in seen if s.seq == isn[p.id] and s.point.startswith(f"{n}.host.")), None)
            after = _find(seen, isn[p.id], f"{n}.ingress_sbox.eth1")
            if after is not None and after.dst == _p(c)["sbox_ip"]:
                _set(c, PASS, "SYN DNATed to the sandbox", before, after)
                return
            _set(c, FAIL, f"probe SYN reached {n} but never ingress_sbox eth1 ({_p(c)['sbox_ip']}:{_p(c)['port']})",
                 before)
            return
        _set(c, FAIL if probes else UNTESTED, f"no probe SYN seen on {n}'s host")

    @staticmethod
    def mark(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        n = _p(c)["node_name"]
        for p in probes:
            if p.id in isn and (out := _find(seen, isn[p.id], f"{n}.ingress_sbox.eth0")) is not None:
                _set(c, PASS, "marked SYN load-balanced", _find(seen, isn[p.id], f"{n}.ingress_sbox.eth1"), out)
                return
        _set(c, FAIL, "SYN entered ingress_sbox but never left toward a backend (not marked / not balanced)",
             next((s for p in probes if p.id in isn for s in [_find(seen, isn[p.id], f"{n}.ingress_sbox.eth1")] if s),
                  None))

    @staticmethod
    def lb(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        n = _p(c)["node_name"]
        outs = [s for p in probes if p.id in isn for s in [_find(seen, isn[p.id], f"{n}.ingress_sbox.eth0")] if s]
        reached = {s.dst for s in outs}
        missing = sorted(set(_p(c)["backends"]) - reached)
        if outs and not missing:
            _set(c, PASS, f"{len(reached)} backends reached", None, outs[0])
        else:
            _set(c, FAIL, f"backends never chosen: {', '.join(missing) or 'all'}", None, outs[0] if outs else None)

    @staticmethod
    def snat(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        n = _p(c)["node_name"]
        outs = [s for p in probes if p.id in isn for s in [_find(seen, isn[p.id], f"{n}.ingress_sbox.eth0")] if s]
        bad = [s for s in outs if s.src != _p(c)["ingress_ip"]]
        if outs and not bad:
            _set(c, PASS, "source is the node's ingress address", None, outs[0])
        else:
            _set(c, FAIL, f"SYN left ingress_sbox with source {bad[0].src if bad else '?'}", None,
                 bad[0] if bad else None)

    @staticmethod
    def fdb(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        p = probes[0]
        out = next((s for s in seen if s.seq == p.seq and s.vxlan and s.point.startswith(f"{c.node}.host.")), None)
        if out is not None and out.vxlan is not None and out.vxlan[0] == _p(c)["vtep"]:
            _set(c, PASS, f"VXLAN to {_p(c)['peer']}", None, out)
        elif out is not None:
            _set(c, FAIL, f"encapsulated toward {out.vxlan[0] if out.vxlan else '?'}, not {_p(c)['vtep']}", None, out)
        else:
            _set(c, FAIL, f"frame to {_p(c)['ip']} ({_p(c)['mac']}) never left {c.node} toward "
                          f"{_p(c)['peer']} ({_p(c)['vtep']})")

    @staticmethod
    def redirect(c: Check, probes: list[Probe], isn: dict[str, int], seen: Sequence[Seen]) -> None:
        pt = f"{c.node}.{_p(c)['task_ns']}.{_p(c)['iface']}"
        syns = [s for s in seen if s.point == pt and s.dst == _p(c)["ip"] and s.dport == _p(c)["port"]
                and s.flags & 0x12 == 0x02 and PORT_RANGE[0] <= s.sport <= PORT_RANGE[1]]
        for s in syns:
            rep = next((r for r in seen if r.point == pt and r.src == s.dst and r.sport == s.dport and r.dport == s.sport
                        and r.flags & 0x04 == 0 and r.flags & 0x12 == 0x12), None)
            if rep is not None:
                _set(c, PASS, "task answered SYN-ACK", s, rep)
                return
        if syns:
            _set(c, FAIL, f"the task refused the SYN to port {_p(c)['port']} (nothing redirected to its server)",
                 syns[0])
        else:
            _set(c, UNTESTED, "no probe was balanced to this task")
