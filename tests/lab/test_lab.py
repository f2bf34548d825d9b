"""The live lab (root + network namespaces): routing mesh behaviour checked from real requests and from
pcaps captured at every hop (seed 001 section 7). One 3-node lab is shared by this module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.build import lab_namespaces, list_netns

pytestmark = pytest.mark.root

REQ = r"""
import json, sys, urllib.request
out = {}
for host in sys.argv[2:]:
    out[host] = []
    for _ in range(int(sys.argv[1])):
        try:
            out[host].append(urllib.request.urlopen(f"http://{host}:9090/", timeout=3).read().decode())
        except Exception as exc:
            out[host].append(f"ERROR {type(exc).__name__}")
print(json.dumps(out))
"""


def requests(lab: Lab, n: int, hosts: list[str], target: str = "client") -> dict[str, list[str]]:
    r = lab.exec(target, [sys.executable, "-c", REQ, str(n), *hosts], capture_output=True, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, dict[str, Any]]]:
    name = f"t{uuid.uuid4().hex[:6]}"
    before = list_netns()
    lab = Lab(name)
    try:
        status = lab.up(LabSpec(name=name))
        print(f"\nlab up (3 nodes, 3+2 tasks) took {status['up_seconds']:.2f} s", file=sys.stderr)
        yield lab, status
    finally:
        lab.down()
        assert not lab_namespaces(name) and set(list_netns()) - set(before) <= {
            n for n in list_netns() if not n.startswith(f"{name}-")}


def test_up_status(lab: tuple[Lab, dict[str, Any]], record_property: Any) -> None:
    lb, status = lab
    record_property("lab_up_seconds", status["up_seconds"])
    assert status["lb"] in ("ipvs", "nftables")
    assert status["alive"]
    # underlay + client, per node host + ingress_sbox + 2 overlays + lb_, one per task (3 + 2)
    assert len(lab_namespaces(lb.name)) == 2 + 3 * 5 + 5
    assert json.loads(json.dumps(status)) == lb.status()
    # the interfaces are really there, with the planned MACs and addresses
    sbox = lb.exec("node1/ingress_sbox", ["ip", "-j", "addr", "show", "eth0"], capture_output=True, check=True)
    info = json.loads(sbox.stdout)[0]
    assert info["address"] == "02:42:0a:00:00:02" and info["mtu"] == 1450
    assert {a["local"] for a in info["addr_info"]} == {"10.0.0.2", "10.0.0.5"}
    vx = lb.exec("node2/overlay", ["ip", "-d", "link", "show", "vxlan0"], capture_output=True, check=True).stdout
    assert "vxlan id 4096" in vx and "dstport 4789" in vx and "proxy l2miss l3miss" in vx
    fdb = lb.exec("node2/overlay", ["bridge", "fdb", "show", "dev", "vxlan0"], capture_output=True).stdout
    assert re.search(r"02:42:0a:00:00:02 dst 10.211.55.10 .*self permanent", fdb)
    mangle = lb.exec("node1/ingress_sbox", ["iptables", "-L", "-nv", "-t", "mangle"], capture_output=True).stdout
    assert "tcp dpt:9090 MARK set 0x102" in mangle


def test_round_robin_from_every_node(lab: tuple[Lab, dict[str, Any]]) -> None:
    lb, status = lab
    web = status["services"][0]
    node_ip = {n["name"]: n["underlay_ip"] for n in status["nodes"]}
    expect = {b["task"]: f"Host IP is {node_ip[b['node']]}, task {b['task']} {b['ip']}\n" for b in web["backends"]}
    hosts = [n["underlay_ip"] for n in status["nodes"]]
    got = requests(lb, 30, hosts)
    for host in hosts:
        answers = got[host]
        assert set(answers) == set(expect.values()), answers[:4]
        # strict round robin: period 3, each task once per period
        assert all(answers[i] == answers[i % 3] for i in range(30))
        assert len(set(answers[:3])) == 3


def test_capture_shows_seed_001_hops(lab: tuple[Lab, dict[str, Any]], tmp_path: Any, pcap: Any) -> None:
    lb, status = lab
    out = tmp_path / "cap"
    script = REQ
    r = lb.capture(None, out, [sys.executable, "-c", script, "3", "10.211.55.10"], all_points=True,
                   run_in="client", stdout=subprocess.DEVNULL)
    assert r["rc"] == 0
    files = {p["point"]: p["file"] for p in r["points"]}
    assert set(files) == {p["point"] for p in status["capture_points"]}
    assert json.loads((out / "status.json").read_text())["name"] == lb.name
    web = status["services"][0]
    task_ip = {b["task"]: b["ip"] for b in web["backends"]}
    task_node = {b["task"]: b["node"] for b in web["backends"]}
    node_ip = {n["name"]: n["underlay_ip"] for n in status["nodes"]}

    client = [f for f in pcap.read(files["client.host.eth0"]) if pcap.is_syn(f)]
    assert len(client) == 3 and all(f["dst"] == "10.211.55.10" and f["dport"] == 9090 for f in client)
    cports = {f["sport"] for f in client}

    # host nat DOCKER-INGRESS: DNAT to 172.18.0.2:9090, client address kept
    eth1 = [f for f in pcap.read(files["node1.ingress_sbox.eth1"]) if pcap.is_syn(f)]
    assert {(f["src"], f["dst"], f["dport"]) for f in eth1} == {("10.211.55.2", "172.18.0.2", 9090)}
    assert {f["sport"] for f in eth1} == cports

    # ingress_sbox: LB to every task (port kept), SNAT to the node's ingress IP; the client is gone
    eth0 = pcap.read(files["node1.ingress_sbox.eth0"])
    syns = [f for f in eth0 if pcap.is_syn(f)]
    assert {f["src"] for f in syns} == {"10.0.0.2"}
    assert {f["dst"] for f in syns} == set(task_ip.values())
    assert {f["dport"] for f in syns} == {9090}
    assert not any(f.get("src") == "10.211.55.2" or f.get("dst") == "10.211.55.2" for f in eth0)
    assert all(f["src_mac"] == "02:42:0a:00:00:02" for f in syns)

    # underlay: VXLAN vni 4096 on udp 4789 with 02:42 inner MACs, only for the remote tasks
    under = [f for f in pcap.read(files["node1.host.eth0"]) if "inner" in f]
    inner_syn = [f for f in under if f["inner"].get("proto") == 6 and pcap.is_syn(f["inner"])]
    remote = {t for t, n in task_node.items() if n != "node1"}
    assert {f["inner"]["dst"] for f in inner_syn} == {task_ip[t] for t in remote}
    for f in inner_syn:
        assert f["vni"] == 4096 and f["dport"] == 4789 and f["src"] == "10.211.55.10"
        assert f["dst"] == node_ip[task_node[next(t for t in remote if task_ip[t] == f["inner"]["dst"])]]
        assert f["inner"]["src_mac"] == "02:42:0a:00:00:02"
        assert f["inner"]["dst_mac"].startswith("02:42:")
        assert f["inner"]["src"] == "10.0.0.2" and f["inner"]["dport"] == 9090
    # tshark agrees on the VXLAN decode
    tsh = subprocess.run(["tshark", "-r", files["underlay.host.br0"], "-Y", "vxlan.vni == 4096 && tcp.flags.syn == 1",
                          "-T", "fields", "-e", "vxlan.vni", "-e", "eth.src"], capture_output=True, text=True)
    if tsh.returncode == 0:
        rows = [ln.split("\t") for ln in tsh.stdout.splitlines()]
        assert len(rows) >= 2 * len(remote) and all(r[0] == "4096" for r in rows)
        assert any("02:42:0a:00:00:02" in r[1] for r in rows)

    # task container: REDIRECT 9090 -> 80 is invisible on the wire; the server on :80 answers from :9090
    for task, ip in task_ip.items():
        fr = pcap.read(files[f"{task_node[task]}.{task}.eth0"])
        syn = [f for f in fr if pcap.is_syn(f)]
        assert [(f["src"], f["dst"], f["dport"]) for f in syn] == [("10.0.0.2", ip, 9090)]
        assert any(pcap.is_synack(f) and f["src"] == ip and f["sport"] == 9090 for f in fr)
        assert not any(f.get("sport") == 80 or f.get("dport") == 80 for f in fr)
        body = b"".join(f.get("payload", b"") for f in fr if f.get("src") == ip)
        assert f"Host IP is {node_ip[task_node[task]]}, task {task} {ip}".encode() in body

    # the local backend is reached through br0 only
    local = next(t for t, n in task_node.items() if n == "node1")
    br0 = next(p for p in files if p.startswith("node1.1-") and p.endswith(".br0")
               and p.split(".")[1] == "1-" + status["networks"][0]["id"][:10])
    assert any(pcap.is_syn(f) and f["dst"] == task_ip[local] for f in pcap.read(files[br0]))


def test_internal_vip_service_by_name(lab: tuple[Lab, dict[str, Any]], tmp_path: Any, pcap: Any) -> None:
    lb, status = lab
    backend = next(s for s in status["services"] if s["name"] == "backend")
    vip = backend["vips"]["my-overlay"]
    r = lb.exec("node1/my-web.1", ["getent", "hosts", "backend"], capture_output=True, check=True)
    assert r.stdout.split()[0] == vip
    r = lb.exec("node1/my-web.1", ["getent", "ahostsv4", "tasks.backend"], capture_output=True, check=True)
    assert {ln.split()[0] for ln in r.stdout.splitlines()} == {b["ip"] for b in backend["backends"]}
    code = ("import urllib.request;print(''.join(urllib.request.urlopen('http://backend/',timeout=3).read().decode()"
            " for _ in range(4)))")
    out = lb.exec("node1/my-web.1", [sys.executable, "-c", code], capture_output=True, check=True).stdout
    for b in backend["backends"]:
        assert f"task {b['task']} {b['ip']}" in out
    # captured: my-web.1 -> VIP at node1's lb_<net>, which balances and SNATs to its own overlay address
    lb_point = next(p["point"] for p in status["capture_points"] if p["node"] == "node1" and p["role"] == "lb")
    points = [lb_point] + [f"{b['node']}.{b['task']}.eth0" for b in backend["backends"]]
    r2 = lb.capture(points, tmp_path, [sys.executable, "-c", code], run_in="node1/my-web.1",
                    stdout=subprocess.DEVNULL)
    files = {p["point"]: p["file"] for p in r2["points"]}
    me = next(b for b in status["services"][0]["backends"] if b["task"] == "my-web.1")["ips"]["my-overlay"]
    lb_ip = status["nodes"][0]["lb_ips"]["my-overlay"]
    at_lb = [f for f in pcap.read(files[lb_point]) if pcap.is_syn(f)]
    assert {(f["src"], f["dst"], f["dport"]) for f in at_lb if f["dst"] == vip} == {(me, vip, 80)}
    assert {(f["src"], f["dport"]) for f in at_lb if f["dst"] != vip} == {(lb_ip, 80)}
    for b in backend["backends"]:
        syns = [f for f in pcap.read(files[f"{b['node']}.{b['task']}.eth0"]) if pcap.is_syn(f)]
        assert syns and {(f["src"], f["dst"], f["dport"]) for f in syns} == {(lb_ip, b["ip"], 80)}


def test_cli_status_exec_and_second_up(lab: tuple[Lab, dict[str, Any]], capfd: pytest.CaptureFixture[str],
                                       tmp_path: Any) -> None:
    from meshpkt.cli.main import main

    lb, status = lab
    with pytest.raises(SystemExit) as ex:
        main(["lab", "status", "--name", lb.name, "--json"])
    assert ex.value.code in (0, None)
    doc = json.loads(capfd.readouterr().out)
    assert doc["name"] == lb.name and doc["capture_points"] == status["capture_points"]

    with pytest.raises(SystemExit) as ex:
        main(["lab", "up", "--name", lb.name])
    assert ex.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert lb.status()["alive"]  # the second up did not touch the running lab

    with pytest.raises(SystemExit) as ex:
        main(["lab", "exec", "--name", lb.name, "node2/ingress_sbox", "--", "ip", "-br", "addr", "show", "eth1"])
    assert ex.value.code == 0
    assert "172.18.0.2/16" in capfd.readouterr().out

    with pytest.raises(SystemExit) as ex:
        main(["lab", "capture", "--name", lb.name, "node2.ingress_sbox.*", "--out", str(tmp_path / "c"),
              "--in", "client", "--", "curl", "-s", "-o", "/dev/null", "http://10.211.55.18:9090/"])
    assert ex.value.code in (0, None)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == \
        ["node2.ingress_sbox.eth0.pcap", "node2.ingress_sbox.eth1.pcap", "status.json"]
