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

from meshpkt.lab.spec import LabSpec, ServiceSpec

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
        return " ".join(["-A", self.chain, *self.args])


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

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "mac": self.mac, "mtu": self.mtu,
                             "addresses": list(self.addresses), "network": self.network,
                             "peer": ({"netns": self.peer[0], "iface": self.peer[1]} if self.peer else None),
                             "bridge": self.bridge}
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


def plan(spec: LabSpec, lb: str = "nftables") -> Plan:
    """Plan the whole lab for ``spec`` with load balancer implementation ``lb`` (ipvs|nftables)."""
    spec.check()
    p = spec.name + "-"
    node_names = [f"node{i + 1}" for i in range(spec.nodes)]
    node_ips = dict(zip(node_names, default_node_ips(spec), strict=True))
    under_len = ipaddress.ip_network(spec.underlay_subnet).prefixlen
    port = spec.data_path_port

    # ---- networks
    ingress_id = swarm_id("net", "ingress")
    nets: dict[str, dict[str, Any]] = {}
    ing_net = ipaddress.ip_network(spec.ingress_subnet)
    nets["ingress"] = {"name": "ingress", "id": ingress_id, "driver": "overlay", "ingress": True,
                       "subnet": str(ing_net), "gateway": str(ing_net.network_address + 1),
                       "vni": spec.ingress_vni, "port": port, "mtu": spec.overlay_mtu}
    for o in spec.overlays:
        on = ipaddress.ip_network(o.subnet)
        nets[o.name] = {"name": o.name, "id": swarm_id("net", o.name), "driver": "overlay", "ingress": False,
                        "subnet": str(on), "gateway": str(on.network_address + 1), "vni": o.vni,
                        "port": port, "mtu": spec.overlay_mtu}
    gwn = ipaddress.ip_network(spec.gwbridge_subnet)
    nets["docker_gwbridge"] = {"name": "docker_gwbridge", "id": hex_id("net", "docker_gwbridge"),
                               "driver": "bridge", "ingress": False, "subnet": str(gwn),
                               "gateway": str(gwn.network_address + 1), "vni": None, "port": None,
                               "mtu": spec.underlay_mtu, "scope": "local"}
    overlay_names = ["ingress"] + [o.name for o in spec.overlays]
    allocs = {n: _Alloc(nets[n]["subnet"]) for n in overlay_names}
    for n in overlay_names:
        allocs[n].take()  # gateway
    prefixlen = {n: ipaddress.ip_network(nets[n]["subnet"]).prefixlen for n in overlay_names}

    # ---- placement
    svc_specs = list(spec.services)
    placements: list[tuple[ServiceSpec, int, str]] = []
    for si, s in enumerate(svc_specs):
        for slot in range(1, s.replicas + 1):
            placements.append((s, slot, node_names[(si + slot - 1) % spec.nodes]))

    def svc_nets(s: ServiceSpec) -> list[str]:
        return (["ingress"] if s.publish else []) + list(s.networks)

    # nodes needing each user overlay (tasks on it)
    ov_nodes: dict[str, list[str]] = {n: [] for n in overlay_names}
    ov_nodes["ingress"] = list(node_names)
    for s, _slot, node in placements:
        for n in s.networks:
            if node not in ov_nodes[n]:
                ov_nodes[n].append(node)
    for n in overlay_names[1:]:
        ov_nodes[n].sort(key=node_names.index)

    # ---- ingress sbox endpoints, VIPs, lb endpoints, tasks
    sbox_ip = {node: allocs["ingress"].take() for node in node_names}
    # allocation order of (service, network) LBs: internal services, then published overlays, then ingress
    internal = [s for s in svc_specs if not s.publish]
    published = [s for s in svc_specs if s.publish]
    lb_order: list[tuple[ServiceSpec, str]] = []
    for s in internal + published:
        for n in s.networks:
            lb_order.append((s, n))
    for s in published:
        lb_order.append((s, "ingress"))
    vips: dict[str, dict[str, str]] = {s.name: {} for s in svc_specs}
    for s in published:
        vips[s.name]["ingress"] = allocs["ingress"].take()
    for n in overlay_names[1:]:
        for s, net in lb_order:
            if net == n and s.mode == "vip":
                vips[s.name][n] = allocs[n].take()
    lb_ip = {n: {node: allocs[n].take() for node in ov_nodes[n]} for n in overlay_names[1:]}
    marks: dict[str, dict[str, dict[str, int]]] = {node: {} for node in node_names}
    for node in node_names:
        m = spec.fwmark_base
        for s, net in lb_order:
            if s.mode != "vip":
                continue
            marks[node].setdefault(s.name, {})[net] = m
            m += 1

    tasks: list[Task] = []
    gw_alloc = {node: _Alloc(str(gwn)) for node in node_names}
    for node in node_names:
        gw_alloc[node].take()  # .1 bridge
        gw_alloc[node].take()  # .2 ingress_sbox
    # tasks of published services get ingress IPs first (in service order), then overlays
    by_slot: dict[tuple[str, int], Task] = {}
    for s, slot, node in placements:
        tid = swarm_id("task", s.name, slot)
        cid = hex_id("container", s.name, slot, node)
        t = Task(service=s.name, slot=slot, node=node, name=f"{s.name}.{slot}", task_id=tid,
                 container_id=cid, netns=f"{p}{node}-{cid[:12]}")
        t.ports = s.target_ports()
        t.dns_port = 32768 + int.from_bytes(_h("dns", s.name, slot)[:2], "big") % 28000
        tasks.append(t)
        by_slot[(s.name, slot)] = t
    for n in overlay_names:
        for s, slot, _node in placements:
            if n in svc_nets(s):
                t = by_slot[(s.name, slot)]
                t.ips[n] = allocs[n].take()
                t.macs[n] = docker_mac(t.ips[n])
    for t in tasks:
        t.gw_ip = gw_alloc[t.node].take()

    # ---- namespaces
    nss: list[Netns] = []
    und = Netns(name=f"{p}underlay", node="underlay", short="host", role="underlay")
    und.interfaces.append(Iface("br0", "bridge", local_mac(spec.name, "underlay-br0"), spec.underlay_mtu,
                                capture=True))
    nss.append(und)
    client = Netns(name=f"{p}client", node="client", short="host", role="client")
    client.interfaces.append(Iface("eth0", "veth", nic_mac(spec.client_ip), spec.underlay_mtu,
                                   [f"{spec.client_ip}/{under_len}"], peer=(und.name, "vclient"),
                                   capture=True))
    und.interfaces.append(Iface("vclient", "veth", local_mac(spec.name, "vclient"), spec.underlay_mtu,
                                peer=(client.name, "eth0"), create_peer=True, bridge="br0"))
    nss.append(client)

    def ovl_short(n: str) -> str:
        return "1-" + nets[n]["id"][:10]

    def lb_short(n: str) -> str:
        return "ingress_sbox" if n == "ingress" else "lb_" + nets[n]["id"][:9]

    for node in node_names:
        nip = node_ips[node]
        host = Netns(name=f"{p}{node}", node=node, short="host", role="host")
        host.interfaces.append(Iface("eth0", "veth", nic_mac(nip), spec.underlay_mtu,
                                     [f"{nip}/{under_len}"], peer=(und.name, f"v{node}"), capture=True))
        und.interfaces.append(Iface(f"v{node}", "veth", local_mac(spec.name, f"v{node}"), spec.underlay_mtu,
                                    peer=(host.name, "eth0"), create_peer=True, bridge="br0"))
        gw_ip = str(gwn.network_address + 1)
        host.interfaces.append(Iface("docker_gwbridge", "bridge", docker_random_mac(node, "gwbridge"),
                                     spec.underlay_mtu, [f"{gw_ip}/{gwn.prefixlen}"], network="docker_gwbridge"))
        host.sysctls.update({"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"})
        nss.append(host)

        # overlay namespaces (ingress + user overlays with tasks here)
        ovl: dict[str, Netns] = {}
        for n in overlay_names:
            if node not in ov_nodes[n]:
                continue
            netd = nets[n]
            ov = Netns(name=f"{p}{node}-{ovl_short(n)}", node=node, short=ovl_short(n), role="overlay",
                       network=n)
            vmac = local_mac(node, n, "vxlan0")
            ov.interfaces.append(Iface("br0", "bridge", vmac, spec.overlay_mtu,
                                      [f"{netd['gateway']}/{prefixlen[n]}"], network=n, capture=True))
            tmp = f"vx-{netd['vni']:06x}-{netd['id'][:5]}"
            ov.interfaces.append(Iface("vxlan0", "vxlan", vmac, spec.overlay_mtu, bridge="br0", network=n,
                                      vxlan={"vni": netd["vni"], "port": port, "created_in": host.name,
                                             "tmp_name": tmp},
                                      capture=True))
            ovl[n] = ov
            nss.append(ov)

        def attach(ns: Netns, ifname: str, n: str, ip: str, mac: str, capture: bool = False,
                   _ovl: dict[str, Netns] = ovl) -> None:
            _attach(_ovl[n], ns, ifname, n, ip, mac, spec.overlay_mtu, prefixlen[n], capture)

        def attach_gw(ns: Netns, ifname: str, ip: str, key: str, _host: Netns = host, _node: str = node) -> None:
            _attach_gw(_host, _node, ns, ifname, ip, key, spec.underlay_mtu, gwn,
                       capture=(ifname == "eth1" and ns.role == "ingress_sbox"))

        # ingress_sbox
        sb = Netns(name=f"{p}{node}-ingress_sbox", node=node, short="ingress_sbox", role="ingress_sbox",
                   network="ingress")
        attach(sb, "eth0", "ingress", sbox_ip[node], docker_mac(sbox_ip[node]), capture=True)
        for s in published:
            sb.interfaces[-1].addresses.append(f"{vips[s.name]['ingress']}/32")
        attach_gw(sb, "eth1", str(gwn.network_address + 2), "ingress-sbox")
        sb.sysctls.update({"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0",
                           "net.ipv4.vs.conntrack": "1", "net.ipv4.vs.conn_reuse_mode": "0",
                           "net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "1"})
        nss.append(sb)

        # lb_<netid> namespaces
        lbns: dict[str, Netns] = {"ingress": sb}
        for n in overlay_names[1:]:
            if node not in ov_nodes[n]:
                continue
            lbn = Netns(name=f"{p}{node}-{lb_short(n)}", node=node, short=lb_short(n), role="lb", network=n)
            ip = lb_ip[n][node]
            attach(lbn, "eth0", n, ip, docker_mac(ip), capture=True)
            for s, net in lb_order:
                if net == n and s.mode == "vip":
                    lbn.interfaces[-1].addresses.append(f"{vips[s.name][n]}/32")
            lbn.sysctls.update({"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0",
                                "net.ipv4.conf.eth0.send_redirects": "0",
                                "net.ipv4.vs.conntrack": "1", "net.ipv4.vs.conn_reuse_mode": "0",
                                "net.ipv4.vs.expire_nodest_conn": "1",
                                "net.ipv4.vs.expire_quiescent_template": "1"})
            lbns[n] = lbn
            nss.append(lbn)

        # tasks
        for t in [t for t in tasks if t.node == node]:
            s = next(x for x in svc_specs if x.name == t.service)
            tn = Netns(name=t.netns, node=node, short=t.name, role="task", network=None)
            tnets = svc_nets(s)
            idx = 0
            for n in tnets:
                ifname = f"eth{idx}"
                attach(tn, ifname, n, t.ips[n], t.macs[n], capture=True)
                t.ifaces[n] = ifname
                idx += 1
                if idx == 1:
                    attach_gw(tn, "eth1", t.gw_ip, f"gateway_{t.container_id[:12]}")
                    t.ifaces["docker_gwbridge"] = "eth1"
                    idx = 2
            tn.sysctls.update({"net.ipv4.ip_unprivileged_port_start": "0",
                               "net.ipv4.ping_group_range": "0 2147483647"})
            tn.task = {"name": t.name, "service": t.service, "slot": t.slot, "task_id": t.task_id,
                       "docker_name": f"{t.name}.{t.task_id}", "container_id": t.container_id,
                       "ips": dict(t.ips), "ports": list(t.ports)}
            _task_rules(tn, t, s)
            nss.append(tn)

        # rules of host, sbox, lbs
        _host_rules(host, published, sbox_ip=str(gwn.network_address + 2), gwsubnet=str(gwn))
        for n, lbn in lbns.items():
            _lb_rules(lbn, n, nets[n]["subnet"], sbox_ip[node] if n == "ingress" else lb_ip[n][node],
                      [s for s in svc_specs if s.mode == "vip" and n in svc_nets(s)], vips, marks[node], lb)
            _lb_balancer(lbn, n, [s for s in svc_specs if s.mode == "vip" and n in svc_nets(s)], vips,
                         marks[node], tasks, lb)

    # ---- peers: fdb + neighbour entries for every remote endpoint on each overlay
    endpoints: dict[str, list[tuple[str, str, str]]] = {n: [] for n in overlay_names}  # (node, ip, mac)
    for node in node_names:
        endpoints["ingress"].append((node, sbox_ip[node], docker_mac(sbox_ip[node])))
    for n in overlay_names[1:]:
        for node, ip in lb_ip[n].items():
            endpoints[n].append((node, ip, docker_mac(ip)))
    for t in tasks:
        for n, ip in t.ips.items():
            endpoints[n].append((t.node, ip, t.macs[n]))
    for ns in nss:
        if ns.role != "overlay":
            continue
        n = ns.network or ""
        for node, ip, mac in endpoints[n]:
            if node == ns.node:
                continue
            ns.fdb.append(f"fdb add {mac} dev vxlan0 dst {node_ips[node]} self permanent")
            ns.neigh.append(f"neigh add {ip} lladdr {mac} dev vxlan0 nud permanent")

    # ---- DNS records per task: services on the task's user networks
    dns: dict[str, dict[str, list[str]]] = {}
    for t in tasks:
        rec: dict[str, list[str]] = {}
        for n in t.ips:
            if n == "ingress":
                continue
            for s in svc_specs:
                if n not in s.networks:
                    continue
                tips = [x.ips[n] for x in tasks if x.service == s.name]
                if s.mode == "vip":
                    rec.setdefault(s.name, []).append(vips[s.name][n])
                else:
                    rec.setdefault(s.name, []).extend(tips)
                rec.setdefault(f"tasks.{s.name}", []).extend(tips)
        dns[t.name] = rec

    # ---- status pieces
    services = []
    for s in svc_specs:
        sid = swarm_id("service", s.name)
        services.append({
            "name": s.name, "id": sid, "mode": s.mode, "replicas": s.replicas, "networks": svc_nets(s),
            "vips": dict(vips[s.name]),
            "fwmarks": {node: dict(marks[node].get(s.name, {})) for node in node_names},
            "published": [{"published": x.published, "target": x.target, "protocol": x.protocol}
                          for x in s.publish],
            "target_ports": s.target_ports(),
            "backends": [{"task": t.name, "node": t.node, "netns": t.netns,
                          "ip": t.ips[svc_nets(s)[0]], "mac": t.macs[svc_nets(s)[0]],
                          "ips": dict(t.ips), "macs": dict(t.macs), "container_id": t.container_id,
                          "task_id": t.task_id}
                         for t in tasks if t.service == s.name],
        })
    nodes = [{"name": node, "underlay_ip": node_ips[node], "mac": nic_mac(node_ips[node]),
              "ingress_ip": sbox_ip[node], "gwbridge_ip": str(gwn.network_address + 1),
              "lb_ips": {n: lb_ip[n][node] for n in overlay_names[1:] if node in lb_ip[n]}}
             for node in node_names]
    clients = [{"name": "client", "ip": spec.client_ip, "mac": nic_mac(spec.client_ip), "netns": client.name}]
    netlist = [nets[n] for n in overlay_names] + [nets["docker_gwbridge"]]
    for n in overlay_names:
        nets[n]["nodes"] = list(ov_nodes[n])
    for ns in nss:  # there is no IPv6 in the routing mesh
        ns.sysctls = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1",
                      **ns.sysctls}
    return Plan(spec=spec, lb=lb, namespaces=nss, networks=netlist, services=services, tasks=tasks,
                nodes=nodes, clients=clients, dns=dns)


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
        for pt in s.publish:
            R.append(Rule("nat", "DOCKER-INGRESS", ["-p", pt.protocol, "-m", pt.protocol, "--dport", str(pt.published),
                                                    "-j", "DNAT", "--to-destination", f"{sbox_ip}:{pt.published}"],
                          f"dnat:{pt.published}"))
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
        for pt in s.publish:
            pr = pt.protocol
            R.append(Rule("filter", "DOCKER-INGRESS", ["-p", pr, "-m", pr, "--dport", str(pt.published),
                                                       "-j", "ACCEPT"], f"accept:{pt.published}"))
            R.append(Rule("filter", "DOCKER-INGRESS", ["-p", pr, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                                                       "-m", pr, "--sport", str(pt.published), "-j", "ACCEPT"],
                          f"accept:{pt.published}"))
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
            for pt in s.publish:
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


def _task_rules(ns: Netns, t: Task, s: ServiceSpec) -> None:
    """Task container: nat PREROUTING REDIRECT, filter INPUT/OUTPUT (published ports), embedded DNS NAT."""
    R = ns.rules
    if s.publish:
        ip = t.ips["ingress"]
        for pt in s.publish:
            pr = pt.protocol
            R.append(Rule("nat", "PREROUTING", ["-d", f"{ip}/32", "-p", pr, "-m", pr, "--dport", str(pt.published),
                                                "-j", "REDIRECT", "--to-ports", str(pt.target)],
                          f"redirect:{pt.published}"))
        for pt in s.publish:
            pr = pt.protocol
            R.append(Rule("filter", "INPUT", ["-d", f"{ip}/32", "-p", pr, "-m", pr, "--dport", str(pt.target),
                                              "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT"]))
        for pr in ("sctp", "udp", "tcp"):
            R.append(Rule("filter", "INPUT", ["-d", f"{ip}/32", "-p", pr, "-j", "DROP"]))
        for pt in s.publish:
            pr = pt.protocol
            R.append(Rule("filter", "OUTPUT", ["-s", f"{ip}/32", "-p", pr, "-m", pr, "--sport", str(pt.target),
                                               "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"]))
        for pr in ("sctp", "udp", "tcp"):
            R.append(Rule("filter", "OUTPUT", ["-s", f"{ip}/32", "-p", pr, "-j", "DROP"]))
    _dns_rules(ns, t.dns_port)


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
