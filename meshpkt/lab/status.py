"""The lab status document (``meshpkt lab status --json``, ``meshpkt.lab.status(name)``, and the
``status.json`` written beside every ``lab capture``). Analysis, diagrams and verify read it.

The lab builds a typed :class:`meshpkt.mesh.Mesh` (:func:`build_mesh`); :mod:`meshpkt.mesh.status` is the
only code that reads or writes the JSON. Schema ``meshpkt.lab.status/1``, key by key: docs/status-schema.md.
Capture points, in path order: ``client.host.eth0``, ``underlay.host.br0``, then per node
``<node>.host.eth0``, ``<node>.ingress_sbox.eth1``, ``<node>.ingress_sbox.eth0``, ``<node>.1-<netid10>.br0``,
``<node>.1-<netid10>.vxlan0`` (one pair per overlay), ``<node>.lb_<netid9>.eth0``, and
``<node>.<task>.<iface>`` for every overlay interface of each task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.lab.plan import Iface, Netns, Plan
from meshpkt.mesh.addr import mac_int, parse_cidr, parse_network, try_ip4
from meshpkt.mesh.model import (
    CapturePoint,
    Interface,
    Mesh,
    Namespace,
    Node,
    Peer,
    Role,
    Underlay,
    VxlanLink,
)
from meshpkt.mesh.status import (
    SCHEMA,
    client_from_json,
    load_status,
    network_from_json,
    point_json,
    service_from_json,
    status_document,
    task_from_json,
)

__all__ = [
    "LB_DETAIL",
    "SCHEMA",
    "all_namespaces",
    "build_mesh",
    "build_status",
    "resolve_target",
    "select_points",
]

LB_DETAIL = {
    "ipvs": "real IPVS: FWM services (rr, Masq, port 0) in ingress_sbox and lb_<net>; "
    "SNAT rule -m ipvs --ipvs",
    "nftables": "nftables emulation of IPVS (kernel has no ip_vs): table ip meshpkt_ipvs marks VIPs and "
    "does `meta mark M ct state new dnat to numgen inc mod N map {...}` (round-robin, port kept); "
    "the iptables SNAT rule matches -m conntrack --ctstate DNAT instead of -m ipvs --ipvs",
}

_ROLE_ORDER = {
    Role.CLIENT: 0,
    Role.UNDERLAY: 1,
    Role.HOST: 2,
    Role.INGRESS_SBOX: 3,
    Role.OVERLAY: 4,
    Role.LB: 5,
    Role.TASK: 6,
}
_SBOX_IFACE_ORDER = {"eth1": 0, "eth0": 1}  # in path order: from docker_gwbridge, then into the overlay

StatusLike = Mesh | Mapping[str, Any]


def _interface(i: Iface) -> Interface:
    vx = i.vxlan
    return Interface(
        name=i.name,
        kind=i.kind,
        mac=mac_int(i.mac) if i.mac else None,
        mtu=i.mtu,
        addresses=tuple(parse_cidr(a) for a in i.addresses),
        network=i.network,
        peer=Peer(*i.peer) if i.peer else None,
        bridge=i.bridge,
        vxlan=VxlanLink(int(vx["vni"]), int(vx["port"]), str(vx["created_in"])) if vx else None,
    )


def _namespace(ns: Netns, pids: Mapping[str, int]) -> Namespace:
    task = None
    if ns.task:
        task = task_from_json({**ns.task, "pid": pids.get(ns.task["name"])})
    return Namespace(
        name=ns.name,
        short=ns.short,
        role=Role(ns.role),
        network=ns.network,
        interfaces=tuple(_interface(i) for i in ns.interfaces),
        task=task,
        node=ns.node,
    )


def _node(d: Mapping[str, Any], namespaces: tuple[Namespace, ...]) -> Node:
    return Node(
        name=d["name"],
        underlay_ip=try_ip4(d["underlay_ip"]),
        mac=mac_int(d["mac"]),
        ingress_ip=try_ip4(d["ingress_ip"]),
        gwbridge_ip=try_ip4(d["gwbridge_ip"]),
        lb_ips={k: ip for k, v in d["lb_ips"].items() if (ip := try_ip4(v)) is not None},
        namespaces=namespaces,
    )


def _capture_points(p: Plan) -> tuple[CapturePoint, ...]:
    """Every capturable link, in path order: client, underlay, then per node host, ingress_sbox (eth1
    before eth0), overlays, load balancers, tasks."""
    node_order = ["client", "underlay"] + [n["name"] for n in p.nodes]
    ordered = sorted(p.namespaces, key=lambda n: (node_order.index(n.node), _ROLE_ORDER[Role(n.role)]))
    points = []
    for ns in ordered:
        ifs = [i for i in ns.interfaces if i.capture]
        if ns.role == Role.INGRESS_SBOX:
            ifs.sort(key=lambda i: _SBOX_IFACE_ORDER.get(i.name, 9))
        points += [
            CapturePoint(
                point=f"{ns.node}.{ns.short}.{i.name}",
                node=ns.node,
                namespace=ns.short,
                iface=i.name,
                role=Role(ns.role),
                netns=ns.name,
                network=i.network,
            )
            for i in ifs
        ]
    return tuple(points)


def build_mesh(
    p: Plan,
    *,
    state_dir: str = "",
    created: str = "",
    up_seconds: float | None = None,
    pids: Mapping[str, int] | None = None,
) -> Mesh:
    """The typed model of a planned lab (pure)."""
    pids = pids or {}
    spec = p.spec
    nodes = tuple(
        _node(nd, tuple(_namespace(ns, pids) for ns in p.namespaces if ns.node == nd["name"]))
        for nd in p.nodes
    )
    services = tuple(service_from_json(s) for s in p.services)  # backends: alive by default
    und = p.ns(f"{spec.name}-underlay")
    return Mesh(
        name=spec.name,
        prefix=spec.name + "-",
        lb=p.lb,
        lb_detail=LB_DETAIL[p.lb],
        alive=True,
        state_dir=state_dir,
        created=created,
        up_seconds=up_seconds,
        data_path_port=spec.data_path_port,
        underlay=Underlay(parse_network(spec.underlay_subnet), und.name, "br0", spec.underlay_mtu),
        clients=tuple(client_from_json(c) for c in p.clients),
        networks=tuple(network_from_json(n) for n in p.networks),
        nodes=nodes,
        underlay_namespaces=tuple(
            _namespace(ns, pids) for ns in p.namespaces if ns.role in (Role.UNDERLAY, Role.CLIENT)
        ),
        services=services,
        capture_points=_capture_points(p),
        faults=(),
        spec=spec.to_dict(),
    )


def build_status(
    p: Plan,
    *,
    state_dir: str = "",
    created: str = "",
    up_seconds: float | None = None,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The status document of a planned lab (pure): :func:`build_mesh` written as JSON."""
    return status_document(
        build_mesh(p, state_dir=state_dir, created=created, up_seconds=up_seconds, pids=pids)
    )


def _mesh(status: StatusLike) -> Mesh:
    return status if isinstance(status, Mesh) else load_status(status)


def all_namespaces(status: StatusLike) -> list[Namespace]:
    """Every namespace of a lab (underlay, client, then the nodes')."""
    return list(_mesh(status).namespaces())


def _resolve_on_node(node: Node, sub: str) -> str | None:
    kind, _, net = sub.partition(":")
    for ns in node.namespaces:
        if ns.short == sub:
            return ns.name
        if kind == "overlay" and ns.role == Role.OVERLAY and ns.network == (net or "ingress"):
            return ns.name
        if kind == "lb" and ns.role == Role.LB and (not net or ns.network == net):
            return ns.name
        if ns.role == Role.TASK and ns.task and sub in (ns.task.name, ns.task.docker_name):
            return ns.name
    return None


def resolve_target(status: StatusLike, target: str) -> str:
    """``NODE[/NAMESPACE]`` -> full netns name.

    NODE: ``node1``.., ``client``, ``underlay``. NAMESPACE: ``host`` (default), ``ingress_sbox``,
    ``overlay`` (the ingress overlay) or ``overlay:<network>``, ``lb`` (the first user overlay's) or
    ``lb:<network>``, a short name (``1-<netid>``, ``lb_<netid>``) or a task name (``my-web.1``).
    A full netns name of the lab is accepted too.
    """
    mesh = _mesh(status)
    if mesh.namespace(target) is not None:
        return target
    node_name, _, sub = target.partition("/")
    sub = sub or "host"
    if node_name in ("client", "underlay"):
        cands = [ns for ns in mesh.underlay_namespaces if ns.role == node_name]
        if sub != "host" or not cands:
            raise UsageError(f"bad target {target!r}: {node_name} has only one namespace (host)")
        return cands[0].name
    node = mesh.node(node_name)
    if node is None:
        names = ", ".join(["client", "underlay"] + [n.name for n in mesh.nodes])
        raise UsageError(f"unknown node {node_name!r} (choose from {names})")
    found = _resolve_on_node(node, sub)
    if found is None:
        shorts = ", ".join(ns.short for ns in node.namespaces)
        raise UsageError(f"no namespace {sub!r} on {node_name} (choose from {shorts}, overlay, lb)")
    return found


def select_points(status: StatusLike, points: list[str] | None, all_points: bool) -> list[dict[str, Any]]:
    """Capture points by name or glob (``node1.*``, ``*.ingress_sbox.*``); all with ``all_points``.
    As status-document objects (``point``, ``netns``, ``iface``...)."""
    mesh = _mesh(status)
    avail = mesh.capture_points
    if all_points or not points:
        if not all_points:
            raise UsageError("name capture points or pass --all (see `meshpkt lab status`)")
        return [point_json(p) for p in avail]
    chosen: list[CapturePoint] = []
    for pat in points:
        hits = mesh.select_points([pat])
        if not hits:
            example = avail[0].point if avail else "node1.host.eth0"
            raise UsageError(f"no capture point matches {pat!r} (e.g. {example}; see `meshpkt lab status`)")
        chosen += [h for h in hits if h not in chosen]
    return [point_json(p) for p in chosen]
