"""The lab status document (``meshpkt lab status --json``, ``meshpkt.lab.status(name)``, and the
``status.json`` written beside every ``lab capture``). Analysis, diagrams and verify read it.

Schema ``meshpkt.lab.status/1`` (all addresses are strings; ports, VNIs, marks and MTUs are ints)::

    {
      "schema": "meshpkt.lab.status/1",
      "name": "mesh",                      # lab name; every netns is named "<name>-..."
      "prefix": "mesh-",
      "lb": "nftables",                    # "ipvs" (real IPVS) | "nftables" (emulation, see lb_detail)
      "lb_detail": "...",                  # one sentence: how the FWM load balancer is implemented
      "alive": true,                       # every namespace still exists (filled in by status())
      "state_dir": "/run/meshpkt/lab/mesh",
      "created": "2024-03-06T05:36:56+00:00",
      "up_seconds": 1.42,
      "data_path_port": 4789,
      "underlay": {"subnet": "10.211.55.0/24", "netns": "mesh-underlay", "bridge": "br0", "mtu": 1500},
      "clients": [{"name": "client", "ip": "10.211.55.2", "mac": "00:1c:42:d3:37:02", "netns": "mesh-client"}],
      "networks": [                        # ingress first, then user overlays, then docker_gwbridge
        {"name": "ingress", "id": "<25 chars>", "driver": "overlay", "ingress": true,
         "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "vni": 4096, "port": 4789, "mtu": 1450,
         "nodes": ["node1", ...]},
        {"name": "my-overlay", ..., "vni": 4097, ...},
        {"name": "docker_gwbridge", "driver": "bridge", "scope": "local", "subnet": "172.18.0.0/16",
         "gateway": "172.18.0.1", "vni": null, "port": null, "mtu": 1500, ...}
      ],
      "nodes": [
        {"name": "node1", "underlay_ip": "10.211.55.10", "mac": "00:1c:42:d3:37:0a",
         "ingress_ip": "10.0.0.2",         # ingress_sbox eth0 = the SNAT source of ingress traffic
         "gwbridge_ip": "172.18.0.1", "lb_ips": {"my-overlay": "10.0.1.4"},
         "namespaces": [
           {"name": "mesh-node1",          # full netns name (use with `ip netns exec`)
            "short": "host",               # host | ingress_sbox | 1-<netid10> | lb_<netid9> | <task name>
            "role": "host",                # host | ingress_sbox | overlay | lb | task
            "network": null,               # overlay/lb/ingress_sbox: the docker network it serves
            "interfaces": [
              {"name": "eth0", "kind": "veth", "mac": "00:1c:42:d3:37:0a", "mtu": 1500,
               "addresses": ["10.211.55.10/24"],              # CIDR strings; VIPs appear as /32
               "network": null,                               # docker network of this link
               "peer": {"netns": "mesh-underlay", "iface": "vnode1"},   # veth peer, else null
               "bridge": null,                                # master bridge in this netns, else null
               "vxlan": {"vni": 4096, "port": 4789, "created_in": "mesh-node1"}  # vxlan links only
              }, ...],
            "task": null                   # task namespaces: {"name": "my-web.1", "service": "my-web",
                                           #  "slot": 1, "task_id", "docker_name", "container_id",
                                           #  "ips": {network: ip}, "ports": [80], "pid": 1234}
           }, ...]
        }, ...],
      "underlay_namespaces": [<namespace objects with role "underlay" and "client">],
      "services": [
        {"name": "my-web", "id": "<25 chars>", "mode": "vip", "replicas": 3,
         "networks": ["ingress", "my-overlay"],
         "vips": {"ingress": "10.0.0.5", "my-overlay": "10.0.1.3"},
         "fwmarks": {"node1": {"ingress": 258, "my-overlay": 257}, ...},   # per node, per network
         "published": [{"published": 9090, "target": 80, "protocol": "tcp"}],
         "target_ports": [80],
         "backends": [{"task": "my-web.1", "node": "node1", "netns": "mesh-node1-<cid12>",
                       "ip": "10.0.0.6", "mac": "02:42:0a:00:00:06",      # on the first network
                       "ips": {"ingress": "10.0.0.6", "my-overlay": "10.0.1.7"}, "macs": {...},
                       "container_id": "<64 hex>", "task_id": "<25 chars>", "alive": true}]},
        ...],
      "capture_points": [
        {"point": "node1.ingress_sbox.eth1",   # = file stem of lab capture: <point>.pcap
         "node": "node1", "namespace": "ingress_sbox", "netns": "mesh-node1-ingress_sbox",
         "iface": "eth1", "role": "ingress_sbox", "network": "docker_gwbridge"}, ...],
      "faults": [{"kind": "remove_snat", "args": {"node": "node1", "network": "ingress"}}, ...],
      "spec": {...}                        # the LabSpec as plain data (LabSpec.from_dict() reads it back)
    }

Capture points, in path order: ``client.host.eth0``, ``underlay.host.br0``, then per node
``<node>.host.eth0``, ``<node>.ingress_sbox.eth1``, ``<node>.ingress_sbox.eth0``,
``<node>.1-<netid10>.br0``, ``<node>.1-<netid10>.vxlan0`` (one pair per overlay on the node),
``<node>.lb_<netid9>.eth0``, and ``<node>.<task>.<iface>`` for every overlay interface of each task
(``node2.my-web.2.eth0`` on ingress, ``node2.my-web.2.eth2`` on my-overlay).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.lab.plan import Plan

SCHEMA = "meshpkt.lab.status/1"

LB_DETAIL = {
    "ipvs": "real IPVS: FWM services (rr, Masq, port 0) in ingress_sbox and lb_<net>; "
            "SNAT rule -m ipvs --ipvs",
    "nftables": "nftables emulation of IPVS (kernel has no ip_vs): table ip meshpkt_ipvs marks VIPs and "
                "does `meta mark M ct state new dnat to numgen inc mod N map {...}` (round-robin, port kept); "
                "the iptables SNAT rule matches -m conntrack --ctstate DNAT instead of -m ipvs --ipvs",
}


def _ns_json(ns: Any) -> dict[str, Any]:
    return {"name": ns.name, "short": ns.short, "role": ns.role, "network": ns.network,
            "interfaces": [i.to_json() for i in ns.interfaces],
            "task": dict(ns.task) if ns.task else None}


def build_status(p: Plan, *, state_dir: str = "", created: str = "", up_seconds: float | None = None,
                 pids: dict[str, int] | None = None) -> dict[str, Any]:
    """The status document of a planned lab (pure)."""
    pids = pids or {}
    spec = p.spec
    nodes = []
    for nd in p.nodes:
        nss = []
        for ns in p.namespaces:
            if ns.node != nd["name"]:
                continue
            j = _ns_json(ns)
            if j["task"] is not None:
                j["task"]["pid"] = pids.get(j["task"]["name"])
            nss.append(j)
        nodes.append({**nd, "namespaces": nss})
    points = []
    order = {"client": 0, "underlay": 1, "host": 2, "ingress_sbox": 3, "overlay": 4, "lb": 5, "task": 6}
    sbox_if_order = {"eth1": 0, "eth0": 1}
    node_order = ["client", "underlay"] + [n["name"] for n in p.nodes]
    nss_sorted = sorted(p.namespaces, key=lambda n: (node_order.index(n.node), order[n.role]))
    for ns in nss_sorted:
        ifs = [i for i in ns.interfaces if i.capture]
        if ns.role == "ingress_sbox":
            ifs.sort(key=lambda i: sbox_if_order.get(i.name, 9))
        for i in ifs:
            points.append({"point": f"{ns.node}.{ns.short}.{i.name}", "node": ns.node, "namespace": ns.short,
                           "netns": ns.name, "iface": i.name, "role": ns.role, "network": i.network})
    services = []
    for s in p.services:
        s2 = dict(s)
        s2["backends"] = [dict(b, alive=True) for b in s["backends"]]
        services.append(s2)
    und = p.ns(f"{spec.name}-underlay")
    return {
        "schema": SCHEMA,
        "name": spec.name,
        "prefix": spec.name + "-",
        "lb": p.lb,
        "lb_detail": LB_DETAIL[p.lb],
        "alive": True,
        "state_dir": state_dir,
        "created": created,
        "up_seconds": up_seconds,
        "data_path_port": spec.data_path_port,
        "underlay": {"subnet": spec.underlay_subnet, "netns": und.name, "bridge": "br0", "mtu": spec.underlay_mtu},
        "clients": [dict(c) for c in p.clients],
        "networks": [dict(n) for n in p.networks],
        "nodes": nodes,
        "underlay_namespaces": [_ns_json(ns) for ns in p.namespaces if ns.role in ("underlay", "client")],
        "services": services,
        "capture_points": points,
        "faults": [],
        "spec": spec.to_dict(),
    }


def all_namespaces(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every namespace object of a status document (underlay, client, then the nodes')."""
    out = list(status.get("underlay_namespaces", []))
    for nd in status["nodes"]:
        out += nd["namespaces"]
    return out


def resolve_target(status: dict[str, Any], target: str) -> str:
    """``NODE[/NAMESPACE]`` -> full netns name.

    NODE: ``node1``.., ``client``, ``underlay``. NAMESPACE: ``host`` (default), ``ingress_sbox``,
    ``overlay`` (the ingress overlay) or ``overlay:<network>``, ``lb`` (the first user overlay's) or
    ``lb:<network>``, a short name (``1-<netid>``, ``lb_<netid>``) or a task name (``my-web.1``).
    A full netns name of the lab is accepted too.
    """
    nss = all_namespaces(status)
    for ns in nss:
        if ns["name"] == target:
            return str(ns["name"])
    node, _, sub = target.partition("/")
    sub = sub or "host"
    if node in ("client", "underlay"):
        cands = [ns for ns in nss if ns["role"] == node]
        if sub != "host" or not cands:
            raise UsageError(f"bad target {target!r}: {node} has only one namespace (host)")
        return str(cands[0]["name"])
    nd = next((n for n in status["nodes"] if n["name"] == node), None)
    if nd is None:
        names = ", ".join(["client", "underlay"] + [n["name"] for n in status["nodes"]])
        raise UsageError(f"unknown node {node!r} (choose from {names})")
    kind, _, net = sub.partition(":")
    for ns in nd["namespaces"]:
        if ns["short"] == sub:
            return str(ns["name"])
        if kind == "overlay" and ns["role"] == "overlay" and ns["network"] == (net or "ingress"):
            return str(ns["name"])
        if kind == "lb" and ns["role"] == "lb" and (not net or ns["network"] == net):
            return str(ns["name"])
        if ns["role"] == "task" and ns["task"] and sub in (ns["task"]["name"], ns["task"]["docker_name"]):
            return str(ns["name"])
    shorts = ", ".join(ns["short"] for ns in nd["namespaces"])
    raise UsageError(f"no namespace {sub!r} on {node} (choose from {shorts}, overlay, lb)")


def select_points(status: dict[str, Any], points: list[str] | None, all_points: bool) -> list[dict[str, Any]]:
    """Capture points by name or glob (``node1.*``, ``*.ingress_sbox.*``); all with ``all_points``."""
    avail = status["capture_points"]
    if all_points or not points:
        if not all_points:
            raise UsageError("name capture points or pass --all (see `meshpkt lab status`)")
        return list(avail)
    chosen: list[dict[str, Any]] = []
    for pat in points:
        hits = [p for p in avail if fnmatch.fnmatchcase(p["point"], pat)]
        if not hits:
            raise UsageError(f"no capture point matches {pat!r} (e.g. {avail[0]['point']}; "
                             "see `meshpkt lab status`)")
        for h in hits:
            if h not in chosen:
                chosen.append(h)
    return chosen
