"""What is on a node: host name, tools, Docker's network namespaces with their interfaces and roles.

:func:`parse_discovery` (pure) reads the output of :data:`meshpkt.remote.scripts.DISCOVER`;
:func:`discover` runs it on every node at once. Roles and names come from ``docker inspect`` /
``docker network inspect`` when the docker CLI answers on the node, from the namespace names
(``ingress_sbox``, ``1-<netid>``, ``lb_<netid>``, 12-hex sandbox ids) and addresses otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpkt.remote.scripts import DISCOVER, remote_command
from meshpkt.remote.ssh import Transport, each_node, ssh_error
from meshpkt.remote.target import Target
from meshpkt.rules.model import role_from_name

NEEDED = ("sh", "nsenter", "tcpdump")
"""Tools a node needs for capture (sshd is needed to get this far)."""


@dataclass(frozen=True)
class Iface:
    """One interface of a namespace (from ``ip -j -d addr``)."""

    name: str
    kind: str  # veth | bridge | vxlan | loopback | device | ...
    mac: str = ""
    mtu: int = 0
    addresses: tuple[str, ...] = ()  # CIDR strings
    master: str | None = None
    vni: int | None = None
    vxlan_port: int | None = None


@dataclass
class Namespace:
    """One network namespace of a node: Docker's name (``host`` for the root one), file, role, interfaces."""

    name: str
    path: str | None
    role: str
    interfaces: list[Iface] = field(default_factory=list)
    label: str = ""  # task name from docker inspect (``my-web.1``), else the namespace name
    network: str | None = None  # docker network name (overlay/lb/ingress_sbox) when known

    @property
    def display(self) -> str:
        """The name used in capture point names."""
        return self.label or self.name


@dataclass
class NodeInfo:
    """Everything discovered on one node."""

    target: Target
    hostname: str = ""
    uid: int | None = None
    tools: dict[str, bool] = field(default_factory=dict)
    namespaces: list[Namespace] = field(default_factory=list)
    docker: bool = False
    error: str | None = None  # the node could not be reached / the script failed
    name: str = ""  # unique node name used in files (host name, else the target)

    def missing(self, needed: Sequence[str] = NEEDED) -> list[str]:
        """Tools of ``needed`` the node lacks."""
        return [t for t in needed if not self.tools.get(t)]

    def ns(self, name: str) -> Namespace:
        """The namespace called ``name`` (Docker's name or display name); KeyError if none."""
        for n in self.namespaces:
            if name in (n.name, n.label):
                return n
        raise KeyError(name)


def _iface(obj: dict[str, Any]) -> Iface:
    info = obj.get("linkinfo") or {}
    kind = str(info.get("info_kind") or ("loopback" if obj.get("link_type") == "loopback" else "device"))
    data = info.get("info_data") or {}
    addrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in obj.get("addr_info") or []
                  if a.get("local") and a.get("prefixlen") is not None)
    return Iface(str(obj.get("ifname", "")), kind, str(obj.get("address", "")), int(obj.get("mtu") or 0), addrs,
                 obj.get("master"), int(data["id"]) if kind == "vxlan" and "id" in data else None,
                 int(data["port"]) if kind == "vxlan" and "port" in data else None)


def _json(line: str) -> Any:
    try:
        return json.loads(line) if line.strip() else None
    except ValueError:
        return None


def parse_discovery(target: Target, text: str) -> NodeInfo:
    """Parse the DISCOVER script's output into a NodeInfo (error set when the output is cut short)."""
    node = NodeInfo(target)
    lines = text.splitlines()
    docker: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        word, _, rest = lines[i].partition(" ")
        if word == "@hostname":
            node.hostname = rest.strip().split(".")[0]
        elif word == "@uid":
            node.uid = int(rest) if rest.strip().isdigit() else None
        elif word == "@tool":
            tool, _, ok = rest.partition(" ")
            node.tools[tool] = ok.strip() == "1"
        elif word == "@ns" and i + 1 < len(lines):
            name, _, path = rest.partition(" ")
            objs = _json(lines[i + 1]) or []
            node.namespaces.append(Namespace(name, None if path in ("-", "") else path, str(role_from_name(name)),
                                             [_iface(o) for o in objs if isinstance(o, dict)]))
            i += 1
        elif word in ("@docker-networks", "@docker-containers") and i + 1 < len(lines):
            docker[word] = _json(lines[i + 1]) or []
            i += 1
        elif word == "@error":
            node.error = rest.strip()
        i += 1
    if "@end" not in lines and node.error is None:
        node.error = "discovery output cut short"
    if docker:
        node.docker = True
        apply_docker(node, docker.get("@docker-networks") or [], docker.get("@docker-containers") or [])
    return node


def apply_docker(node: NodeInfo, networks: list[dict[str, Any]], containers: list[dict[str, Any]]) -> None:
    """Name namespaces after ``docker network inspect`` / ``docker inspect`` (task names, networks)."""
    by_short: dict[str, str] = {}
    for net in networks:
        nid = str(net.get("Id", ""))
        if nid:
            by_short[f"1-{nid[:10]}"] = by_short[f"lb_{nid[:9]}"] = str(net.get("Name", ""))
        if net.get("Ingress") or net.get("Name") == "ingress":
            by_short["ingress_sbox"] = str(net.get("Name", "ingress"))
    for c in containers:
        key = str((c.get("NetworkSettings") or {}).get("SandboxKey") or "").rsplit("/", 1)[-1]
        labels = (c.get("Config") or {}).get("Labels") or {}
        svc, slot = labels.get("com.docker.swarm.service.name"), labels.get("com.docker.swarm.task.name")
        label = ".".join(str(slot).split(".")[:2]) if svc and slot else str(c.get("Name", "")).lstrip("/")
        for ns in node.namespaces:
            if key and ns.name == key:
                ns.label, ns.role = label.replace("/", "_"), "task"
    for ns in node.namespaces:
        if ns.name in by_short:
            ns.network = by_short[ns.name]


def discover(transport: Transport, targets: Sequence[Target], timeout: float = 60.0) -> list[NodeInfo]:
    """Discover every node concurrently; unreachable nodes come back with ``error`` set. Names are unique."""
    def one(t: Target) -> NodeInfo:
        r = transport.run(t, remote_command(DISCOVER), timeout=timeout)
        if r.returncode == 255 and b"@hostname" not in r.stdout:
            return NodeInfo(t, error=f"cannot connect over SSH: {ssh_error(r.stderr)}")
        info = parse_discovery(t, r.stdout.decode(errors="replace"))
        if info.error is None and r.returncode != 0:
            info.error = f"discovery failed (exit {r.returncode}): {ssh_error(r.stderr)}"
        return info

    nodes = each_node(one, list(targets))
    name_nodes(nodes)
    return nodes


def name_nodes(nodes: Sequence[NodeInfo]) -> None:
    """Each node's file name: its host name, or the target host when host names clash or are unknown."""
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.hostname] = counts.get(n.hostname, 0) + 1
    for n in nodes:
        base = n.hostname if n.hostname and counts[n.hostname] == 1 else n.target.host
        n.name = base.replace(".", "_").replace("/", "_") or "node"
