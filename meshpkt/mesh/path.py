"""The Swarm data path as data, written once: ordered stages, each naming the capture point it is seen at,
the rules acting on the packet right after it, and the translation they perform.

Paths (:class:`PathKind`), each for TCP and UDP, request and reply:

``ingress``  client -> underlay -> entry node eth0 (DNAT to the ingress_sbox) -> ingress_sbox eth1 (MARK,
             load balancer, SNAT) -> eth0 -> overlay br0 [-> vxlan0 -> eth0 -> underlay -> backend node eth0
             -> vxlan0 -> br0] -> task (REDIRECT) -> socket
``vip``      task -> br0 -> lb_<net> (mangle INPUT MARK of the VIP, load balancer, SNAT) -> br0 [-> VXLAN]
             -> task -> socket
``dnsrr``    task -> br0 [-> VXLAN] -> task -> socket (DNS returned the task's address: no NAT)
``host``     host-mode publishing: client -> node eth0 (DNAT to the task's docker_gwbridge address) -> task

Bracketed stages are crossed only when the backend runs on another node than the entry (``Reach.REMOTE``).
Replies cross the same places in reverse; conntrack undoes each translation (:func:`stages` with
``direction="reply"``).

Using it (flows, verify, rules, layers, plot)::

    from meshpkt.mesh.path import PathKind, expected_points, stages
    for st in stages(PathKind.INGRESS, local=False):       # the table itself
        print(st.name, st.role, st.iface, [a.describe() for a in st.actions])
    expected_points(mesh.capture_points, PathKind.INGRESS, entry="node1", backend="node2",
                    task_point="node2.my-web.2.eth0")    # -> [PathPoint(point, encapsulated, stage), ...]
    place_order(PathKind.INGRESS, local=False)              # (side, role, iface, encapsulated) -> rank

``expected_points`` takes any capture points with ``point``, ``node``, ``role``, ``iface`` and ``network``
attributes: :class:`meshpkt.mesh.model.CapturePoint` or the analysis's inferred points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, Protocol

from meshpkt.errors import UsageError
from meshpkt.mesh.model import Role


class PathKind(StrEnum):
    """Which data path a connection takes."""

    INGRESS = "ingress"
    VIP = "vip"
    DNSRR = "dnsrr"
    HOST = "host"


class Side(StrEnum):
    """Which machine a stage is on: the client, the underlay, the node the packet entered the mesh at (for
    task-to-task paths, the sending task's node) or the node running the chosen backend task."""

    CLIENT = "client"
    UNDERLAY = "underlay"
    ENTRY = "entry"
    BACKEND = "backend"


class Reach(StrEnum):
    """When a stage is crossed: always, only if the backend is on the entry node, or only if it is not."""

    ANY = "any"
    LOCAL = "local"
    REMOTE = "remote"


NET_IFACE = "@network"
"""Symbolic interface: the namespace's link on the path's network (a task's ``eth0`` on ingress)."""
GWBRIDGE_IFACE = "@docker_gwbridge"
"""Symbolic interface: the namespace's link on ``docker_gwbridge``."""
SOCKET = ""
"""No interface: the packet is at the socket (no capture point)."""

Direction = Literal["request", "reply"]


@dataclass(frozen=True)
class Action:
    """A rule acting on the packet, where it lives and what it translates (``{proto}`` is filled in)."""

    role: Role
    table: str
    chain: str
    target: str
    match: str
    translation: str
    reply: str

    def describe(self) -> str:
        """``"nat PREROUTING ... DNAT: dst node:P -> sbox:P"``."""
        return f"{self.role} {self.table} {self.chain} {self.match} -j {self.target}: {self.translation}"


@dataclass(frozen=True)
class Stage:
    """One place on a path. ``actions`` act on the packet after it is seen here (before the next stage)."""

    name: str
    side: Side
    role: Role
    iface: str
    encapsulated: bool = False
    reach: Reach = Reach.ANY
    actions: tuple[Action, ...] = ()
    note: str = ""

    @property
    def captured(self) -> bool:
        """True when a capture point can see the packet here (not at the socket)."""
        return self.iface != SOCKET


def _act(role: Role, table: str, chain: str, target: str, match: str, translation: str, reply: str) -> Action:
    return Action(role, table, chain, target, match, translation, reply)


_DNAT_INGRESS = _act(
    Role.HOST,
    "nat",
    "PREROUTING/DOCKER-INGRESS",
    "DNAT",
    "-p {proto} --dport <published>",
    "dst <node>:<published> -> <sbox gwbridge ip>:<published>",
    "src <sbox gwbridge ip>:<published> -> <node>:<published>",
)
_ACCEPT_INGRESS = _act(
    Role.HOST,
    "filter",
    "FORWARD/DOCKER-INGRESS",
    "ACCEPT",
    "-p {proto} --dport <published>",
    "forwarded to docker_gwbridge",
    "forwarded back (--sport, ctstate ESTABLISHED)",
)
_MARK_SBOX = _act(
    Role.INGRESS_SBOX,
    "mangle",
    "PREROUTING",
    "MARK",
    "-p {proto} --dport <published>",
    "fwmark <service fwmark on ingress>",
    "",
)
_MARK_VIP = _act(
    Role.LB, "mangle", "INPUT", "MARK", "-d <VIP>/32", "fwmark <service fwmark on the network>", ""
)
_LB = _act(
    Role.INGRESS_SBOX,
    "ipvs",
    "FWM",
    "LB",
    "fwmark <fwmark> (rr, Masq, port 0)",
    "dst -> <task ip> (port kept)",
    "src <task ip> -> the address the client dialled",
)
_SNAT = _act(
    Role.INGRESS_SBOX,
    "nat",
    "POSTROUTING",
    "SNAT",
    "-d <overlay subnet> -m ipvs --ipvs",
    "src -> <LB endpoint overlay ip>:<new port>",
    "dst <LB endpoint overlay ip> -> the client",
)
_ENCAP = _act(
    Role.OVERLAY,
    "fdb",
    "vxlan0",
    "VXLAN",
    "dst MAC -> peer VTEP (static fdb)",
    "encapsulated: outer <node> -> <peer node> UDP <data path port>, VNI <vni>",
    "decapsulated",
)
_DECAP = _act(
    Role.OVERLAY,
    "vxlan",
    "vxlan0",
    "DECAP",
    "UDP <data path port>, VNI <vni>",
    "decapsulated into the overlay",
    "encapsulated back to the entry node's VTEP",
)
_REDIRECT = _act(
    Role.TASK,
    "nat",
    "PREROUTING",
    "REDIRECT",
    "-d <task ip> -p {proto} --dport <published>",
    "dport <published> -> <target>",
    "sport <target> -> <published>",
)
_DNAT_HOST = _act(
    Role.HOST,
    "nat",
    "PREROUTING/DOCKER",
    "DNAT",
    "-p {proto} --dport <published>",
    "dst <node>:<published> -> <task gwbridge ip>:<target>",
    "src <task gwbridge ip>:<target> -> <node>:<published>",
)


def _lb_of(role: Role, action: Action) -> Action:
    return replace(action, role=role)


_CLIENT_LEG = (
    Stage("client_eth0", Side.CLIENT, Role.CLIENT, "eth0", note="the client sends to <node>:<published>"),
    Stage("underlay_br0", Side.UNDERLAY, Role.UNDERLAY, "br0", note="bridged to the node"),
)
_CROSS_NODES = (
    Stage(
        "entry_vxlan0",
        Side.ENTRY,
        Role.OVERLAY,
        "vxlan0",
        reach=Reach.REMOTE,
        actions=(_ENCAP,),
        note="VXLAN to the backend node's VTEP",
    ),
    Stage("node_eth0_vxlan", Side.ENTRY, Role.HOST, "eth0", True, Reach.REMOTE, note="VXLAN leaves the node"),
    Stage(
        "underlay", Side.UNDERLAY, Role.UNDERLAY, "br0", True, Reach.REMOTE, note="VXLAN between the nodes"
    ),
    Stage(
        "peer_eth0",
        Side.BACKEND,
        Role.HOST,
        "eth0",
        True,
        Reach.REMOTE,
        actions=(_DECAP,),
        note="VXLAN reaches the backend node",
    ),
    Stage("peer_vxlan0", Side.BACKEND, Role.OVERLAY, "vxlan0", reach=Reach.REMOTE, note="decapsulated"),
    Stage("peer_br0", Side.BACKEND, Role.OVERLAY, "br0", reach=Reach.REMOTE, note="bridged to the task"),
)
_TASK_SOCKET = Stage("task_socket", Side.BACKEND, Role.TASK, SOCKET, note="the server socket (target port)")

INGRESS_STAGES: tuple[Stage, ...] = (
    *_CLIENT_LEG,
    Stage(
        "node_eth0",
        Side.ENTRY,
        Role.HOST,
        "eth0",
        actions=(_DNAT_INGRESS, _ACCEPT_INGRESS),
        note="routed to docker_gwbridge",
    ),
    Stage(
        "gwbridge",
        Side.ENTRY,
        Role.INGRESS_SBOX,
        "eth1",
        actions=(_MARK_SBOX, _LB, _SNAT),
        note="the ingress load balancer picks a task; the client address is gone from here on",
    ),
    Stage("sbox_eth0", Side.ENTRY, Role.INGRESS_SBOX, "eth0", note="leaves into the ingress overlay"),
    Stage("entry_br0", Side.ENTRY, Role.OVERLAY, "br0", note="bridged to the task's veth (local) or vxlan0"),
    *_CROSS_NODES,
    Stage("task_eth0", Side.BACKEND, Role.TASK, NET_IFACE, actions=(_REDIRECT,), note="arrives at the task"),
    _TASK_SOCKET,
)
"""Ingress routing mesh (seed 001, section 7)."""

VIP_STAGES: tuple[Stage, ...] = (
    Stage("task_eth0_src", Side.ENTRY, Role.TASK, NET_IFACE, note="a task sends to <VIP>:<port>"),
    Stage(
        "src_br0", Side.ENTRY, Role.OVERLAY, "br0", note="bridged to the lb_<net> endpoint (it holds the VIP)"
    ),
    Stage(
        "lb_eth0_in",
        Side.ENTRY,
        Role.LB,
        "eth0",
        actions=(_MARK_VIP, _lb_of(Role.LB, _LB), _lb_of(Role.LB, _SNAT)),
        note="the network's load balancer picks a task",
    ),
    Stage("lb_eth0_out", Side.ENTRY, Role.LB, "eth0", note="leaves the load balancer, SNATed"),
    Stage("entry_br0", Side.ENTRY, Role.OVERLAY, "br0", note="bridged to the task's veth (local) or vxlan0"),
    *_CROSS_NODES,
    Stage("task_eth0", Side.BACKEND, Role.TASK, NET_IFACE, note="arrives at the task (no REDIRECT)"),
    _TASK_SOCKET,
)
"""Internal VIP load balancing through ``lb_<net>`` (Docker >= 18.06; older daemons balanced in the task)."""

DNSRR_STAGES: tuple[Stage, ...] = (
    Stage("task_eth0_src", Side.ENTRY, Role.TASK, NET_IFACE, note="a task sends to a task address from DNS"),
    Stage("entry_br0", Side.ENTRY, Role.OVERLAY, "br0", note="bridged to the task's veth (local) or vxlan0"),
    *_CROSS_NODES,
    Stage("task_eth0", Side.BACKEND, Role.TASK, NET_IFACE, note="arrives at the task"),
    _TASK_SOCKET,
)
"""``--endpoint-mode dnsrr``: no load balancer, no NAT."""

HOST_STAGES: tuple[Stage, ...] = (
    *_CLIENT_LEG,
    Stage(
        "node_eth0", Side.BACKEND, Role.HOST, "eth0", actions=(_DNAT_HOST,), note="routed to docker_gwbridge"
    ),
    Stage(
        "task_gwbridge",
        Side.BACKEND,
        Role.TASK,
        GWBRIDGE_IFACE,
        note="arrives at the task on docker_gwbridge",
    ),
    _TASK_SOCKET,
)
"""``--publish mode=host``: only the node running the task answers; no routing mesh, no overlay."""

PATHS: dict[PathKind, tuple[Stage, ...]] = {
    PathKind.INGRESS: INGRESS_STAGES,
    PathKind.VIP: VIP_STAGES,
    PathKind.DNSRR: DNSRR_STAGES,
    PathKind.HOST: HOST_STAGES,
}


def _with_proto(stage: Stage, proto: str) -> Stage:
    if not stage.actions:
        return stage
    return replace(stage, actions=tuple(replace(a, match=a.match.format(proto=proto)) for a in stage.actions))


def _reply_of(request: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The reply crosses the same places in reverse; the rules between two places (conntrack undoing each
    translation) are the inverse of the request's between the same two places, last undone first."""
    out = []
    for k in range(len(request) - 1, -1, -1):
        before = request[k - 1].actions if k > 0 else ()
        inverse = tuple(
            replace(a, target=f"un-{a.target}", translation=a.reply, reply=a.translation)
            for a in reversed(before)
            if a.reply
        )
        out.append(replace(request[k], actions=inverse))
    return tuple(out)


def stages(
    kind: PathKind | str = PathKind.INGRESS,
    *,
    local: bool | None = None,
    proto: str = "tcp",
    direction: Direction = "request",
) -> tuple[Stage, ...]:
    """The stages of a path. ``local`` True/False keeps only the stages crossed when the backend task runs
    on the entry node / another node; None keeps them all."""
    if proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"no routing-mesh path for protocol {proto!r} (tcp, udp or sctp)")
    table = PATHS[PathKind(kind)]
    if local is not None:
        drop = Reach.REMOTE if local else Reach.LOCAL
        table = tuple(s for s in table if s.reach != drop)
    table = tuple(_with_proto(s, proto) for s in table)
    if direction == "reply":
        return _reply_of(table)
    if direction != "request":
        raise UsageError(f"direction must be 'request' or 'reply', got {direction!r}")
    return table


def place_order(
    kind: PathKind | str = PathKind.INGRESS, *, local: bool = False, direction: Direction = "request"
) -> dict[tuple[Side, Role, str, bool], int]:
    """Rank of each place on a path: ``(side, role, iface, encapsulated)`` -> position (first wins).
    ``iface`` may be :data:`NET_IFACE`/:data:`GWBRIDGE_IFACE` for task links."""
    order: dict[tuple[Side, Role, str, bool], int] = {}
    for i, st in enumerate(s for s in stages(kind, local=local, direction=direction) if s.captured):
        order.setdefault((st.side, st.role, st.iface, st.encapsulated), i)
    return order


class PointLike(Protocol):
    """What :func:`expected_points` needs of a capture point."""

    @property
    def point(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def iface(self) -> str: ...
    @property
    def network(self) -> str | None: ...


@dataclass(frozen=True)
class PathPoint:
    """A capture point on an expected path: seen there inside VXLAN or not, at which stage."""

    point: str
    encapsulated: bool
    stage: Stage


def _on_network(p: PointLike, network: str | None) -> bool:
    """Unknown networks (points inferred from names) match any network."""
    return not network or not p.network or p.network == network


def _matches(st: Stage, p: PointLike, node: str | None, network: str | None, task_point: str | None) -> bool:
    if p.role != st.role:
        return False
    if st.side in (Side.ENTRY, Side.BACKEND) and p.node != node:
        return False
    if st.role == Role.TASK and task_point is not None and p.point != task_point:
        return False
    if st.iface == NET_IFACE:
        return _on_network(p, network)
    if st.iface == GWBRIDGE_IFACE:
        return p.network == "docker_gwbridge"
    if st.role in (Role.OVERLAY, Role.LB) and not _on_network(p, network):
        return False
    return p.iface == st.iface


def expected_points(
    points: Iterable[PointLike],
    kind: PathKind | str = PathKind.INGRESS,
    *,
    entry: str | None,
    backend: str | None,
    network: str | None = None,
    task_point: str | None = None,
    source_point: str | None = None,
    proto: str = "tcp",
    direction: Direction = "request",
) -> list[PathPoint]:
    """The capture points (among ``points``) a packet crosses, in order.

    ``entry``: the node the request entered (for ``vip``/``dnsrr``, the sending task's node; for ``host``,
    the task's node). ``backend``: the node of the chosen task, None when unknown (then the path stops
    before the first stage that depends on it). ``network``: the docker network of the overlay legs
    (default ``ingress`` for the ingress path). ``task_point``/``source_point``: the receiving/sending
    task's capture point; without them a task stage is kept only when its node has a single candidate.
    """
    if not entry:
        return []
    kind = PathKind(kind)
    if network is None and kind == PathKind.INGRESS:
        network = "ingress"
    pts = list(points)
    local = None if backend is None else backend == entry
    out: list[PathPoint] = []
    for st in stages(kind, local=local, proto=proto):
        if backend is None and (st.side == Side.BACKEND or st.reach != Reach.ANY):
            break
        if not st.captured:
            continue
        node = entry if st.side == Side.ENTRY else backend
        pinned = source_point if st.name == "task_eth0_src" else task_point
        hits = [p for p in pts if _matches(st, p, node, network, pinned)]
        if st.role == Role.TASK and pinned is None and len(hits) != 1:
            continue
        out += [PathPoint(p.point, st.encapsulated, st) for p in hits]
    if direction == "reply":
        back = {s.name: s for s in stages(kind, local=local, proto=proto, direction="reply")}
        return [replace(pp, stage=back[pp.stage.name]) for pp in reversed(out)]
    return out
