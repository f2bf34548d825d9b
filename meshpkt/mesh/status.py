"""The lab status document (``status.json``) <-> :class:`~meshpkt.mesh.model.Mesh`: the only place it is
read or written.

Schema ``meshpkt.lab.status/1`` (documented in docs/status-schema.md and :mod:`meshpkt.lab.status`): all
addresses are strings there, ports, VNIs, marks and MTUs ints. :func:`load_status` turns a document (a path
or an already parsed object) into a :class:`Mesh`; :func:`status_document` writes it back key for key, so
``status_document(load_status(doc)) == doc`` for every document the lab writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.mesh.addr import mac_int, mac_str, parse_cidr, parse_network, try_ip4
from meshpkt.mesh.model import (
    Backend,
    CapturePoint,
    Client,
    EndpointMode,
    Fault,
    Interface,
    Mesh,
    Namespace,
    Network,
    Node,
    Peer,
    PublishedPort,
    PublishMode,
    Role,
    Service,
    Task,
    Underlay,
    VxlanLink,
    as_role,
    parse_point,
)

SCHEMA = "meshpkt.lab.status/1"
SCHEMA_PREFIX = "meshpkt.lab.status/"

JSON = dict[str, Any]  # the document itself: the file boundary
_KNOWN = (
    "schema",
    "name",
    "prefix",
    "lb",
    "lb_detail",
    "alive",
    "state_dir",
    "created",
    "up_seconds",
    "data_path_port",
    "underlay",
    "clients",
    "networks",
    "nodes",
    "underlay_namespaces",
    "services",
    "capture_points",
    "faults",
    "spec",
)


def read_document(path: str | Path) -> JSON:
    """The JSON object in ``path``; UsageError (one clear line) when missing or not a status document."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{p}: no such status file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{p}: not a lab status JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: not a lab status JSON (expected an object)")
    return data


def load_status(source: str | Path | Mapping[str, Any]) -> Mesh:
    """A :class:`Mesh` from a status document (path, or the parsed object)."""
    where = str(source) if isinstance(source, str | Path) else "status document"
    doc = read_document(source) if isinstance(source, str | Path) else source
    schema = doc.get("schema")
    if schema is not None and not str(schema).startswith(SCHEMA_PREFIX):
        raise UsageError(f"{where}: schema {schema!r} is not a lab status ({SCHEMA})")
    try:
        return _mesh(doc)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{where}: not a lab status document ({type(exc).__name__}: {exc})") from None


def write_status(mesh: Mesh, path: str | Path) -> None:
    """Write ``mesh`` as ``status.json`` (indented, like the lab writes it)."""
    Path(path).write_text(json.dumps(status_document(mesh), indent=1) + "\n")


# ---------------------------------------------------------------- reading


def _ip(value: Any) -> IPv4Address | None:
    return try_ip4(value)


def _mac(value: Any) -> int | None:
    return mac_int(str(value)) if value else None


def _ips(value: Any) -> dict[str, IPv4Address]:
    out = {}
    for key, text in (value or {}).items():
        ip = _ip(text)
        if ip is not None:
            out[str(key)] = ip
    return out


def _interface(d: Mapping[str, Any]) -> Interface:
    peer, vx = d.get("peer"), d.get("vxlan")
    return Interface(
        name=d["name"],
        kind=d.get("kind", ""),
        mac=_mac(d.get("mac")),
        mtu=d.get("mtu"),
        addresses=tuple(parse_cidr(a) for a in d.get("addresses") or ()),
        network=d.get("network"),
        peer=Peer(peer["netns"], peer["iface"]) if peer else None,
        bridge=d.get("bridge"),
        vxlan=VxlanLink(int(vx["vni"]), int(vx["port"]), vx.get("created_in", "")) if vx else None,
    )


def task_from_json(d: Mapping[str, Any] | None) -> Task | None:
    if not d:
        return None
    return Task(
        name=d["name"],
        service=d.get("service", ""),
        slot=d.get("slot"),
        task_id=d.get("task_id", ""),
        docker_name=d.get("docker_name", ""),
        container_id=d.get("container_id", ""),
        ips=_ips(d.get("ips")),
        ports=tuple(d.get("ports") or ()),
        pid=d.get("pid"),
    )


def _namespace(d: Mapping[str, Any], node: str) -> Namespace:
    role = as_role(d.get("role"))
    if role in (Role.CLIENT, Role.UNDERLAY):
        node = role.value
    return Namespace(
        name=d["name"],
        short=d.get("short", ""),
        role=role,
        network=d.get("network"),
        interfaces=tuple(_interface(i) for i in d.get("interfaces") or ()),
        task=task_from_json(d.get("task")),
        node=node,
    )


def _node(d: Mapping[str, Any]) -> Node:
    name = d["name"]
    return Node(
        name=name,
        underlay_ip=_ip(d.get("underlay_ip") or d.get("ip")),
        mac=_mac(d.get("mac")),
        ingress_ip=_ip(d.get("ingress_ip") or d.get("ingress_sbox_ip")),
        gwbridge_ip=_ip(d.get("gwbridge_ip")),
        lb_ips=_ips(d.get("lb_ips")),
        namespaces=tuple(_namespace(ns, name) for ns in d.get("namespaces") or ()),
    )


def network_from_json(d: Mapping[str, Any]) -> Network:
    subnet, nodes = d.get("subnet"), d.get("nodes")
    return Network(
        name=d["name"],
        id=d.get("id", ""),
        driver=d.get("driver", "overlay"),
        ingress=bool(d.get("ingress")),
        subnet=parse_network(subnet) if subnet else None,
        gateway=_ip(d.get("gateway")),
        vni=d.get("vni"),
        port=d.get("port"),
        mtu=d.get("mtu"),
        nodes=tuple(nodes) if nodes is not None else None,
        encrypted=bool(d.get("encrypted")),
        scope=d.get("scope"),
    )


def _backend(d: Mapping[str, Any]) -> Backend:
    return Backend(
        task=d.get("task", ""),
        node=d.get("node", ""),
        netns=d.get("netns", ""),
        ip=_ip(d.get("ip")),
        mac=_mac(d.get("mac")),
        ips=_ips(d.get("ips")),
        macs={k: mac_int(v) for k, v in (d.get("macs") or {}).items() if v},
        container_id=d.get("container_id", ""),
        task_id=d.get("task_id", ""),
        alive=bool(d.get("alive", True)),
    )


def _published(d: Mapping[str, Any]) -> PublishedPort:
    pub = int(d["published"])
    return PublishedPort(
        pub,
        int(d.get("target", pub)),
        str(d.get("protocol", "tcp")),
        PublishMode(d.get("mode", PublishMode.INGRESS)),
    )


def service_from_json(d: Mapping[str, Any]) -> Service:
    vips = d.get("vips") or d.get("vip") or {}
    if not isinstance(vips, Mapping):  # a single VIP, or a list of them
        vips = {str(i): v for i, v in enumerate(vips if isinstance(vips, list) else [vips])}
    return Service(
        name=d["name"],
        id=d.get("id", ""),
        mode=EndpointMode(d.get("mode", EndpointMode.VIP)),
        replicas=d.get("replicas"),
        networks=tuple(d.get("networks") or ()),
        vips=_ips(vips),
        fwmarks={
            n: {net: int(m) for net, m in marks.items()} for n, marks in (d.get("fwmarks") or {}).items()
        },
        published=tuple(_published(p) for p in d.get("published") or () if p.get("published")),
        target_ports=tuple(d.get("target_ports") or ()),
        backends=tuple(_backend(b) for b in d.get("backends") or ()),
    )


def client_from_json(d: Mapping[str, Any] | str) -> Client:
    if not isinstance(d, Mapping):
        return Client(name=str(d), ip=_ip(d))
    return Client(
        name=d.get("name", "client"),
        ip=_ip(d.get("ip") or d.get("address")),
        mac=_mac(d.get("mac")),
        netns=d.get("netns", ""),
    )


def _point(d: Mapping[str, Any]) -> CapturePoint:
    parsed = parse_point(d["point"])
    role = as_role(d.get("role")) if d.get("role") else parsed.role
    return CapturePoint(
        point=d["point"],
        node=d.get("node") or parsed.node,
        namespace=d.get("namespace") or parsed.namespace,
        iface=d.get("iface") or parsed.iface,
        role=role,
        netns=d.get("netns", ""),
        network=d.get("network"),
    )


def _underlay(d: Mapping[str, Any] | None) -> Underlay:
    d = d or {}
    return Underlay(
        subnet=parse_network(d["subnet"]) if d.get("subnet") else None,
        netns=d.get("netns", ""),
        bridge=d.get("bridge", "br0"),
        mtu=d.get("mtu"),
    )


def _mesh(doc: Mapping[str, Any]) -> Mesh:
    return Mesh(
        name=doc.get("name", ""),
        prefix=doc.get("prefix", ""),
        lb=doc.get("lb", ""),
        lb_detail=doc.get("lb_detail", ""),
        alive=bool(doc.get("alive", True)),
        state_dir=doc.get("state_dir", ""),
        created=doc.get("created", ""),
        up_seconds=doc.get("up_seconds"),
        data_path_port=int(doc.get("data_path_port") or 4789),
        underlay=_underlay(doc.get("underlay")),
        clients=tuple(client_from_json(c) for c in doc.get("clients") or ()),
        networks=tuple(network_from_json(n) for n in doc.get("networks") or ()),
        nodes=tuple(_node(n) for n in doc.get("nodes") or ()),
        underlay_namespaces=tuple(_namespace(ns, "") for ns in doc.get("underlay_namespaces") or ()),
        services=tuple(service_from_json(s) for s in doc.get("services") or ()),
        capture_points=tuple(_point(p) for p in doc.get("capture_points") or () if p.get("point")),
        faults=tuple(Fault(f["kind"], dict(f.get("args") or {})) for f in doc.get("faults") or ()),
        spec=doc.get("spec"),
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )


# ---------------------------------------------------------------- writing


def _s(value: IPv4Address | IPv4Interface | IPv4Network | None) -> str | None:
    return None if value is None else str(value)


def _m(value: int | None) -> str | None:
    return None if value is None else mac_str(value)


def interface_json(i: Interface) -> JSON:
    """One link as the document spells it."""
    d: JSON = {
        "name": i.name,
        "kind": i.kind,
        "mac": _m(i.mac),
        "mtu": i.mtu,
        "addresses": [str(a) for a in i.addresses],
        "network": i.network,
        "peer": {"netns": i.peer.netns, "iface": i.peer.iface} if i.peer else None,
        "bridge": i.bridge,
    }
    if i.vxlan is not None:
        d["vxlan"] = {"vni": i.vxlan.vni, "port": i.vxlan.port, "created_in": i.vxlan.created_in}
    return d


def _task_json(t: Task | None) -> JSON | None:
    if t is None:
        return None
    return {
        "name": t.name,
        "service": t.service,
        "slot": t.slot,
        "task_id": t.task_id,
        "docker_name": t.docker_name,
        "container_id": t.container_id,
        "ips": {k: str(v) for k, v in t.ips.items()},
        "ports": list(t.ports),
        "pid": t.pid,
    }


def namespace_json(ns: Namespace) -> JSON:
    """One namespace as the document spells it."""
    return {
        "name": ns.name,
        "short": ns.short,
        "role": ns.role.value,
        "network": ns.network,
        "interfaces": [interface_json(i) for i in ns.interfaces],
        "task": _task_json(ns.task),
    }


def _network_json(n: Network) -> JSON:
    d: JSON = {
        "name": n.name,
        "id": n.id,
        "driver": n.driver,
        "ingress": n.ingress,
        "subnet": _s(n.subnet),
        "gateway": _s(n.gateway),
        "vni": n.vni,
        "port": n.port,
        "mtu": n.mtu,
    }
    if n.nodes is not None:
        d["nodes"] = list(n.nodes)
    if n.scope is not None:
        d["scope"] = n.scope
    if n.encrypted:
        d["encrypted"] = True
    return d


def _node_json(n: Node) -> JSON:
    return {
        "name": n.name,
        "underlay_ip": _s(n.underlay_ip),
        "mac": _m(n.mac),
        "ingress_ip": _s(n.ingress_ip),
        "gwbridge_ip": _s(n.gwbridge_ip),
        "lb_ips": {k: str(v) for k, v in n.lb_ips.items()},
        "namespaces": [namespace_json(ns) for ns in n.namespaces],
    }


def _published_json(p: PublishedPort) -> JSON:
    d: JSON = {"published": p.published, "target": p.target, "protocol": p.protocol}
    if p.mode != PublishMode.INGRESS:
        d["mode"] = p.mode.value
    return d


def _backend_json(b: Backend) -> JSON:
    return {
        "task": b.task,
        "node": b.node,
        "netns": b.netns,
        "ip": _s(b.ip),
        "mac": _m(b.mac),
        "ips": {k: str(v) for k, v in b.ips.items()},
        "macs": {k: mac_str(v) for k, v in b.macs.items()},
        "container_id": b.container_id,
        "task_id": b.task_id,
        "alive": b.alive,
    }


def _service_json(s: Service) -> JSON:
    return {
        "name": s.name,
        "id": s.id,
        "mode": s.mode.value,
        "replicas": s.replicas,
        "networks": list(s.networks),
        "vips": {k: str(v) for k, v in s.vips.items()},
        "fwmarks": {n: dict(marks) for n, marks in s.fwmarks.items()},
        "published": [_published_json(p) for p in s.published],
        "target_ports": list(s.target_ports),
        "backends": [_backend_json(b) for b in s.backends],
    }


def point_json(p: CapturePoint) -> JSON:
    """One capture point as the document spells it."""
    return {
        "point": p.point,
        "node": p.node,
        "namespace": p.namespace,
        "netns": p.netns,
        "iface": p.iface,
        "role": p.role.value,
        "network": p.network,
    }


def status_document(mesh: Mesh) -> JSON:
    """The status document of ``mesh`` (schema ``meshpkt.lab.status/1``)."""
    u = mesh.underlay
    return {
        "schema": SCHEMA,
        "name": mesh.name,
        "prefix": mesh.prefix,
        "lb": mesh.lb,
        "lb_detail": mesh.lb_detail,
        "alive": mesh.alive,
        "state_dir": mesh.state_dir,
        "created": mesh.created,
        "up_seconds": mesh.up_seconds,
        "data_path_port": mesh.data_path_port,
        "underlay": {"subnet": _s(u.subnet), "netns": u.netns, "bridge": u.bridge, "mtu": u.mtu},
        "clients": [
            {"name": c.name, "ip": _s(c.ip), "mac": _m(c.mac), "netns": c.netns} for c in mesh.clients
        ],
        "networks": [_network_json(n) for n in mesh.networks],
        "nodes": [_node_json(n) for n in mesh.nodes],
        "underlay_namespaces": [namespace_json(ns) for ns in mesh.underlay_namespaces],
        "services": [_service_json(s) for s in mesh.services],
        "capture_points": [point_json(p) for p in mesh.capture_points],
        "faults": [{"kind": f.kind, "args": dict(f.args)} for f in mesh.faults],
        "spec": dict(mesh.spec) if mesh.spec is not None else None,
        **mesh.extra,
    }
