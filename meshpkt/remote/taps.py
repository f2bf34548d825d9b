"""Which hops to tap on a node, with which filter, and the topology document of a remote capture. Pure.

Hops (Swarm's data path, seed 001): the host's underlay interface(s) and ``docker_gwbridge``, the
``ingress_sbox``'s eth0/eth1, each overlay namespace's ``br0`` and ``vxlan0``, each ``lb_<netid>``'s
interfaces, and each task's interfaces on overlay networks (not its docker_gwbridge leg).

With a service (its published ports), every hop gets the filter that catches the service's connections
there, written by :mod:`meshpkt.bpf`: published ports keep their number on every hop up to the task's
eth0 (DNAT keeps the port, IPVS masquerading keeps it, REDIRECT happens after the task's tap), so the
filter is ``tcp port P`` on plain hops, plus the same test inside VXLAN on the host's underlay.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshpkt.remote.discover import Iface, Namespace, NodeInfo

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_NOT_UNDERLAY = re.compile(r"^(lo|docker\d*|docker_gwbridge|br-[0-9a-f]+|veth.*|virbr\d*|cni\d*|flannel.*|vxlan.*)$")


@dataclass(frozen=True)
class Tap:
    """One tcpdump: node, namespace (Docker's name; ``host`` = root), file path on the node (``-`` for the
    root namespace), interface, point name (``<node>.<namespace>.<iface>``), filter (may be empty)."""

    node: str
    namespace: str
    path: str
    iface: str
    point: str
    role: str
    filter: str = ""
    network: str | None = None


def _v4(i: Iface) -> list[ipaddress.IPv4Interface]:
    out = []
    for a in i.addresses:
        try:
            out.append(ipaddress.IPv4Interface(a))
        except ValueError:
            continue
    return out


def underlay_ifaces(host: Namespace) -> list[Iface]:
    """The host interfaces that carry the underlay: IPv4-addressed, not Docker's or a veth."""
    return [i for i in host.interfaces if _v4(i) and not _NOT_UNDERLAY.match(i.name) and i.kind != "loopback"]


def gwbridge_net(node: NodeInfo) -> ipaddress.IPv4Network | None:
    """docker_gwbridge's subnet on the node (from the host's docker_gwbridge address)."""
    for ns in node.namespaces:
        if ns.role == "host":
            for i in ns.interfaces:
                if i.name == "docker_gwbridge" and _v4(i):
                    return _v4(i)[0].network
    return None


def hop_ifaces(node: NodeInfo, ns: Namespace) -> list[Iface]:
    """The interfaces of ``ns`` that are hops of the data path."""
    up = [i for i in ns.interfaces if i.kind != "loopback" and i.name != "lo"]
    if ns.role == "host":
        return underlay_ifaces(ns) + [i for i in up if i.name == "docker_gwbridge"]
    if ns.role == "overlay":
        return [i for i in up if i.kind in ("bridge", "vxlan")]
    if ns.role == "task":
        gw = gwbridge_net(node)
        return [i for i in up if not (gw and any(a in gw for a in (x.ip for x in _v4(i))))]
    if ns.role in ("ingress_sbox", "lb"):
        return up
    return []


def service_filters(ports: Sequence[int], vxlan_port: int) -> tuple[str, str]:
    """(plain filter, underlay filter) for a service published on ``ports``."""
    from meshpkt.bpf import filter_string

    plain = "tcp and (" + " or ".join(f"port {p}" for p in ports) + ")"
    inner = filter_string(ports=vxlan_port, inner_proto="tcp", inner_port=list(ports), outer_ip="4")
    return plain, f"({plain}) or ({inner})"


def plan_taps(node: NodeInfo, ports: Sequence[int] = (), extra: str | None = None) -> list[Tap]:
    """Every tap of ``node`` with its filter (service ports and/or a user expression, ANDed)."""
    vport = next((i.vxlan_port for ns in node.namespaces for i in ns.interfaces if i.vxlan_port), None) or 4789
    plain, under = service_filters(ports, vport) if ports else ("", "")
    taps = []
    for ns in node.namespaces:
        for i in hop_ifaces(node, ns):
            base = under if ns.role == "host" and i.name != "docker_gwbridge" else plain
            flt = " and ".join(f"({f})" for f in (base, extra) if f) if base and extra else (base or extra or "")
            point = _SAFE.sub("_", f"{node.name}.{ns.display if ns.role != 'host' else 'host'}.{i.name}")
            taps.append(Tap(node.name, ns.name, ns.path or "-", i.name, point, ns.role, flt, ns.network))
    return taps


def topology(nodes: Sequence[NodeInfo], taps: Sequence[Tap], model: Any = None) -> dict[str, Any]:
    """A status document (schema ``meshpkt.lab.status/1``, the parts a real cluster shows) for ``analyze``.

    ``model`` (a :class:`meshpkt.rules.model.MeshModel` from the collected dumps) adds published
    ports, target ports and VIPs.
    """
    doc: dict[str, Any] = {"schema": "meshpkt.lab.status/1", "name": "remote", "source": "meshpkt capture --node",
                           "clients": [], "underlay_namespaces": [], "nodes": [], "networks": [], "services": []}
    backends, vnis = [], {}
    for n in nodes:
        if n.error:
            continue
        doc["nodes"].append(_node_doc(n))
        for ns in n.namespaces:
            for i in ns.interfaces:
                if i.vni is not None:
                    vnis[i.vni] = {"name": ns.network or ns.name, "vni": i.vni, "port": i.vxlan_port,
                                   "driver": "overlay"}
            if ns.role == "task":
                ips = {i.name: str(a.ip) for i in hop_ifaces(n, ns) for a in _v4(i)}
                if ips:
                    first = ips.get("eth0") or next(iter(ips.values()))
                    backends.append({"task": ns.display, "node": n.name, "ip": first, "ips": ips, "alive": True})
    doc["networks"] = [vnis[v] for v in sorted(vnis)]
    doc["data_path_port"] = next((v["port"] for v in doc["networks"] if v["port"]), 4789)
    doc["services"] = [{"name": "tasks", "mode": "vip", "vips": {}, "published": [], "backends": backends}]
    if model is not None:
        _from_model(doc, model)
    doc["capture_points"] = [{"point": t.point, "node": t.node, "namespace": t.point.split(".", 1)[1].rsplit(".", 1)[0],
                              "netns": t.path, "iface": t.iface, "role": t.role, "network": t.network}
                             for t in taps]
    return doc


def _node_doc(n: NodeInfo) -> dict[str, Any]:
    host = next((ns for ns in n.namespaces if ns.role == "host"), None)
    under = underlay_ifaces(host) if host else []
    sbox = next((ns for ns in n.namespaces if ns.role == "ingress_sbox"), None)
    ingress_ip = None
    if sbox:
        eth0 = next((i for i in sbox.interfaces if i.name == "eth0"), None)
        ingress_ip = next((str(a.ip) for a in (_v4(eth0) if eth0 else []) if a.network.prefixlen < 32), None)
    lb_ips = {ns.network or ns.name: str(a.ip) for ns in n.namespaces if ns.role == "lb"
              for i in ns.interfaces if i.name == "eth0" for a in _v4(i) if a.network.prefixlen < 32}
    return {"name": n.name, "underlay_ip": str(_v4(under[0])[0].ip) if under else None, "ingress_ip": ingress_ip,
            "lb_ips": lb_ips, "hostname": n.hostname, "target": n.target.label,
            "namespaces": [{"name": ns.path or "-", "short": ns.display if ns.role != "host" else "host",
                            "role": ns.role, "network": ns.network,
                            "interfaces": [{"name": i.name, "kind": i.kind, "mac": i.mac, "mtu": i.mtu,
                                            "addresses": list(i.addresses), "bridge": i.master}
                                           for i in ns.interfaces]} for ns in n.namespaces]}


def _from_model(doc: dict[str, Any], model: Any) -> None:
    svc = doc["services"][0]
    redirect = {r.port: r.to_port for r in model.redirects() if r.port is not None and r.to_port}
    seen = set()
    for p in model.published_ports():
        if (p.proto, p.port) not in seen:
            seen.add((p.proto, p.port))
            svc["published"].append({"published": p.port, "target": redirect.get(p.port, p.port),
                                     "protocol": p.proto or "tcp"})
    for i, m in enumerate(sorted({str(m.vip) for m in model.marks() if m.vip is not None})):
        svc["vips"][f"vip{i}"] = m
