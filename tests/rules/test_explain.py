"""The model and `rules explain` on seed 001/000 and on the dumps collected from test namespaces;
each inconsistency is produced by editing one dump and must be named."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from meshpkt.errors import UsageError
from meshpkt.rules.explain import Explanation, check, explain
from meshpkt.rules.model import DumpText, MeshModel, Role, build_model, dumps_from_transcript, load_dumps

DATA = Path(__file__).parent / "data"
SEED001 = DATA / "seed001.txt"
SEED_PATH = ("10.211.55.10:9090 -> DNAT 172.18.0.2:9090 -> MARK 0x102 -> FWM 258 rr -> "
             "{10.0.0.17, 10.0.0.20, 10.0.0.21} Masq -> SNAT 10.0.0.2 -> VNI 4096 -> REDIRECT :80")
LAB_PATH = ("192.0.2.10:8080 -> DNAT 172.18.0.2:8080 -> MARK 0x100 -> FWM 256 rr -> "
            "{10.0.0.17, 10.0.0.20} Masq -> SNAT 10.0.0.2 -> VNI 4096 -> REDIRECT :80")


def seed_dumps() -> list[DumpText]:
    dumps, _ = dumps_from_transcript(SEED001.read_text(encoding="utf-8"), origin="seed001")
    return dumps


def edited(match: str, old: str, new: str) -> MeshModel:
    """The seed-001 model with ``old`` replaced by ``new`` in the dump whose origin contains ``match``."""
    out = []
    hit = False
    for d in seed_dumps():
        if match in d.origin and old in d.text:
            d = replace(d, text=d.text.replace(old, new))
            hit = True
        out.append(d)
    assert hit, f"{old!r} not found in {match}"
    return build_model(out)


def codes(exp: Explanation, severity: str = "error") -> set[str]:
    return {f.code for f in exp.findings if f.severity == severity}


# ------------------------------------------------------------------ model


def test_seed001_model() -> None:
    m = load_dumps(SEED001)
    assert set(m.nodes) == {"centos7-10", "centos7-18"}
    roles = {(ns.node, ns.name): ns.role for ns in m.namespaces()}
    assert roles == {("centos7-10", "host"): Role.HOST, ("centos7-10", "ingress_sbox"): Role.INGRESS_SBOX,
                     ("centos7-10", "1-9j40lm9s5d"): Role.OVERLAY, ("centos7-18", "7fd6d0335ad4"): Role.TASK}
    assert m.nodes["centos7-10"].addresses() == [IPv4Address("10.211.55.10")]
    (pp,) = m.published_ports()
    assert (pp.node, pp.proto, pp.port, str(pp.to_addr), pp.to_port) == ("centos7-10", "tcp", 9090, "172.18.0.2", 9090)
    assert sorted((mk.fwmark, str(mk.port), str(mk.vip)) for mk in m.marks()) == [(0x102, "9090", "None"),
                                                                                 (0x102, "None", "10.0.0.15")]
    (lb,) = m.lb_services()
    assert (lb.kind, lb.fwmark, lb.scheduler, [str(b.addr) for b in lb.backends]) == (
        "ipvs", 258, "rr", ["10.0.0.17", "10.0.0.20", "10.0.0.21"])
    (sn,) = m.snat_rules()
    assert (str(sn.dst), str(sn.to_addr), sn.ipvs) == ("10.0.0.0/24", "10.0.0.2", True)
    (ov,) = m.overlays()
    assert (ov.vni, ov.dstport, str(ov.subnet), len(ov.peers)) == (4096, 4789, "10.0.0.0/24", 4)
    (red,) = m.redirects()
    assert (red.node, str(red.addr), red.port, red.to_port) == ("centos7-18", "10.0.0.20", 9090, 80)
    task = m.nodes["centos7-18"].namespaces["7fd6d0335ad4"]
    assert task.has_address(IPv4Address("10.0.0.20"))  # inferred from its own rules: no `ip a` was dumped
    assert m.node("centos7-10") is m.nodes["centos7-10"]
    (svc,) = m.services()
    assert svc.name == "my-nginx" and {n.name for n in m.networks()} == {"ingress", "docker_gwbridge"}
    assert len(m.unparsed()) == 10


def test_lab_dump_dir_model() -> None:
    m = load_dumps(DATA / "lab")
    ns = m.nodes["node1"].namespaces
    assert {k: v.role for k, v in ns.items()} == {"host": Role.HOST, "ingress_sbox": Role.INGRESS_SBOX,
                                                  "1-abcdef1234": Role.OVERLAY, "0123456789ab": Role.TASK}
    (lb,) = m.lb_services()
    assert lb.kind == "nft" and lb.fwmark == 0x100 and [str(b.addr) for b in lb.backends] == ["10.0.0.17", "10.0.0.20"]
    assert "filter (legacy)" in ns["0123456789ab"].tables()
    # iptables-nft's own tables are not counted twice from the nft dump
    assert not any(t.startswith("ip ") for t in ns["host"].tables())
    assert m.unparsed() == [] and check(m) == []


def test_roles_from_map_and_content(tmp_path: Path) -> None:
    d = tmp_path / "n1" / "weird"
    d.mkdir(parents=True)
    (d / "iptables-save.txt").write_text("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.9/32 -p tcp "
                                         "--dport 80 -j REDIRECT --to-ports 8080\nCOMMIT\n")
    (d / "notes.md").write_text("hello")
    m = load_dumps(tmp_path)
    assert m.nodes["n1"].namespaces["weird"].role == Role.TASK  # REDIRECT in PREROUTING
    assert m.notes == ["ignored file n1/weird/notes.md"]
    m2 = load_dumps(tmp_path, roles={"weird": "sbox"})
    assert m2.nodes["n1"].namespaces["weird"].role == Role.INGRESS_SBOX
    (d / "role").write_text("lb\n")
    assert load_dumps(tmp_path).nodes["n1"].namespaces["weird"].role == Role.LB


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_dumps(tmp_path / "missing")
    with pytest.raises(UsageError, match="no dumps found"):
        load_dumps(tmp_path)
    with pytest.raises(UsageError, match="unknown namespace role"):
        build_model([], roles={"x": "banana"})


# ------------------------------------------------------------------ explain: acceptance


def test_seed001_explain_gives_the_seed_path() -> None:
    exp = explain(load_dumps(SEED001), "10.211.55.10:9090", client="10.211.55.2")
    assert exp.summary == SEED_PATH
    assert codes(exp) == set() and codes(exp, "warning") == set()
    by_step = {h.step: h for h in exp.hops if h.backend is None}
    dnat = by_step["host-dnat"]
    assert [(r.table, r.chain, r.target, r.pkts, r.bytes) for r in dnat.rules] == [
        ("nat", "PREROUTING", "DOCKER-INGRESS", 9629, 585000), ("nat", "DOCKER-INGRESS", "DNAT", 75, 4800)]
    assert dnat.rules[1].text.endswith("tcp dpt:9090 to:172.18.0.2:9090")
    mark = by_step["sbox-mark"]
    assert mark.namespace == "ingress_sbox" and mark.rules[0].text.endswith("MARK set 0x102")
    lb = by_step["lb"]
    assert lb.evidence[0] == "FWM  258 rr" and any("10.0.0.20:9090" in e for e in lb.evidence)
    remote = [h for h in exp.hops if h.step == "overlay" and h.backend == "10.0.0.20"][0]
    assert remote.summary == "VXLAN 10.211.55.10 -> 10.211.55.18:4789 VNI 4096"
    assert any("02:42:0a:00:00:14 dst 10.211.55.18" in e for e in remote.evidence)
    local = [h for h in exp.hops if h.step == "overlay" and h.backend == "10.0.0.17"][0]
    assert local.summary == "br0 local (VNI 4096)"
    red = [h for h in exp.hops if h.step == "task-redirect"][0]
    assert (red.node, red.namespace, red.rules[0].pkts) == ("centos7-18", "7fd6d0335ad4", 21)
    flt = [h for h in exp.hops if h.step == "task-filter"][0]
    assert flt.summary == "INPUT ACCEPT" and flt.rules[0].text.split()[:3] == ["147", "9828", "ACCEPT"]
    # the same path by node name
    assert explain(load_dumps(SEED001), "centos7-10:9090").summary == SEED_PATH


def test_seed000_partial_dumps() -> None:
    exp = explain(load_dumps(DATA / "seed000.txt"), "seed000:8000")
    assert exp.summary == ("seed000:8000 -> DNAT 172.18.0.2:8000 -> MARK 0x117 -> FWM 279 rr -> "
                           "{10.0.0.22, 10.0.0.23, 10.0.0.24} Masq -> SNAT ?")
    assert codes(exp) == set()


def test_lab_dumps_explain() -> None:
    exp = explain(load_dumps(DATA / "lab"), "node1:8080", client="192.0.2.99")
    assert exp.summary == LAB_PATH
    assert [f for f in exp.findings if f.severity != "info"] == []
    lb = [h for h in exp.hops if h.step == "lb"][0]
    assert lb.summary == "FWM 256 rr (nft)" and lb.rules[0].table == "ip meshlb"
    snat = [h for h in exp.hops if h.step == "snat"][0]
    assert snat.rules[0].text.startswith("ct status dnat ip daddr 10.0.0.0/24")


# ------------------------------------------------------------------ explain: inconsistencies


def test_published_port_without_mark() -> None:
    m = edited("iptables -L -nv -t mangle", "tcp dpt:9090 MARK set 0x102", "tcp dpt:9091 MARK set 0x102")
    exp = explain(m, "10.211.55.10:9090")
    assert "no-mark" in codes(exp) and "MARK none" in exp.summary
    f = next(f for f in exp.findings if f.code == "no-mark")
    assert f.namespace == "ingress_sbox" and "mangle PREROUTING" in f.message and "tcp/9090" in f.message


def test_fwmark_without_lb_service() -> None:
    m = edited("ipvsadm -L -n", "FWM  258 rr", "FWM  259 rr")
    exp = explain(m, "10.211.55.10:9090")
    msgs = [f.message for f in exp.findings if f.code == "no-lb-service"]
    assert msgs and all("0x102 (258)" in x and "ingress_sbox" in x for x in msgs)


def test_backend_unreachable_without_fdb() -> None:
    m = edited("bridge -d fdb show", "02:42:0a:00:00:15 dst 10.211.55.22 link-netnsid 0 self permanent\n", "")
    exp = explain(m, "10.211.55.10:9090")
    f = next(f for f in exp.findings if f.code == "backend-unreachable")
    assert "10.0.0.21" in f.message and f.namespace == "1-9j40lm9s5d" and f.severity == "error"
    assert "unreachable" in [h.summary for h in exp.hops if h.backend == "10.0.0.21"]


def test_vni_mismatch_between_nodes() -> None:
    dumps = seed_dumps()
    vx = next(d for d in dumps if "ip -d link show type vxlan" in d.origin)
    other = replace(vx, node="centos7-18", text=vx.text.replace("vxlan id 4096", "vxlan id 4097"))
    m = build_model(dumps + [other])
    f = [f for f in check(m) if f.code == "vni-mismatch"]
    assert len(f) == 1 and "VNI 4096 on centos7-10" in f[0].message and "VNI 4097 on centos7-18" in f[0].message


def test_vni_mismatch_with_docker_network() -> None:
    m = edited("ip -d link show type vxlan", "vxlan id 4096", "vxlan id 4200")
    f = [f for f in check(m) if f.code == "vni-mismatch"]
    assert f and "docker network ingress says [4096]" in f[0].message


def test_task_without_redirect() -> None:
    m = edited("seed001:729 ", "REDIRECT   tcp", "ACCEPT     tcp")
    exp = explain(m, "10.211.55.10:9090")
    f = [f for f in exp.findings if f.code == "no-redirect"]
    assert f and f[0].severity == "error" and f[0].namespace == "7fd6d0335ad4"
    assert not exp.summary.endswith("REDIRECT :80")


def test_fwmarks_differing_across_nodes_is_info() -> None:
    dumps = seed_dumps()
    mangle = next(d for d in dumps if "iptables -L -nv -t mangle" in d.origin)
    other = replace(mangle, node="centos7-18", text=mangle.text.replace("0x102", "0x105"))
    f = [f for f in check(build_model(dumps + [other])) if f.code == "fwmark-differs"]
    assert len(f) == 1 and f[0].severity == "info" and "0x102 on centos7-10; 0x105 on centos7-18" in f[0].message


def test_missing_snat() -> None:
    m = edited("seed001:513 ", "SNAT       all", "ACCEPT     all")
    exp = explain(m, "10.211.55.10:9090")
    assert "no-snat" in codes(exp) and "no SNAT" in exp.summary


def test_unpublished_port() -> None:
    exp = explain(load_dumps(SEED001), "10.211.55.10:9999")
    assert exp.summary == "10.211.55.10:9999 -> no DNAT" and "no-dnat" in codes(exp)


@pytest.mark.parametrize(("to", "msg"), [("10.9.9.9:9090", "no node has address"), ("nope:1", "no node 'nope'"),
                                         ("10.211.55.10", "expected NODE:PORT"), ("x:70000", "expected NODE:PORT")])
def test_bad_targets(to: str, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        explain(load_dumps(SEED001), to)


# ------------------------------------------------------------------ CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}, check=False)


def test_cli_explain_table_and_json() -> None:
    r = run_cli("rules", "explain", str(SEED001), "--to", "10.211.55.10:9090", "--from", "10.211.55.2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == SEED_PATH
    assert "nat DOCKER-INGRESS #1" in r.stdout and "[75 pkts 4800 bytes]" in r.stdout
    j = run_cli("rules", "explain", str(SEED001), "--to", "centos7-10:9090", "--format", "json")
    assert j.returncode == 0
    doc = json.loads(j.stdout)
    assert doc["summary"] == SEED_PATH and doc["hops"][1]["rules"][1]["pkts"] == 75


def test_cli_explain_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "t.txt"
    bad.write_text(SEED001.read_text(encoding="utf-8").replace("tcp dpt:9090 MARK set 0x102", "MARK set 0x102 x"),
                   encoding="utf-8")
    r = run_cli("rules", "explain", str(bad), "--to", "10.211.55.10:9090")
    assert r.returncode == 1 and "no-mark" in r.stdout
    u = run_cli("rules", "explain", str(SEED001), "--to", "10.211.55.10")
    assert u.returncode == 2 and u.stderr.startswith("meshpkt: error: --to") and "Traceback" not in u.stderr
    f = run_cli("rules", "explain", str(SEED001), "--to", "a:1", "--format", "xml")
    assert f.returncode == 2 and "--format" in f.stderr


def test_cli_show() -> None:
    r = run_cli("rules", "show", str(DATA / "lab"), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["findings"] == [] and doc["model"]["lb_services"] == [
        "node1/ingress_sbox nft FWM 256 rr -> 10.0.0.17, 10.0.0.20"]
    t = run_cli("rules", "show", str(SEED001))
    assert t.returncode == 0 and "centos7-18" in t.stdout and "FWM 258 rr" in t.stdout


def test_transcript_inside_a_node_dir(tmp_path: Path) -> None:
    (tmp_path / "n9").mkdir()
    (tmp_path / "n9" / "transcript.txt").write_text((DATA / "seed000.txt").read_text(encoding="utf-8"),
                                                    encoding="utf-8")
    m = load_dumps(tmp_path)
    assert list(m.nodes) == ["n9"] and set(m.nodes["n9"].namespaces) == {"host", "ingress_sbox"}
    assert explain(m, "n9:8000").summary.startswith("n9:8000 -> DNAT 172.18.0.2:8000 -> MARK 0x117 -> FWM 279 rr")
