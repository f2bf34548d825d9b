"""The model on real dumps of the project's lab (`meshpkt lab up` then `meshpkt collect --lab`,
3 nodes, nftables LB emulation, ingress + a user overlay), healthy and broken one thing at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshpkt.rules.explain import check, explain
from meshpkt.rules.model import Role, load_dumps

MESHLAB = Path(__file__).parent / "data" / "meshlab"
INGRESS_OVERLAY = "1-v4wstpww8d"


def path_of(node_addr: str, snat: str) -> str:
    return (f"{node_addr}:9090 -> DNAT 172.18.0.2:9090 -> MARK 0x102 -> FWM 258 rr -> "
            f"{{10.0.0.6, 10.0.0.7, 10.0.0.8}} Masq -> SNAT {snat} -> VNI 4096 -> REDIRECT :80")


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    out = tmp_path / "meshlab"
    shutil.copytree(MESHLAB, out)
    return out


def sub(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_healthy_lab_every_node() -> None:
    m = load_dumps(MESHLAB)
    assert set(m.nodes) == {"node1", "node2", "node3"}
    assert {ns.name for ns in m.namespaces(Role.LB)} == {"lb_kqe3y0834"}
    assert check(m) == []
    for node, addr, snat in (("node1", "10.211.55.10", "10.0.0.2"), ("node2", "10.211.55.18", "10.0.0.3"),
                             ("node3", "10.211.55.22", "10.0.0.4")):
        exp = explain(m, f"{addr}:9090", client="10.211.55.2")
        assert exp.node == node and exp.summary == path_of(addr, snat)
        assert exp.findings == []
        remote = [h for h in exp.hops if h.step == "overlay" and h.summary.startswith("VXLAN")]
        assert len(remote) == 2  # two of the three tasks live on other nodes
        tasks = {h.node for h in exp.hops if h.step == "task-redirect"}
        assert tasks == {"node1", "node2", "node3"}  # VTEP -> node by underlay address


def test_user_overlay_lb_and_vips() -> None:
    m = load_dumps(MESHLAB)
    lbs = {(s.node, s.namespace, s.fwmark): [str(b.addr) for b in s.backends] for s in m.lb_services()}
    assert lbs[("node2", "lb_kqe3y0834", 0x100)] == ["10.0.1.10", "10.0.1.11"]
    vips = {(mk.node, str(mk.vip), mk.fwmark) for mk in m.marks() if mk.vip is not None}
    assert ("node1", "10.0.1.2", 0x100) in vips and ("node3", "10.0.0.5", 0x102) in vips
    vnis = {(o.node, o.namespace): o.vni for o in m.overlays()}
    assert vnis[("node1", INGRESS_OVERLAY)] == 4096 and vnis[("node1", "1-kqe3y08348")] == 4097


def test_peer_fdb_entry_removed(lab: Path) -> None:
    sub(lab / "node1" / INGRESS_OVERLAY / "bridge-fdb.txt",
        "02:42:0a:00:00:08 dev vxlan0 dst 10.211.55.22 link-netnsid 1 self permanent\n", "")
    exp = explain(load_dumps(lab), "node1:9090")
    (f,) = [f for f in exp.findings if f.code == "backend-unreachable"]
    assert (f.node, f.namespace) == ("node1", INGRESS_OVERLAY) and "10.0.0.8" in f.message
    assert explain(load_dumps(lab), "node2:9090").errors == [] or all(
        e.node == "node1" for e in explain(load_dumps(lab), "node2:9090").errors)


def test_vni_mismatch_between_nodes(lab: Path) -> None:
    sub(lab / "node3" / INGRESS_OVERLAY / "ip-d-link.txt", "vxlan id 4096", "vxlan id 4196")
    exp = explain(load_dumps(lab), "node1:9090")
    msgs = [f.message for f in exp.findings if f.code == "vni-mismatch"]
    assert any("VNI 4096 on node1" in x and "4196 on node3" in x for x in msgs)


def test_lb_table_without_the_service(lab: Path) -> None:
    nft = lab / "node2" / "ingress_sbox" / "nft-ruleset.json"
    text = nft.read_text(encoding="utf-8")
    nft.write_text(text.replace('"right": 258', '"right": 999'), encoding="utf-8")
    exp = explain(load_dumps(lab), "node2:9090")
    assert exp.summary.endswith("MARK 0x102 -> no LB")
    assert any(f.code == "no-lb-service" and f.node == "node2" and "0x102" in f.message for f in exp.errors)


def test_task_redirect_removed(lab: Path) -> None:
    sub(lab / "node2" / "01b6454d4633" / "iptables-save.txt", "-j REDIRECT --to-ports 80", "-j ACCEPT")
    exp = explain(load_dumps(lab), "node1:9090")
    (f,) = [f for f in exp.errors if f.code == "no-redirect"]
    assert (f.node, f.namespace) == ("node2", "01b6454d4633")


def test_fwmarks_differ_across_nodes_only_info(lab: Path) -> None:
    sb = lab / "node3" / "ingress_sbox"
    sub(sb / "iptables-save.txt", "0x102/0xffffffff", "0x103/0xffffffff")
    text = (sb / "nft-ruleset.json").read_text(encoding="utf-8")
    (sb / "nft-ruleset.json").write_text(text.replace('"right": 258', '"right": 259').replace(
        '"value": 258', '"value": 259'), encoding="utf-8")
    m = load_dumps(lab)
    findings = check(m)
    assert [f.code for f in findings] == ["fwmark-differs"] and findings[0].severity == "info"
    assert explain(m, "node3:9090").summary == path_of("10.211.55.22", "10.0.0.4").replace("0x102", "0x103").replace(
        "FWM 258", "FWM 259")
