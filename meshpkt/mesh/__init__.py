"""The one typed model of a Swarm routing mesh (stdlib only): what every subsystem imports.

- :mod:`meshpkt.mesh.addr`: scalar address helpers (IPv4/MAC ints, ``ip:port`` :class:`Endpoint`, CIDRs)
- :mod:`meshpkt.mesh.proto`: protocol numbers/names, TCP flags, ``VXLAN_PORT``
- :mod:`meshpkt.mesh.model`: :class:`Mesh` and its parts (nodes, namespaces, networks, services, tasks...)
- :mod:`meshpkt.mesh.status`: the lab status document (``status.json``) <-> :class:`Mesh`
- :mod:`meshpkt.mesh.path`: the data paths (ingress, VIP, dnsrr, host mode) as ordered stages
"""

from meshpkt.mesh.addr import Endpoint, docker_mac, ip4_int, ip4_str, mac_int, mac_str
from meshpkt.mesh.model import (
    Backend,
    CapturePoint,
    Client,
    EndpointMode,
    Interface,
    Mesh,
    Namespace,
    Network,
    Node,
    PublishedPort,
    PublishMode,
    Role,
    Service,
    Task,
    Vtep,
    parse_point,
)
from meshpkt.mesh.path import PathKind, PathPoint, Stage, expected_points, stages
from meshpkt.mesh.proto import VXLAN_PORT
from meshpkt.mesh.status import load_status, status_document

__all__ = [
    "VXLAN_PORT",
    "Backend",
    "CapturePoint",
    "Client",
    "Endpoint",
    "EndpointMode",
    "Interface",
    "Mesh",
    "Namespace",
    "Network",
    "Node",
    "PathKind",
    "PathPoint",
    "PublishMode",
    "PublishedPort",
    "Role",
    "Service",
    "Stage",
    "Task",
    "Vtep",
    "docker_mac",
    "expected_points",
    "ip4_int",
    "ip4_str",
    "load_status",
    "mac_int",
    "mac_str",
    "parse_point",
    "stages",
    "status_document",
]
