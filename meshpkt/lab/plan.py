"""Pure planning: :class:`~meshpkt.lab.spec.LabSpec` -> :class:`Plan` (namespaces, links, addresses,
rules, peers, servers). No process or kernel access here; :mod:`meshpkt.lab.build` executes a plan.

Everything is deterministic: IDs, MACs and veth names come from hashes of the network/task names,
so two runs of the same spec give byte-identical topologies (and comparable captures).

Allocation, like Docker:

- ``ingress`` (10.0.0.0/24): .1 gateway (br0 of the overlay namespace), then one ingress-sbox
  endpoint per node (.2, .3, .4 ...), then the VIPs of published services, then their tasks.
- a user overlay (10.0.1.0/24): .1 gateway, the VIPs of its vip-mode services, one ``lb_`` endpoint
  per node that runs a task on it, then the tasks.
- ``docker_gwbridge`` (172.18.0.0/16, per node): .1 the bridge, .2 ingress_sbox eth1, .3+ tasks.
- fwmarks: a per-node counter from ``fwmark_base`` (0x100): internal services first, then the
  published services' overlays, then ingress (so the default ingress mark is 0x102 as in seed 001).
- MACs of Docker endpoints: ``02:42:`` + the IPv4 bytes; other links get stable local MACs.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from meshpkt.lab.spec import LabSpec, PortSpec, ServiceSpec
from meshpkt.lab.xfrm import MARK, XfrmPolicy, XfrmState, encrypted_mtu, pair_sas, vni_match

LB_NFT_TABLE = "meshpkt_ipvs"
FAULT_NFT_TABLE = "meshpkt_fault"
DNS_IP = "127.0.0.11"


# ---------------------------------------------------------------------------- helpers
def _h(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def swarm_id(*parts: object) -> str:
    """A 25-character lowercase base36 ID like swarmkit's (deterministic)."""
    n = int.from_bytes(_h("swarm", *parts), "big")
    out = []
    for _ in range(25):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(out)


def hex_id(*parts: object, n: int = 64) -> str:
    """A deterministic hex ID (container/endpoint IDs)."""
    return (_h("hex", *parts) + _h("hex2", *parts)).hex()[:n]


def docker_mac(ip: str) -> str:
    """Docker's endpoint MAC: ``02:42:`` + the IPv4 address bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def local_mac(*parts: object) -> str:
    """A stable locally administered unicast MAC for links Docker gives random MACs."""
    b = bytearray(_h("mac", *parts)[:6])
    b[0] = (b[0] & 0xFC) | 0x02
    if b[0] == 0x02 and b[1] == 0x42:  # keep 02:42 for Docker endpoints only
        b[1] = 0x43
    return ":".join(f"{x:02x}" for x in b)


def docker_random_mac(*parts: object) -> str:
    """Docker's MAC for its own bridges: ``02:42:`` + 4 random (here: hashed) bytes."""
    return "02:42:" + ":".join(f"{x:02x}" for x in _h("dmac", *parts)[:4])


def nic_mac(ip: str) -> str:
    """A node NIC MAC (Parallels OUI 00:1c:42 as in seed 001) from the underlay address."""
    b = ipaddress.IPv4Address(ip).packed
    return "00:1c:42:" + ":".join(f"{x:02x}" for x in b[1:])


def veth_name(*parts: object) -> str:
    """Docker's host-side veth name: ``veth`` + 7 hex."""
    return "veth" + _h("veth", *parts).hex()[:7]


# ---------------------------------------------------------------------------- model
@dataclass
class Rule:
    """One iptables rule: ``iptables -t table -A chain *args``."""

    table: str
    chain: str
    args: list[str]
    tag: str = ""
    """What a fault hook looks for: ``dnat``, ``snat``, ``mark``, ``vipmark``, ``redirect``, ..."""

    def restore_line(self) -> str:
        return " ".join(["-A", self.chain, *(f'"{a}"' if " " in a else a for a in self.args)])


@dataclass
class Iface:
    """A link inside one namespace."""

    name: str
    kind: str  # veth | bridge | vxlan
    mac: str
    mtu: int
    addresses: list[str] = field(default_factory=list)
    peer: tuple[str, str] | None = None  # (netns, iface) of the veth peer
    create_peer: bool = False  # this side runs `link add ... peer name X netns OTHER`
    bridge: str | None = None  # master bridge in the same namespace
    network: str | None = None  # docker network this link is attached to
    vxlan: dict[str, Any] | None = None  # {vni, port, created_in, tmp_name}
    capture: bool = False
    addresses6: list[str] = field(default_factory=list)  # dual-stack overlays: IPv6 CIDRs (status "addresses6")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "mac": self.mac, "mtu": self.mtu,
                             "addresses": list(self.addresses), "network": self.network,
                             "peer": ({"netns": self.peer[0], "iface": self.peer[1]} if self.peer else None),
                             "bridge": self.bridge}
        if self.addresses6:
            d["addresses6"] = list(self.addresses6)
        if self.vxlan:
            d["vxlan"] = {"vni": self.vxlan["vni"], "port": self.vxlan["port"],
                          "created_in": self.vxlan["created_in"]}
        return d


@dataclass
class Netns:
    """One network namespace of the lab."""

    name: str  # full netns name (prefixed with the lab name)
    node: str  # node1.. | client | underlay
    short: str  # host | ingress_sbox | 1-<netid10> | lb_<netid9> | <task name>
    role: str  # host | ingress_sbox | overlay | lb | task | client | underlay
    network: str | None = None
    interfaces: list[Iface] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)  # table -> user chains
    nft: str = ""
    ipvs: str = ""  # ipvsadm -R text
    fdb: list[str] = field(default_factory=list)  # `bridge fdb` batch lines
    neigh: list[str] = field(default_factory=list)  # `ip neigh` batch lines
    xfrm_states: list[XfrmState] = field(default_factory=list)  # encrypted overlays (host namespaces)
    xfrm_policies: list[XfrmPolicy] = field(default_factory=list)
    ip_extra: list[str] = field(default_factory=list)  # further `ip -batch` lines (rules, table routes)
    task: dict[str, Any] | None = None

    def iface(self, name: str) -> Iface:
        for i in self.interfaces:
            if i.name == name:
                return i
        raise KeyError(name)


@dataclass
class Task:
    """One task (container) of a service."""

    service: str
    slot: int
    node: str
    name: str  # my-web.1
    task_id: str
    container_id: str
    netns: str
    ips: dict[str, str] = field(default_factory=dict)  # network -> ip
    macs: dict[str, str] = field(default_factory=dict)
    ifaces: dict[str, str] = field(default_factory=dict)  # network -> iface name
    gw_ip: str = ""
    dns_port: int = 0
    ports: list[int] = field(default_factory=list)
    udp_ports: list[int] = field(default_factory=list)
    ips6: dict[str, str] = field(default_factory=dict)  # network -> IPv6 address (dual-stack overlays)


@dataclass
class Plan:
    """Everything needed to build and describe the lab."""

    spec: LabSpec
    lb: str  # "ipvs" | "nftables"
    namespaces: list[Netns]
    networks: list[dict[str, Any]]
    services: list[dict[str, Any]]
    tasks: list[Task]
    nodes: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    dns: dict[str, dict[str, list[str]]]  # task name -> records
    esp: str = "xfrm"  # "xfrm" (kernel IPsec) | "userspace" (meshpkt.lab.esp) for encrypted overlays

    def ns(self, name: str) -> Netns:
        for n in self.namespaces:
            if n.name == name:
                return n
        raise KeyError(name)

    def find(self, node: str, short: str) -> Netns:
        for n in self.namespaces:
            if n.node == node and n.short == short:
                return n
        raise KeyError(f"{node}/{short}")


# ---------------------------------------------------------------------------- planning
def default_node_ips(spec: LabSpec) -> list[str]:
    """Underlay addresses: the spec's, else .10/.18/.22 then .30, .31, ... of the underlay."""
    ips = list(spec.node_ips[: spec.nodes])
    net = ipaddress.ip_network(spec.underlay_subnet)
    defaults = [a for a in ("10.211.55.10", "10.211.55.18", "10.211.55.22")
                if ipaddress.ip_address(a) in net]
    if len(defaults) < 3:
        defaults = []
    host = 30 if defaults else 10
    while len(ips) < spec.nodes:
        if defaults:
            cand = defaults.pop(0)
        else:
            cand = str(net.network_address + host)
            host += 1
        if cand not in ips and cand != spec.client_ip:
            ips.append(cand)
    return ips


class _Alloc:
    def __init__(self, subnet: str) -> None:
        self.net = ipaddress.IPv4Network(subnet)
        self.next = 1

    def take(self) -> str:
        addr = self.net.network_address + self.next
        if addr >= self.net.broadcast_address:
            raise ValueError(f"subnet {self.net} is full")
        self.next += 1
        return str(addr)


def plan(spec: LabSpec, lb: str = "nftables", esp: str = "xfrm") -> Plan:
    """Plan the whole lab for ``spec`` with load balancer implementation ``lb`` (ipvs|nftables) and IPsec
    implementation ``esp`` for encrypted overlays (xfrm: the kernel's; userspace: :mod:`meshpkt.lab.esp`)."""
    spec.check()
    return _Planner(spec, lb, esp).run()


def svc_nets(s: ServiceSpec) -> list[str]:
    """The overlays a service's tasks join: ``ingress`` when it publishes through the mesh, then its networks."""
    return (["ingress"] if s.ingress_ports() else []) + list(s.networks)


class _Planner:
    """The steps of :func:`plan`, in order; each fills in part of the lab."""

    def __init__(self, spec: LabSpec, lb: str, esp: str) -> None:
        self.spec = spec
        self.lb = lb
        self.esp = esp
        self.p = spec.name + "-"
        self.node_names = [f"node{i + 1}" for i in range(spec.nodes)]
        self.node_ips = dict(zip(self.node_names, default_node_ips(spec), strict=True))
        self.under_len = ipaddress.ip_network(spec.underlay_subnet).prefixlen
        self.port = spec.data_path_port
        self.gwn = ipaddress.ip_network(spec.gwbridge_subnet)
        self.svc_specs = list(spec.services)
        self.nss: list[Netns] = []
        self.tasks: list[Task] = []

    def run(self) -> Plan:
        self.networks()
        self.placement()
        self.addresses()
        self.make_tasks()
        self.underlay()
        for node in self.node_names:
            self.node(node)
        self.peers()
        self.encryption()
        dns = self.dns()
        services, nodes, clients, netlist = self.status_pieces()
        for ns in self.nss:  # there is no IPv6 in the routing mesh (only on dual-stack overlay interfaces)
            ns.sysctls = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1",
                          **ns.sysctls, **_v6_sysctls(ns)}
        return Plan(spec=self.spec, lb=self.lb, namespaces=self.nss, networks=netlist, services=services,
                    tasks=self.tasks, nodes=nodes, clients=clients, dns=dns, esp=self.esp)

    # ---------------------------------------------------------------- networks and addresses
    def networks(self) -> None:
        spec, port = self.spec, self.port
        nets: dict[str, dict[str, Any]] = {}
        ing_net = ipaddress.ip_network(spec.ingress_subnet)
        nets["ingress"] = {"name": "ingress", "id": swarm_id("net", "ingress"), "driver": "overlay",
                           "ingress": True, "subnet": str(ing_net), "gateway": str(ing_net.network_address + 1),
                           "vni": spec.ingress_vni, "port": port, "mtu": spec.overlay_mtu}
        for o in spec.overlays:
            on = ipaddress.ip_network(o.subnet)
            nets[o.name] = {"name": o.name, "id": swarm_id("net", o.name), "driver": "overlay", "ingress": False,
                            "subnet": str(on), "gateway": str(on.network_address + 1), "vni": o.vni,
                            "port": port, "mtu": encrypted_mtu(spec.overlay_mtu) if o.encrypted else spec.overlay_mtu}
            if o.encrypted:
                nets[o.name]["encrypted"] = True
            if o.subnet6:
                n6 = ipaddress.IPv6Network(o.subnet6)
                nets[o.name].update(subnet6=str(n6), gateway6=str(n6.network_address + 1))
        gwn = self.gwn
        nets["docker_gwbridge"] = {"name": "docker_gwbridge", "id": hex_id("net", "docker_gwbridge"),
                                   "driver": "bridge", "ingress": False, "subnet": str(gwn),
                                   "gateway": str(gwn.network_address + 1), "vni": None, "port": None,
                                   "mtu": spec.underlay_mtu, "scope": "local"}
        self.nets = nets
        self.overlay_names = ["ingress"] + [o.name for o in spec.overlays]
        self.allocs = {n: _Alloc(nets[n]["subnet"]) for n in self.overlay_names}
        for n in self.overlay_names:
            self.allocs[n].take()  # gateway
        self.prefixlen = {n: ipaddress.ip_network(nets[n]["subnet"]).prefixlen for n in self.overlay_names}

    def placement(self) -> None:
        """Tasks round-robin over the nodes; which nodes need each user overlay."""
        self.placements: list[tuple[ServiceSpec, int, str]] = []
        for si, s in enumerate(self.svc_specs):
            for slot in range(1, s.replicas + 1):
                self.placements.append((s, slot, self.node_names[(si + slot - 1) % self.spec.nodes]))
        ov_nodes: dict[str, list[str]] = {n: [] for n in self.overlay_names}
        ov_nodes["ingress"] = list(self.node_names)
        for s, _slot, node in self.placements:
            for n in s.networks:
                if node not in ov_nodes[n]:
                    ov_nodes[n].append(node)
        for n in self.overlay_names[1:]:
            ov_nodes[n].sort(key=self.node_names.index)
        self.ov_nodes = ov_nodes

    def addresses(self) -> None:
        """ingress_sbox endpoints, VIPs, lb_ endpoints and fwmarks (in Docker's allocation order)."""
        allocs = self.allocs
        self.sbox_ip = {node: allocs["ingress"].take() for node in self.node_names}
        # allocation order of (service, network) LBs: internal services, then published overlays, then ingress
        self.published = [s for s in self.svc_specs if s.ingress_ports()]
        internal = [s for s in self.svc_specs if not s.ingress_ports()]
        self.lb_order: list[tuple[ServiceSpec, str]] = [(s, n) for s in internal + self.published for n in s.networks]
        self.lb_order += [(s, "ingress") for s in self.published]
        self.vips: dict[str, dict[str, str]] = {s.name: {} for s in self.svc_specs}
        for s in self.published:
            self.vips[s.name]["ingress"] = allocs["ingress"].take()
        for n in self.overlay_names[1:]:
            for s, net in self.lb_order:
                if net == n and s.mode == "vip":
                    self.vips[s.name][n] = allocs[n].take()
        self.lb_ip = {n: {node: allocs[n].take() for node in self.ov_nodes[n]} for n in self.overlay_names[1:]}
        self.marks: dict[str, dict[str, dict[str, int]]] = {node: {} for node in self.node_names}
        for node in self.node_names:
            m = self.spec.fwmark_base
            for s, net in self.lb_order:
                if s.mode != "vip":
                    continue
                self.marks[node].setdefault(s.name, {})[net] = m
                m += 1

    def make_tasks(self) -> None:
        """Tasks of published services get ingress IPs first (in service order), then overlays."""
        gw_alloc = {node: _Alloc(str(self.gwn)) for node in self.node_names}
        for node in self.node_names:
            gw_alloc[node].take()  # .1 bridge
            gw_alloc[node].take()  # .2 ingress_sbox
        by_slot: dict[tuple[str, int], Task] = {}
        for s, slot, node in self.placements:
            tid = swarm_id("task", s.name, slot)
            cid = hex_id("container", s.name, slot, node)
            t = Task(service=s.name, slot=slot, node=node, name=f"{s.name}.{slot}", task_id=tid,
                     container_id=cid, netns=f"{self.p}{node}-{cid[:12]}")
            t.ports = s.target_ports()
            t.udp_ports = s.udp_ports()
            t.dns_port = 32768 + int.from_bytes(_h("dns", s.name, slot)[:2], "big") % 28000
            self.tasks.append(t)
            by_slot[(s.name, slot)] = t
        for n in self.overlay_names:
            for s, slot, _node in self.placements:
                if n in svc_nets(s):
                    t = by_slot[(s.name, slot)]
                    t.ips[n] = self.allocs[n].take()
                    t.macs[n] = docker_mac(t.ips[n])
        for t in self.tasks:
            t.gw_ip = gw_alloc[t.node].take()
        for t in self.tasks:
            t.ips6 = {n: v6 for n, ip in t.ips.items() if (v6 := self.v6(n, ip))}

    def v6(self, n: str, ip: str) -> str:
        """The IPv6 address of the endpoint with IPv4 ``ip`` on a dual-stack overlay (same host offset), or ''."""
        sub6 = self.nets[n].get("subnet6")
        if not sub6:
            return ""
        off = int(ipaddress.IPv4Address(ip)) - int(ipaddress.IPv4Network(self.nets[n]["subnet"]).network_address)
        return str(ipaddress.IPv6Network(sub6).network_address + off)

    # ---------------------------------------------------------------- namespaces
    def underlay(self) -> None:
        spec, p = self.spec, self.p
        und = Netns(name=f"{p}underlay", node="underlay", short="host", role="underlay")
        und.interfaces.append(Iface("br0", "bridge", local_mac(spec.name, "underlay-br0"), spec.underlay_mtu,
                                    capture=True))
        self.nss.append(und)
        client = Netns(name=f"{p}client", node="client", short="host", role="client")
        client.interfaces.append(Iface("eth0", "veth", nic_mac(spec.client_ip), spec.underlay_mtu,
                                       [f"{spec.client_ip}/{self.under_len}"], peer=(und.name, "vclient"),
                                       capture=True))
        und.interfaces.append(Iface("vclient", "veth", local_mac(spec.name, "vclient"), spec.underlay_mtu,
                                    peer=(client.name, "eth0"), create_peer=True, bridge="br0"))
        self.nss.append(client)
        self.und, self.client = und, client

    def ovl_short(self, n: str) -> str:
        return "1-" + self.nets[n]["id"][:10]

    def lb_short(self, n: str) -> str:
        return "ingress_sbox" if n == "ingress" else "lb_" + self.nets[n]["id"][:9]

    def node(self, node: str) -> None:
        host = self.host_ns(node)
        ovl = self.overlay_nss(node, host)
        sb = self.sbox_ns(node, host, ovl)
        lbns: dict[str, Netns] = {"ingress": sb}
        lbns.update(self.lb_nss(node, ovl))
        for t in [t for t in self.tasks if t.node == node]:
            self.task_ns(node, t, host, ovl)
        self.node_rules(node, host, lbns)

    def host_ns(self, node: str) -> Netns:
        spec, gwn = self.spec, self.gwn
        nip = self.node_ips[node]
        host = Netns(name=f"{self.p}{node}", node=node, short="host", role="host")
        host.interfaces.append(Iface("eth0", "veth", nic_mac(nip), spec.underlay_mtu,
                                     [f"{nip}/{self.under_len}"], peer=(self.und.name, f"v{node}"), capture=True))
        self.und.interfaces.append(Iface(f"v{node}", "veth", local_mac(spec.name, f"v{node}"), spec.underlay_mtu,
                                         peer=(host.name, "eth0"), create_peer=True, bridge="br0"))
        gw_ip = str(gwn.network_address + 1)
        host.interfaces.append(Iface("docker_gwbridge", "bridge", docker_random_mac(node, "gwbridge"),
                                     spec.underlay_mtu, [f"{gw_ip}/{gwn.prefixlen}"], network="docker_gwbridge"))
        host.sysctls.update({"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"})
        self.nss.append(host)
        return host

    def overlay_nss(self, node: str, host: Netns) -> dict[str, Netns]:
        """The overlay namespaces (ingress + user overlays with tasks here): br0 + vxlan0."""
        ovl: dict[str, Netns] = {}
        for n in self.overlay_names:
            if node not in self.ov_nodes[n]:
                continue
            netd = self.nets[n]
            ov = Netns(name=f"{self.p}{node}-{self.ovl_short(n)}", node=node, short=self.ovl_short(n),
                       role="overlay", network=n)
            vmac = local_mac(node, n, "vxlan0")
            ov.interfaces.append(Iface("br0", "bridge", vmac, netd["mtu"],
                                       [f"{netd['gateway']}/{self.prefixlen[n]}"], network=n, capture=True))
            if netd.get("gateway6"):
                ov.interfaces[-1].addresses6.append(f"{netd['gateway6']}/{_plen6(netd)}")
            tmp = f"vx-{netd['vni']:06x}-{netd['id'][:5]}"
            ov.interfaces.append(Iface("vxlan0", "vxlan", vmac, netd["mtu"], bridge="br0", network=n,
                                       vxlan={"vni": netd["vni"], "port": self.port, "created_in": host.name,
                                              "tmp_name": tmp},
                                       capture=True))
            ovl[n] = ov
            self.nss.append(ov)
        return ovl

    def attach(self, ovl: dict[str, Netns], ns: Netns, ifname: str, n: str, ip: str, mac: str,
               capture: bool = False) -> None:
        _attach(ovl[n], ns, ifname, n, ip, mac, self.nets[n]["mtu"], self.prefixlen[n], capture)

    def attach_gw(self, host: Netns, node: str, ns: Netns, ifname: str, ip: str, key: str,
                  capture: bool = False) -> None:
        _attach_gw(host, node, ns, ifname, ip, key, self.spec.underlay_mtu, self.gwn, capture=capture)

    def sbox_ns(self, node: str, host: Netns, ovl: dict[str, Netns]) -> Netns:
        sb = Netns(name=f"{self.p}{node}-ingress_sbox", node=node, short="ingress_sbox", role="ingress_sbox",
                   network="ingress")
        self.attach(ovl, sb, "eth0", "ingress", self.sbox_ip[node], docker_mac(self.sbox_ip[node]), capture=True)
        for s in self.published:
            sb.interfaces[-1].addresses.append(f"{self.vips[s.name]['ingress']}/32")
        self.attach_gw(host, node, sb, "eth1", str(self.gwn.network_address + 2), "ingress-sbox", capture=True)
        sb.sysctls.update({"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0",
                           "net.ipv4.vs.conntrack": "1", "net.ipv4.vs.conn_reuse_mode": "0",
                           "net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "1"})
        self.nss.append(sb)
        return sb

    def lb_nss(self, node: str, ovl: dict[str, Netns]) -> dict[str, Netns]:
        """The ``lb_<netid>`` namespaces of the user overlays with tasks on ``node``."""
        out: dict[str, Netns] = {}
        for n in self.overlay_names[1:]:
            if node not in self.ov_nodes[n]:
                continue
            lbn = Netns(name=f"{self.p}{node}-{self.lb_short(n)}", node=node, short=self.lb_short(n), role="lb",
                        network=n)
            ip = self.lb_ip[n][node]
            self.attach(ovl, lbn, "eth0", n, ip, docker_mac(ip), capture=True)
            for s, net in self.lb_order:
                if net == n and s.mode == "vip":
                    lbn.interfaces[-1].addresses.append(f"{self.vips[s.name][n]}/32")
            lbn.sysctls.update({"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0",
                                "net.ipv4.conf.eth0.send_redirects": "0",
                                "net.ipv4.vs.conntrack": "1", "net.ipv4.vs.conn_reuse_mode": "0",
                                "net.ipv4.vs.expire_nodest_conn": "1",
                                "net.ipv4.vs.expire_quiescent_template": "1"})
            out[n] = lbn
            self.nss.append(lbn)
        return out

    def task_ns(self, node: str, t: Task, host: Netns, ovl: dict[str, Netns]) -> None:
        s = next(x for x in self.svc_specs if x.name == t.service)
        tn = Netns(name=t.netns, node=node, short=t.name, role="task", network=None)
        idx = 0
        host_mode = bool(s.host_ports())
        for n in svc_nets(s):
            ifname = f"eth{idx}"
            self.attach(ovl, tn, ifname, n, t.ips[n], t.macs[n], capture=True)
            if n in t.ips6:
                tn.interfaces[-1].addresses6.append(f"{t.ips6[n]}/{_plen6(self.nets[n])}")
            t.ifaces[n] = ifname
            idx += 1
            if idx == 1:
                self.attach_gw(host, node, tn, "eth1", t.gw_ip, f"gateway_{t.container_id[:12]}", host_mode)
                t.ifaces["docker_gwbridge"] = "eth1"
                idx = 2
        if not svc_nets(s):  # host-mode only: docker_gwbridge is the task's only network
            self.attach_gw(host, node, tn, "eth0", t.gw_ip, f"gateway_{t.container_id[:12]}", host_mode)
            t.ifaces["docker_gwbridge"] = "eth0"
        tn.sysctls.update({"net.ipv4.ip_unprivileged_port_start": "0",
                           "net.ipv4.ping_group_range": "0 2147483647"})
        tn.task = {"name": t.name, "service": t.service, "slot": t.slot, "task_id": t.task_id,
                   "docker_name": f"{t.name}.{t.task_id}", "container_id": t.container_id,
                   "ips": dict(t.ips), "ports": list(t.ports)}
        if t.ips6:
            tn.task["ips6"] = dict(t.ips6)
        if t.udp_ports:
            tn.task["udp_ports"] = list(t.udp_ports)
        _task_rules(tn, t, s)
        self.nss.append(tn)

    def node_rules(self, node: str, host: Netns, lbns: dict[str, Netns]) -> None:
        """Rules of the host, ingress_sbox and lb_ namespaces, and their load balancers."""
        gwn = self.gwn
        _host_rules(host, self.published, sbox_ip=str(gwn.network_address + 2), gwsubnet=str(gwn))
        _host_mode_rules(host, [(t, s) for t in self.tasks if t.node == node
                                for s in self.svc_specs if s.name == t.service and s.host_ports()])
        for n, lbn in lbns.items():
            specs = [s for s in self.svc_specs if s.mode == "vip" and n in svc_nets(s)]
            _lb_rules(lbn, n, self.nets[n]["subnet"], self.sbox_ip[node] if n == "ingress" else self.lb_ip[n][node],
                      specs, self.vips, self.marks[node], self.lb)
            _lb_balancer(lbn, n, specs, self.vips, self.marks[node], self.tasks, self.lb)

    # ---------------------------------------------------------------- peers, encryption, DNS
    def peers(self) -> None:
        """fdb + neighbour entries for every remote endpoint on each overlay."""
        endpoints: dict[str, list[tuple[str, str, str]]] = {n: [] for n in self.overlay_names}  # (node, ip, mac)
        for node in self.node_names:
            endpoints["ingress"].append((node, self.sbox_ip[node], docker_mac(self.sbox_ip[node])))
        for n in self.overlay_names[1:]:
            for node, ip in self.lb_ip[n].items():
                endpoints[n].append((node, ip, docker_mac(ip)))
        for t in self.tasks:
            for n, ip in t.ips.items():
                endpoints[n].append((t.node, ip, t.macs[n]))
        for ns in self.nss:
            if ns.role != "overlay":
                continue
            for node, ip, mac in endpoints[ns.network or ""]:
                if node == ns.node:
                    continue
                ns.fdb.append(f"fdb add {mac} dev vxlan0 dst {self.node_ips[node]} self permanent")
                ns.neigh.append(f"neigh add {ip} lladdr {mac} dev vxlan0 nud permanent")
                if ip6 := self.v6(ns.network or "", ip):
                    ns.neigh.append(f"neigh add {ip6} lladdr {mac} dev vxlan0 nud permanent")

    def encryption(self) -> None:
        """Encrypted overlays: per node pair ESP states + out policy, per VNI the mark/drop/accept rules."""
        enc = [o for o in self.spec.overlays if o.encrypted]
        if not enc:
            return
        tag = int.from_bytes(_h("keytag", self.spec.name)[:4], "big")
        hosts = {ns.node: ns for ns in self.nss if ns.role == "host"}
        for node, host in hosts.items():
            peers = sorted({m for o in enc if node in self.ov_nodes[o.name] for m in self.ov_nodes[o.name]
                            if m != node}, key=self.node_names.index)
            for peer in peers:
                states, pol = pair_sas(self.node_ips[node], self.node_ips[peer], self.port, tag)
                host.xfrm_states += states
                host.xfrm_policies.append(pol)
            if not peers:
                continue
            if self.esp == "userspace":
                _esp_tun(host, self.spec.underlay_mtu)
            for o in enc:
                if node in self.ov_nodes[o.name]:
                    _encryption_rules(host, self.port, o.vni, self.spec.vni_match, self.esp)

    def dns(self) -> dict[str, dict[str, list[str]]]:
        """Records per task: the services on the task's user networks (VIP, or the tasks for dnsrr)."""
        dns: dict[str, dict[str, list[str]]] = {}
        for t in self.tasks:
            rec: dict[str, list[str]] = {}
            for n in t.ips:
                if n == "ingress":
                    continue
                for s in self.svc_specs:
                    if n not in s.networks:
                        continue
                    tips = [x.ips[n] for x in self.tasks if x.service == s.name]
                    if s.mode == "vip":
                        rec.setdefault(s.name, []).append(self.vips[s.name][n])
                    else:
                        rec.setdefault(s.name, []).extend(tips)
                    rec.setdefault(f"tasks.{s.name}", []).extend(tips)
            dns[t.name] = rec
        return dns

    # ---------------------------------------------------------------- status pieces
    def status_pieces(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
                                     list[dict[str, Any]]]:
        services = [self.service_json(s) for s in self.svc_specs]
        nodes = [{"name": node, "underlay_ip": self.node_ips[node], "mac": nic_mac(self.node_ips[node]),
                  "ingress_ip": self.sbox_ip[node], "gwbridge_ip": str(self.gwn.network_address + 1),
                  "lb_ips": {n: self.lb_ip[n][node] for n in self.overlay_names[1:] if node in self.lb_ip[n]}}
                 for node in self.node_names]
        clients = [{"name": "client", "ip": self.spec.client_ip, "mac": nic_mac(self.spec.client_ip),
                    "netns": self.client.name}]
        netlist = [self.nets[n] for n in self.overlay_names] + [self.nets["docker_gwbridge"]]
        for n in self.overlay_names:
            self.nets[n]["nodes"] = list(self.ov_nodes[n])
        return services, nodes, clients, netlist

    def service_json(self, s: ServiceSpec) -> dict[str, Any]:
        nets = svc_nets(s)

        def backend(t: Task) -> dict[str, Any]:
            first = nets[0] if nets else None
            b = {"task": t.name, "node": t.node, "netns": t.netns,
                 "ip": t.ips[first] if first else t.gw_ip, "mac": t.macs[first] if first else docker_mac(t.gw_ip),
                 "ips": dict(t.ips), "macs": dict(t.macs), "container_id": t.container_id, "task_id": t.task_id}
            if s.host_ports():
                b["gwbridge_ip"] = t.gw_ip
            if t.ips6:
                b["ips6"] = dict(t.ips6)
            return b

        out: dict[str, Any] = {
            "name": s.name, "id": swarm_id("service", s.name), "mode": s.mode, "replicas": s.replicas,
            "networks": nets, "vips": dict(self.vips[s.name]),
            "fwmarks": {node: dict(self.marks[node].get(s.name, {})) for node in self.node_names},
            "published": [_published_json(x) for x in s.publish],
            "target_ports": s.target_ports(),
            "backends": [backend(t) for t in self.tasks if t.service == s.name]}
        if s.udp_ports():
            out["udp_ports"] = s.udp_ports()
        return out


def _v6_sysctls(ns: Netns) -> dict[str, str]:
    """Dual-stack overlays: IPv6 on the interfaces that carry an IPv6 address only, without link-local
    addresses, router advertisements or DAD (quiet captures); off everywhere else."""
    v6 = [i for i in ns.interfaces if i.addresses6]
    if not v6:
        return {}
    out = {"net.ipv6.conf.all.disable_ipv6": "0"}
    v6 += [i for i in ns.interfaces if i.kind == "vxlan"]  # its permanent IPv6 neighbours answer ND (proxy)
    for i in ns.interfaces:
        out[f"net.ipv6.conf.{i.name}.disable_ipv6"] = "0" if i in v6 else "1"
    for i in v6:
        out.update({f"net.ipv6.conf.{i.name}.addr_gen_mode": "1", f"net.ipv6.conf.{i.name}.accept_ra": "0",
                    f"net.ipv6.conf.{i.name}.accept_dad": "0"})
    return out


def _plen6(netd: dict[str, Any]) -> int:
    return ipaddress.IPv6Network(netd["subnet6"]).prefixlen


def _published_json(x: PortSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"published": x.published, "target": x.target, "protocol": x.protocol}
    if x.mode != "ingress":
        d["mode"] = x.mode
    return d


def _attach(o: Netns, ns: Netns, ifname: str, n: str, ip: str, mac: str, mtu: int, plen: int,
            capture: bool) -> None:
    """A veth from overlay namespace ``o`` (br0 port vethN) to ``ns`` (``ifname`` with ``ip``)."""
    vname = f"veth{sum(1 for i in o.interfaces if i.kind == 'veth')}"
    ns.interfaces.append(Iface(ifname, "veth", mac, mtu, [f"{ip}/{plen}"], peer=(o.name, vname), network=n,
                               capture=capture))
    o.interfaces.append(Iface(vname, "veth", local_mac(o.name, vname), mtu, peer=(ns.name, ifname),
                              create_peer=True, bridge="br0", network=n))


def _attach_gw(host: Netns, node: str, ns: Netns, ifname: str, ip: str, key: str, mtu: int,
               gwn: ipaddress.IPv4Network | ipaddress.IPv6Network, capture: bool) -> None:
    """A veth from the host's docker_gwbridge (veth<7 hex>) to ``ns`` (``ifname``), default route via it."""
    vname = veth_name(node, key)
    gw_ip = str(gwn.network_address + 1)
    ns.interfaces.append(Iface(ifname, "veth", docker_mac(ip), mtu, [f"{ip}/{gwn.prefixlen}"],
                               peer=(host.name, vname), network="docker_gwbridge", capture=capture))
    host.interfaces.append(Iface(vname, "veth", local_mac(node, key, "gwveth"), mtu, peer=(ns.name, ifname),
                                 create_peer=True, bridge="docker_gwbridge", network="docker_gwbridge"))
    ns.routes.append(f"default via {gw_ip} dev {ifname}")


# ---------------------------------------------------------------------------- rules
def _mark(m: int) -> str:
    return f"0x{m:x}/0xffffffff"


def _host_rules(ns: Netns, published: list[ServiceSpec], sbox_ip: str, gwsubnet: str) -> None:
    """Docker 24's host rules (seed 001): nat DOCKER-INGRESS DNAT, filter DOCKER-INGRESS, MASQUERADE."""
    ns.chains = {"nat": ["DOCKER", "DOCKER-INGRESS"],
                 "filter": ["DOCKER", "DOCKER-INGRESS", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2",
                            "DOCKER-USER"]}
    R = ns.rules
    R += [Rule("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS"]),
          Rule("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
          Rule("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS"]),
          Rule("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
          Rule("nat", "POSTROUTING", ["-o", "docker_gwbridge", "-m", "addrtype", "--src-type", "LOCAL",
                                      "-j", "MASQUERADE"], "masquerade"),
          Rule("nat", "POSTROUTING", ["-s", gwsubnet, "!", "-o", "docker_gwbridge", "-j", "MASQUERADE"]),
          Rule("nat", "DOCKER", ["-i", "docker_gwbridge", "-j", "RETURN"])]
    for s in published:
        for pt in s.ingress_ports():
            R.append(Rule("nat", "DOCKER-INGRESS", ["-p", pt.protocol, "-m", pt.protocol, "--dport", str(pt.published),
                                                    "-j", "DNAT", "--to-destination", f"{sbox_ip}:{pt.published}"],
                          port_tag("dnat", pt)))
    R.append(Rule("nat", "DOCKER-INGRESS", ["-j", "RETURN"]))
    R += [Rule("filter", "FORWARD", ["-j", "DOCKER-USER"]),
          Rule("filter", "FORWARD", ["-j", "DOCKER-INGRESS"]),
          Rule("filter", "FORWARD", ["-j", "DOCKER-ISOLATION-STAGE-1"]),
          Rule("filter", "FORWARD", ["-o", "docker_gwbridge", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                                     "-j", "ACCEPT"]),
          Rule("filter", "FORWARD", ["-o", "docker_gwbridge", "-j", "DOCKER"]),
          Rule("filter", "FORWARD", ["-i", "docker_gwbridge", "!", "-o", "docker_gwbridge", "-j", "ACCEPT"]),
          Rule("filter", "FORWARD", ["-i", "docker_gwbridge", "-o", "docker_gwbridge", "-j", "DROP"])]
    for s in published:
        for pt in s.ingress_ports():
            pr = pt.protocol
            R.append(Rule("filter", "DOCKER-INGRESS", ["-p", pr, "-m", pr, "--dport", str(pt.published),
                                                       "-j", "ACCEPT"], port_tag("accept", pt)))
            R.append(Rule("filter", "DOCKER-INGRESS", ["-p", pr, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                                                       "-m", pr, "--sport", str(pt.published), "-j", "ACCEPT"],
                          port_tag("accept", pt)))
    R += [Rule("filter", "DOCKER-INGRESS", ["-j", "RETURN"]),
          Rule("filter", "DOCKER-ISOLATION-STAGE-1", ["-i", "docker_gwbridge", "!", "-o", "docker_gwbridge",
                                                      "-j", "DOCKER-ISOLATION-STAGE-2"]),
          Rule("filter", "DOCKER-ISOLATION-STAGE-1", ["-j", "RETURN"]),
          Rule("filter", "DOCKER-ISOLATION-STAGE-2", ["-o", "docker_gwbridge", "-j", "DROP"]),
          Rule("filter", "DOCKER-ISOLATION-STAGE-2", ["-j", "RETURN"]),
          Rule("filter", "DOCKER-USER", ["-j", "RETURN"])]


def _dns_rules(ns: Netns, dns_port: int | None) -> None:
    ns.chains.setdefault("nat", []).extend(["DOCKER_OUTPUT", "DOCKER_POSTROUTING"])
    ns.rules += [Rule("nat", "OUTPUT", ["-d", f"{DNS_IP}/32", "-j", "DOCKER_OUTPUT"]),
                 Rule("nat", "POSTROUTING", ["-d", f"{DNS_IP}/32", "-j", "DOCKER_POSTROUTING"])]
    if dns_port:
        for pr in ("tcp", "udp"):
            ns.rules.append(Rule("nat", "DOCKER_OUTPUT", ["-d", f"{DNS_IP}/32", "-p", pr, "-m", pr, "--dport", "53",
                                                          "-j", "DNAT", "--to-destination", f"{DNS_IP}:{dns_port}"],
                                 "dns"))
        for pr in ("tcp", "udp"):
            ns.rules.append(Rule("nat", "DOCKER_POSTROUTING", ["-s", f"{DNS_IP}/32", "-p", pr, "-m", pr, "--sport",
                                                               str(dns_port), "-j", "SNAT", "--to-source", ":53"],
                                 "dns"))


def _lb_rules(ns: Netns, network: str, subnet: str, lb_ip: str, services: list[ServiceSpec],
              vips: dict[str, dict[str, str]], marks: dict[str, dict[str, int]], lb: str) -> None:
    """ingress_sbox / lb_<net>: mangle MARKs, the -d <subnet> SNAT (IPVS: -m ipvs; emulation: ctstate DNAT)."""
    R = ns.rules
    if network == "ingress":
        for s in services:
            for pt in s.ingress_ports():
                R.append(Rule("mangle", "PREROUTING", ["-p", pt.protocol, "-m", pt.protocol, "--dport",
                                                       str(pt.published), "-j", "MARK", "--set-xmark",
                                                       _mark(marks[s.name][network])], f"mark:{s.name}"))
    for s in services:
        R.append(Rule("mangle", "INPUT", ["-d", f"{vips[s.name][network]}/32", "-j", "MARK", "--set-xmark",
                                          _mark(marks[s.name][network])], f"vipmark:{s.name}"))
    _dns_rules(ns, None)
    match = ["-m", "ipvs", "--ipvs"] if lb == "ipvs" else ["-m", "conntrack", "--ctstate", "DNAT"]
    R.append(Rule("nat", "POSTROUTING", ["-d", subnet, *match, "-j", "SNAT", "--to-source", lb_ip], "snat"))


def _lb_balancer(ns: Netns, network: str, services: list[ServiceSpec], vips: dict[str, dict[str, str]],
                 marks: dict[str, dict[str, int]], tasks: list[Task], lb: str,
                 exclude: frozenset[str] = frozenset()) -> None:
    """The FWM load balancer: ipvsadm restore text, or the nftables emulation table."""
    fwm_lines: list[str] = []
    lb_lines: list[str] = []
    ipvs: list[str] = []
    for s in services:
        m = marks[s.name][network]
        backends = [t.ips[network] for t in tasks
                    if t.service == s.name and network in t.ips and t.name not in exclude]
        ipvs.append(f"-A -f {m} -s rr")
        ipvs += [f"-a -f {m} -r {ip}:0 -m -w 1" for ip in backends]
        fwm_lines.append(f"\t\tip daddr {vips[s.name][network]} meta mark set 0x{m:x}")
        if backends:
            mp = ", ".join(f"{i} : {ip}" for i, ip in enumerate(backends))
            lb_lines.append(f"\t\tmeta mark 0x{m:x} ct state new dnat to numgen inc mod {len(backends)} map {{ {mp} }}")
    if lb == "ipvs":
        ns.ipvs = "\n".join(ipvs) + "\n"
        ns.nft = ""
        return
    ns.ipvs = ""
    ns.nft = "\n".join([
        f"table ip {LB_NFT_TABLE} {{",
        "\tchain fwm_vip {",
        "\t\ttype filter hook prerouting priority mangle + 1; policy accept;",
        *fwm_lines,
        "\t}",
        "\tchain fwm_lb {",
        "\t\ttype nat hook prerouting priority dstnat + 1; policy accept;",
        *lb_lines,
        "\t}",
        "}",
    ]) + "\n"


def lb_nft(p: Plan, ns: Netns, exclude: frozenset[str]) -> str:
    """Re-render the nftables LB table of ``ns`` without the tasks in ``exclude`` (fault hooks)."""
    network = ns.network or "ingress"
    specs = [s for s in p.spec.services if s.mode == "vip" and network in
             ((["ingress"] if s.publish else []) + list(s.networks))]
    vips = {s["name"]: s["vips"] for s in p.services}
    marks = {s["name"]: s["fwmarks"][ns.node] for s in p.services}
    tmp = Netns(ns.name, ns.node, ns.short, ns.role)
    _lb_balancer(tmp, network, specs, vips, marks, p.tasks, p.lb, exclude)
    return tmp.ipvs if p.lb == "ipvs" else tmp.nft


def port_tag(kind: str, pt: PortSpec) -> str:
    """Fault-hook tag of a per-port rule: ``dnat:9090`` (tcp), ``dnat:5300/udp``."""
    return f"{kind}:{pt.published}" + ("" if pt.protocol == "tcp" else f"/{pt.protocol}")


def _task_rules(ns: Netns, t: Task, s: ServiceSpec) -> None:
    """Task container: nat PREROUTING REDIRECT, filter INPUT/OUTPUT (published ports), embedded DNS NAT."""
    R = ns.rules
    ports = s.ingress_ports()
    if ports:
        ip = t.ips["ingress"]
        for pt in ports:
            pr = pt.protocol
            R.append(Rule("nat", "PREROUTING", ["-d", f"{ip}/32", "-p", pr, "-m", pr, "--dport", str(pt.published),
                                                "-j", "REDIRECT", "--to-ports", str(pt.target)],
                          port_tag("redirect", pt)))
        for pt in ports:
            pr = pt.protocol
            R.append(Rule("filter", "INPUT", ["-d", f"{ip}/32", "-p", pr, "-m", pr, "--dport", str(pt.target),
                                              "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT"]))
        for pr in ("sctp", "udp", "tcp"):
            R.append(Rule("filter", "INPUT", ["-d", f"{ip}/32", "-p", pr, "-j", "DROP"]))
        for pt in ports:
            pr = pt.protocol
            R.append(Rule("filter", "OUTPUT", ["-s", f"{ip}/32", "-p", pr, "-m", pr, "--sport", str(pt.target),
                                               "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"]))
        for pr in ("sctp", "udp", "tcp"):
            R.append(Rule("filter", "OUTPUT", ["-s", f"{ip}/32", "-p", pr, "-j", "DROP"]))
    _dns_rules(ns, t.dns_port)


def _host_mode_rules(ns: Netns, tasks: list[tuple[Task, ServiceSpec]]) -> None:
    """Host-mode ports of the tasks on this node: the bridge driver's port mapping on docker_gwbridge
    (``iptables.ChainInfo.Forward``): nat DOCKER DNAT, filter DOCKER ACCEPT, nat POSTROUTING MASQUERADE."""
    br = "docker_gwbridge"
    for t, s in tasks:
        for pt in s.host_ports():
            pr, dst = pt.protocol, t.gw_ip
            ns.rules.append(Rule("nat", "DOCKER", ["!", "-i", br, "-p", pr, "-m", pr, "--dport", str(pt.published),
                                                   "-j", "DNAT", "--to-destination", f"{dst}:{pt.target}"],
                                 port_tag("hostdnat", pt)))
            ns.rules.append(Rule("filter", "DOCKER", ["-d", f"{dst}/32", "!", "-i", br, "-o", br, "-p", pr, "-m", pr,
                                                      "--dport", str(pt.target), "-j", "ACCEPT"],
                                 port_tag("hostaccept", pt)))
            ns.rules.append(Rule("nat", "POSTROUTING", ["-s", f"{dst}/32", "-d", f"{dst}/32", "-p", pr, "-m", pr,
                                                        "--dport", str(pt.target), "-j", "MASQUERADE"]))


ESP_TUN = "esp0"
ESP_TABLE = 53444


def _esp_tun(ns: Netns, mtu: int) -> None:
    """Userspace ESP: the TUN device its process reads, and the policy route of marked VXLAN into it."""
    ns.interfaces.append(Iface(ESP_TUN, "tun", "", mtu))
    ns.ip_extra += [f"rule add fwmark {MARK:#x} lookup {ESP_TABLE}", f"route add default dev {ESP_TUN} table {ESP_TABLE}"]


def _encryption_rules(ns: Netns, port: int, vni: int, kind: str, esp: str) -> None:
    """Docker's per-VNI rules of an encrypted overlay (host namespace): mark cleartext-to-be VXLAN for the
    IPsec policy; drop VXLAN of this VNI that arrives without IPsec, accept it with IPsec. With userspace
    ESP, "arrived through IPsec" is "came out of esp0" (no secpath to match)."""
    match = vni_match(port, vni, kind)
    ns.rules.append(Rule("mangle", "OUTPUT", [*match, "-j", "MARK", "--set-xmark", f"{MARK:#x}/0xffffffff"],
                         f"espmark:{vni}"))
    via = ["!", "-i", ESP_TUN] if esp == "userspace" else []
    ns.rules.insert(0, Rule("filter", "INPUT", ["-m", "policy", "--dir", "in", "--pol", "none", *via, *match,
                                                "-j", "DROP"], f"espdrop:{vni}"))
    accept = ["-i", ESP_TUN] if esp == "userspace" else ["-m", "policy", "--dir", "in", "--pol", "ipsec"]
    ns.rules.append(Rule("filter", "INPUT", [*accept, *match, "-j", "ACCEPT"], f"espaccept:{vni}"))


def iptables_restore_text(ns: Netns) -> str:
    """The ``iptables-restore`` input for a namespace (tables in a fixed order)."""
    out: list[str] = []
    for table in ("mangle", "nat", "filter"):
        rules = [r for r in ns.rules if r.table == table]
        chains = ns.chains.get(table, [])
        if not rules and not chains:
            continue
        out.append(f"*{table}")
        builtin = {"mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
                   "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
                   "filter": ["INPUT", "FORWARD", "OUTPUT"]}[table]
        out += [f":{c} ACCEPT [0:0]" for c in builtin]
        out += [f":{c} - [0:0]" for c in chains]
        out += [r.restore_line() for r in rules]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
