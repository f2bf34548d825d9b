"""The typed model of a Swarm routing mesh: what every subsystem knows about nodes, namespaces, networks,
services, tasks, VTEPs and capture points.

Frozen dataclasses; addresses are :mod:`ipaddress` objects (ints where a table needs them) and MACs are
ints, formatted only when rendered. The lab produces a :class:`Mesh`, :func:`meshpkt.mesh.status.load_status`
reads one from a ``status.json``, and analysis, verify, plots and filters consume it.

Capture points are named ``<node>.<namespace short>.<iface>`` (``node1.ingress_sbox.eth1``);
:func:`parse_point` recovers the parts of a name when no model is at hand.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from meshpkt.mesh.addr import IPv4Like, in_network, ip4_int
from meshpkt.mesh.proto import VXLAN_PORT


class Role(StrEnum):
    """What a network namespace (or capture point) is in the mesh."""

    HOST = "host"
    INGRESS_SBOX = "ingress_sbox"
    OVERLAY = "overlay"
    LB = "lb"
    TASK = "task"
    CLIENT = "client"
    UNDERLAY = "underlay"
    UNKNOWN = "unknown"


class EndpointMode(StrEnum):
    """How a service's name resolves: to a virtual IP (load-balanced) or to its tasks' IPs."""

    VIP = "vip"
    DNSRR = "dnsrr"


class PublishMode(StrEnum):
    """How a port is published: through the routing mesh on every node, or on the task's node only."""

    INGRESS = "ingress"
    HOST = "host"


def role_of_namespace(node: str, namespace: str) -> Role:
    """The role a namespace short name implies (``1-<netid>`` overlay, ``lb_<netid>``, task names...)."""
    if node == "client" or namespace == "client":
        return Role.CLIENT
    if node == "underlay" or namespace == "underlay":
        return Role.UNDERLAY
    if namespace in (Role.HOST, Role.INGRESS_SBOX):
        return Role(namespace)
    if namespace.startswith("1-"):
        return Role.OVERLAY
    if namespace.startswith("lb_"):
        return Role.LB
    return Role.TASK if namespace else Role.UNKNOWN


def as_role(value: object) -> Role:
    """A role from its name; :attr:`Role.UNKNOWN` for anything else."""
    try:
        return Role(str(value))
    except ValueError:
        return Role.UNKNOWN


@dataclass(frozen=True)
class Peer:
    """The other end of a veth pair."""

    netns: str
    iface: str


@dataclass(frozen=True)
class VxlanLink:
    """The VXLAN parameters of a ``vxlan0`` link."""

    vni: int
    port: int = VXLAN_PORT
    created_in: str = ""


@dataclass(frozen=True)
class Interface:
    """A link inside one namespace (``kind``: veth | bridge | vxlan | ...)."""

    name: str
    kind: str
    mac: int | None = None
    mtu: int | None = None
    addresses: tuple[IPv4Interface, ...] = ()
    network: str | None = None
    peer: Peer | None = None
    bridge: str | None = None
    vxlan: VxlanLink | None = None

    def has_address(self, ip: IPv4Like) -> bool:
        """True when ``ip`` is one of this link's addresses."""
        return any(int(a.ip) == ip4_int(ip) for a in self.addresses)


@dataclass(frozen=True)
class Task:
    """The task (container) a task namespace belongs to."""

    name: str
    service: str
    slot: int | None = None
    task_id: str = ""
    docker_name: str = ""
    container_id: str = ""
    ips: Mapping[str, IPv4Address] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    pid: int | None = None


@dataclass(frozen=True)
class Namespace:
    """One network namespace: ``name`` is the full netns name, ``short`` the Docker-style name
    (``host``, ``ingress_sbox``, ``1-<netid10>``, ``lb_<netid9>``, a task name)."""

    name: str
    short: str
    role: Role
    network: str | None = None
    interfaces: tuple[Interface, ...] = ()
    task: Task | None = None
    node: str = ""

    def interface(self, name: str) -> Interface | None:
        """The link called ``name``, if any."""
        return next((i for i in self.interfaces if i.name == name), None)

    def interface_on(self, network: str) -> Interface | None:
        """The link attached to docker network ``network`` (a task's ``eth0`` on ingress...)."""
        return next((i for i in self.interfaces if i.network == network), None)

    def has_address(self, ip: IPv4Like) -> bool:
        """True when a link of this namespace holds ``ip``."""
        return any(i.has_address(ip) for i in self.interfaces)


@dataclass(frozen=True)
class Network:
    """A docker network: an overlay (with a VNI) or the local ``docker_gwbridge`` bridge."""

    name: str
    id: str = ""
    driver: str = "overlay"
    ingress: bool = False
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    vni: int | None = None
    port: int | None = None
    mtu: int | None = None
    nodes: tuple[str, ...] | None = None
    encrypted: bool = False
    scope: str | None = None

    def holds(self, ip: IPv4Like) -> bool:
        """True when ``ip`` is in this network's subnet."""
        return self.subnet is not None and in_network(ip, self.subnet)


@dataclass(frozen=True)
class Node:
    """A swarm node: its underlay address and the namespaces it runs."""

    name: str
    underlay_ip: IPv4Address | None = None
    mac: int | None = None
    ingress_ip: IPv4Address | None = None
    gwbridge_ip: IPv4Address | None = None
    lb_ips: Mapping[str, IPv4Address] = field(default_factory=dict)
    namespaces: tuple[Namespace, ...] = ()

    def by_role(self, role: Role, network: str | None = None) -> list[Namespace]:
        """Namespaces of ``role`` (serving ``network`` when given)."""
        return [
            ns for ns in self.namespaces if ns.role == role and (network is None or ns.network == network)
        ]

    def namespace(self, short: str) -> Namespace | None:
        """The namespace with short name ``short``."""
        return next((ns for ns in self.namespaces if ns.short == short), None)


@dataclass(frozen=True)
class PublishedPort:
    """A published port: ``published`` on the nodes -> ``target`` in the tasks."""

    published: int
    target: int
    protocol: str = "tcp"
    mode: PublishMode = PublishMode.INGRESS


@dataclass(frozen=True)
class Backend:
    """One task behind a service, as its load balancers see it."""

    task: str
    node: str
    netns: str = ""
    ip: IPv4Address | None = None
    mac: int | None = None
    ips: Mapping[str, IPv4Address] = field(default_factory=dict)
    macs: Mapping[str, int] = field(default_factory=dict)
    container_id: str = ""
    task_id: str = ""
    alive: bool = True


@dataclass(frozen=True)
class Service:
    """A swarm service: endpoint mode, VIPs and fwmarks per network, published ports, backends."""

    name: str
    id: str = ""
    mode: EndpointMode = EndpointMode.VIP
    replicas: int | None = None
    networks: tuple[str, ...] = ()
    vips: Mapping[str, IPv4Address] = field(default_factory=dict)
    fwmarks: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    published: tuple[PublishedPort, ...] = ()
    target_ports: tuple[int, ...] = ()
    backends: tuple[Backend, ...] = ()

    def fwmark(self, node: str, network: str) -> int | None:
        """The firewall mark of this service's load balancer on ``network`` at ``node``."""
        return self.fwmarks.get(node, {}).get(network)

    def target_of(self, published: int, protocol: str = "tcp") -> int | None:
        """The target port a published port leads to."""
        return next(
            (p.target for p in self.published if p.published == published and p.protocol == protocol), None
        )


@dataclass(frozen=True)
class Client:
    """A machine outside the swarm that sends requests to published ports."""

    name: str
    ip: IPv4Address | None = None
    mac: int | None = None
    netns: str = ""


@dataclass(frozen=True)
class Underlay:
    """The network joining the nodes (a bridge in the lab)."""

    subnet: IPv4Network | None = None
    netns: str = ""
    bridge: str = "br0"
    mtu: int | None = None


@dataclass(frozen=True)
class CapturePoint:
    """Where a pcap is taken: ``point`` = ``<node>.<namespace>.<iface>`` (the pcap's file stem)."""

    point: str
    node: str
    namespace: str
    iface: str
    role: Role
    netns: str = ""
    network: str | None = None


@dataclass(frozen=True)
class Vtep:
    """A VXLAN tunnel endpoint: the underlay address of ``node`` for network ``network`` (VNI ``vni``)."""

    node: str
    ip: IPv4Address
    network: str
    vni: int
    port: int = VXLAN_PORT


@dataclass(frozen=True)
class Fault:
    """A fault injected into a lab (``kind`` and its arguments)."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)


def parse_point(name: str) -> CapturePoint:
    """``node1.ingress_sbox.eth0`` -> node1 / ingress_sbox / eth0 (the middle may hold dots)."""
    parts = name.split(".")
    if len(parts) >= 3:
        node, ns, iface = parts[0], ".".join(parts[1:-1]), parts[-1]
    elif len(parts) == 2:
        node, ns, iface = parts[0], "host", parts[1]
    else:
        node, ns, iface = name, "", ""
    return CapturePoint(name, node, ns, iface, role_of_namespace(node, ns))


@dataclass(frozen=True)
class Mesh:
    """A whole routing mesh: the lab status document as types (see :mod:`meshpkt.mesh.status`)."""

    name: str = ""
    nodes: tuple[Node, ...] = ()
    networks: tuple[Network, ...] = ()
    services: tuple[Service, ...] = ()
    clients: tuple[Client, ...] = ()
    underlay: Underlay = field(default_factory=Underlay)
    underlay_namespaces: tuple[Namespace, ...] = ()
    capture_points: tuple[CapturePoint, ...] = ()
    lb: str = ""
    lb_detail: str = ""
    data_path_port: int = VXLAN_PORT
    prefix: str = ""
    alive: bool = True
    state_dir: str = ""
    created: str = ""
    up_seconds: float | None = None
    faults: tuple[Fault, ...] = ()
    spec: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ---- lookups by name
    def node(self, name: str) -> Node | None:
        """The node called ``name``."""
        return next((n for n in self.nodes if n.name == name), None)

    def network(self, name: str) -> Network | None:
        """The docker network called ``name``."""
        return next((n for n in self.networks if n.name == name), None)

    def service(self, name: str) -> Service | None:
        """The service called ``name``."""
        return next((s for s in self.services if s.name == name), None)

    def point(self, name: str) -> CapturePoint:
        """The capture point called ``name`` (parsed from the name when the model does not list it)."""
        return next((p for p in self.capture_points if p.point == name), None) or parse_point(name)

    def namespaces(self) -> Iterator[Namespace]:
        """Every namespace: underlay and client first, then each node's."""
        yield from self.underlay_namespaces
        for n in self.nodes:
            yield from n.namespaces

    def namespace(self, netns: str) -> Namespace | None:
        """The namespace whose full netns name is ``netns``."""
        return next((ns for ns in self.namespaces() if ns.name == netns), None)

    @property
    def ingress(self) -> Network | None:
        """The ingress overlay."""
        return next((n for n in self.networks if n.ingress), None)

    def overlays(self) -> list[Network]:
        """Overlay networks (those with a VNI), ingress first."""
        return [n for n in self.networks if n.vni is not None]

    # ---- lookups by address
    def node_of_ip(self, ip: IPv4Like) -> str | None:
        """The node an address belongs to: its underlay, ingress or LB address, or a task on it."""
        addr = IPv4Address(ip4_int(ip))
        for n in self.nodes:
            if addr in (n.underlay_ip, n.ingress_ip) or addr in n.lb_ips.values():
                return n.name
        backend = self.backend_of_ip(addr)
        return backend.node if backend is not None else None

    def backend_of_ip(self, ip: IPv4Like) -> Backend | None:
        """The task (as a service backend) holding ``ip`` on any of its networks."""
        addr = IPv4Address(ip4_int(ip))
        for s in self.services:
            for b in s.backends:
                if b.ip == addr or addr in b.ips.values():
                    return b
        return None

    def task_of_ip(self, ip: IPv4Like) -> Task | None:
        """The task whose namespace holds ``ip``."""
        addr = IPv4Address(ip4_int(ip))
        for ns in self.namespaces():
            if ns.task is not None and addr in ns.task.ips.values():
                return ns.task
        return None

    def service_of_vip(self, ip: IPv4Like) -> tuple[Service, str] | None:
        """(service, network) whose VIP is ``ip``."""
        addr = IPv4Address(ip4_int(ip))
        for s in self.services:
            for net, vip in s.vips.items():
                if vip == addr:
                    return s, net
        return None

    def network_of_vni(self, vni: int) -> Network | None:
        """The overlay carried by VXLAN network identifier ``vni``."""
        return next((n for n in self.networks if n.vni == vni), None)

    def network_of_ip(self, ip: IPv4Like) -> Network | None:
        """The docker network whose subnet holds ``ip``."""
        return next((n for n in self.networks if n.holds(ip)), None)

    def is_client(self, ip: IPv4Like) -> bool:
        """True when ``ip`` is a client's address."""
        addr = IPv4Address(ip4_int(ip))
        return any(c.ip == addr for c in self.clients)

    # ---- derived tables
    def vteps(self) -> list[Vtep]:
        """Every (node, overlay) tunnel endpoint."""
        out = []
        for net in self.overlays():
            assert net.vni is not None
            for n in self.nodes:
                if n.underlay_ip is not None and (net.nodes is None or n.name in net.nodes):
                    out.append(
                        Vtep(n.name, n.underlay_ip, net.name, net.vni, net.port or self.data_path_port)
                    )
        return out

    def published_ports(self) -> dict[tuple[int, str], int]:
        """(published port, protocol) -> target port, over every service."""
        return {(p.published, p.protocol): p.target for s in self.services for p in s.published}

    def points_of(self, node: str, role: Role | str) -> list[CapturePoint]:
        """Capture points of ``node`` in namespaces of ``role``, in path order."""
        return [p for p in self.capture_points if p.node == node and p.role == role]

    def select_points(self, patterns: list[str]) -> list[CapturePoint]:
        """Capture points matching any of the globs (``node1.*``, ``*.ingress_sbox.*``), each once."""
        return [p for p in self.capture_points if any(fnmatch.fnmatchcase(p.point, pat) for pat in patterns)]
