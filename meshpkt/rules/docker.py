"""Parsers for ``docker network inspect`` and ``docker service inspect`` JSON.

Both accept one JSON array, several arrays concatenated (several commands' output in one
file) or a single object. Malformed parts are reported in ``unparsed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from meshpkt.rules.types import parse_mac


@dataclass
class DockerEndpoint:
    """A container (or ``ingress-sbox`` / ``lb-<net>``) attached to a network on this node."""

    key: str
    name: str
    endpoint_id: str = ""
    mac: bytes | None = None
    ipv4: IPv4Interface | None = None


@dataclass
class DockerNetwork:
    """One network: id, driver, subnets/gateways, this node's endpoints, options, VNIs, peers."""

    name: str
    id: str
    driver: str = ""
    scope: str = ""
    ingress: bool = False
    subnets: list[tuple[IPv4Network, IPv4Address | None]] = field(default_factory=list)
    containers: list[DockerEndpoint] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    peers: list[tuple[str, IPv4Address]] = field(default_factory=list)

    @property
    def vnis(self) -> list[int]:
        """VNIs from ``com.docker.network.driver.overlay.vxlanid_list``."""
        raw = self.options.get("com.docker.network.driver.overlay.vxlanid_list", "")
        return [int(x) for x in raw.split(",") if x.strip().isdigit()]


@dataclass
class DockerPort:
    """A published port of a service."""

    protocol: str
    target: int
    published: int | None
    mode: str


@dataclass
class DockerService:
    """One service: endpoint mode, ports, VIPs per network, attached networks, replicas."""

    id: str
    name: str
    mode: str = "vip"
    ports: list[DockerPort] = field(default_factory=list)
    vips: list[tuple[str, IPv4Interface]] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    replicas: int | None = None


def _json_values(text: str) -> tuple[list[Any], list[str]]:
    """Decode every JSON value in ``text`` (concatenated arrays/objects); unparsed = skipped text."""
    dec = json.JSONDecoder()
    values: list[Any] = []
    unparsed: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        if text[i] not in "[{":
            j = text.find("\n", i)
            j = n if j < 0 else j
            unparsed.append(text[i:j])
            i = j + 1
            continue
        try:
            val, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            j = text.find("\n", i)
            j = n if j < 0 else j
            unparsed.append(f"{text[i:j]}  (JSON error: {exc.msg})")
            i = j + 1
            continue
        values.append(val)
        i = end
    items: list[Any] = []
    for v in values:
        items.extend(v if isinstance(v, list) else [v])
    return items, unparsed


def _iface(text: Any) -> IPv4Interface | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return IPv4Interface(text)
    except ValueError:
        return None


def parse_docker_networks(text: str) -> tuple[list[DockerNetwork], list[str]]:
    """Parse ``docker network inspect ...`` output; returns (networks, unparsed)."""
    items, unparsed = _json_values(text)
    out: list[DockerNetwork] = []
    for obj in items:
        if not isinstance(obj, dict) or "Id" not in obj:
            unparsed.append(json.dumps(obj)[:200])
            continue
        net = DockerNetwork(name=str(obj.get("Name", "")), id=str(obj["Id"]), driver=str(obj.get("Driver", "")),
                            scope=str(obj.get("Scope", "")), ingress=bool(obj.get("Ingress")),
                            options={str(k): str(v) for k, v in (obj.get("Options") or {}).items()})
        for cfg in (obj.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = IPv4Network(cfg.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            gw = None
            try:
                gw = IPv4Address(cfg["Gateway"]) if cfg.get("Gateway") else None
            except ValueError:
                pass
            net.subnets.append((subnet, gw))
        for key, c in (obj.get("Containers") or {}).items():
            if not isinstance(c, dict):
                continue
            net.containers.append(DockerEndpoint(key=str(key), name=str(c.get("Name", "")),
                                                 endpoint_id=str(c.get("EndpointID", "")),
                                                 mac=parse_mac(str(c.get("MacAddress", ""))),
                                                 ipv4=_iface(c.get("IPv4Address"))))
        for p in obj.get("Peers") or []:
            try:
                net.peers.append((str(p.get("Name", "")), IPv4Address(p.get("IP", ""))))
            except ValueError:
                continue
        out.append(net)
    return out, unparsed


def parse_docker_services(text: str) -> tuple[list[DockerService], list[str]]:
    """Parse ``docker service inspect ...`` output; returns (services, unparsed)."""
    items, unparsed = _json_values(text)
    out: list[DockerService] = []
    for obj in items:
        if not isinstance(obj, dict) or "ID" not in obj:
            unparsed.append(json.dumps(obj)[:200])
            continue
        spec = obj.get("Spec") or {}
        endpoint = obj.get("Endpoint") or {}
        svc = DockerService(id=str(obj["ID"]), name=str(spec.get("Name", "")),
                            mode=str((endpoint.get("Spec") or spec.get("EndpointSpec") or {}).get("Mode", "vip")))
        ports = endpoint.get("Ports") or (spec.get("EndpointSpec") or {}).get("Ports") or []
        for p in ports:
            try:
                svc.ports.append(DockerPort(protocol=str(p.get("Protocol", "tcp")), target=int(p["TargetPort"]),
                                            published=int(p["PublishedPort"]) if p.get("PublishedPort") else None,
                                            mode=str(p.get("PublishMode", "ingress"))))
            except (KeyError, TypeError, ValueError):
                unparsed.append(json.dumps(p))
        for v in endpoint.get("VirtualIPs") or []:
            addr = _iface(v.get("Addr"))
            if addr is not None:
                svc.vips.append((str(v.get("NetworkID", "")), addr))
        for n in (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []:
            if isinstance(n, dict) and n.get("Target"):
                svc.networks.append(str(n["Target"]))
        rep = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas")
        svc.replicas = int(rep) if isinstance(rep, int) else None
        out.append(svc)
    return out, unparsed


# ---------------------------------------------------------------------- real Docker state (issue 13)
_INFRA = ("ingress-sbox", "gateway_", "lb-")


@dataclass
class DockerTask:
    """A task found in ``docker network inspect`` on a node: name, service, address and VNI per network,
    and the namespace of the dump holding that address."""

    node: str
    name: str
    docker_name: str
    service: str
    addresses: list[tuple[str, IPv4Interface, int | None]] = field(default_factory=list)
    namespace: str | None = None

    def label(self) -> str:
        """``node1/<ns> my-web.3 (service my-web): ingress 10.0.0.7 VNI 4096, my-overlay 10.0.1.5 VNI 4097``."""
        addrs = ", ".join(f"{n} {a.ip}" + (f" VNI {v}" if v is not None else "") for n, a, v in self.addresses)
        return f"{self.node}/{self.namespace or '?'} {self.name} (service {self.service}): {addrs}"


def docker_tasks(model: Any) -> list[DockerTask]:
    """Every task endpoint of every node's ``docker network inspect`` (not ingress-sbox / lb- / gateway
    endpoints), joined across networks by container, with its service from ``docker service inspect``."""
    services = sorted((s.name for s in model.services()), key=len, reverse=True)
    out: list[DockerTask] = []
    for node in model.nodes.values():
        by_key: dict[str, DockerTask] = {}
        for net in node.networks:
            vni = net.vnis[0] if net.vnis else None
            for c in net.containers:
                if c.ipv4 is None or c.name.startswith(_INFRA) or c.key.startswith(_INFRA):
                    continue
                svc = next((s for s in services if c.name.startswith(s + ".")), "")
                short = ".".join(c.name.split(".")[:2]) if svc and c.name.count(".") >= 2 else c.name
                t = by_key.setdefault(c.key, DockerTask(node.name, short, c.name, svc))
                t.addresses.append((net.name, c.ipv4, vni))
        for t in by_key.values():
            ns = next((ns for ns in node.namespaces.values()
                       if any(ns.has_address(a.ip) for _n, a, _v in t.addresses)), None)
            t.namespace = ns.name if ns is not None else None
            t.addresses.sort(key=lambda x: (x[0] != "ingress", x[0]))
        out += sorted(by_key.values(), key=lambda t: t.name)
    return out


def routing_mesh_findings(model: Any) -> list[Any]:
    """Error per node whose host namespace was dumped but where a service's published port has no
    DNAT, no MARK and no load balancer: Docker skipped the routing mesh (a kernel without ip_vs)."""
    from meshpkt.rules.explain import Finding

    ports = [(s.name, p) for s in model.services() for p in s.ports if p.published and p.mode == "ingress"]
    if not ports:
        return []
    dnat = {(p.node, p.proto, p.port) for p in model.published_ports()}
    marks = {(m.node, m.port) for m in model.marks() if m.port is not None}
    lbs = {s.node for s in model.lb_services()}
    out = []
    for node in model.nodes.values():
        host = node.host
        if host is None or not host.has_table("nat"):
            continue
        missing = [(svc, p) for svc, p in ports if (node.name, p.protocol, p.published) not in dnat
                   and (node.name, p.published) not in marks]
        if not missing:
            continue
        what = ", ".join(f"{p.protocol}/{p.published} ({svc})" for svc, p in missing)
        lb = "" if node.name in lbs else ", no load balancer (IPVS or nft) in ingress_sbox"
        out.append(Finding("error", "no-routing-mesh",
                           f"routing mesh not programmed on {node.name}: published {what} has no DOCKER-INGRESS "
                           f"DNAT and no MARK{lb} (Docker skips the routing mesh when the kernel has no ip_vs; "
                           "published ports are refused)", node.name, host.name))
    return out
