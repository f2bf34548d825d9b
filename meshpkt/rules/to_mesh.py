"""Dumps onto the typed mesh: a :class:`~meshpkt.mesh.model.Mesh` from a :class:`MeshModel` built from
``ip``/``iptables``/``docker inspect`` dumps (what a topology diagram of a real cluster draws).

veth peers are resolved from ``link-netns`` names when the dump has them, else by the mutual ``@ifN``
indices of two interfaces of one node; docker network names come from ``docker network inspect`` dumps
when present, else the overlay namespace's VNI names the network. Pure: model in, Mesh out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from meshpkt.mesh.addr import mac_int
from meshpkt.mesh.model import (
    Interface,
    Mesh,
    Namespace,
    Network,
    Node,
    Peer,
    Role,
    Task,
    Underlay,
    VxlanLink,
)
from meshpkt.mesh.proto import VXLAN_PORT
from meshpkt.rules.iproute import Link
from meshpkt.rules.model import MeshModel
from meshpkt.rules.model import Namespace as DumpNamespace
from meshpkt.rules.model import Node as DumpNode

UNDERLAY_NETNS = "underlay"
GWBRIDGE = "docker_gwbridge"


@dataclass
class _OverlayNet:
    """A VXLAN network as the dumps of several nodes reveal it."""

    name: str
    vni: int
    port: int
    subnet: IPv4Network | None
    nodes: list[str] = field(default_factory=list)


@dataclass
class _Link:
    """An interface while its network and peer are being worked out."""

    name: str
    kind: str
    mac: int | None
    mtu: int | None
    addresses: tuple[IPv4Interface, ...]
    bridge: str | None
    peer: Peer | None
    vxlan: VxlanLink | None
    network: str | None = None

    def frozen(self) -> Interface:
        return Interface(self.name, self.kind, self.mac, self.mtu, self.addresses, self.network, self.peer,
                         self.bridge, self.vxlan)


def _overlay_names(node: DumpNode, nss: list[DumpNamespace], nets: dict[int, _OverlayNet]) -> dict[str, str]:
    """Network name of each overlay namespace (``1-<netid>``) of ``node``; records the VXLAN networks."""
    out: dict[str, str] = {}
    for ns in nss:
        if ns.role != Role.OVERLAY:
            continue
        vx = next((lk for lk in ns.links if lk.vxlan is not None), None)
        netid = ns.name[2:] if ns.name.startswith("1-") else ns.name
        docker_net = next((n for n in node.networks if n.id.startswith(netid)), None)
        vni = vx.vxlan.vni if vx is not None and vx.vxlan is not None else None
        name = docker_net.name if docker_net is not None else (f"vxlan {vni}" if vni is not None else ns.name)
        out[ns.name] = name
        if vx is None or vx.vxlan is None or vni is None:
            continue
        bridge = next((lk for lk in ns.links if lk.kind == "bridge"), None)
        subnet = next((a.addr.network for a in bridge.addresses if isinstance(a.addr, IPv4Interface)), None) \
            if bridge is not None else None
        net = nets.setdefault(vni, _OverlayNet(name, vni, vx.vxlan.dstport or VXLAN_PORT, subnet))
        net.nodes.append(node.name)
    return out


def _find_ns(node: DumpNode, nss: list[DumpNamespace], link_netns: str | None, exclude: str) -> str | None:
    """The namespace a ``link-netns`` name points to: ``<lab>-node1-ingress_sbox`` -> ingress_sbox, else
    the host namespace."""
    if not link_netns:
        return None
    for ns in nss:
        if ns.name != exclude and (link_netns == ns.name or link_netns.endswith("-" + ns.name)):
            return str(ns.name)
    host = node.host
    return str(host.name) if host is not None and host.name != exclude else None


def _peer_of(node: DumpNode, nss: list[DumpNamespace], by_index: dict[tuple[str, int], Link], ns: DumpNamespace,
             lk: Link) -> tuple[str, str] | None:
    """(namespace, interface) at the other end of veth ``lk`` of namespace ``ns``, when it can be told."""
    if lk.peer_index is None or lk.kind not in (None, "veth"):
        return None
    pns = _find_ns(node, nss, lk.link_netns, ns.name)
    if pns is not None:
        plk = by_index.get((pns, lk.peer_index))
        return (pns, str(plk.name)) if plk is not None else None
    cands = [(str(other.name), str(o.name)) for other in nss if other.name != ns.name for o in other.links
             if o.index == lk.peer_index and o.peer_index == lk.index]
    return cands[0] if len(cands) == 1 else None


def _links(node: DumpNode, nss: list[DumpNamespace], full: dict[str, str]) -> dict[str, list[_Link]]:
    """Every interface of every namespace (not lo, not dummies), with its veth peer when known."""
    by_index = {(ns.name, lk.index): lk for ns in nss for lk in ns.links}
    out: dict[str, list[_Link]] = {}
    for ns in nss:
        items = []
        for lk in ns.links:
            if lk.name == "lo" or lk.kind == "dummy":
                continue
            addrs = tuple(a.addr for a in lk.addresses
                          if isinstance(a.addr, IPv4Interface) and not a.addr.ip.is_loopback)
            peer = _peer_of(node, nss, by_index, ns, lk)
            vx = lk.vxlan
            items.append(_Link(lk.name, lk.kind or "", mac_int(lk.mac) if lk.mac else None, lk.mtu, addrs,
                               lk.master, Peer(full[peer[0]], peer[1]) if peer else None,
                               VxlanLink(vx.vni, vx.dstport or VXLAN_PORT) if vx is not None else None))
        out[ns.name] = items
    return out


def _assign_networks(nss: list[DumpNamespace], links: dict[str, list[_Link]], full: dict[str, str],
                     overlay_of: dict[str, str]) -> None:
    """Overlay namespaces' own links, docker_gwbridge and its ports, then veth peers inherit them."""
    for ns in nss:
        for it in links[ns.name]:
            if ns.name in overlay_of:
                it.network = overlay_of[ns.name]
            elif GWBRIDGE in (it.name, it.bridge):
                it.network = GWBRIDGE
    lookup = {(full[ns.name], it.name): it for ns in nss for it in links[ns.name]}
    for ns in nss:
        for it in links[ns.name]:
            if it.network is None and it.peer is not None:
                other = lookup.get((it.peer.netns, it.peer.iface))
                if other is not None and other.network:
                    it.network = other.network


def _underlay_links(node: DumpNode, links: dict[str, list[_Link]]) -> list[IPv4Interface]:
    """The host's underlay interfaces (addressed, not Docker's): marked as plugged into the underlay."""
    out: list[IPv4Interface] = []
    if node.host is None:
        return out
    for it in links[node.host.name]:
        if it.network is None and it.addresses and it.kind not in ("bridge", "vxlan") \
                and not it.name.startswith(("docker", "br-", "veth")):
            it.peer = Peer(UNDERLAY_NETNS, "")
            out.append(it.addresses[0])
    return out


def _node(node: DumpNode, nets: dict[int, _OverlayNet], underlay: list[IPv4Interface]) -> Node:
    nss = list(node.namespaces.values())
    full = {ns.name: f"{node.name}/{ns.name}" for ns in nss}
    overlay_of = _overlay_names(node, nss, nets)
    links = _links(node, nss, full)
    _assign_networks(nss, links, full, overlay_of)
    mine = _underlay_links(node, links)
    underlay += mine
    namespaces = []
    for ns in nss:
        role = ns.role if ns.role != Role.UNKNOWN else Role.TASK
        namespaces.append(Namespace(full[ns.name], ns.name, role, overlay_of.get(ns.name),
                                    tuple(it.frozen() for it in links[ns.name]),
                                    Task(ns.name, "") if role == Role.TASK else None, node.name))
    ip: IPv4Address | None = mine[0].ip if mine else None
    return Node(node.name, underlay_ip=ip, namespaces=tuple(namespaces))


def mesh_from_model(model: MeshModel) -> Mesh:
    """The mesh the dumps describe: nodes, namespaces, interfaces with their peers and networks, the
    VXLAN networks (VNI, port, subnet, nodes). No services, clients or capture points."""
    nets: dict[int, _OverlayNet] = {}
    underlay: list[IPv4Interface] = []
    nodes = tuple(_node(node, nets, underlay) for node in model.nodes.values())
    networks = [Network(n.name, vni=n.vni, port=n.port, subnet=n.subnet, nodes=tuple(n.nodes))
                for _vni, n in sorted(nets.items())]
    networks.append(Network(GWBRIDGE, driver="bridge"))
    subnet = underlay[0].network if underlay else None
    return Mesh(name="from dumps", nodes=nodes, networks=tuple(networks), lb="",
                underlay=Underlay(subnet=subnet, netns=UNDERLAY_NETNS, bridge=""))
