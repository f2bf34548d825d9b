"""Fixtures for the figure tests: crafted ingress captures (from tests/flows/conftest.py), a hand-written
lab status for them, the shipped lab captures, and helpers that inspect Figures."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fixtures import SHIPPED_STATUS, flows_synth, require

synth = flows_synth()
Conn = synth.Conn


def synth_status() -> dict[str, Any]:
    """A lab status document (schema meshpkt.lab.status/1) describing the crafted captures' cluster."""
    nodes = []
    points = [{"point": "client.host.eth0", "node": "client", "namespace": "host", "iface": "eth0", "role": "client"}]
    backends = []
    for k, (node, ip) in enumerate(synth.NODES.items()):
        tasks = [t for t, n in synth.TASKS.items() if n == node]
        nss = [
            {"name": f"mesh-{node}", "short": "host", "role": "host", "network": None, "task": None, "interfaces": [
                {"name": "eth0", "kind": "veth", "addresses": [f"{ip}/24"], "network": None,
                 "peer": {"netns": "mesh-underlay", "iface": f"v{node}"}, "bridge": None},
                {"name": "docker_gwbridge", "kind": "bridge", "addresses": ["172.18.0.1/16"],
                 "network": "docker_gwbridge", "peer": None, "bridge": None},
                {"name": f"vethgw{k}", "kind": "veth", "addresses": [], "network": "docker_gwbridge",
                 "peer": {"netns": f"mesh-{node}-ingress_sbox", "iface": "eth1"}, "bridge": "docker_gwbridge"}]},
            {"name": f"mesh-{node}-ingress_sbox", "short": "ingress_sbox", "role": "ingress_sbox",
             "network": "ingress", "task": None, "interfaces": [
                 {"name": "eth0", "kind": "veth", "addresses": [f"{synth.INGRESS_IP[node]}/24"], "network": "ingress",
                  "peer": {"netns": f"mesh-{node}-1-abcdef1234", "iface": "veth0"}, "bridge": None},
                 {"name": "eth1", "kind": "veth", "addresses": [f"{synth.SBOX_GW}/16"], "network": "docker_gwbridge",
                  "peer": {"netns": f"mesh-{node}", "iface": f"vethgw{k}"}, "bridge": None}]},
            {"name": f"mesh-{node}-1-abcdef1234", "short": "1-abcdef1234", "role": "overlay", "network": "ingress",
             "task": None, "interfaces": [
                 {"name": "br0", "kind": "bridge", "addresses": ["10.0.0.1/24"], "network": "ingress", "peer": None,
                  "bridge": None},
                 {"name": "vxlan0", "kind": "vxlan", "addresses": [], "network": "ingress", "peer": None,
                  "bridge": "br0", "vxlan": {"vni": 4096, "port": 4789, "created_in": f"mesh-{node}"}},
                 {"name": "veth0", "kind": "veth", "addresses": [], "network": "ingress", "bridge": "br0",
                  "peer": {"netns": f"mesh-{node}-ingress_sbox", "iface": "eth0"}}]},
        ]
        for t in tasks:
            tname = synth.TASK_NAME[t]
            nss[2]["interfaces"].append({"name": f"veth-{tname}", "kind": "veth", "addresses": [],
                                         "network": "ingress", "bridge": "br0",
                                         "peer": {"netns": f"mesh-{node}-{tname}", "iface": "eth0"}})
            nss.append({"name": f"mesh-{node}-{tname}", "short": tname, "role": "task", "network": None,
                        "task": {"name": tname, "service": "web"}, "interfaces": [
                            {"name": "eth0", "kind": "veth", "addresses": [f"{t}/24"], "network": "ingress",
                             "peer": {"netns": f"mesh-{node}-1-abcdef1234", "iface": f"veth-{tname}"},
                             "bridge": None}]})
            backends.append({"task": tname, "node": node, "ip": t, "ips": {"ingress": t}})
        nodes.append({"name": node, "underlay_ip": ip, "ingress_ip": synth.INGRESS_IP[node], "namespaces": nss})
        points += [
            {"point": f"{node}.host.eth0", "node": node, "namespace": "host", "iface": "eth0", "role": "host"},
            {"point": f"{node}.ingress_sbox.eth1", "node": node, "namespace": "ingress_sbox", "iface": "eth1",
             "role": "ingress_sbox", "network": "docker_gwbridge"},
            {"point": f"{node}.ingress_sbox.eth0", "node": node, "namespace": "ingress_sbox", "iface": "eth0",
             "role": "ingress_sbox", "network": "ingress"},
            {"point": f"{node}.1-abcdef1234.br0", "node": node, "namespace": "1-abcdef1234", "iface": "br0",
             "role": "overlay", "network": "ingress"},
        ] + [{"point": f"{node}.{synth.TASK_NAME[t]}.eth0", "node": node, "namespace": synth.TASK_NAME[t],
              "iface": "eth0", "role": "task", "network": "ingress"} for t in tasks]
    return {
        "schema": "meshpkt.lab.status/1", "name": "synth", "lb": "nftables", "data_path_port": 4789,
        "underlay": {"subnet": "10.211.55.0/24", "netns": "mesh-underlay", "bridge": "br0"},
        "clients": [{"name": "client", "ip": synth.CLIENT}],
        "networks": [{"name": "ingress", "ingress": True, "subnet": "10.0.0.0/24", "vni": 4096, "port": 4789,
                      "nodes": list(synth.NODES)},
                     {"name": "docker_gwbridge", "driver": "bridge", "subnet": "172.18.0.0/16", "vni": None}],
        "nodes": nodes,
        "underlay_namespaces": [
            {"name": "mesh-underlay", "short": "host", "role": "underlay", "interfaces": [
                {"name": "br0", "kind": "bridge", "addresses": [], "peer": None, "bridge": None}]},
            {"name": "mesh-client", "short": "host", "role": "client", "interfaces": [
                {"name": "eth0", "kind": "veth", "addresses": [f"{synth.CLIENT}/24"],
                 "peer": {"netns": "mesh-underlay", "iface": "vclient"}, "bridge": None}]}],
        "services": [{"name": "web", "mode": "vip", "vips": {"ingress": "10.0.0.9"},
                      "published": [{"published": synth.PORT, "target": synth.PORT, "protocol": "tcp"}],
                      "backends": backends}],
        "capture_points": points,
    }


def build_long(conn: Any, out: Path, n_data: int, seed: int = 11) -> Path:
    """A crafted capture of one connection carrying ``n_data`` request/ack exchanges (for long diagrams)."""
    rnd = random.Random(seed)
    sc = synth.Scenario([conn], out)
    isn_c, isn_s = rnd.getrandbits(32), rnd.getrandbits(32)
    ipid = rnd.getrandbits(15)
    ts_c, ts_s = rnd.getrandbits(30), rnd.getrandbits(30)
    segs = [(True, dict(seq=isn_c, ack=0, flags="S", tsval=ts_c, tsecr=0, ipid=ipid, payload=b"")),
            (False, dict(seq=isn_s, ack=isn_c + 1, flags="SA", tsval=ts_s, tsecr=ts_c, ipid=0, payload=b"")),
            (True, dict(seq=isn_c + 1, ack=isn_s + 1, flags="A", tsval=ts_c + 1, tsecr=ts_s, ipid=ipid + 1,
                        payload=b""))]
    seq_c = isn_c + 1
    for i in range(n_data):
        body = f"chunk {i:04d}\n".encode() * 3
        segs.append((True, dict(seq=seq_c, ack=isn_s + 1, flags="PA", tsval=ts_c + 2 + i, tsecr=ts_s,
                                ipid=ipid + 2 + i, payload=body)))
        seq_c += len(body)
        segs.append((False, dict(seq=isn_s + 1, ack=seq_c, flags="A", tsval=ts_s + 1 + i, tsecr=ts_c + 2 + i,
                                 ipid=1 + i, payload=b"")))
    path = synth._path(conn)
    t = 1_700_000_000_000_000_000
    for fwd, seg in segs:
        hops = path if fwd else list(reversed(path))
        for i, (point, kind) in enumerate(hops):
            sc.add(point, t + i * synth.HOP_US * 1000, synth._frame(conn, kind, fwd, seg))
        t += 1_000_000
    return sc.write()


@pytest.fixture
def make_analysis(tmp_path: Path) -> Callable[..., Any]:
    """``make_analysis(conns=None, status=False, name="cap")`` -> Analysis of crafted captures."""
    from meshpkt.flows import analyze

    def make(conns: list[Any] | None = None, status: bool = False, name: str = "cap") -> Any:
        conns = conns if conns is not None else synth.default_conns()
        d = synth.build(conns, tmp_path / name)
        return analyze([d], topology=synth_status() if status else None)

    return make


@pytest.fixture
def long_analysis(tmp_path: Path) -> Callable[[int], Any]:
    from meshpkt.flows import analyze

    def make(n_data: int) -> Any:
        d = build_long(Conn("node1", "10.0.0.6", 52000, 42000), tmp_path / f"long{n_data}", n_data)
        return analyze([d])

    return make


@pytest.fixture(scope="session")
def shipped_analysis() -> Any:
    """Analysis of the lab captures shipped under captures/ingress-3node."""
    from meshpkt.flows import analyze

    return analyze([require(SHIPPED_STATUS).parent])


# ---------------------------------------------------------------------------------------------- figure helpers


def drawn_texts(fig: Any) -> list[Any]:
    """Every non-empty Text artist the figure draws (hidden axes' tick labels excluded)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    hidden: set[int] = set()
    for ax in fig.axes:
        if not ax.axison:
            hidden |= {id(t) for t in ax.xaxis.findobj(Text)} | {id(t) for t in ax.yaxis.findobj(Text)}
            continue
        for axis in (ax.xaxis, ax.yaxis):  # ticks outside the view are not drawn
            lo, hi = sorted(axis.get_view_interval())
            eps = (hi - lo) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - eps <= tick.get_loc() <= hi + eps:
                    hidden |= {id(tick.label1), id(tick.label2)}
    out = []
    for t in fig.findobj(Text):
        if id(t) in hidden or not t.get_visible() or not t.get_text().strip():
            continue
        out.append(t)
    return out


def overlapping_texts(fig: Any, tol_px: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose rendered bounding boxes overlap (by more than ``tol_px``)."""
    texts = drawn_texts(fig)
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in texts]
    bad = []
    for i in range(len(texts)):
        a = boxes[i]
        for j in range(i + 1, len(texts)):
            b = boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > tol_px and h > tol_px:
                bad.append((texts[i].get_text(), texts[j].get_text()))
    return bad


def texts_outside(fig: Any) -> list[str]:
    """Drawn texts that stick out of the figure."""
    r = fig.canvas.get_renderer()
    w, h = fig.canvas.get_width_height()
    out = []
    for t in drawn_texts(fig):
        bb = t.get_window_extent(r)
        if bb.x0 < -0.5 or bb.y0 < -0.5 or bb.x1 > w + 0.5 or bb.y1 > h + 0.5:
            out.append(t.get_text())
    return out


def by_gid(fig: Any, gid: str, kind: type | None = None) -> list[Any]:
    """Artists of the figure with this gid (optionally of one class)."""
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid) if kind is None or isinstance(a, kind)]


@pytest.fixture(scope="session")
def figtools() -> SimpleNamespace:
    """The helpers above and the crafted-capture module, for the test modules (importlib import mode)."""
    return SimpleNamespace(drawn_texts=drawn_texts, overlapping_texts=overlapping_texts, texts_outside=texts_outside,
                           by_gid=by_gid, synth=synth, Conn=Conn, synth_status=synth_status)
