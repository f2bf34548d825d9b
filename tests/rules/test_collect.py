"""`collect`: name mapping (pure) and real dumps of namespaces the test builds (root)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from meshpkt.errors import NeedRootError, UsageError
from meshpkt.rules.collect import collect, map_netns_names
from meshpkt.rules.explain import explain
from meshpkt.rules.iptables import parse_iptables_list, parse_iptables_save
from meshpkt.rules.model import Role, load_dumps
from tests.rules import minilab

LAB_NAMES = ["mesh-node1", "mesh-node1-ingress_sbox", "mesh-node1-1-kqe3y08348", "mesh-node1-lb_kqe3y0834",
             "mesh-node1-dfbc0845c453", "mesh-node2", "mesh-node2-ingress_sbox", "mesh-underlay", "mesh-client",
             "other-node1"]


def test_map_lab_names() -> None:
    t = map_netns_names(LAB_NAMES, netns_dir="/var/run/netns", lab="mesh")
    got = {(x.node, x.name, x.role) for x in t}
    assert got == {("node1", "host", Role.HOST), ("node1", "ingress_sbox", Role.INGRESS_SBOX),
                   ("node1", "1-kqe3y08348", Role.OVERLAY), ("node1", "lb_kqe3y0834", Role.LB),
                   ("node1", "dfbc0845c453", Role.TASK), ("node2", "host", Role.HOST),
                   ("node2", "ingress_sbox", Role.INGRESS_SBOX)}  # underlay/client have no namespaces: not nodes
    assert all(x.path and x.path.startswith("/var/run/netns/mesh-node") for x in t)


def test_map_prefix_and_roles() -> None:
    t = map_netns_names(LAB_NAMES, netns_dir="/var/run/netns", prefix="mesh-node1-",
                        roles={"dfbc0845c453": "sbox", "mesh-node1-lb_kqe3y0834": "task"})
    by = {x.name: x for x in t}
    assert set(by) == {"host", "ingress_sbox", "1-kqe3y08348", "lb_kqe3y0834", "dfbc0845c453"}
    assert {x.node for x in t} == {"node1"} and by["host"].path == "/var/run/netns/mesh-node1"
    assert by["dfbc0845c453"].role == Role.INGRESS_SBOX and by["dfbc0845c453"].role_from == "map"
    assert by["lb_kqe3y0834"].role == Role.TASK


def test_map_real_node_includes_root_namespace() -> None:
    t = map_netns_names(["ingress_sbox", "1-9j40lm9s5d", "a567c55696f4"], netns_dir="/var/run/docker/netns",
                        hostname="centos7-10")
    assert [(x.name, x.path) for x in t][0] == ("host", None)
    assert {x.node for x in t} == {"centos7-10"} and len(t) == 4
    assert map_netns_names(["x"], netns_dir="/d", include_root=False, node="n")[0].name == "x"


def test_collect_refuses_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NeedRootError):
        collect(tmp_path, lab="x")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ real namespaces


@pytest.fixture
def lab(unique_name: str) -> Iterator[str]:
    name = f"mpk{unique_name}"
    try:
        minilab.build(name)
        yield name
    finally:
        minilab.teardown(name)


@pytest.mark.root
def test_collect_lab_then_load_and_explain(lab: str, tmp_path: Path) -> None:
    rep = collect(tmp_path / "out", lab=lab)
    assert {(n.target.node, n.target.name) for n in rep.namespaces} == {
        ("node1", "host"), ("node1", "ingress_sbox"), ("node1", minilab.OVERLAY), ("node1", minilab.TASK)}
    task_dir = tmp_path / "out" / "node1" / minilab.TASK
    for f in ("iptables-save.txt", "iptables-legacy-save.txt", "nft-ruleset.json", "ip-d-link.txt", "bridge-fdb.txt",
              "ip-addr.json", "ip-route.txt", "ip-neigh.txt", "namespace.json"):
        assert (task_dir / f).is_file(), f
    meta = json.loads((task_dir / "namespace.json").read_text())
    assert meta["role"] == "task" and meta["netns"] == f"/var/run/netns/{lab}-node1-{minilab.TASK}"
    ipvs = [r for r in rep.namespaces[0].results if r.argv[0] == "ipvsadm"]
    assert ipvs and all(r.status in ("ok", "failed", "skipped", "missing") for r in ipvs)
    assert any("docker" in n for n in rep.notes)  # lab mode never asks Docker
    assert json.loads((tmp_path / "out" / "collect.json").read_text())["out"] == str(tmp_path / "out")

    model = load_dumps(tmp_path / "out")
    ns = model.nodes["node1"].namespaces
    assert {k: v.role for k, v in ns.items()} == {"host": Role.HOST, "ingress_sbox": Role.INGRESS_SBOX,
                                                  minilab.OVERLAY: Role.OVERLAY, minilab.TASK: Role.TASK}
    (ov,) = model.overlays()
    assert (ov.vni, ov.dstport, str(ov.local), [str(p.dst) for p in ov.peers]) == (4096, 4789, "192.0.2.10",
                                                                                   ["192.0.2.18"])
    assert model.nodes["node1"].addresses() == [IPv4Address("192.0.2.10")]
    exp = explain(model, "192.0.2.10:8080")
    assert exp.summary == ("192.0.2.10:8080 -> DNAT 172.18.0.2:8080 -> MARK 0x100 -> FWM 256 rr -> "
                           "{10.0.0.17, 10.0.0.20} Masq -> SNAT 10.0.0.2 -> VNI 4096 -> REDIRECT :80")
    assert [f for f in exp.findings if f.severity != "info"] == []


@pytest.mark.root
def test_collect_cli_prefix_mode_sees_a_broken_rule(lab: str, tmp_path: Path) -> None:
    ns = minilab.names(lab)
    # break the task's REDIRECT: the model must notice
    minilab.sh("ip", "netns", "exec", ns["task"], "iptables", "-w", "-t", "nat", "-F", "PREROUTING")
    out = tmp_path / "dump"
    r = subprocess.run([sys.executable, "-m", "meshpkt", "collect", str(out), "--netns-dir", "/var/run/netns",
                        "--prefix", f"{lab}-node1-", "--node-name", "n1", "--map", f"{minilab.TASK}=task",
                        "--format", "json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    paths = {n["target"]["path"] for n in doc["namespaces"]}
    assert None not in paths and all(p.startswith(f"/var/run/netns/{lab}-node1") for p in paths)  # never the root ns
    assert (out / "n1" / "host" / "iptables-save.txt").is_file()
    model = load_dumps(out)
    assert set(model.nodes) == {"n1"}
    exp = explain(model, "n1:8080")
    f = [f for f in exp.findings if f.code == "no-redirect"]
    assert f and f[0].namespace == minilab.TASK and f[0].node == "n1"


@pytest.mark.root
def test_live_list_and_save_agree(lab: str) -> None:
    host = minilab.names(lab)["host"]
    lst = minilab.sh("ip", "netns", "exec", host, "iptables", "-L", "-n", "-v", "-x", "--line-numbers", "-t", "nat")
    save = minilab.sh("ip", "netns", "exec", host, "iptables-save", "-c", "-t", "nat")
    a = parse_iptables_list(lst.stdout, table="nat")
    b = parse_iptables_save(save.stdout)
    assert a.unparsed == [] and b.unparsed == []

    def key(rs: object) -> list[tuple[object, ...]]:
        return [(r.chain, r.index, r.target, r.proto, r.dports, r.to_addr, r.to_ports, r.dst_type, r.src_type,
                 r.out_iface, r.pkts) for r in rs.rules()]  # type: ignore[attr-defined]

    assert sorted(key(a), key=str) == sorted(key(b), key=str)


@pytest.mark.root
def test_collect_usage_errors(tmp_path: Path, unique_name: str) -> None:
    with pytest.raises(UsageError, match="no such namespace directory"):
        collect(tmp_path, netns_dir=str(tmp_path / "nope"), prefix="x-")
    with pytest.raises(UsageError, match="no namespaces"):
        collect(tmp_path, lab=f"absent{unique_name}")


def test_docker_inspect_when_a_daemon_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col = importlib.import_module("meshpkt.rules.collect")  # the module (the package exports the function)

    seed_net = (Path(__file__).parent / "data" / "seed001_network_ingress.json").read_text(encoding="utf-8")
    calls: list[list[str]] = []

    def fake(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        out = {("docker", "info"): "24.0.7\n", ("docker", "network", "ls"): "9j40lm9s5dte\n",
               ("docker", "network", "inspect"): seed_net}.get(tuple(argv[:3]) if argv[1] != "info" else
                                                               ("docker", "info"), "")
        if argv[:3] == ["docker", "service", "ls"]:
            return subprocess.CompletedProcess(argv, 1, "", "This node is not a swarm manager.")
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(col.shutil, "which", lambda name: f"/usr/bin/{name}")
    notes: list[str] = []
    res = col._docker(tmp_path, fake, 5.0, notes)
    assert [(r.file, r.status) for r in res] == [("docker-network-inspect.json", "ok"),
                                                ("docker-service-inspect.json", "failed")]
    assert "not a swarm manager" in res[1].stderr and notes == []
    assert ["docker", "network", "inspect", "9j40lm9s5dte"] in calls
    assert (tmp_path / "docker-network-inspect.json").read_text(encoding="utf-8") == seed_net


def test_docker_without_daemon_is_a_note(tmp_path: Path) -> None:
    col = importlib.import_module("meshpkt.rules.collect")  # the module (the package exports the function)

    notes: list[str] = []
    res = col._docker(tmp_path, col._run, 10.0, notes)
    if not notes:
        pytest.skip("a Docker daemon answers on this machine")
    assert res == []
    assert len(notes) == 1 and ("not reachable" in notes[0] or "not installed" in notes[0])
    assert list(tmp_path.iterdir()) == []
