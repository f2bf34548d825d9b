"""The typed model of a routing mesh, built from dumps.

``build_model(dumps)`` is pure (texts in, :class:`MeshModel` out); ``load_dumps(path)`` only
reads files (a dump directory or a transcript) and calls it.

Dump directory layout (what ``meshpkt collect`` writes)::

    DIR/
      collect.json                       optional manifest (ignored by the loader)
      <node>/
        docker-network-inspect.json      docker network inspect ... (node-local view)
        docker-service-inspect.json      docker service inspect ...
        transcript.txt | *.transcript.txt   optional pasted sessions (prompts tell the namespaces)
        <namespace>/                     "host" = the node's root namespace; otherwise the name
                                         under /var/run/docker/netns (ingress_sbox, 1-<netid>,
                                         lb_<netid>, <container id>)
          namespace.json                 optional {"role": "...", ...}; a one-word "role" file also works
          iptables-save.txt              iptables-save -c (nft or legacy backend)
          iptables-legacy-save.txt       iptables-legacy-save -c (when legacy tables are present)
          iptables-L-<table>.txt         iptables -L -n -v [-x] -t <table> (iptables-L.txt = filter)
          iptables-S.txt                 iptables -S
          nft-ruleset.json               nft -j list ruleset
          ipvsadm-Ln.txt  ipvsadm-Sn.txt  ipvsadm-Lnc.txt
          bridge-fdb.txt                 bridge fdb show
          ip-d-link.txt  ip-addr.txt     ip -d link show / ip addr show
          ip-d-link.json ip-addr.json    the same with -j
          ip-route.txt  ip-neigh.txt     ip route show / ip neigh show

``DIR`` may also be a single transcript file (prompts + outputs, like seed 001), or a
directory holding only transcript ``*.txt`` files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.mesh.model import Role
from meshpkt.rules.docker import (
    DockerNetwork,
    DockerService,
    docker_tasks,
    parse_docker_networks,
    parse_docker_services,
)
from meshpkt.rules.iproute import (
    FdbEntry,
    Link,
    Neighbour,
    Route,
    parse_bridge_fdb,
    parse_ip_json,
    parse_ip_link,
    parse_ip_neigh,
    parse_ip_route,
)
from meshpkt.rules.iptables import parse_iptables_list, parse_iptables_save
from meshpkt.rules.ipvs import (
    IpvsConn,
    IpvsService,
    parse_ipvsadm_conns,
    parse_ipvsadm_list,
    parse_ipvsadm_save,
)
from meshpkt.rules.nft import IPTABLES_NFT_TABLES, parse_nft_json
from meshpkt.rules.transcript import HOST, classify_command, split_transcript
from meshpkt.rules.types import Chain, Rule, Ruleset

DUMP_ROLES = (Role.HOST, Role.INGRESS_SBOX, Role.OVERLAY, Role.LB, Role.TASK)
"""Roles a dumped namespace can have (:class:`meshpkt.mesh.model.Role`; client/underlay are lab-only)."""



def role_from_name(name: str) -> Role:
    """Docker's naming: ``host`` (root), ``ingress_sbox``, ``1-<netid>`` (overlay), ``lb_<netid>``,
    a 12-hex container id or ``container:<name>`` (task)."""
    n = name.strip()
    if n in ("", HOST, "default", "root", "init"):
        return Role.HOST
    if n in ("ingress_sbox", "ingress-sbox"):
        return Role.INGRESS_SBOX
    if re.fullmatch(r"\d+-[0-9a-z]+", n):
        return Role.OVERLAY
    if n.startswith("lb_") or n.startswith("lb-"):
        return Role.LB
    if re.fullmatch(r"[0-9a-f]{12}", n) or n.startswith("container:") or n.startswith("task"):
        return Role.TASK
    return Role.UNKNOWN


def parse_role(text: str) -> Role:
    """``"sbox"``/``"ingress"`` -> INGRESS_SBOX etc.; raises UsageError on an unknown role."""
    t = text.strip().lower().replace("-", "_")
    aliases = {"sbox": "ingress_sbox", "ingress": "ingress_sbox", "root": "host", "node": "host",
               "container": "task", "vxlan": "overlay", "lb_": "lb"}
    t = aliases.get(t, t)
    if t in DUMP_ROLES:
        return Role(t)
    raise UsageError(f"unknown namespace role {text!r} (host, ingress_sbox, overlay, lb, task)")


@dataclass
class DumpText:
    """One dump to model: which node/namespace, which parser (``kind``, see
    :data:`meshpkt.rules.transcript.KINDS`), its text, and where it came from."""

    node: str
    namespace: str
    kind: str
    text: str
    table: str | None = None
    dev: str | None = None
    origin: str = ""


@dataclass
class Backend:
    """A load-balancer destination: address, port (0 = keep dport), forwarding, weight."""

    addr: IPv4Address
    port: int = 0
    forward: str = "Masq"
    weight: int = 1


@dataclass
class LbService:
    """A firewall-mark (or address) load balancer: real IPVS or the nftables emulation."""

    node: str
    namespace: str
    kind: str
    scheduler: str
    backends: list[Backend]
    fwmark: int | None = None
    addr: IPv4Address | None = None
    port: int | None = None
    proto: str | None = None
    text: str = ""
    rule: Rule | None = None

    def label(self) -> str:
        """``"FWM 258 rr"`` / ``"TCP 10.0.0.5:80 rr"``."""
        head = (f"FWM {self.fwmark}" if self.fwmark is not None
                else f"{(self.proto or '').upper()} {self.addr}:{self.port}")
        return f"{head} {self.scheduler}"


@dataclass
class Namespace:
    """One network namespace of a node and everything dumped from it."""

    node: str
    name: str
    role: Role
    rulesets: list[Ruleset] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    fdb: list[FdbEntry] = field(default_factory=list)
    ipvs: list[IpvsService] = field(default_factory=list)
    ipvs_conns: list[IpvsConn] = field(default_factory=list)
    dumps: list[str] = field(default_factory=list)
    unparsed: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    role_from: str = "name"

    # ------------------------------------------------------------------ netfilter
    def tables(self) -> dict[str, dict[str, Chain]]:
        """Effective tables: iptables-save beats ``iptables -L`` for the same table; legacy tables
        are keyed ``"<table> (legacy)"``; nft tables ``"<family> <name>"``, except the ``ip``
        tables iptables-nft owns when an iptables dump of this namespace exists."""
        out: dict[str, dict[str, Chain]] = {}
        src: dict[str, str] = {}
        order = {"iptables-save": 0, "iptables -L": 1, "nft": 2}
        has_iptables = any(rs.source != "nft" for rs in self.rulesets)
        for rs in sorted(self.rulesets, key=lambda r: order.get(r.source, 3)):
            for tname, chains in rs.tables.items():
                key = tname
                if rs.source == "iptables-save" and rs.backend == "legacy" and any(
                        r.source == "iptables-save" and r.backend != "legacy" for r in self.rulesets):
                    key = f"{tname} (legacy)"
                if rs.source == "nft":
                    fam, _, base = tname.partition(" ")
                    if has_iptables and fam == "ip" and base in IPTABLES_NFT_TABLES:
                        continue
                if key in out:
                    if rs.source == "iptables -L" and src[key] == "iptables -L":
                        merged = dict(out[key])  # several partial -L dumps of one table
                        for cname, ch in chains.items():
                            merged.setdefault(cname, ch)
                        out[key] = merged
                    continue
                src[key] = rs.source
                out[key] = chains
        return out

    def has_table(self, table: str) -> bool:
        """True when ``table`` (iptables name) was dumped for this namespace."""
        return table in self.tables()

    def chain(self, table: str, name: str) -> Chain | None:
        """The chain ``name`` of ``table`` or None."""
        return self.tables().get(table, {}).get(name)

    def rules(self, table: str | None = None, chain: str | None = None) -> list[Rule]:
        """Rules of the effective tables, optionally of one table/chain."""
        out: list[Rule] = []
        for tname, chains in self.tables().items():
            if table is not None and tname != table:
                continue
            for ch in chains.values():
                if chain is None or ch.name == chain:
                    out.extend(ch.rules)
        return out

    def base_chains(self, hook: str) -> list[Chain]:
        """Base chains attached to ``hook`` (prerouting, input, forward, output, postrouting),
        in priority order."""
        chains = [ch for tbl in self.tables().values() for ch in tbl.values() if ch.hook == hook]
        return sorted(chains, key=lambda c: c.priority if c.priority is not None else 0)

    # ------------------------------------------------------------------ addresses
    def addresses(self) -> list[IPv4Interface]:
        """IPv4 addresses of every interface (``ip addr``/``ip -j addr``)."""
        out: list[IPv4Interface] = []
        for lk in self.links:
            for a in lk.addresses:
                if isinstance(a.addr, IPv4Interface) and a.addr not in out:
                    out.append(a.addr)
        return out

    def inferred_addresses(self) -> list[IPv4Address]:
        """Task addresses seen in the task's own rules when no ``ip addr`` was dumped: the
        ``-d X/32`` of nat PREROUTING REDIRECT/DNAT and filter INPUT rules, the ``-s X/32`` of
        filter OUTPUT rules (Docker writes them for published ports)."""
        out: list[IPv4Address] = []
        if self.role not in (Role.TASK, Role.UNKNOWN):
            return out
        for r in self.rules():
            net = None
            if r.chain in ("PREROUTING", "INPUT") and r.dst is not None and not r.dst_neg and (
                    r.target in ("REDIRECT", "DNAT") or r.table == "filter"):
                net = r.dst
            elif r.chain == "OUTPUT" and r.table == "filter" and r.src is not None and not r.src_neg:
                net = r.src
            if net is not None and net.prefixlen == 32 and net.network_address not in out:
                out.append(net.network_address)
        return out

    def has_address(self, addr: IPv4Address) -> bool:
        """True when ``addr`` is configured here (or, without an address dump, inferred)."""
        if any(a.ip == addr for a in self.addresses()):
            return True
        return not self.links and addr in self.inferred_addresses()

    def iface_of(self, addr: IPv4Address) -> str | None:
        """The interface holding ``addr``."""
        for lk in self.links:
            for a in lk.addresses:
                if isinstance(a.addr, IPv4Interface) and a.addr.ip == addr:
                    return lk.name
        return None

    def route_dev(self, addr: IPv4Address) -> str | None:
        """Output device of the longest-prefix route to ``addr`` (None when routes are unknown)."""
        best: Route | None = None
        for r in self.routes:
            if r.type not in ("unicast",) or r.table not in (None, "main"):
                continue
            if r.dest is None or addr in r.dest:
                plen = -1 if r.dest is None else r.dest.prefixlen
                if best is None or plen > (-1 if best.dest is None else best.dest.prefixlen):
                    best = r
        if best is not None:
            return best.dev
        for lk in self.links:  # connected subnets from addresses
            for a in lk.addresses:
                if isinstance(a.addr, IPv4Interface) and addr in a.addr.network and a.addr.network.prefixlen < 32:
                    return lk.name
        return None

    def vxlan_links(self) -> list[Link]:
        """Interfaces with vxlan details."""
        return [lk for lk in self.links if lk.vxlan is not None]

    def lb_services(self) -> list[LbService]:
        """IPVS services and nft-emulated ones (``meta mark X ... dnat to numgen ... map``)."""
        out: list[LbService] = []
        for s in self.ipvs:
            out.append(LbService(node=self.node, namespace=self.name, kind="ipvs", scheduler=s.scheduler,
                                 fwmark=s.fwmark, addr=s.addr, port=s.port,
                                 proto=None if s.kind == "FWM" else s.kind.lower(),
                                 backends=[Backend(d.addr, d.port, d.forward, d.weight) for d in s.dests],
                                 text="\n".join([s.text] + [d.text for d in s.dests])))
        for r in self.rules():
            if r.lb_backends:
                out.append(LbService(node=self.node, namespace=self.name, kind="nft",
                                     scheduler=r.lb_mode or "rr", fwmark=r.mark[0] if r.mark else None,
                                     addr=r.dst.network_address if r.dst and r.dst.prefixlen == 32 else None,
                                     port=r.dport, proto=r.proto,
                                     backends=[Backend(a, r.to_ports[0] if r.to_ports else 0, "Masq", 1)
                                               for a in r.lb_backends], text=r.text, rule=r))
        return out

    def has_lb_dump(self) -> bool:
        """True when an ipvsadm or nft dump tells what load balancers exist here."""
        return any(d.startswith("ipvsadm-list") or d.startswith("ipvsadm-save") or d.startswith("nft-json")
                   for d in self.dumps)


@dataclass
class Node:
    """A Swarm node: its namespaces and the Docker objects dumped on it."""

    name: str
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    networks: list[DockerNetwork] = field(default_factory=list)
    services: list[DockerService] = field(default_factory=list)
    unparsed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def host(self) -> Namespace | None:
        """The root namespace (role host) when dumped."""
        return next((ns for ns in self.namespaces.values() if ns.role == Role.HOST), None)

    def by_role(self, role: Role) -> list[Namespace]:
        """Namespaces of that role."""
        return [ns for ns in self.namespaces.values() if ns.role == role]

    def addresses(self) -> list[IPv4Address]:
        """Underlay addresses: the host namespace's IPv4 addresses except loopback and Docker bridges,
        plus the local VTEP addresses of vxlan links."""
        out: list[IPv4Address] = []
        if self.host is not None:
            for lk in self.host.links:
                if lk.name == "lo" or lk.name.startswith("docker") or lk.name.startswith("br-") \
                        or lk.name.startswith("veth"):
                    continue
                for a in lk.addresses:
                    if isinstance(a.addr, IPv4Interface) and not a.addr.ip.is_loopback and a.addr.ip not in out:
                        out.append(a.addr.ip)
        for ns in self.namespaces.values():
            for lk in ns.vxlan_links():
                if lk.vxlan and lk.vxlan.local and lk.vxlan.local not in out:
                    out.append(lk.vxlan.local)
        return out


# ---------------------------------------------------------------------- derived facts


@dataclass
class PublishedPort:
    """Host ``nat DOCKER-INGRESS`` DNAT of a published port to the ingress sandbox."""

    node: str
    namespace: str
    proto: str
    port: int
    to_addr: IPv4Address | None
    to_port: int | None
    rule: Rule


@dataclass
class MarkRule:
    """A ``MARK --set-mark`` in an LB namespace: by published port (mangle PREROUTING) or by VIP."""

    node: str
    namespace: str
    fwmark: int
    proto: str | None
    port: int | None
    vip: IPv4Address | None
    rule: Rule


@dataclass
class SnatRule:
    """The LB namespace's SNAT of balanced traffic (``-m ipvs --ipvs -d <subnet> -j SNAT``)."""

    node: str
    namespace: str
    dst: IPv4Network | None
    to_addr: IPv4Address | None
    ipvs: bool
    rule: Rule


@dataclass
class Overlay:
    """An overlay network namespace: vxlan VNI/port/local VTEP, br0 subnet, peers (fdb MAC -> VTEP)."""

    node: str
    namespace: str
    device: str
    vni: int
    dstport: int | None
    local: IPv4Address | None
    gateway: IPv4Interface | None
    mtu: int | None
    peers: list[FdbEntry]
    neighbours: list[Neighbour]

    @property
    def subnet(self) -> IPv4Network | None:
        """The overlay subnet (from br0's address)."""
        return self.gateway.network if self.gateway is not None else None


@dataclass
class TaskRedirect:
    """A task's ``nat PREROUTING -d <task> --dport P -j REDIRECT --to-ports T``."""

    node: str
    namespace: str
    addr: IPv4Address | None
    proto: str | None
    port: int | None
    to_port: int | None
    rule: Rule


@dataclass
class MeshModel:
    """Nodes -> namespaces -> rules/addresses/links, plus derived facts of the routing mesh.

    ``notes`` lists what the loader skipped (unknown files, commands without a parser).
    """

    nodes: dict[str, Node] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def namespaces(self, role: Role | None = None) -> list[Namespace]:
        """Every namespace (of one role)."""
        return [ns for n in self.nodes.values() for ns in n.namespaces.values() if role is None or ns.role == role]

    def node(self, name: str) -> Node | None:
        """A node by name; also accepts a unique prefix (``centos7-10`` for ``centos7-10.localdomain``)."""
        if name in self.nodes:
            return self.nodes[name]
        hits = [n for k, n in self.nodes.items() if k.startswith(name) or name.startswith(k + ".")]
        return hits[0] if len(hits) == 1 else None

    def node_of_address(self, addr: IPv4Address) -> Node | None:
        """The node whose underlay (host namespace or VTEP) holds ``addr``."""
        for n in self.nodes.values():
            if addr in n.addresses():
                return n
        for n in self.nodes.values():
            h = n.host
            if h is not None and h.has_address(addr):
                return n
        return None

    def namespaces_with_address(self, addr: IPv4Address, roles: Iterable[Role] | None = None) -> list[Namespace]:
        """Namespaces holding ``addr`` (optionally of some roles)."""
        wanted = set(roles) if roles is not None else None
        return [ns for ns in self.namespaces() if (wanted is None or ns.role in wanted) and ns.has_address(addr)]

    # -------------------------------------------------------------- derived facts
    def published_ports(self) -> list[PublishedPort]:
        """Host DNATs of published ports (chain DOCKER-INGRESS, or any nat DNAT in a host namespace)."""
        out: list[PublishedPort] = []
        for ns in self.namespaces(Role.HOST):
            for r in ns.rules("nat"):
                if r.target == "DNAT" and r.dport is not None and (
                        r.chain == "DOCKER-INGRESS" or not ns.chain("nat", "DOCKER-INGRESS")):
                    out.append(PublishedPort(ns.node, ns.name, r.proto or "tcp", r.dport, r.to_addr,
                                             r.to_ports[0] if r.to_ports else r.dport, r))
            for tname, chains in ns.tables().items():  # nft-written equivalents
                if " " not in tname:
                    continue
                for ch in chains.values():
                    for r in ch.rules:
                        if r.target == "DNAT" and r.dport is not None and r.to_addr is not None \
                                and not r.lb_backends:
                            out.append(PublishedPort(ns.node, ns.name, r.proto or "tcp", r.dport, r.to_addr,
                                                     r.to_ports[0] if r.to_ports else r.dport, r))
        return out

    def marks(self) -> list[MarkRule]:
        """fwmark rules in ingress_sbox / lb namespaces."""
        out: list[MarkRule] = []
        for ns in self.namespaces():
            if ns.role not in (Role.INGRESS_SBOX, Role.LB):
                continue
            for r in ns.rules():
                if r.target == "MARK" and r.set_mark is not None:
                    vip = r.dst.network_address if r.dst is not None and r.dst.prefixlen == 32 else None
                    out.append(MarkRule(ns.node, ns.name, r.set_mark[0], r.proto, r.dport, vip, r))
        return out

    def lb_services(self) -> list[LbService]:
        """Every load balancer (IPVS or nft emulation) of every namespace."""
        return [s for ns in self.namespaces() for s in ns.lb_services()]

    def snat_rules(self) -> list[SnatRule]:
        """SNAT rules of ingress_sbox / lb namespaces."""
        out: list[SnatRule] = []
        for ns in self.namespaces():
            if ns.role not in (Role.INGRESS_SBOX, Role.LB):
                continue
            for r in ns.rules():
                if r.target == "SNAT" and r.to_addr is not None:
                    out.append(SnatRule(ns.node, ns.name, r.dst, r.to_addr,
                                        bool(r.ipvs) or bool(r.ctstatus and "DNAT" in r.ctstatus)
                                        or bool(r.ctstate and "DNAT" in r.ctstate), r))
        return out

    def overlays(self) -> list[Overlay]:
        """Every vxlan device (normally in ``1-<netid>`` namespaces)."""
        out: list[Overlay] = []
        for ns in self.namespaces():
            for lk in ns.vxlan_links():
                assert lk.vxlan is not None
                gw = None
                if lk.master:
                    br = next((x for x in ns.links if x.name == lk.master), None)
                    if br is not None:
                        gw = next((a.addr for a in br.addresses if isinstance(a.addr, IPv4Interface)), None)
                if gw is None:
                    gw = next(iter(ns.addresses()), None)
                peers = [e for e in ns.fdb if e.dev == lk.name and e.dst is not None]
                neigh = [n for n in ns.neighbours if n.dev == lk.name]
                out.append(Overlay(ns.node, ns.name, lk.name, lk.vxlan.vni, lk.vxlan.dstport, lk.vxlan.local, gw,
                                   lk.mtu, peers, neigh))
        return out

    def redirects(self) -> list[TaskRedirect]:
        """REDIRECT (and DNAT-to-self) rules of task namespaces."""
        out: list[TaskRedirect] = []
        for ns in self.namespaces(Role.TASK):
            for r in ns.rules("nat", "PREROUTING"):
                if r.target == "REDIRECT":
                    out.append(TaskRedirect(ns.node, ns.name, r.dst.network_address if r.dst else None, r.proto,
                                            r.dport, r.to_ports[0] if r.to_ports else None, r))
        return out

    def services(self) -> list[DockerService]:
        """Docker services (deduplicated by id across nodes)."""
        seen: dict[str, DockerService] = {}
        for n in self.nodes.values():
            for s in n.services:
                seen.setdefault(s.id, s)
        return list(seen.values())

    def networks(self) -> list[DockerNetwork]:
        """Docker networks (first node's view of each id)."""
        seen: dict[str, DockerNetwork] = {}
        for n in self.nodes.values():
            for net in n.networks:
                seen.setdefault(net.id, net)
        return list(seen.values())

    def local_endpoint(self, node: str, addr: IPv4Address) -> str | None:
        """How ``addr`` is known to live on ``node``: a namespace holding it, or a
        ``docker network inspect`` endpoint; None otherwise."""
        n = self.nodes.get(node)
        if n is None:
            return None
        for ns in n.namespaces.values():
            if ns.role in (Role.TASK, Role.UNKNOWN, Role.INGRESS_SBOX, Role.LB) and ns.has_address(addr):
                return f"namespace {ns.name}"
        for net in n.networks:
            for c in net.containers:
                if c.ipv4 is not None and c.ipv4.ip == addr:
                    return f"docker network {net.name} endpoint {c.name}"
        return None

    def unparsed(self) -> list[tuple[str, str, str, str]]:
        """Every line a parser kept as not understood: (node, namespace, dump, line)."""
        out: list[tuple[str, str, str, str]] = []
        for n in self.nodes.values():
            for origin, lines in n.unparsed.items():
                out.extend((n.name, "", origin, ln) for ln in lines)
            for ns in n.namespaces.values():
                for origin, lines in ns.unparsed.items():
                    out.extend((n.name, ns.name, origin, ln) for ln in lines)
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-able overview (nodes, namespaces with roles and dumps, derived facts)."""
        return {
            "nodes": {
                n.name: {
                    "addresses": [str(a) for a in n.addresses()],
                    "namespaces": {ns.name: {"role": str(ns.role), "dumps": ns.dumps,
                                             "rules": len(ns.rules()), "lb_services": len(ns.lb_services())}
                                   for ns in n.namespaces.values()},
                    "networks": [net.name for net in n.networks],
                    "services": [s.name for s in n.services],
                } for n in self.nodes.values()},
            "published_ports": [f"{p.node} {p.proto}/{p.port} -> {p.to_addr}:{p.to_port}"
                                for p in self.published_ports()],
            "marks": [f"{m.node}/{m.namespace} {m.fwmark:#x} " + (f"{m.proto}/{m.port}" if m.port else f"vip {m.vip}")
                      for m in self.marks()],
            "lb_services": [f"{s.node}/{s.namespace} {s.kind} {s.label()} -> "
                            + ", ".join(str(b.addr) for b in s.backends) for s in self.lb_services()],
            "snat": [f"{s.node}/{s.namespace} -d {s.dst} -> {s.to_addr}" for s in self.snat_rules()],
            "overlays": [f"{o.node}/{o.namespace} {o.device} vni {o.vni} port {o.dstport} peers {len(o.peers)}"
                         for o in self.overlays()],
            "redirects": [f"{r.node}/{r.namespace} {r.addr}:{r.port} -> :{r.to_port}" for r in self.redirects()],
            "tasks": [t.label() for t in docker_tasks(self)],
            "unparsed_lines": len(self.unparsed()),
            "notes": self.notes,
        }


# ---------------------------------------------------------------------- building


def _infer_role(ns: Namespace) -> Role:
    if ns.vxlan_links():
        return Role.OVERLAY
    if ns.ipvs or any(r.lb_backends for r in ns.rules()):
        return Role.LB
    if any(r.target == "REDIRECT" for r in ns.rules("nat", "PREROUTING")):
        return Role.TASK
    if any(r.chain == "DOCKER-INGRESS" for r in ns.rules()):
        return Role.HOST
    return Role.UNKNOWN


def _add(ns: Namespace, d: DumpText) -> None:
    origin = d.origin or d.kind
    ns.dumps.append(f"{d.kind}:{origin}" if d.origin else d.kind)
    unparsed: list[str] = []
    if d.kind == "iptables-save":
        rs = parse_iptables_save(d.text, default_table=d.table or "filter")
        ns.rulesets.append(rs)
        unparsed, ns.warnings = rs.unparsed, ns.warnings + rs.warnings
    elif d.kind == "iptables-list":
        rs = parse_iptables_list(d.text, table=d.table or "filter")
        ns.rulesets.append(rs)
        unparsed, ns.warnings = rs.unparsed, ns.warnings + rs.warnings
    elif d.kind == "nft-json":
        rs = parse_nft_json(d.text)
        ns.rulesets.append(rs)
        unparsed = rs.unparsed
    elif d.kind in ("ipvsadm-list", "ipvsadm-save"):
        tbl = parse_ipvsadm_list(d.text) if d.kind == "ipvsadm-list" else parse_ipvsadm_save(d.text)
        known = {s.key() for s in ns.ipvs}
        ns.ipvs.extend(s for s in tbl.services if s.key() not in known)
        unparsed = tbl.unparsed
    elif d.kind == "ipvsadm-conns":
        conns, unparsed = parse_ipvsadm_conns(d.text)
        ns.ipvs_conns.extend(conns)
    elif d.kind == "bridge-fdb":
        entries, unparsed = parse_bridge_fdb(d.text, dev=d.dev)
        ns.fdb.extend(entries)
    elif d.kind in ("ip-link", "ip-json"):
        lt = parse_ip_link(d.text) if d.kind == "ip-link" else parse_ip_json(d.text)
        unparsed = lt.unparsed
        for lk in lt.links:
            old = next((x for x in ns.links if x.name == lk.name), None)
            if old is None:
                ns.links.append(lk)
                continue
            for a in lk.addresses:  # merge ip addr into ip -d link (and vice versa)
                if all(a.addr != b.addr for b in old.addresses):
                    old.addresses.append(a)
            for attr in ("vxlan", "kind", "slave_kind", "master", "mtu", "mac", "peer_index", "link_netnsid",
                         "link_netns", "state"):
                if getattr(old, attr) is None and getattr(lk, attr) is not None:
                    setattr(old, attr, getattr(lk, attr))
    elif d.kind == "ip-route":
        routes, unparsed = parse_ip_route(d.text)
        ns.routes.extend(routes)
    elif d.kind == "ip-neigh":
        neigh, unparsed = parse_ip_neigh(d.text)
        ns.neighbours.extend(neigh)
    if unparsed:
        ns.unparsed.setdefault(origin, []).extend(unparsed)


def build_model(dumps: Iterable[DumpText], roles: Mapping[str, Role | str] | None = None) -> MeshModel:
    """Parse every dump and assemble the model (pure). ``roles`` maps a namespace name (or
    ``node/namespace``) to a role, overriding the naming convention."""
    model = MeshModel()
    role_map = {k: (v if isinstance(v, Role) else parse_role(v)) for k, v in (roles or {}).items()}
    for d in dumps:
        node = model.nodes.setdefault(d.node, Node(name=d.node))
        if d.kind in ("docker-network", "docker-service"):
            if d.kind == "docker-network":
                nets, unparsed = parse_docker_networks(d.text)
                known = {n.id for n in node.networks}
                node.networks.extend(n for n in nets if n.id not in known)
            else:
                svcs, unparsed = parse_docker_services(d.text)
                known = {s.id for s in node.services}
                node.services.extend(s for s in svcs if s.id not in known)
            if unparsed:
                node.unparsed.setdefault(d.origin or d.kind, []).extend(unparsed)
            continue
        ns = node.namespaces.get(d.namespace)
        if ns is None:
            ns = Namespace(node=d.node, name=d.namespace, role=role_from_name(d.namespace))
            node.namespaces[d.namespace] = ns
        _add(ns, d)
    for node in model.nodes.values():
        for ns in node.namespaces.values():
            key = f"{node.name}/{ns.name}"
            if key in role_map or ns.name in role_map:
                ns.role = role_map.get(key, role_map.get(ns.name, ns.role))
                ns.role_from = "map"
            elif ns.role == Role.UNKNOWN:
                ns.role = _infer_role(ns)
                ns.role_from = "content"
    return model


# ---------------------------------------------------------------------- transcripts and directories


def dumps_from_transcript(text: str, default_node: str = "node", origin: str = "transcript") -> tuple[
        list[DumpText], list[str]]:
    """Cut a transcript into dumps (pure). Returns (dumps, notes on commands without a parser)."""
    dumps: list[DumpText] = []
    notes: list[str] = []
    for ch in split_transcript(text):
        if not ch.command.strip():
            continue
        kind = classify_command(ch.command)
        if kind is None:
            continue
        if not ch.output.strip():
            notes.append(f"{origin}:{ch.line}: `{ch.raw_command}` printed nothing")
            continue
        dumps.append(DumpText(node=ch.node or default_node, namespace=ch.namespace, kind=kind.kind, text=ch.output,
                              table=kind.table, dev=kind.dev, origin=f"{origin}:{ch.line} {ch.command}"))
    return dumps, notes


_FILE_KINDS: dict[str, tuple[str, str | None]] = {
    "iptables-save.txt": ("iptables-save", None),
    "iptables-legacy-save.txt": ("iptables-save", None),
    "iptables-nft-save.txt": ("iptables-save", None),
    "iptables-s.txt": ("iptables-save", None),
    "nft-ruleset.json": ("nft-json", None),
    "ipvsadm-ln.txt": ("ipvsadm-list", None),
    "ipvsadm-sn.txt": ("ipvsadm-save", None),
    "ipvsadm-lnc.txt": ("ipvsadm-conns", None),
    "bridge-fdb.txt": ("bridge-fdb", None),
    "ip-d-link.txt": ("ip-link", None),
    "ip-link.txt": ("ip-link", None),
    "ip-addr.txt": ("ip-link", None),
    "ip-a.txt": ("ip-link", None),
    "ip-d-link.json": ("ip-json", None),
    "ip-addr.json": ("ip-json", None),
    "ip-route.txt": ("ip-route", None),
    "ip-neigh.txt": ("ip-neigh", None),
    "docker-network-inspect.json": ("docker-network", None),
    "docker-service-inspect.json": ("docker-service", None),
}


def file_kind(name: str) -> tuple[str, str | None] | None:
    """The dump kind (and iptables table) of a file name of the dump layout; None if unknown."""
    low = name.lower()
    if low in _FILE_KINDS:
        return _FILE_KINDS[low]
    m = re.fullmatch(r"iptables-l(?:-(\w+))?\.txt", low)
    if m:
        return "iptables-list", m.group(1) or "filter"
    m = re.fullmatch(r"iptables-s-(\w+)\.txt", low)
    if m:
        return "iptables-save", m.group(1)
    return None


def _read(p: Path) -> str:
    return p.read_text(encoding="utf-8", errors="replace")


def _is_transcript(name: str) -> bool:
    return name == "transcript.txt" or name.endswith(".transcript.txt") or name.endswith(".log")


def _namespace_role(d: Path) -> str | None:
    meta = d / "namespace.json"
    if meta.is_file():
        try:
            role = json.loads(_read(meta)).get("role")
        except (json.JSONDecodeError, AttributeError):
            role = None
        if isinstance(role, str):
            return role
    rf = d / "role"
    if rf.is_file():
        return _read(rf).strip() or None
    return None


def load_dumps(path: str | Path, roles: Mapping[str, Role | str] | None = None,
               default_node: str | None = None) -> MeshModel:
    """Read a dump directory (layout in this module's docstring) or a transcript file and build
    the model. ``roles`` overrides namespace roles (``name`` or ``node/name`` -> role)."""
    root = Path(path)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    dumps: list[DumpText] = []
    notes: list[str] = []
    role_map: dict[str, Role | str] = {}
    if root.is_file():
        d, n = dumps_from_transcript(_read(root), default_node=default_node or root.stem, origin=root.name)
        dumps, notes = d, n
    else:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        if not subdirs:
            for f in sorted(root.iterdir()):
                if f.is_file() and f.suffix in (".txt", ".log"):
                    d, n = dumps_from_transcript(_read(f), default_node=default_node or f.stem, origin=f.name)
                    dumps.extend(d)
                    notes.extend(n)
        for node_dir in subdirs:
            node = node_dir.name
            for f in sorted(node_dir.iterdir()):
                if f.is_file():
                    fk = file_kind(f.name)
                    if fk is not None and fk[0] in ("docker-network", "docker-service"):
                        dumps.append(DumpText(node, HOST, fk[0], _read(f), origin=f"{node}/{f.name}"))
                    elif _is_transcript(f.name):
                        d, n = dumps_from_transcript(_read(f), default_node=node, origin=f"{node}/{f.name}")
                        for x in d:
                            x.node = node  # everything under DIR/<node>/ belongs to that node
                        dumps.extend(d)
                        notes.extend(n)
                    elif f.name not in ("collect.json", "node.json"):
                        notes.append(f"ignored file {node}/{f.name}")
                    continue
                ns_name = f.name
                role = _namespace_role(f)
                if role:
                    role_map[f"{node}/{ns_name}"] = role
                for g in sorted(f.iterdir()):
                    if not g.is_file() or g.name in ("namespace.json", "role"):
                        continue
                    fk = file_kind(g.name)
                    if fk is None:
                        notes.append(f"ignored file {node}/{ns_name}/{g.name}")
                        continue
                    dumps.append(DumpText(node, ns_name, fk[0], _read(g), table=fk[1],
                                          origin=f"{node}/{ns_name}/{g.name}"))
    role_map.update(roles or {})
    model = build_model(dumps, role_map)
    model.notes.extend(notes)
    if not model.nodes:
        raise UsageError(f"{root}: no dumps found (see `meshpkt collect` for the expected layout)")
    return model
