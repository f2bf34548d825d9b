"""Expected path of a request through the routing mesh, hop by hop, with the exact rules acting,
and the inconsistencies of a model. Pure: :class:`MeshModel` in, :class:`Explanation` out.

Path of ``--to NODE:PORT`` (Docker's ingress, the stages of :data:`meshpkt.mesh.path.INGRESS_STAGES`)::

    NODE:PORT -> host nat PREROUTING/DOCKER-INGRESS DNAT <sbox>:PORT -> host filter FORWARD
      -> ingress_sbox mangle PREROUTING MARK <fwmark> -> LB (IPVS FWM or nft emulation) -> backends
      -> ingress_sbox nat POSTROUTING SNAT <sbox overlay IP> -> overlay br0/vxlan0 (VNI, fdb -> VTEP)
      -> task nat PREROUTING REDIRECT :<target port> -> task filter INPUT
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.mesh.path import PathKind, stages
from meshpkt.mesh.proto import VXLAN_PORT
from meshpkt.rules.docker import routing_mesh_findings
from meshpkt.rules.model import LbService, MeshModel, Namespace, Node, Overlay, Role
from meshpkt.rules.types import Rule, docker_mac, mac_str
from meshpkt.rules.walk import Pkt, walk_chain, walk_hook


@dataclass
class RuleRef:
    """A rule as evidence: where it lives, its text and counters."""

    node: str
    namespace: str
    table: str
    chain: str
    index: int
    text: str
    target: str | None
    pkts: int | None
    bytes: int | None
    counters_exact: bool

    @classmethod
    def of(cls, node: str, namespace: str, r: Rule) -> RuleRef:
        """Reference ``r`` of ``node``/``namespace``."""
        return cls(node, namespace, r.table, r.chain, r.index, r.text, r.target, r.pkts, r.bytes, r.counters_exact)

    def counters(self) -> str:
        """``"75 pkts 4800 bytes"`` (``~`` = approximate, ``-`` = unknown)."""
        if self.pkts is None:
            return "-"
        a = "" if self.counters_exact else "~"
        return f"{a}{self.pkts} pkts {a}{self.bytes} bytes"


@dataclass
class Hop:
    """One step of the path: where, what happens (``summary``), the packet after it, the rules
    acting and other evidence (IPVS service lines, fdb entries, connection entries)."""

    step: str
    node: str
    namespace: str
    summary: str
    packet: str = ""
    rules: list[RuleRef] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    backend: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """An inconsistency or a gap: ``severity`` error / warning / info, a stable ``code``."""

    severity: str
    code: str
    message: str
    node: str | None = None
    namespace: str | None = None
    rule: str | None = None


@dataclass
class Explanation:
    """The expected path of one request and the findings (path-specific first, then model-wide)."""

    target: str
    node: str
    proto: str
    port: int
    client: str | None
    hops: list[Hop]
    findings: list[Finding]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @property
    def errors(self) -> list[Finding]:
        """Findings of severity error."""
        return [f for f in self.findings if f.severity == "error"]


# ---------------------------------------------------------------------- helpers


def parse_target(text: str) -> tuple[str, int, str]:
    """``"NODE:PORT[/proto]"`` -> (node, port, proto)."""
    m = re.fullmatch(r"(?P<node>[^:/\s]+):(?P<port>\d+)(?:/(?P<proto>tcp|udp|sctp))?", text.strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        raise UsageError(f"--to {text!r}: expected NODE:PORT (node name or address, e.g. 10.211.55.10:9090)")
    return m.group("node"), int(m.group("port")), m.group("proto") or "tcp"


def _addr(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text)
    except ValueError:
        return None


def _resolve_node(model: MeshModel, name: str) -> tuple[Node, IPv4Address | None]:
    a = _addr(name)
    if a is not None:
        n = model.node_of_address(a)
        if n is None:
            hosts = [x for x in model.nodes.values() if x.host is not None]
            if len(model.nodes) == 1:
                n = next(iter(model.nodes.values()))
            elif len(hosts) == 1 and not any(x.addresses() for x in hosts):
                n = hosts[0]
        if n is None:
            known = ", ".join(f"{x.name} ({', '.join(map(str, x.addresses())) or 'no address dumped'})"
                              for x in model.nodes.values())
            raise UsageError(f"no node has address {a} in the dumps (nodes: {known})")
        return n, a
    n = model.node(name)
    if n is None:
        raise UsageError(f"no node {name!r} in the dumps (nodes: {', '.join(model.nodes) or 'none'})")
    addrs = n.addresses()
    return n, addrs[0] if addrs else None


def _refs(node: str, ns: str, rules: list[Rule]) -> list[RuleRef]:
    return [RuleRef.of(node, ns, r) for r in rules]


def _sbox_of(node: Node, addr: IPv4Address | None) -> Namespace | None:
    if addr is not None:
        for ns in node.namespaces.values():
            if ns.role != Role.HOST and ns.has_address(addr):
                return ns
    sboxes = node.by_role(Role.INGRESS_SBOX)
    return sboxes[0] if sboxes else None


def _sbox_addr_from_docker(node: Node) -> IPv4Address | None:
    for net in node.networks:
        for c in net.containers:
            if c.key == "ingress-sbox" and net.driver == "bridge" and c.ipv4 is not None:
                return c.ipv4.ip
    return None


def _unreachable_msg(addr: IPv4Address, lb: LbService, overlay: str | None) -> str:
    return (f"backend {addr} of {lb.label()} in {lb.namespace} on {lb.node}: no fdb/neighbour entry in "
            f"{overlay} reaches it")


def _redirect_expected(model: MeshModel, port: int | None = None) -> bool:
    """True when tasks must REDIRECT: a service publishes a port to another target port, or other
    tasks of the dumps REDIRECT (that port)."""
    for svc in model.services():
        if any(p.published is not None and p.published != p.target and (port is None or p.published == port)
               for p in svc.ports):
            return True
    return any(port is None or r.port == port for r in model.redirects())


def _overlay_ns(model: MeshModel, node: str, addr: IPv4Address) -> str | None:
    """The overlay namespace of ``node`` whose subnet holds ``addr`` (else its first overlay)."""
    ovs = [o for o in model.overlays() if o.node == node]
    hit = next((o for o in ovs if o.subnet is not None and addr in o.subnet), None)
    if hit is None:
        return ovs[0].namespace if ovs else None
    return hit.namespace


@dataclass
class Reach:
    """How a node reaches an overlay address: ``how`` local / remote / unknown."""

    how: str
    vtep: IPv4Address | None
    overlay: Overlay | None
    evidence: list[str]


def reach(model: MeshModel, node: str, addr: IPv4Address) -> Reach | None:
    """How ``node`` delivers a frame to overlay address ``addr``: local (a namespace or Docker endpoint
    of the node holds it), remote (neighbour/derived MAC -> fdb ``dst`` VTEP), unknown (no overlay
    dump). None = unreachable: the overlay is dumped and neither fdb nor neighbour knows it."""
    n = model.nodes.get(node)
    if n is None:
        return Reach("unknown", None, None, [f"node {node} not dumped"])
    overlays = [o for o in model.overlays() if o.node == node]
    matching = [o for o in overlays if o.subnet is None or addr in o.subnet]
    ov = matching[0] if matching else None
    local = model.local_endpoint(node, addr)
    if local is not None:
        return Reach("local", None, ov, [f"{addr} is local: {local}"])
    if not matching:
        return Reach("unknown", None, None, [f"no overlay namespace of {node} dumped for {addr}"])
    for o in matching:
        ns = n.namespaces[o.namespace]
        evidence: list[str] = []
        mac = None
        for nb in ns.neighbours:
            if nb.addr == addr and nb.lladdr is not None:
                mac = nb.lladdr
                evidence.append(f"neighbour: {nb.text}")
        if mac is None:
            mac = docker_mac(addr)
            evidence.append(f"MAC {mac_str(mac)} derived from {addr} (02:42 + IPv4)")
        for e in ns.fdb:
            if e.mac != mac:
                continue
            if e.dst is not None:
                evidence.append(f"fdb: {e.text}" + ("" if e.dev is None or e.dev in e.text else f" (dev {e.dev})"))
                return Reach("remote", e.dst, o, evidence)
            if e.dev is not None and e.dev != o.device and e.master is not None:
                evidence.append(f"fdb: {e.text}")
                return Reach("local", None, o, evidence)
        if not ns.fdb and not ns.neighbours:
            return Reach("unknown", None, o, [f"no fdb/neighbour dump in {node}/{o.namespace}"])
    return None


# ---------------------------------------------------------------------- explain


def _client_of(client: str | None) -> tuple[IPv4Address | None, int | None]:
    if not client:
        return None, None
    c_addr, _, c_port = client.partition(":")
    src = _addr(c_addr)
    if src is None:
        raise UsageError(f"--from {client!r}: expected an IPv4 address[:port]")
    return src, int(c_port) if c_port.isdigit() else None


def _path_actions(proto: str) -> tuple[list[str], list[str]]:
    """The rule targets of the ingress path (:mod:`meshpkt.mesh.path`), split at the load balancer: those
    acting once on the request, and those acting per backend after it."""
    targets = [a.target for st in stages(PathKind.INGRESS, proto=proto) for a in st.actions]
    cut = targets.index("LB") + 1
    return targets[:cut], targets[cut:]


class _Stop(Exception):
    """The path ends here (a finding says why)."""


@dataclass
class _Backend:
    """The packet as it leaves the load balancer towards one backend, and where it went."""

    addr: IPv4Address
    pkt: Pkt
    node: str
    reach: Reach | None = None


class _Explainer:
    """Follows one request along the ingress path's stages, one method per rule target."""

    def __init__(self, model: MeshModel, to: str, client: str | None, proto: str | None) -> None:
        node_name, self.port, tproto = parse_target(to)
        self.model, self.to, self.client = model, to, client
        self.proto = proto or tproto
        self.node, self.node_addr = _resolve_node(model, node_name)
        src, sport = _client_of(client)
        host = self.node.host
        self.pkt = Pkt(proto=self.proto, dst=self.node_addr, dport=self.port, src=src, sport=sport,
                       iif=host.iface_of(self.node_addr) if host is not None and self.node_addr is not None else None)
        self.hops: list[Hop] = []
        self.findings: list[Finding] = []
        self.parts: list[str] = [f"{self.node_addr or self.node.name}:{self.port}"]
        self.sbox_addr: IPv4Address | None = None
        self.sbox: Namespace | None = None
        self.local: list[IPv4Address] | None = None
        self.lb: LbService | None = None
        self.snat_parts: list[str] = []
        self.vni_parts: list[str] = []
        self.redirect_parts: list[str] = []

    def hop(self, step: str, namespace: str, summary: str, packet: str, rules: list[Rule] | None = None,
            node: str | None = None, **kw: Any) -> None:
        node = node or self.node.name
        self.hops.append(Hop(step, node, namespace, summary, packet, _refs(node, namespace, rules or []), **kw))

    def finding(self, severity: str, code: str, message: str, node: str | None = None,
                namespace: str | None = None, rule: str | None = None) -> None:
        self.findings.append(Finding(severity, code, message, node, namespace, rule))

    def run(self) -> list[str]:
        """Hops and findings of the whole path; the summary parts."""
        self.hops.append(Hop("ingress", self.node.name, "host", f"{self.node_addr or self.node.name}:{self.port}",
                             self.pkt.show(), notes=[f"client {self.client}"] if self.client else []))
        once, per_backend = _path_actions(self.proto)
        steps = {"DNAT": self.host_dnat, "ACCEPT": self.host_filter, "MARK": self.sbox_mark,
                 "LB": self.load_balancer}
        backend_steps = {"SNAT": self.snat, "VXLAN": self.overlay, "REDIRECT": self.task}
        try:
            for target in once:
                steps[target]()
            assert self.lb is not None and self.sbox is not None
            for b in self.lb.backends:
                bk = _Backend(b.addr, Pkt(proto=self.proto, dst=b.addr, dport=b.port or self.pkt.dport,
                                          src=self.pkt.src, sport=self.pkt.sport, mark=self.pkt.mark,
                                          ipvs=self.lb.kind == "ipvs", ct_dnat=True), self.node.name)
                for target in per_backend:
                    if target in backend_steps and backend_steps[target](bk) is False:
                        break
        except _Stop:
            return self.parts
        self.parts.append(" / ".join(self.snat_parts))
        self.parts += [" / ".join(p) for p in (self.vni_parts, self.redirect_parts) if p]
        return self.parts

    # -- host: nat PREROUTING -> DOCKER-INGRESS DNAT, filter FORWARD
    def host_dnat(self) -> None:
        host, node = self.node.host, self.node
        if host is None or not host.has_table("nat"):
            self.sbox_addr = _sbox_addr_from_docker(node)
            self.finding("warning", "not-dumped", f"host nat table of {node.name} not dumped; assuming the "
                         f"ingress sandbox {self.sbox_addr or '?'}", node.name, "host")
            if self.sbox_addr is not None:
                self.pkt.dst = self.sbox_addr
                self.parts.append(f"DNAT {self.sbox_addr}:{self.port}")
            return
        self.local = [a.ip for a in host.addresses()] or ([self.node_addr] if self.node_addr else [])
        res = walk_hook(host, "prerouting", self.pkt, local=self.local)
        if host.chain("nat", "PREROUTING") is None and host.chain("nat", "DOCKER-INGRESS") is not None:
            res = walk_chain(host, "nat", "DOCKER-INGRESS", self.pkt, local=self.local)
            res.notes.append("nat PREROUTING not dumped: assuming it jumps to DOCKER-INGRESS (addrtype LOCAL)")
        if not res.acting("DNAT"):
            self.finding("error", "no-dnat", f"{self.proto}/{self.port} is not published on {node.name}: no DNAT "
                         "in host nat PREROUTING/DOCKER-INGRESS", node.name, host.name)
            self.hop("host-dnat", host.name, "no DNAT", self.pkt.show(), res.rules, notes=res.notes)
            self.parts.append("no DNAT")
            raise _Stop
        self.pkt = pkt = res.pkt
        self.sbox_addr = pkt.dst
        self.parts.append(f"DNAT {pkt.dst}:{pkt.dport}")
        self.hop("host-dnat", host.name, f"DNAT {pkt.dst}:{pkt.dport}", pkt.show(), res.rules, notes=res.notes)
        pkt.oif = host.route_dev(pkt.dst) if pkt.dst is not None else None

    def host_filter(self) -> None:
        host, pkt = self.node.host, self.pkt
        if host is None or self.local is None or not host.has_table("filter"):
            return
        fres = walk_hook(host, "forward", pkt, local=self.local)
        self.hop("host-filter", host.name, f"FORWARD {fres.verdict}", pkt.show(), fres.rules, notes=fres.notes)
        if fres.verdict in ("DROP", "REJECT"):
            self.finding("error", "host-filter-drop", f"host filter FORWARD drops {pkt.show()}", self.node.name,
                         host.name, fres.rules[-1].text if fres.rules else None)

    # -- ingress_sbox: mangle PREROUTING MARK, INPUT, load balancer
    def sbox_mark(self) -> None:
        node = self.node
        sbox = self.sbox = _sbox_of(node, self.sbox_addr)
        if sbox is None:
            self.finding("warning", "not-dumped", f"ingress_sbox of {node.name} not dumped", node.name)
            raise _Stop
        self.pkt.iif = sbox.iface_of(self.sbox_addr) if self.sbox_addr is not None else None
        self.pkt.oif = None
        self.pre = pre = walk_hook(sbox, "prerouting", self.pkt)
        self.pkt = pkt = pre.pkt
        if pkt.mark:
            self.parts.append(f"MARK {pkt.mark:#x}")
            self.hop("sbox-mark", sbox.name, f"MARK {pkt.mark:#x}", pkt.show(),
                     [r for r in pre.rules if r is not pre.lb_rule], notes=pre.notes)
            return
        sev = "error" if sbox.has_table("mangle") or any(" " in t for t in sbox.tables()) else "warning"
        self.finding(sev, "no-mark", f"published port {self.proto}/{self.port} has no MARK rule in "
                     f"{sbox.name} mangle PREROUTING on {node.name}", node.name, sbox.name)
        self.parts.append("MARK none")
        self.hop("sbox-mark", sbox.name, "no MARK", pkt.show(), pre.rules, notes=pre.notes)

    def _find_lb(self, sbox: Namespace) -> LbService | None:
        if self.pre.lb_rule is not None:
            return next((s for s in sbox.lb_services() if s.rule is self.pre.lb_rule), None)
        inp = walk_hook(sbox, "input", self.pkt, max_priority=98)  # IPVS sits at LOCAL_IN after filter
        self.pkt = pkt = inp.pkt
        if inp.rules:
            self.hop("sbox-input", sbox.name, f"INPUT {inp.verdict}", pkt.show(), inp.rules, notes=inp.notes)
        if inp.verdict in ("DROP", "REJECT"):
            self.finding("error", "sbox-filter-drop", f"{sbox.name} INPUT drops {pkt.show()}", self.node.name,
                         sbox.name)
        services = sbox.lb_services()
        lb = next((s for s in services if s.fwmark is not None and pkt.mark and s.fwmark == pkt.mark), None)
        return lb or next((s for s in services if s.fwmark is None and s.addr == pkt.dst and s.port == pkt.dport),
                          None)

    def load_balancer(self) -> None:
        sbox, node, pkt = self.sbox, self.node, self.pkt
        assert sbox is not None
        lb = self.lb = self._find_lb(sbox)
        pkt = self.pkt
        if lb is None:
            if pkt.mark:
                sev = "error" if sbox.has_lb_dump() else "warning"
                what = "no IPVS/nft service" if sbox.has_lb_dump() else "no ipvsadm/nft dump to check"
                self.finding(sev, "no-lb-service", f"fwmark {pkt.mark:#x} ({pkt.mark}) has {what} in "
                             f"{sbox.name} on {node.name}", node.name, sbox.name)
            self.parts.append("no LB")
            raise _Stop
        head = f"FWM {lb.fwmark} {lb.scheduler}" if lb.fwmark is not None else lb.label()
        fwd = sorted({b.forward for b in lb.backends})
        self.parts.append(head)
        self.parts.append("{" + ", ".join(str(b.addr) for b in lb.backends) + "}"
                          + (f" {'/'.join(fwd)}" if fwd else ""))
        ev = lb.text.splitlines() if lb.kind == "ipvs" else []
        conns = [c.text for c in sbox.ipvs_conns
                 if c.virtual is not None and c.virtual[0] == self.sbox_addr and c.virtual[1] == self.port]
        self.hop("lb", sbox.name, f"{head} ({lb.kind})", pkt.show(), [lb.rule] if lb.rule is not None else [],
                 evidence=ev + [f"conn: {c}" for c in conns])
        if not lb.backends:
            self.finding("error", "lb-no-backend", f"{lb.label()} in {sbox.name} on {node.name} has no backends",
                         node.name, sbox.name)
            raise _Stop

    # -- per backend: SNAT, overlay, task
    def snat(self, b: _Backend) -> None:
        sbox, node = self.sbox, self.node
        assert sbox is not None
        b.pkt.oif = sbox.route_dev(b.addr)
        post = walk_hook(sbox, "postrouting", b.pkt)
        b.pkt = bp = post.pkt
        snat = post.acting("SNAT", "MASQUERADE")
        nat_known = sbox.has_table("nat") or any(" " in t for t in sbox.tables())
        label = f"SNAT {bp.src}" if snat and bp.src is not None else (
            "MASQUERADE" if snat else ("no SNAT" if nat_known else "SNAT ?"))
        if label not in self.snat_parts:
            self.snat_parts.append(label)
        self.hop("snat", sbox.name, label, bp.show(), post.rules, backend=str(b.addr),
                 notes=post.notes + ([] if nat_known else [f"nat table of {sbox.name} not dumped"]))
        if not snat and nat_known:
            self.finding("error", "no-snat", f"no SNAT in {sbox.name} nat POSTROUTING for backend {b.addr} on "
                         f"{node.name}: the task would answer the client directly", node.name, sbox.name)

    def overlay(self, b: _Backend) -> None:
        model, node = self.model, self.node
        b.reach = r = reach(model, node.name, b.addr)
        if r is None:
            assert self.lb is not None
            ovn = _overlay_ns(model, node.name, b.addr)
            self.finding("error", "backend-unreachable", _unreachable_msg(b.addr, self.lb, ovn), node.name, ovn)
            self.hop("overlay", "?", "unreachable", b.pkt.show(), backend=str(b.addr))
            return
        ov = r.overlay
        if ov is not None and f"VNI {ov.vni}" not in self.vni_parts:
            self.vni_parts.append(f"VNI {ov.vni}")
        if r.how != "remote" or r.vtep is None:
            summ = f"br0 local (VNI {ov.vni})" if r.how == "local" and ov is not None else r.how
            self.hop("overlay", ov.namespace if ov else "?", summ, b.pkt.show(), evidence=r.evidence,
                     backend=str(b.addr))
            return
        peer = model.node_of_address(r.vtep)
        b.node = peer.name if peer is not None else str(r.vtep)
        summ = (f"VXLAN {ov.local or self.node_addr or node.name} -> {r.vtep}:{ov.dstport or VXLAN_PORT} "
                f"VNI {ov.vni}" if ov is not None else f"VXLAN -> {r.vtep}")
        self.hop("overlay", ov.namespace if ov else "?", summ, b.pkt.show(), evidence=r.evidence,
                 backend=str(b.addr))
        if peer is not None and ov is not None:
            for o2 in model.overlays():
                if o2.node == peer.name and o2.namespace == ov.namespace and o2.vni != ov.vni:
                    self.finding("error", "vni-mismatch", f"{ov.namespace}: VNI {ov.vni} on {node.name} but "
                                 f"{o2.vni} on {peer.name}", peer.name, o2.namespace)

    def task(self, b: _Backend) -> None:
        tasks = [ns for ns in self.model.namespaces()
                 if ns.role in (Role.TASK, Role.UNKNOWN) and ns.has_address(b.addr)]
        if not tasks:
            self.hop("task", "?", "task not dumped", b.pkt.show(), node=b.node, backend=str(b.addr))
            self.finding("info", "task-not-dumped", f"task namespace of backend {b.addr} not in the dumps", b.node)
            return
        task, r = tasks[0], b.reach
        if r is not None and r.how == "remote" and b.node not in (task.node, str(r.vtep)):
            self.finding("warning", "vtep-mismatch", f"fdb sends {b.addr} to {b.node} but its task namespace "
                         f"{task.name} was dumped on {task.node}", task.node, task.name)
        tp = self._task_redirect(task, b)
        if task.has_table("filter") or any(" " in t for t in task.tables()):
            tin = walk_hook(task, "input", tp, local=[b.addr] + [a.ip for a in task.addresses()])
            self.hop("task-filter", task.name, f"INPUT {tin.verdict}", tin.pkt.show(), tin.rules, node=task.node,
                     backend=str(b.addr), notes=tin.notes)
            if tin.verdict in ("DROP", "REJECT"):
                self.finding("error", "task-filter-drop", f"task {task.name} filter INPUT drops {tin.pkt.show()}",
                             task.node, task.name, tin.rules[-1].text if tin.rules else None)

    def _task_redirect(self, task: Namespace, b: _Backend) -> Pkt:
        bp = b.pkt
        tpre = walk_hook(task, "prerouting", Pkt(proto=self.proto, dst=b.addr, dport=bp.dport, src=bp.src,
                                                 sport=bp.sport))
        tp = tpre.pkt
        red = tpre.acting("REDIRECT", "DNAT")
        if red:
            lbl = f"REDIRECT :{tp.dport}" if red[-1].target == "REDIRECT" else f"DNAT {tp.dst}:{tp.dport}"
            if lbl not in self.redirect_parts:
                self.redirect_parts.append(lbl)
            self.hop("task-redirect", task.name, lbl, tp.show(), tpre.rules, node=task.node, backend=str(b.addr),
                     notes=tpre.notes)
        elif task.has_table("nat"):
            sev = "error" if _redirect_expected(self.model, self.port) else "warning"
            self.finding(sev, "no-redirect", f"task {task.name} on {task.node} has no REDIRECT in nat PREROUTING",
                         task.node, task.name)
            self.hop("task-redirect", task.name, "no REDIRECT", tp.show(), tpre.rules, node=task.node,
                     backend=str(b.addr))
        return tp


def explain(model: MeshModel, to: str, client: str | None = None, proto: str | None = None,
            include_checks: bool = True) -> Explanation:
    """The expected path of a request to ``to`` (``NODE:PORT[/proto]``) from ``client`` (an IPv4
    address, optionally ``:port``), hop by hop with the rules acting, plus findings. The hops follow the
    ingress stages of :mod:`meshpkt.mesh.path`."""
    ex = _Explainer(model, to, client, proto)
    parts = ex.run()
    return _finish(model, to, ex.node, ex.proto, ex.port, client, ex.hops, ex.findings, parts, include_checks)


def _finish(model: MeshModel, to: str, node: Node, proto: str, port: int, client: str | None, hops: list[Hop],
            findings: list[Finding], parts: list[str], include_checks: bool) -> Explanation:
    if include_checks:
        seen = {(f.code, f.message) for f in findings}
        per_ns = {(f.code, f.node, f.namespace) for f in findings if f.code in ("no-snat", "no-redirect")}
        findings = findings + [f for f in check(model) if (f.code, f.message) not in seen
                               and (f.code, f.node, f.namespace) not in per_ns]
    return Explanation(target=to, node=node.name, proto=proto, port=port, client=client, hops=hops,
                       findings=findings, summary=" -> ".join(parts))


# ---------------------------------------------------------------------- model-wide checks


def _check_marks(model: MeshModel) -> list[Finding]:
    """Published ports without MARK, fwmarks without a load-balancer service."""
    out: list[Finding] = []
    marks = model.marks()
    for pp in model.published_ports():
        sbox = _sbox_of(model.nodes[pp.node], pp.to_addr)
        if sbox is None:
            out.append(Finding("info", "not-dumped", f"ingress_sbox of {pp.node} not dumped (published {pp.proto}/"
                               f"{pp.port})", pp.node))
            continue
        if any(m.node == pp.node and m.namespace == sbox.name and m.port == pp.to_port and m.proto in (None, pp.proto)
               for m in marks):
            continue
        dumped = sbox.has_table("mangle") or any(" " in t for t in sbox.tables())
        out.append(Finding("error" if dumped else "info", "no-mark" if dumped else "not-dumped",
                           f"published port {pp.proto}/{pp.port} has no MARK rule in {sbox.name} mangle "
                           f"PREROUTING on {pp.node}" if dumped else
                           f"mangle table of {pp.node}/{sbox.name} not dumped", pp.node, sbox.name, pp.rule.text))
    for m in marks:
        ns = model.nodes[m.node].namespaces[m.namespace]
        if not any(s.fwmark == m.fwmark for s in ns.lb_services()) and ns.has_lb_dump():
            out.append(Finding("error", "no-lb-service", f"fwmark {m.fwmark:#x} ({m.fwmark}) has no IPVS/nft service "
                               f"in {m.namespace} on {m.node}", m.node, m.namespace, m.rule.text))
    return out


def _check_balancers(model: MeshModel) -> list[Finding]:
    """Backends no fdb/neighbour entry reaches; balancing namespaces without SNAT."""
    out: list[Finding] = []
    for s in model.lb_services():
        for b in s.backends:
            if reach(model, s.node, b.addr) is None:
                ov = _overlay_ns(model, s.node, b.addr)
                out.append(Finding("error", "backend-unreachable", _unreachable_msg(b.addr, s, ov), s.node, ov))
        ns = model.nodes[s.node].namespaces[s.namespace]
        if ns.has_table("nat") and not any(r.target in ("SNAT", "MASQUERADE") for r in ns.rules()):
            out.append(Finding("error", "no-snat", f"{s.namespace} on {s.node} balances {s.label()} but has no SNAT "
                               "rule in nat POSTROUTING", s.node, s.namespace))
    return out


def _check_vnis(model: MeshModel) -> list[Finding]:
    """One overlay namespace with different VNIs on different nodes, or a VNI docker does not report."""
    out: list[Finding] = []
    by_ns: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for o in model.overlays():
        by_ns[o.namespace][o.vni].append(o.node)
    for ns_name, vnis in by_ns.items():
        if len(vnis) > 1:
            detail = "; ".join(f"VNI {v} on {', '.join(nodes)}" for v, nodes in sorted(vnis.items()))
            out.append(Finding("error", "vni-mismatch", f"overlay {ns_name}: {detail}", None, ns_name))
    for o in model.overlays():
        netid = o.namespace.split("-", 1)[-1]
        for net in model.nodes[o.node].networks:
            if net.id.startswith(netid) and net.vnis and o.vni not in net.vnis:
                out.append(Finding("error", "vni-mismatch", f"{o.node}/{o.namespace} vxlan VNI {o.vni} but docker "
                                   f"network {net.name} says {net.vnis}", o.node, o.namespace))
    return out


def _check_redirects(model: MeshModel) -> list[Finding]:
    """Tasks behind a published port without the REDIRECT to their target port."""
    expected = _redirect_expected(model)
    ingress_backends = {b.addr for s in model.lb_services()
                        if model.nodes[s.node].namespaces[s.namespace].role == Role.INGRESS_SBOX for b in s.backends}
    out: list[Finding] = []
    for ns in model.namespaces(Role.TASK):
        if not ns.has_table("nat") or not any(ns.has_address(a) for a in ingress_backends):
            continue  # not behind a published port (or no ingress LB dumped): no REDIRECT expected
        if not any(r.target in ("REDIRECT", "DNAT") for r in ns.rules("nat", "PREROUTING")):
            out.append(Finding("error" if expected else "warning", "no-redirect",
                               f"task {ns.name} on {ns.node} has no REDIRECT in nat PREROUTING", ns.node, ns.name))
    return out


def _check_fwmarks_and_unparsed(model: MeshModel) -> list[Finding]:
    """fwmarks differing across nodes for one published port (info), lines no parser understood (info)."""
    out: list[Finding] = []
    by_port: dict[tuple[str | None, int | None], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for m in model.marks():
        if m.port is not None and model.nodes[m.node].namespaces[m.namespace].role == Role.INGRESS_SBOX:
            by_port[(m.proto, m.port)][m.fwmark].append(m.node)
    for (pr, p), fw in by_port.items():
        if len(fw) > 1:
            detail = "; ".join(f"{v:#x} on {', '.join(nodes)}" for v, nodes in sorted(fw.items()))
            out.append(Finding("info", "fwmark-differs", f"{pr or 'any'}/{p} carries different fwmarks across nodes "
                               f"(allowed): {detail}"))
    counts: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for node_name, ns_name, origin, line in model.unparsed():
        counts[(node_name, ns_name, origin)].append(line)
    for (node_name, ns_name, origin), lines in counts.items():
        first = lines[0].strip()[:80]
        out.append(Finding("info", "unparsed", f"{len(lines)} line(s) not understood in {origin}: {first!r}",
                           node_name, ns_name or None))
    return out


def check(model: MeshModel) -> list[Finding]:
    """Inconsistencies of the whole model: published port without MARK, fwmark without LB service,
    unreachable backends, VNI mismatches, tasks without REDIRECT, SNAT missing, fwmarks differing
    across nodes (info), unparsed dump lines (info)."""
    fwmarks_unparsed = _check_fwmarks_and_unparsed(model)
    n_fw = sum(1 for f in fwmarks_unparsed if f.code == "fwmark-differs")
    return (_check_marks(model) + _check_balancers(model) + _check_vnis(model) + _check_redirects(model)
            + fwmarks_unparsed[:n_fw] + routing_mesh_findings(model) + fwmarks_unparsed[n_fw:])
