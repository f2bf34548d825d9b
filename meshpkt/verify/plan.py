"""Pure planning: lab status + expected rules (the lab's plan) + the rule model of what is really
installed (dumps) -> the checks (one per rule on an expected path) and the probes that exercise them.

Paths covered (``/work/shared/swarm-mesh-reference.md``):

- ingress, per node and published port: client SYN to ``NODE:P`` -> host nat DOCKER-INGRESS DNAT ->
  ingress_sbox mangle PREROUTING MARK -> LB (IPVS FWM or its nft emulation) -> nat POSTROUTING SNAT ->
  overlay fdb entry -> underlay link -> task nat PREROUTING REDIRECT (one SYN per backend, so round
  robin reaches each of them);
- an unpublished port per node, which host nat DOCKER-INGRESS must RETURN (not DNAT);
- internal services, per user network, node and VIP service: a SYN from a task on that node to the VIP
  -> lb_<net> VIP MARK -> LB -> SNAT -> fdb -> link;
- task server liveness: a SYN straight to each backend's target port from its node's LB namespace;
- MTU: real TCP connections from the client sending full-size segments (DF), one per backend per node.

Nothing here touches the kernel: frames are built with scapy into bytes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.rules.model import MeshModel, Namespace
from meshpkt.rules.types import Rule, parse_mac
from meshpkt.verify.types import (
    Check,
    DnatParams,
    FdbParams,
    LbParams,
    LinkParams,
    MarkParams,
    MtuParams,
    Probe,
    RedirectParams,
    ServerParams,
    SnatParams,
    UnpublishedParams,
    VipmarkParams,
    XfrmParams,
)

XFRM_MARK = 0xD0C4E3
_FRESH = random.Random()

KIND_ORDER = ["server", "link", "fdb", "dnat", "hostdnat", "unpublished", "mark", "vipmark", "lb", "snat", "redirect", "xfrm",
              "dnsrr", "mtu"]
"""Judging order: every check's prerequisites come earlier."""

MTU_PAYLOAD = 4000
"""Bytes each MTU connection sends (at least two full-size segments)."""


@dataclass
class VerifyPlan:
    """The checks (rows) and the probes to send; ``points`` are the capture points needed
    (``{"point", "netns", "iface"}``)."""

    checks: list[Check]
    probes: list[Probe]
    points: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def probe(self, pid: str) -> Probe:
        """The probe called ``pid``."""
        for p in self.probes:
            if p.id == pid:
                return p
        raise KeyError(pid)


@dataclass
class _Entry:
    """An entry node of the ingress path: its namespaces and the capture points around ingress_sbox."""

    node: str
    host: dict[str, Any]
    sbox: dict[str, Any]
    nd: dict[str, Any]
    gw: str
    h_eth0: str
    sb_eth1: str
    sb_eth0: str


def _ip(cidr: str) -> str:
    return cidr.split("/", 1)[0]


class LabView:
    """Read-only navigation of a lab status document (see :mod:`meshpkt.lab.status`)."""

    def __init__(self, status: dict[str, Any], existing: Iterable[str] | None = None) -> None:
        self.status = status
        self.name: str = status["name"]
        self.prefix: str = status["prefix"]
        self.nodes: dict[str, dict[str, Any]] = {n["name"]: n for n in status["nodes"]}
        self.node_names = [n["name"] for n in status["nodes"]]
        self.node_by_ip = {n["underlay_ip"]: n["name"] for n in status["nodes"]}
        self.networks = {n["name"]: n for n in status["networks"]}
        self.services = list(status["services"])
        all_ns = list(status.get("underlay_namespaces", [])) + [ns for n in status["nodes"] for ns in n["namespaces"]]
        self.existing = set(existing) if existing is not None else {ns["name"] for ns in all_ns}
        self.ns_node: dict[str, str] = {}
        for nd in status["nodes"]:
            for ns in nd["namespaces"]:
                self.ns_node[ns["name"]] = nd["name"]
        self.client = status["clients"][0]
        self.port = int(status.get("data_path_port") or 4789)

    # -------------------------------------------------------------- namespaces
    def ns(self, node: str, role: str, network: str | None = None) -> dict[str, Any] | None:
        """The namespace of ``node`` with ``role`` (and ``network``), or None."""
        for ns in self.nodes[node]["namespaces"]:
            if ns["role"] == role and (network is None or ns["network"] == network):
                return ns
        return None

    def task(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """(node, namespace) of the task ``name``."""
        for nd in self.status["nodes"]:
            for ns in nd["namespaces"]:
                if ns["role"] == "task" and ns["task"] and ns["task"]["name"] == name:
                    return nd["name"], ns
        return None

    def alive(self, ns: dict[str, Any] | None) -> bool:
        """True when the namespace exists now."""
        return ns is not None and ns["name"] in self.existing

    @staticmethod
    def iface(ns: dict[str, Any], name: str) -> dict[str, Any] | None:
        """Interface ``name`` of ``ns``."""
        return next((i for i in ns["interfaces"] if i["name"] == name), None)

    @staticmethod
    def iface_on(ns: dict[str, Any], network: str) -> dict[str, Any] | None:
        """The interface of ``ns`` attached to docker network ``network`` (with an address)."""
        return next((i for i in ns["interfaces"] if i["network"] == network and i["addresses"]), None)

    def point(self, node: str, ns: dict[str, Any], iface: str) -> str:
        """Capture point name ``<node>.<short>.<iface>``."""
        return f"{node}.{ns['short']}.{iface}"

    def model_ns_name(self, node: str, netns: str) -> str:
        """The namespace name ``collect --lab`` gives ``netns`` (``host``, ``ingress_sbox``, cid12...)."""
        head = f"{self.prefix}{node}"
        if netns == head:
            return "host"
        return netns[len(head) + 1:] if netns.startswith(head + "-") else netns

    def sbox_gw_ip(self, node: str) -> str | None:
        """ingress_sbox's docker_gwbridge address on ``node`` (the DNAT target)."""
        sb = self.ns(node, "ingress_sbox")
        i = self.iface_on(sb, "docker_gwbridge") if sb else None
        return _ip(i["addresses"][0]) if i else None

    def vtep(self, node: str) -> str:
        """Underlay address of ``node``."""
        return str(self.nodes[node]["underlay_ip"])


# ---------------------------------------------------------------------- model lookups


def _model_ns(model: MeshModel, view: LabView, node: str, netns: str) -> Namespace | None:
    n = model.nodes.get(node)
    if n is None:
        return None
    return n.namespaces.get(view.model_ns_name(node, netns))


def _expected_text(args: list[str], chain: str) -> str:
    return " ".join(["-A", chain, *args])


def _plan_rules(lab_plan: Any, netns: str, tag: str) -> list[Any]:
    try:
        ns = lab_plan.ns(netns)
    except KeyError:
        return []
    return [r for r in ns.rules if r.tag == tag]


def _counter_key(netns: str, r: Rule) -> tuple[str, str, str, str] | None:
    if r.source == "nft" or r.pkts is None and r.source != "iptables-save":
        return None
    return (netns, r.table, r.chain, r.text)


# ---------------------------------------------------------------------- probes


class _Ports:
    """Source ports that are not reused soon: each call continues where the last run of this process stopped
    (from a random start), cycling through ``lo..hi``. A 5-tuple repeated within conntrack's timeouts (an
    unanswered SYN stays 120 s, a UDP flow 30-120 s) would follow the old entry instead of the rules."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.cur = _FRESH.randrange(lo, hi)

    def take(self) -> int:
        self.cur = self.cur + 1 if self.cur < self.hi else self.lo
        return self.cur


_TCP_PORTS = _Ports(20001, 32000)
_UDP_PORTS = _Ports(33000, 59999)


class _Ids:
    def __init__(self, rng: random.Random, port_base: int | None) -> None:
        self.rng = rng
        self.n = 0
        self.pinned = port_base is not None
        self.port = port_base or 0
        self.seqs: set[int] = set()

    def next(self, prefix: str = "p") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def sport(self, proto: str = "tcp") -> int:
        """The next source port: from ``port_base`` when pinned (TCP), else never reused soon (:class:`_Ports`)."""
        if proto == "udp":
            return _UDP_PORTS.take()
        if not self.pinned:
            return _TCP_PORTS.take()
        self.port += 1
        if self.port > 32000:
            self.port = 20001
        return self.port

    def seq(self) -> int:
        while True:
            s = self.rng.randrange(1 << 20, (1 << 32) - (1 << 20))
            if s not in self.seqs and s + 1 not in self.seqs and s - 1 not in self.seqs:
                self.seqs.add(s)
                return s


def _syn_frame(src_mac: str, dst_mac: str, src: str, sport: int, dst: str, dport: int, seq: int, mss: int,
               ip_id: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    pkt = (Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=64, id=ip_id, flags="DF")
           / TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240,
                 options=[("MSS", mss), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]))
    return bytes(pkt)


def _udp_frame(src_mac: str, dst_mac: str, src: str, sport: int, dst: str, dport: int, payload: bytes,
               ip_id: int) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=64, id=ip_id, flags="DF")
                 / UDP(sport=sport, dport=dport) / payload)


def udp_key(payload: bytes) -> int:
    """How a UDP probe is recognised on every hop: the low 32 bits of the packet table's ``payload_hash``."""
    from meshpkt.decode.slow import HASH_BYTES, fnv1a64

    return fnv1a64(payload[:HASH_BYTES]) & 0xFFFFFFFF


# ---------------------------------------------------------------------- the planner


class _Planner:
    def __init__(self, status: dict[str, Any], lab_plan: Any, model: MeshModel, existing: Iterable[str] | None,
                 rng: random.Random, port_base: int | None, mtu_payload: int,
                 xfrm: dict[str, dict[str, Any]] | None = None) -> None:
        self.v = LabView(status, existing)
        self.xfrm_state = xfrm
        self.plan = lab_plan
        self.model = model
        self.ids = _Ids(rng, port_base)
        self.rng = rng
        self.lb_impl = status.get("lb", "nftables")
        self.mtu_payload = mtu_payload
        self.checks: dict[str, Check] = {}
        self.probes: list[Probe] = []
        self.notes: list[str] = []

    # -------------------------------------------------------------- helpers
    def add(self, c: Check) -> Check:
        old = self.checks.get(c.id)
        if old is not None:
            for pid, pre in c.probes.items():
                old.probes.setdefault(pid, pre)
            return old
        self.checks[c.id] = c
        return c

    def frame_probe(self, group: str, netns: str, iface: str, src_mac: str, dst_mac: str, src: str, dst: str,
                    dport: int, mss: int, proto: str = "tcp", **kw: Any) -> Probe:
        sport, ip_id = self.ids.sport(proto), self.rng.randrange(1, 65535)
        if proto == "udp":
            payload = f"meshpkt-verify {self.rng.getrandbits(64):016x}".encode()
            seq = udp_key(payload)
            frame = _udp_frame(src_mac, dst_mac, src, sport, dst, dport, payload, ip_id)
        else:
            seq = self.ids.seq()
            frame = _syn_frame(src_mac, dst_mac, src, sport, dst, dport, seq, mss, ip_id)
        p = Probe(id=self.ids.next(), kind="frame", group=group, netns=netns, iface=iface, src=src, sport=sport,
                  dst=dst, dport=dport, seq=seq, frame=frame, proto=proto, **kw)
        self.probes.append(p)
        return p

    def fdb_id(self, node: str, network: str, mac: str) -> str | None:
        ov = self.v.ns(node, "overlay", network)
        return f"fdb:{node}/{ov['short']}:{mac}" if ov else None

    def link_id(self, a: str, b: str) -> str:
        return f"link:{a}>{b}"

    def path_prereqs(self, entry: str, lb_ns: dict[str, Any], network: str, task: str,
                     back: bool = False) -> list[str]:
        """Checks a probe balanced on ``entry`` to ``task`` depends on beyond its LB namespace."""
        t = self.v.task(task)
        if t is None:
            return []
        tnode, tns = t
        pre = [f"server:{task}:{network}"]
        if tnode != entry:
            pre.append(self.link_id(entry, tnode))
            tif = LabView.iface_on(tns, network)
            tmac = tif["mac"] if tif else None
            fid = self.fdb_id(entry, network, tmac) if tmac else None
            if fid:
                pre.append(fid)
            if back:
                pre.append(self.link_id(tnode, entry))
                lbif = LabView.iface_on(lb_ns, network)
                bid = self.fdb_id(tnode, network, lbif["mac"]) if lbif else None
                if bid:
                    pre.append(bid)
        return pre

    def backends(self, svc: dict[str, Any], network: str) -> list[tuple[str, str, str]]:
        """(task, ip, mac) of every backend of ``svc`` on ``network`` (alive or not)."""
        out = []
        for b in svc["backends"]:
            ip = (b.get("ips") or {}).get(network)
            mac = (b.get("macs") or {}).get(network)
            if ip and mac:
                out.append((b["task"], ip, mac))
        return out

    def lb_of(self, node: str, ns_name: str, fwmark: int) -> Any | None:
        mns = self.v.model_ns_name(node, ns_name)
        for s in self.model.lb_services():
            if s.node == node and s.namespace == mns and s.fwmark == fwmark:
                return s
        return None

    # -------------------------------------------------------------- ingress
    def ingress(self) -> None:
        v = self.v
        for svc in v.services:
            pubs = [p for p in svc["published"] if p.get("mode", "ingress") == "ingress"]
            if not pubs:
                continue
            bks = self.backends(svc, "ingress")
            if not bks:
                self.notes.append(f"service {svc['name']} has no backend on ingress: ingress paths not probed")
                continue
            for node in v.node_names:
                entry = self.entry(node)
                if entry is None:
                    continue
                for pub in pubs:
                    self.ingress_port(svc, entry, pub, bks)
                tcp = [p for p in pubs if p["protocol"] == "tcp"]
                if tcp:
                    self.mtu_checks(svc, entry, int(tcp[0]["published"]), bks)

    def entry(self, node: str) -> _Entry | None:
        """The namespaces and capture points of ``node`` an ingress probe crosses (None: not probed)."""
        v = self.v
        host, sbox = v.ns(node, "host"), v.ns(node, "ingress_sbox")
        if host is None or sbox is None or not v.alive(host) or not v.alive(sbox):
            self.notes.append(f"{node}: host or ingress_sbox namespace missing, ingress not probed")
            return None
        eth1 = (LabView.iface_on(sbox, "docker_gwbridge") or {"name": "eth1"})["name"]
        ovl = LabView.iface_on(sbox, "ingress") or {"name": "eth0", "mac": ""}
        return _Entry(node=node, host=host, sbox=sbox, nd=v.nodes[node], gw=v.sbox_gw_ip(node) or "",
                      h_eth0=v.point(node, host, "eth0"), sb_eth1=v.point(node, sbox, eth1),
                      sb_eth0=v.point(node, sbox, ovl["name"]))

    def ingress_port(self, svc: dict[str, Any], e: _Entry, pub: dict[str, Any], bks: list[tuple[str, str, str]]) -> None:
        """Probes to ``NODE:P`` (one per backend) and the dnat, mark, lb, snat and redirect checks they prove."""
        v, node, P, proto = self.v, e.node, int(pub["published"]), str(pub["protocol"])
        client = v.client
        fwmark = int(svc["fwmarks"].get(node, {}).get("ingress", 0))
        probes = [self.frame_probe("ingress", client["netns"], "eth0", client["mac"], e.nd["mac"], client["ip"],
                                   e.nd["underlay_ip"], P, 1460, entry=node, target=svc["name"], network="ingress",
                                   proto=proto)
                  for _ in bks]
        pids = [p.id for p in probes]
        sfx = "" if proto == "tcp" else f"/{proto}"
        dnat = self.dnat_check(e, P, proto, {pid: [] for pid in pids})
        mark = self.mark_check(svc, e, P, proto, fwmark, {pid: [dnat.id] for pid in pids})
        lb = self.lb_check(node, e.sbox, "ingress", fwmark, bks, {pid: [mark.id] for pid in pids},
                           before=(e.sb_eth1, e.gw, P), after_point=e.sb_eth0, proto=proto)
        snat = self.snat_check(node, e.sbox, "ingress", {pid: [lb.id] for pid in pids},
                               before=(e.sb_eth1, e.gw, P), after_point=e.sb_eth0, proto=proto)
        for task, ip, _mac in bks:  # any entry node may reach any task
            pre = [snat.id] + self.path_prereqs(node, e.sbox, "ingress", task)
            self.redirect_check(svc, task, ip, P, {pid: pre for pid in pids}, proto, sfx)

    def dnat_check(self, e: _Entry, P: int, proto: str, probes: dict[str, list[str]]) -> Check:
        """host nat DOCKER-INGRESS DNAT of ``P/proto``."""
        host, node = e.host, e.node
        pp = [x for x in self.model.published_ports() if x.node == node and x.port == P and x.namespace == "host"
              and x.proto == proto]
        sfx = "" if proto == "tcp" else f"/{proto}"
        exp = _plan_rules(self.plan, host["name"], f"dnat:{P}{sfx}")
        r = pp[0].rule if pp else None
        return self.add(Check(
            id=f"dnat:{node}:{P}{sfx}", kind="dnat", node=node, namespace="host", netns=host["name"],
            where=f"nat {r.chain if r else (exp[0].chain if exp else 'DOCKER-INGRESS')}",
            rule=r.text if r else (_expected_text(exp[0].args, exp[0].chain) if exp else
                                   f"-A DOCKER-INGRESS -p {proto} -m {proto} --dport {P} -j DNAT "
                                   f"--to-destination {e.gw}:{P}"),
            present=r is not None, counter_key=_counter_key(host["name"], r) if r else None, probes=probes,
            params=DnatParams(before_point=e.h_eth0, after_point=e.sb_eth1, dst=e.nd["underlay_ip"], to=e.gw,
                              port=P, proto=proto)))

    def mark_check(self, svc: dict[str, Any], e: _Entry, P: int, proto: str, fwmark: int,
                   probes: dict[str, list[str]]) -> Check:
        """ingress_sbox mangle PREROUTING MARK of ``P/proto``."""
        node, sbox = e.node, e.sbox
        mk = [m for m in self.model.marks() if m.node == node and m.namespace == "ingress_sbox" and m.port == P
              and m.proto in (proto, None)]
        exp = [r for r in _plan_rules(self.plan, sbox["name"], f"mark:{svc['name']}") if str(P) in r.args
               and proto in r.args]
        r = mk[0].rule if mk else None
        sfx = "" if proto == "tcp" else f"/{proto}"
        return self.add(Check(
            id=f"mark:{node}:{P}{sfx}", kind="mark", node=node, namespace="ingress_sbox", netns=sbox["name"],
            where=f"{r.table} {r.chain}" if r else "mangle PREROUTING",
            rule=r.text if r else (_expected_text(exp[0].args, exp[0].chain) if exp else
                                   f"-A PREROUTING -p {proto} -m {proto} --dport {P} -j MARK --set-xmark "
                                   f"{fwmark:#x}/0xffffffff"),
            present=r is not None, counter_key=_counter_key(sbox["name"], r) if r else None, probes=probes,
            params=MarkParams(before_point=e.sb_eth1, after_point=e.sb_eth0, dst=e.gw, to=e.gw, port=P,
                              fwmark=fwmark, proto=proto,
                              lb_present=self.lb_of(node, sbox["name"], fwmark) is not None)))

    def mtu_checks(self, svc: dict[str, Any], e: _Entry, P0: int, bks: list[tuple[str, str, str]]) -> None:
        """MTU: real connections from the client, one per backend (round robin), to the first TCP port."""
        v, node, client = self.v, e.node, self.v.client
        cns = next((ns for ns in v.status.get("underlay_namespaces", []) if ns["name"] == client["netns"]), None)
        cif = LabView.iface(cns, "eth0") if cns else None
        client_mtu = int(cif["mtu"]) if cif else 1500
        conns = []
        for _ in bks:
            p = Probe(id=self.ids.next("m"), kind="conn", group="mtu", netns=client["netns"], iface=None,
                      src=client["ip"], sport=self.ids.sport(), dst=e.nd["underlay_ip"], dport=P0,
                      size=self.mtu_payload, entry=node, target=svc["name"], network="ingress")
            self.probes.append(p)
            conns.append(p)
        for task, ip, _mac in bks:
            t = v.task(task)
            pre = [f"snat:{node}/ingress_sbox", f"redirect:{task}:{P0}"]
            pre += self.path_prereqs(node, e.sbox, "ingress", task, back=True)
            path = self.mtu_path(node, e.sbox, t, e.h_eth0, e.sb_eth1, e.sb_eth0)
            self.add(Check(
                id=f"mtu:{node}>{task}", kind="mtu", node=node, namespace="path",
                netns=f"{v.prefix}underlay", where="mtu",
                rule=f"{client['ip']} -> {e.nd['underlay_ip']}:{P0} -> {task} {ip}: full-size segments (DF) "
                     f"through VXLAN (overlay mtu {v.networks['ingress'].get('mtu')} + 50)",
                present=None, probes={p.id: pre for p in conns},
                params=MtuParams(task=task, ip=ip, path=path, sbox_point=e.sb_eth0,
                                 client_point=v.point("client", {"short": "host"}, "eth0"),
                                 client_mss=client_mtu - 40)))

    def mtu_path(self, node: str, sbox: dict[str, Any], t: tuple[str, dict[str, Any]] | None, h_eth0: str,
                 sb_eth1: str, sb_eth0: str) -> list[list[Any]]:
        """[[point, encapsulated?], ...] a client->node->task data segment crosses."""
        v = self.v
        path: list[list[Any]] = [["client.host.eth0", False], [h_eth0, False], [sb_eth1, False], [sb_eth0, False]]
        if t is None:
            return path
        tnode, tns = t
        ov = v.ns(node, "overlay", "ingress")
        if tnode != node:
            if ov:
                path.append([v.point(node, ov, "vxlan0"), False])
            path.append([h_eth0, True])
            path.append([v.point(tnode, v.ns(tnode, "host") or {"short": "host"}, "eth0"), True])
            ov2 = v.ns(tnode, "overlay", "ingress")
            if ov2:
                path.append([v.point(tnode, ov2, "vxlan0"), False])
        elif ov:
            path.append([v.point(node, ov, "br0"), False])
        tif = LabView.iface_on(tns, "ingress")
        if tif:
            path.append([v.point(tnode, tns, tif["name"]), False])
        return path

    def lb_check(self, node: str, lbns: dict[str, Any], network: str, fwmark: int, bks: list[tuple[str, str, str]],
                 probes: dict[str, list[str]], before: tuple[str, str, int], after_point: str,
                 proto: str = "tcp") -> Check:
        v = self.v
        s = self.lb_of(node, lbns["name"], fwmark)
        exp_backends = [ip for _t, ip, _m in bks]
        if s is not None:
            where = "ipvs" if s.kind == "ipvs" else (f"nft {s.rule.table} {s.rule.chain}"
                                                     if s.rule else "nft")
            text = s.text.splitlines()[0] if s.text else s.label()
            model_backends = [str(b.addr) for b in s.backends]
        else:
            where = "ipvs" if self.lb_impl == "ipvs" else "nft ip meshpkt_ipvs fwm_lb"
            text = f"FWM {fwmark} rr -> {', '.join(exp_backends)}"
            model_backends = []
        return self.add(Check(
            id=f"lb:{node}/{lbns['short']}:{fwmark}", kind="lb", node=node, namespace=lbns["short"],
            netns=lbns["name"], where=where, rule=text, present=s is not None, counter_key=None, probes=probes,
            params=LbParams(before_point=before[0], dst=before[1], port=before[2], after_point=after_point,
                            backends=model_backends or exp_backends, expected_backends=exp_backends,
                            fwmark=fwmark, label=s.label() if s else f"FWM {fwmark} rr", node_ip=v.vtep(node),
                            proto=proto)))

    def snat_check(self, node: str, lbns: dict[str, Any], network: str, probes: dict[str, list[str]],
                   before: tuple[str, str, int], after_point: str, proto: str = "tcp") -> Check:
        mns = self.v.model_ns_name(node, lbns["name"])
        sn = [x for x in self.model.snat_rules() if x.node == node and x.namespace == mns]
        exp = _plan_rules(self.plan, lbns["name"], "snat")
        ovl = LabView.iface_on(lbns, network)
        want = _ip(ovl["addresses"][0]) if ovl else ""
        r = sn[0].rule if sn else None
        to = str(sn[0].to_addr) if sn and sn[0].to_addr else want
        c = self.add(Check(
            id=f"snat:{node}/{lbns['short']}", kind="snat", node=node, namespace=lbns["short"], netns=lbns["name"],
            where=f"{r.table} {r.chain}" if r else "nat POSTROUTING",
            rule=r.text if r else (_expected_text(exp[0].args, exp[0].chain) if exp else
                                   f"-A POSTROUTING -d {self.v.networks[network]['subnet']} -j SNAT --to-source {want}"),
            present=r is not None, counter_key=_counter_key(lbns["name"], r) if r else None, probes=probes,
            params=SnatParams(before_point=before[0], dst=before[1], port=before[2], after_point=after_point,
                              to=to, subnet=self.v.networks[network]["subnet"], proto=proto)))
        return c

    def redirect_check(self, svc: dict[str, Any], task: str, ip: str, P: int, probes: dict[str, list[str]],
                       proto: str = "tcp", sfx: str = "") -> None:
        v = self.v
        t = v.task(task)
        if t is None:
            return
        tnode, tns = t
        alive = v.alive(tns)
        mns = v.model_ns_name(tnode, tns["name"])
        rd = [x for x in self.model.redirects() if x.node == tnode and x.namespace == mns and x.port == P
              and x.proto in (proto, None)]
        exp = _plan_rules(self.plan, tns["name"], f"redirect:{P}{sfx}")
        target = next((int(p["target"]) for p in svc["published"] if int(p["published"]) == P
                       and p["protocol"] == proto), P)
        r = rd[0].rule if rd else None
        tif = LabView.iface_on(tns, "ingress")
        self.add(Check(
            id=f"redirect:{task}:{P}{sfx}", kind="redirect", node=tnode, namespace=task, netns=tns["name"],
            where=f"{r.table} {r.chain}" if r else "nat PREROUTING",
            rule=r.text if r else (_expected_text(exp[0].args, exp[0].chain) if exp else
                                   f"-A PREROUTING -d {ip}/32 -p {proto} -m {proto} --dport {P} -j REDIRECT "
                                   f"--to-ports {target}"),
            present=(r is not None) if alive else None,
            counter_key=_counter_key(tns["name"], r) if r else None, probes=probes,
            params=RedirectParams(point=v.point(tnode, tns, tif["name"]) if tif else "", ip=ip, port=P,
                                  target=target, alive=alive, proto=proto)))

    # -------------------------------------------------------------- unpublished port
    def unpublished(self) -> None:
        v = self.v
        published = {int(p["published"]) for s in v.services for p in s["published"]}
        cands = sorted({p + 1 for p in published} | {19999})
        port = next(p for p in cands if p not in published and p < 65536)
        for node in v.node_names:
            host, sbox = v.ns(node, "host"), v.ns(node, "ingress_sbox")
            if host is None or not v.alive(host):
                continue
            nd = v.nodes[node]
            p = self.frame_probe("unpublished", v.client["netns"], "eth0", v.client["mac"], nd["mac"], v.client["ip"],
                                 nd["underlay_ip"], port, 1460, entry=node)
            hns = _model_ns(self.model, v, node, host["name"])
            ret = [r for r in (hns.rules("nat", "DOCKER-INGRESS") if hns else []) if r.target == "RETURN"]
            dn = [r for r in (hns.rules("nat") if hns else []) if r.target == "DNAT" and r.dport == port]
            r = ret[-1] if ret else None
            sb_eth1 = v.point(node, sbox, "eth1") if sbox else ""
            self.add(Check(
                id=f"unpublished:{node}:{port}", kind="unpublished", node=node, namespace="host", netns=host["name"],
                where="nat DOCKER-INGRESS", rule=r.text if r else "-A DOCKER-INGRESS -j RETURN",
                present=r is not None and not dn, counter_key=_counter_key(host["name"], r) if r else None,
                probes={p.id: []},
                params=UnpublishedParams(entry_point=v.point(node, host, "eth0"), after_point=sb_eth1,
                                         dst=nd["underlay_ip"], port=port, dnat=dn[0].text if dn else None)))

    # -------------------------------------------------------------- internal services (VIP)
    def vips(self) -> None:
        v = self.v
        for net, netd in v.networks.items():
            if net in ("ingress",) or netd.get("driver") != "overlay":
                continue
            svcs = [s for s in v.services if s["mode"] == "vip" and net in s["vips"]]
            for node in v.node_names:
                lbns = v.ns(node, "lb", net)
                if lbns is None or not v.alive(lbns):
                    continue
                lbif = LabView.iface_on(lbns, net)
                if lbif is None:
                    continue
                src = None
                for ns in v.nodes[node]["namespaces"]:
                    if ns["role"] == "task" and v.alive(ns) and LabView.iface_on(ns, net):
                        src = ns
                        break
                if src is None:
                    self.notes.append(f"{node}: no live task on {net} to send VIP probes from")
                    continue
                for svc in svcs:
                    for proto, port in _vip_ports(svc):
                        self.vip_probes(node, lbns, lbif, src, svc, net, proto, port)

    def vip_probes(self, node: str, lbns: dict[str, Any], lbif: dict[str, Any], src: dict[str, Any],
                   svc: dict[str, Any], net: str, proto: str, port: int) -> None:
        """One probe per backend from a task on ``node`` to the service's VIP (``proto``/``port``), proving the
        VIP MARK, the load balancer and the SNAT of ``lb_<net>``."""
        v = self.v
        bks = self.backends(svc, net)
        if not bks:
            return
        sif = LabView.iface_on(src, net) or {}
        lb_eth0 = v.point(node, lbns, lbif["name"])
        vip = svc["vips"][net]
        fwmark = int(svc["fwmarks"].get(node, {}).get(net, 0))
        probes = [self.frame_probe("vip", src["name"], sif["name"], sif["mac"], lbif["mac"], _ip(sif["addresses"][0]),
                                   vip, port, 1410, entry=node, target=svc["name"], network=net, proto=proto)
                  for _ in bks]
        pids = [p.id for p in probes]
        vm = self.vipmark_check(node, lbns, svc, vip, fwmark, {pid: [] for pid in pids}, lb_eth0, port)
        lb = self.lb_check(node, lbns, net, fwmark, bks, {pid: [vm.id] for pid in pids},
                           before=(lb_eth0, vip, port), after_point=lb_eth0, proto=proto)
        self.snat_check(node, lbns, net, {pid: [lb.id] for pid in pids}, before=(lb_eth0, vip, port),
                        after_point=lb_eth0, proto=proto)

    def vipmark_check(self, node: str, lbns: dict[str, Any], svc: dict[str, Any], vip: str, fwmark: int,
                      probes: dict[str, list[str]], point: str, port: int) -> Check:
        mns = self.v.model_ns_name(node, lbns["name"])
        ms = [m for m in self.model.marks() if m.node == node and m.namespace == mns and m.vip is not None
              and str(m.vip) == vip]
        want_nft = self.lb_impl == "nftables"
        acting = [m for m in ms if (m.rule.source == "nft") == want_nft]
        r = acting[0].rule if acting else None
        if r is not None:
            where = f"nft {r.table} {r.chain}" if r.source == "nft" else f"{r.table} {r.chain}"
            text = r.text
        elif want_nft:
            where, text = "nft ip meshpkt_ipvs fwm_vip", f"ip daddr {vip} meta mark set {fwmark:#x}"
        else:
            exp = _plan_rules(self.plan, lbns["name"], f"vipmark:{svc['name']}")
            where = "mangle INPUT"
            text = (_expected_text(exp[0].args, exp[0].chain) if exp else
                    f"-A INPUT -d {vip}/32 -j MARK --set-xmark {fwmark:#x}/0xffffffff")
        return self.add(Check(
            id=f"vipmark:{node}/{lbns['short']}:{vip}", kind="vipmark", node=node, namespace=lbns["short"],
            netns=lbns["name"], where=where, rule=text, present=r is not None,
            counter_key=_counter_key(lbns["name"], r) if r else None, probes=probes,
            params=VipmarkParams(before_point=point, after_point=point, dst=vip, port=port, fwmark=fwmark,
                                 lb_present=self.lb_of(node, lbns["name"], fwmark) is not None)))

    # -------------------------------------------------------------- server liveness
    def servers(self) -> None:
        v = self.v
        for svc in v.services:
            nets = [n for n in svc["networks"] if v.networks.get(n, {}).get("driver") == "overlay"]
            for net in nets:
                if net != "ingress" and svc["mode"] != "vip":
                    continue
                proto, port = _server_port(svc, net)
                for task, ip, mac in self.backends(svc, net):
                    self.server_check(task, ip, mac, net, proto, port)

    def server_check(self, task: str, ip: str, mac: str, net: str, proto: str, port: int) -> None:
        """A probe straight to the task's listener from its node's load balancer namespace."""
        v = self.v
        t = v.task(task)
        if t is None:
            return
        tnode, tns = t
        lbns = v.ns(tnode, "ingress_sbox") if net == "ingress" else v.ns(tnode, "lb", net)
        if lbns is None or not v.alive(lbns):
            return
        lbif = LabView.iface_on(lbns, net)
        if lbif is None:
            return
        p = self.frame_probe("server", lbns["name"], lbif["name"], lbif["mac"], mac, _ip(lbif["addresses"][0]),
                             ip, port, 1410, entry=tnode, target=task, network=net, proto=proto)
        tif = LabView.iface_on(tns, net)
        stale = [f"{s.node}/{s.namespace} {s.label()}" for s in self.model.lb_services()
                 if any(str(b.addr) == ip for b in s.backends)]
        self.add(Check(
            id=f"server:{task}:{net}", kind="server", node=tnode, namespace=task, netns=tns["name"],
            where="server", rule=f"{proto} {ip}:{port} listener of {task} ({net})", present=None,
            probes={p.id: []},
            params=ServerParams(point=v.point(tnode, lbns, lbif["name"]), ip=ip, port=port,
                                task_point=v.point(tnode, tns, tif["name"]) if tif else "",
                                alive=v.alive(tns), lbs=stale, proto=proto)))

    # -------------------------------------------------------------- fdb entries and links
    def fdb_and_links(self) -> None:
        v = self.v
        for node in v.node_names:
            host = v.ns(node, "host")
            for ov in [ns for ns in v.nodes[node]["namespaces"] if ns["role"] == "overlay"]:
                if not v.alive(ov):
                    continue
                net = ov["network"]
                vni = int(v.networks[net]["vni"])
                try:
                    lines = self.plan.ns(ov["name"]).fdb
                except KeyError:
                    lines = []
                mov = _model_ns(self.model, v, node, ov["name"])
                peers = []
                for o in self.model.overlays():
                    if o.node == node and mov is not None and o.namespace == mov.name:
                        peers = o.peers
                for line in lines:
                    m = re.match(r"fdb add (\S+) dev (\S+) dst (\S+)", line)
                    if not m:
                        continue
                    mac, dev, dst = m.group(1), m.group(2), m.group(3)
                    raw = parse_mac(mac)
                    # Docker programs permanent entries; a learned one (vxlan learning) is not the rule
                    ent = next((e for e in peers if e.mac == raw and e.dst is not None and str(e.dst) == dst
                                and e.state in ("permanent", "static")), None)
                    learned = next((e for e in peers if e.mac == raw and e.dst is not None
                                    and e.state not in ("permanent", "static")), None)
                    self.add(Check(
                        id=f"fdb:{node}/{ov['short']}:{mac}", kind="fdb", node=node, namespace=ov["short"],
                        netns=ov["name"], where=f"fdb {dev}",
                        rule=ent.text if ent else f"{mac} dev {dev} dst {dst} self permanent",
                        present=ent is not None, probes={},
                        params=self.fdb_params(node, ov, dev, host, mac, dst, vni, net,
                                               learned.text if learned else None)))
        und = f"{v.prefix}underlay"
        for a in v.node_names:
            for b in v.node_names:
                if a == b:
                    continue
                ha, hb = v.ns(a, "host"), v.ns(b, "host")
                if ha is None or hb is None:
                    continue
                self.add(Check(
                    id=self.link_id(a, b), kind="link", node=a, namespace="underlay", netns=und, where="link",
                    rule=f"{v.vtep(a)} > {v.vtep(b)} udp/{v.port} (VXLAN {a} eth0 -> {b} eth0)", present=None,
                    probes={},
                    params=LinkParams(before_point=v.point(a, ha, "eth0"), after_point=v.point(b, hb, "eth0"),
                                      src=v.vtep(a), dst=v.vtep(b), peer=b)))

    def fdb_params(self, node: str, ov: dict[str, Any], dev: str, host: dict[str, Any] | None, mac: str, dst: str,
                   vni: int, net: str, learned: str | None) -> FdbParams:
        """Plain overlay: frames leave the node's eth0 in VXLAN to ``dst``; encrypted: they arrive at the
        peer's vxlan0 (ESP hides the VXLAN header on the underlay)."""
        v = self.v
        peer = v.node_by_ip.get(dst, dst)
        encrypted = bool(v.networks[net].get("encrypted"))
        after = v.point(node, host, "eth0") if host else ""
        if encrypted:
            pov = v.ns(peer, "overlay", net) if peer in v.nodes else None
            after = v.point(peer, pov, "vxlan0") if pov else ""
        return FdbParams(before_point=v.point(node, ov, dev), after_point=after, mac=mac, vtep=dst, vni=vni,
                         peer=peer, network=net, learned=learned, encrypted=encrypted,
                         out_point=v.point(node, host, "eth0") if host and encrypted else "")

    # -------------------------------------------------------------- host-mode ports
    def host_mode(self) -> None:
        """Host-mode ports: on each node running a task, a client probe to ``NODE:P`` must be DNATed by the
        host's nat DOCKER rule to the task's docker_gwbridge address and target port."""
        v = self.v
        for svc in v.services:
            for pub in [p for p in svc["published"] if p.get("mode") == "host"]:
                for b in svc["backends"]:
                    t = v.task(b["task"])
                    host = v.ns(b["node"], "host")
                    gw = LabView.iface_on(t[1], "docker_gwbridge") if t else None
                    if t is None or host is None or gw is None or not v.alive(t[1]) or not v.alive(host):
                        continue
                    self.host_dnat_check(svc, pub, b["node"], host, t[1], gw)

    def host_dnat_check(self, svc: dict[str, Any], pub: dict[str, Any], node: str, host: dict[str, Any],
                        tns: dict[str, Any], gw: dict[str, Any]) -> None:
        v, client = self.v, self.v.client
        P, T, proto = int(pub["published"]), int(pub["target"]), str(pub["protocol"])
        nd, ip = v.nodes[node], _ip(gw["addresses"][0])
        p = self.frame_probe("host", client["netns"], "eth0", client["mac"], nd["mac"], client["ip"],
                             nd["underlay_ip"], P, 1460, entry=node, target=svc["name"], network="docker_gwbridge",
                             proto=proto)
        hns = _model_ns(self.model, v, node, host["name"])
        rs = [r for r in (hns.rules("nat", "DOCKER") if hns else []) if r.target == "DNAT" and r.dport == P
              and r.proto == proto]
        sfx = "" if proto == "tcp" else f"/{proto}"
        exp = _plan_rules(self.plan, host["name"], f"hostdnat:{P}{sfx}")
        r = rs[0] if rs else None
        self.add(Check(
            id=f"hostdnat:{node}:{P}{sfx}", kind="hostdnat", node=node, namespace="host", netns=host["name"],
            where="nat DOCKER",
            rule=r.text if r else (_expected_text(exp[0].args, exp[0].chain) if exp else
                                   f"-A DOCKER ! -i docker_gwbridge -p {proto} -m {proto} --dport {P} -j DNAT "
                                   f"--to-destination {ip}:{T}"),
            present=r is not None, counter_key=_counter_key(host["name"], r) if r else None, probes={p.id: []},
            params=DnatParams(before_point=v.point(node, host, "eth0"), after_point=v.point(node, tns, gw["name"]),
                              dst=nd["underlay_ip"], to=ip, port=T, proto=proto)))

    # -------------------------------------------------------------- dnsrr services
    def dnsrr(self) -> None:
        """dnsrr services have no VIP: clients connect to the task addresses DNS returns. Per task, a SYN from
        a task on every other node that shares the network (crossing its fdb entry and the underlay)."""
        v = self.v
        for svc in [s for s in v.services if s["mode"] == "dnsrr"]:
            port = int(svc["target_ports"][0])
            for net in [n for n in svc["networks"] if n != "ingress"]:
                for task, ip, mac in self.backends(svc, net):
                    t = v.task(task)
                    if t is None:
                        continue
                    for node in v.node_names:
                        if node != t[0]:
                            self.dnsrr_probe(svc, net, node, t, ip, mac, port)

    def dnsrr_probe(self, svc: dict[str, Any], net: str, node: str, t: tuple[str, dict[str, Any]], ip: str,
                    mac: str, port: int) -> None:
        v = self.v
        src = next((ns for ns in v.nodes[node]["namespaces"] if ns["role"] == "task" and v.alive(ns)
                    and LabView.iface_on(ns, net)), None)
        if src is None:
            return
        sif = LabView.iface_on(src, net) or {}
        tnode, tns = t
        task = tns["task"]["name"]
        p = self.frame_probe("dnsrr", src["name"], sif["name"], sif["mac"], mac, _ip(sif["addresses"][0]), ip, port,
                             1410, entry=node, target=task, network=net)
        pre = [self.link_id(node, tnode), self.link_id(tnode, node)]
        fid = self.fdb_id(node, net, mac)
        if fid:
            pre.append(fid)
        if v.networks[net].get("encrypted"):  # the SYN and its answer each cross one direction of IPsec
            for a, b in ((node, tnode), (tnode, node)):
                pre += [f"xfrm:policy:{a}>{b}", f"xfrm:state:{a}>{b}@{a}", f"xfrm:state:{a}>{b}@{b}"]
        tif = LabView.iface_on(tns, net)
        self.add(Check(
            id=f"dnsrr:{node}>{task}:{net}", kind="dnsrr", node=tnode, namespace=task, netns=tns["name"],
            where="server", rule=f"tcp {ip}:{port} listener of {task} ({net}, dnsrr: reached from {node})",
            present=None, probes={p.id: pre},
            params=ServerParams(point=v.point(node, src, sif["name"]), ip=ip, port=port,
                                task_point=v.point(tnode, tns, tif["name"]) if tif else "", alive=v.alive(tns))))

    # -------------------------------------------------------------- encrypted overlays
    def encryption(self) -> None:
        """Per encrypted overlay and ordered node pair A -> B: A's out policy, A's SA and B's SA."""
        v = self.v
        for net, netd in v.networks.items():
            if not netd.get("encrypted"):
                continue
            nodes = [n for n in netd.get("nodes", []) if v.ns(n, "overlay", net) is not None]
            for a in nodes:
                for b in nodes:
                    if a != b:
                        self.xfrm_pair(net, int(netd["vni"]), a, b)

    def xfrm_pair(self, net: str, vni: int, a: str, b: str) -> None:
        v = self.v
        ha, hb, ova, ovb = v.ns(a, "host"), v.ns(b, "host"), v.ns(a, "overlay", net), v.ns(b, "overlay", net)
        if ha is None or hb is None or ova is None or ovb is None:
            return
        ipa, ipb = v.vtep(a), v.vtep(b)
        try:
            pols = [p for p in self.plan.ns(ha["name"]).xfrm_policies if p.src == ipa and p.dst == ipb]
            fdb = self.plan.ns(ova["name"]).fdb
        except KeyError:
            return
        if not pols:
            return
        pol = pols[0]
        macs = [ln.split()[2] for ln in fdb if f" dst {ipb} " in ln]
        base = dict(src=ipa, dst=ipb, spi=pol.spi, vni=vni, vxlan_point=v.point(a, ova, "vxlan0"),
                    out_point=v.point(a, ha, "eth0"), in_point=v.point(b, hb, "eth0"),
                    peer_vxlan_point=v.point(b, ovb, "vxlan0"), macs=macs)
        state_text = (f"src {ipa} dst {ipb} proto esp spi {pol.spi:#010x} reqid {XFRM_MARK} mode transport")
        rows = [("policy", a, ha, "xfrm policy", pol.text(), self.xfrm_has(a, "policies", ipa, ipb, None)),
                ("out", a, ha, "xfrm state", state_text, self.xfrm_has(a, "states", ipa, ipb, pol.spi)),
                ("in", b, hb, "xfrm state", state_text, self.xfrm_has(b, "states", ipa, ipb, pol.spi))]
        for what, node, hns, where, text, present in rows:
            cid = f"xfrm:{'policy' if what == 'policy' else 'state'}:{a}>{b}" + ("" if what == "policy" else f"@{node}")
            self.add(Check(id=cid, kind="xfrm", node=node, namespace="host", netns=hns["name"], where=where,
                           rule=text, present=present, probes={}, params=XfrmParams(what=what, **base)))

    def xfrm_has(self, node: str, table: str, src: str, dst: str, spi: int | None) -> bool | None:
        """Whether ``node``'s IPsec table (as dumped) has the policy/state ``src -> dst`` (None: not dumped)."""
        if self.xfrm_state is None or node not in self.xfrm_state:
            return None
        return any(e["src"] == src and e["dst"] == dst and (spi is None or int(e["spi"]) == spi)
                   for e in self.xfrm_state[node].get(table, []))

    # -------------------------------------------------------------- all
    def run(self) -> VerifyPlan:
        self.servers()
        self.fdb_and_links()
        self.ingress()
        self.unpublished()
        self.vips()
        self.dnsrr()
        self.host_mode()
        self.encryption()
        checks = sorted(self.checks.values(), key=lambda c: KIND_ORDER.index(c.kind))
        known = {c.id for c in checks}
        for c in checks:  # prerequisites that were not planned (namespace gone ...) are dropped
            for pid, pre in c.probes.items():
                c.probes[pid] = [x for x in pre if x in known]
        points = self.points()
        return VerifyPlan(checks=checks, probes=self.probes, points=points, notes=self.notes)

    def points(self) -> list[dict[str, Any]]:
        out = []
        for cp in self.v.status["capture_points"]:
            if cp["node"] == "underlay":
                continue
            if cp["netns"] not in self.v.existing:
                continue
            out.append({"point": cp["point"], "netns": cp["netns"], "iface": cp["iface"]})
        return out


def _vip_ports(svc: dict[str, Any]) -> list[tuple[str, int]]:
    """(protocol, port) VIP probes use: the TCP port, and each UDP port the tasks answer datagrams on."""
    udp = svc.get("udp_ports") or sorted({int(p["target"]) for p in svc["published"] if p["protocol"] == "udp"})
    return [("tcp", int(svc["target_ports"][0]))] + [("udp", int(p)) for p in udp]


def _server_port(svc: dict[str, Any], net: str) -> tuple[str, int]:
    """(protocol, port) a task of ``svc`` answers on ``net``: on ingress its first published TCP target, or
    its first UDP one for UDP-only services (the task firewall drops the rest); elsewhere its TCP port."""
    if net == "ingress":
        pubs = [p for p in svc["published"] if p.get("mode", "ingress") == "ingress"]
        tcp = [p for p in pubs if p["protocol"] == "tcp"]
        if not tcp and pubs:
            return str(pubs[0]["protocol"]), int(pubs[0]["target"])
    return "tcp", int(svc["target_ports"][0])


def plan_verify(status: dict[str, Any], lab_plan: Any, model: MeshModel, *, existing: Iterable[str] | None = None,
                seed: int | None = None, port_base: int | None = None, mtu_payload: int = MTU_PAYLOAD,
                xfrm: dict[str, dict[str, Any]] | None = None) -> VerifyPlan:
    """Checks and probes for the lab described by ``status`` (pure).

    ``lab_plan`` is the lab's expected state (:func:`meshpkt.lab.plan.plan`: rules with tags, fdb lines);
    ``model`` what the dumps say is installed; ``existing`` the namespaces that exist now (default: all of
    the status). ``seed`` makes sequence numbers reproducible, ``port_base`` the TCP source ports (else fresh
    on every run, see :class:`_Ids`). ``xfrm``: per
    node, the IPsec policies and states installed (``{"policies": [{"src", "dst"}], "states": [{"src",
    "dst", "spi"}]}``; None: not dumped).
    """
    if not status.get("nodes"):
        raise UsageError("the lab status has no nodes")
    rng = random.Random(seed)
    return _Planner(status, lab_plan, model, existing, rng, port_base, mtu_payload, xfrm).run()


def select_checks(checks: list[Check], patterns: Iterable[str] | None) -> tuple[list[Check], set[str]]:
    """(rows matching any of ``patterns``, ids of every check needed to judge them: the rows and
    their prerequisites, transitively). A pattern matches a check id as a glob (``dnat:*``,
    ``*node1*``) or as a case-insensitive substring of its id/kind/namespace."""
    import fnmatch

    pats = [p for p in (patterns or []) if p]
    if not pats:
        return list(checks), {c.id for c in checks}

    def hit(c: Check) -> bool:
        for p in pats:
            low = p.lower()
            if fnmatch.fnmatchcase(c.id, p) or low in c.id.lower() or low == c.kind or low == c.namespace.lower():
                return True
        return False

    rows = [c for c in checks if hit(c)]
    if not rows:
        kinds = ", ".join(KIND_ORDER)
        raise UsageError(f"--rule {' '.join(pats)!r} matches no rule (ids look like dnat:node1:9090, "
                         f"fdb:node1/1-<netid>:02:42:..; kinds: {kinds})")
    by_id = {c.id: c for c in checks}
    need: set[str] = set()
    stack = [c.id for c in rows]
    while stack:
        cid = stack.pop()
        if cid in need:
            continue
        need.add(cid)
        for pre in by_id[cid].probes.values():
            stack.extend(x for x in pre if x not in need)
    return rows, need


def needed_probes(plan: VerifyPlan, need: set[str]) -> list[Probe]:
    """Probes of the checks in ``need`` (fdb/link checks are judged on every probe: all ingress/vip
    probes are then needed too)."""
    ids: set[str] = set()
    by_id = {c.id: c for c in plan.checks}
    passive = any(by_id[c].kind in ("fdb", "link", "xfrm") for c in need)
    for cid in need:
        ids.update(by_id[cid].probes)
    return [p for p in plan.probes if p.id in ids or (passive and p.group in ("ingress", "vip", "server", "dnsrr",
                                                                               "host"))]

