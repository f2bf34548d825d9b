"""What the analysis knows about the mesh: capture points, nodes, tasks, VIPs, VNIs.

Read from ``meshpkt lab status --json`` (the ``status.json`` that ``lab capture`` writes next to
its pcaps), or inferred from capture point names (``<node>.<namespace>.<iface>``) and the
packets themselves (VXLAN endpoints, 172.18/16 docker_gwbridge, 02:42 MACs). Pure: data in,
data out; only :func:`load_topology` reads a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int
from meshpkt.errors import UsageError

ROLES = ("client", "host", "ingress_sbox", "overlay", "lb", "task", "underlay", "unknown")

GWBRIDGE_NET = (ip4_int("172.16.0.0"), 12)  # docker_gwbridge is allocated from 172.16/12


@dataclass(frozen=True)
class PointInfo:
    """One capture point: where a pcap was taken."""

    point: str
    node: str
    namespace: str
    iface: str
    role: str
    network: str = ""


@dataclass(frozen=True)
class TaskInfo:
    name: str
    node: str
    service: str = ""


@dataclass
class Topology:
    """Addresses and roles the analysis uses to name hops and expected paths."""

    points: dict[str, PointInfo] = field(default_factory=dict)
    node_ips: dict[int, str] = field(default_factory=dict)  # underlay IP -> node
    tasks: dict[int, TaskInfo] = field(default_factory=dict)  # overlay IP -> task
    lb_ips: dict[int, str] = field(default_factory=dict)  # ingress / lb endpoint IP -> node
    sbox_ips: dict[int, str] = field(default_factory=dict)  # ingress_sbox gwbridge IP -> node
    vips: dict[int, str] = field(default_factory=dict)  # VIP -> service
    published: dict[int, int] = field(default_factory=dict)  # published port -> target port
    vni_names: dict[int, str] = field(default_factory=dict)
    clients: set[int] = field(default_factory=set)
    inferred: bool = True
    source: str = "inferred from capture point names and packets"
    capture_drops: dict[str, int] = field(default_factory=dict)  # point -> tcpdump "dropped by kernel"

    def point(self, name: str) -> PointInfo:
        info = self.points.get(name)
        return info if info is not None else parse_point(name)

    def node_of_ip(self, ip: int) -> str | None:
        if ip in self.node_ips:
            return self.node_ips[ip]
        if ip in self.tasks:
            return self.tasks[ip].node
        return self.lb_ips.get(ip)


def role_of_namespace(node: str, namespace: str) -> str:
    if node == "client" or namespace == "client":
        return "client"
    if node == "underlay" or namespace == "underlay":
        return "underlay"
    if namespace == "host":
        return "host"
    if namespace == "ingress_sbox":
        return "ingress_sbox"
    if namespace.startswith("1-"):
        return "overlay"
    if namespace.startswith("lb_"):
        return "lb"
    return "task" if namespace else "unknown"


def parse_point(name: str) -> PointInfo:
    """``node1.ingress_sbox.eth0`` -> node1 / ingress_sbox / eth0 (middle may hold dots)."""
    parts = name.split(".")
    if len(parts) >= 3:
        node, iface, ns = parts[0], parts[-1], ".".join(parts[1:-1])
    elif len(parts) == 2:
        node, ns, iface = parts[0], "host", parts[1]
    else:
        node, ns, iface = name, "", ""
    return PointInfo(name, node, ns, iface, role_of_namespace(node, ns))


def load_topology(path: str | Path) -> Topology:
    """Read a lab status JSON (``meshpkt lab status --json``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{p}: no such topology file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{p}: not a topology JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: not a topology JSON (expected an object)")
    topo = from_lab_status(data, source=str(p))
    topo.capture_drops.update(read_capture_stats(p.parent))
    return topo


def capture_drops(stats: Any) -> dict[str, int]:
    """``{point: {"dropped_kernel": N, ...}}`` (the lab's ``capture_stats``, also accepted as a list of
    ``{"point": ..., "dropped_kernel": N}``) -> ``{point: N}``; anything malformed is ignored."""
    rows = stats.items() if isinstance(stats, dict) else (
        (r.get("point"), r) for r in stats if isinstance(r, dict)) if isinstance(stats, list) else ()
    out: dict[str, int] = {}
    for point, st in rows:
        n = st.get("dropped_kernel") if isinstance(st, dict) else None
        if isinstance(point, str) and isinstance(n, (int, float)) and not isinstance(n, bool):
            out[point] = int(n)
    return out


def read_capture_stats(directory: Path) -> dict[str, int]:
    """Per-point tcpdump kernel drops from a ``capture_stats.json`` in ``directory`` ({} when absent
    or unreadable: the drop counts are optional)."""
    try:
        data = json.loads((directory / "capture_stats.json").read_text())
    except (OSError, ValueError):
        return {}
    return capture_drops(data.get("capture_stats", data) if isinstance(data, dict) else data)


def _ip(text: Any) -> int | None:
    if not text:
        return None
    try:
        return ip4_int(str(text).split("/")[0])
    except UsageError:
        return None


def from_lab_status(status: dict[str, Any], source: str = "lab status") -> Topology:
    """Build a Topology from the lab status document (schema in ``meshpkt.lab.status``)."""
    topo = Topology(inferred=False, source=source)
    _status_points(topo, status)
    topo.capture_drops.update(capture_drops(status.get("capture_stats") or {}))
    _status_clients(topo, status)
    for node in status.get("nodes", []) or []:
        _status_node(topo, node)
    for net in status.get("networks", []) or []:
        vni = net.get("vni")
        if vni is not None:
            topo.vni_names[int(vni)] = str(net.get("name", vni))
    for svc in status.get("services", []) or []:
        _status_service(topo, svc)
    return topo


def _status_points(topo: Topology, status: dict[str, Any]) -> None:
    for cp in status.get("capture_points", []) or []:
        name = cp.get("point")
        if not name:
            continue
        parsed = parse_point(name)
        topo.points[name] = PointInfo(name, cp.get("node") or parsed.node, cp.get("namespace") or parsed.namespace,
                                      cp.get("iface") or parsed.iface, _norm_role(cp.get("role")) or parsed.role,
                                      str(cp.get("network") or ""))


def _status_clients(topo: Topology, status: dict[str, Any]) -> None:
    for client in status.get("clients", []) or []:
        ip = _ip(client.get("ip") or client.get("address")) if isinstance(client, dict) else _ip(client)
        if ip:
            topo.clients.add(ip)
    for ns in status.get("underlay_namespaces", []) or []:
        if _norm_role(ns.get("role")) == "client":
            for iface in ns.get("interfaces", []) or []:
                for addr in iface.get("addresses", []) or []:
                    cip = _ip(addr)
                    if cip:
                        topo.clients.add(cip)


def _status_node(topo: Topology, node: dict[str, Any]) -> None:
    nname = node.get("name", "")
    ip = _ip(node.get("underlay_ip") or node.get("ip"))
    if ip:
        topo.node_ips[ip] = nname
    for key in ("ingress_ip", "ingress_sbox_ip"):
        lip = _ip(node.get(key))
        if lip:
            topo.lb_ips[lip] = nname
    for lip_text in (node.get("lb_ips") or {}).values():
        lip = _ip(lip_text)
        if lip:
            topo.lb_ips[lip] = nname
    sbox = _ip(node.get("sbox_gwbridge_ip") or node.get("gwbridge_sbox_ip"))
    if sbox:
        topo.sbox_ips[sbox] = nname
    for ns in node.get("namespaces", []) or []:
        role = _norm_role(ns.get("role"))
        for iface in ns.get("interfaces", []) or []:
            for addr in iface.get("addresses", []) or []:
                aip = _ip(addr)
                if aip is None:
                    continue
                if role == "ingress_sbox":
                    if _in_net(aip, GWBRIDGE_NET):
                        topo.sbox_ips.setdefault(aip, nname)
                    elif not str(addr).endswith("/32"):
                        topo.lb_ips.setdefault(aip, nname)
                elif role == "lb" and not str(addr).endswith("/32"):
                    topo.lb_ips.setdefault(aip, nname)


def _status_service(topo: Topology, svc: dict[str, Any]) -> None:
    sname = str(svc.get("name", ""))
    vip = svc.get("vip") or svc.get("vips") or {}
    vips = vip.values() if isinstance(vip, dict) else (vip if isinstance(vip, list) else [vip])
    for v in vips:
        vipi = _ip(v)
        if vipi:
            topo.vips[vipi] = sname
    for pub in svc.get("published", []) or []:
        if pub.get("published") is not None:
            topo.published[int(pub["published"])] = int(pub.get("target", pub["published"]))
    for b in svc.get("backends", []) or []:
        for btext in [b.get("ip"), *((b.get("ips") or {}).values())]:
            bip = _ip(btext)
            if bip:
                topo.tasks[bip] = TaskInfo(str(b.get("task", "")), str(b.get("node", "")), sname)


def _norm_role(role: Any) -> str | None:
    if not role:
        return None
    r = str(role)
    return r if r in ROLES else None


def _in_net(ip: int, net: tuple[int, int]) -> bool:
    base, plen = net
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return (ip & mask) == base


def infer_topology(packets: pd.DataFrame, base: Topology | None = None) -> Topology:
    """Fill what ``base`` lacks from point names and packets; marks the result inferred if
    nothing came from a status file."""
    topo = base if base is not None else Topology()
    for name in (str(x) for x in packets["point"].unique()):  # not 4M str() calls
        if name not in topo.points:
            topo.points[name] = parse_point(name)
    if not topo.node_ips:
        # A node's underlay IP is the one address every IPv4 packet captured in its host
        # namespace carries (as source or destination, outer header).
        v4 = packets.loc[packets["outer_ipver"].to_numpy() == 4, ["point", "outer_src", "outer_dst"]]
        pcat = v4["point"].astype("category")  # codes, not 4M strings
        codes = pcat.cat.codes.to_numpy()
        code_of = {str(c): k for k, c in enumerate(pcat.cat.categories)}
        present = sorted(str(pcat.cat.categories[k]) for k in np.unique(codes))
        srcs_all, dsts_all = v4["outer_src"].to_numpy(), v4["outer_dst"].to_numpy()
        per_point: dict[str, list[int]] = {}
        for point in present:
            info = topo.point(point)
            if info.role not in ("host", "client"):
                continue
            sel = codes == code_of[point]
            srcs, dsts = srcs_all[sel], dsts_all[sel]
            cands = set(np.unique(srcs[:64]).tolist()) | set(np.unique(dsts[:64]).tolist())
            per_point[point] = [ip for ip in cands if bool(np.all((srcs == ip) | (dsts == ip)))]
        # clients: sources of connection-opening SYNs captured at client points (the address common
        # to every packet there may be the dialled node when there are many clients)
        client_codes = [code_of[p] for p in per_point if topo.point(p).role == "client"]
        if client_codes:
            fl = packets.loc[v4.index, "tcp_flags"].to_numpy()
            syn = (fl >= 0) & ((fl & 0x12) == 0x02) & np.isin(codes, client_codes)
            topo.clients |= {int(ip) for ip in np.unique(srcs_all[syn])}
        for _ in range(2):  # a node's address is what remains once clients and other nodes are set aside
            for point, ips in per_point.items():
                info = topo.point(point)
                if info.role != "host":
                    continue
                left = [ip for ip in ips
                        if ip not in topo.clients and topo.node_ips.get(ip, info.node) == info.node]
                if len(left) == 1:
                    topo.node_ips[int(left[0])] = info.node
    return topo
