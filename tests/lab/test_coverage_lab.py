"""Issue 14 in the live lab (root): UDP published ports, host-mode publishing, an encrypted overlay carrying
task -> VIP traffic (ESP on the underlay, never cleartext VXLAN for its VNI), dnsrr services.

The truth is outside meshpkt: the tasks' own answers, tcpdump/tshark on the underlay, ``iptables-save``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.build import lab_namespaces

pytestmark = pytest.mark.root

SPEC = Path(__file__).with_name("coverage.yaml")

UDP_REQ = r"""
import json, socket, sys
out = {}
for host in sys.argv[3:]:
    out[host] = []
    for i in range(int(sys.argv[2])):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            s.sendto(f"query {i}".encode(), (host, int(sys.argv[1])))
            out[host].append(s.recv(512).decode())
        except OSError as exc:
            out[host].append(f"ERROR {type(exc).__name__}")
        finally:
            s.close()
print(json.dumps(out))
"""

HTTP_REQ = r"""
import json, sys, urllib.request
out = []
for url in sys.argv[1:]:
    try:
        out.append(urllib.request.urlopen(url, timeout=3).read().decode())
    except Exception as exc:
        out.append(f"ERROR {type(exc).__name__}")
print(json.dumps(out))
"""


def spec(name: str) -> LabSpec:
    import yaml

    return LabSpec.from_dict({**yaml.safe_load(SPEC.read_text()), "name": name})


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, dict[str, Any]]]:
    name = f"c{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        yield lab, lab.up(spec(name))
    finally:
        lab.down()
        assert not lab_namespaces(name)


def _py(lab: Lab, target: str, code: str, *args: str) -> Any:
    r = lab.exec(target, [sys.executable, "-c", code, *args], capture_output=True, check=True)
    return json.loads(r.stdout)


def _task_ns(status: dict[str, Any], service: str) -> dict[str, str]:
    """task name -> its node, for one service."""
    return {b["task"]: b["node"] for s in status["services"] if s["name"] == service for b in s["backends"]}


def test_udp_published_round_robin(lab: tuple[Lab, dict[str, Any]]) -> None:
    lb, st = lab
    nodes = {n["underlay_ip"]: n["name"] for n in st["nodes"]}
    dns = next(s for s in st["services"] if s["name"] == "dns")
    assert dns["published"] == [{"published": 5300, "target": 53, "protocol": "udp"}]
    tasks = {b["task"]: b["ips"]["ingress"] for b in dns["backends"]}
    got = _py(lb, "client", UDP_REQ, "5300", "6", *nodes)
    for host, answers in got.items():
        assert all(a.startswith("Host IP is ") for a in answers), answers
        # each task answers with its own node's address and the ingress address the datagram reached
        seen = Counter(a.split(", task ")[1].split()[0] for a in answers)
        assert set(seen) == set(tasks) and set(seen.values()) == {2}, (host, answers)  # round robin
        for a in answers:
            task, ip = a.split(", task ")[1].split()
            assert ip == tasks[task]
    # the host's DNAT rule is Docker's, for udp
    save = lb.exec("node1", ["iptables-save", "-t", "nat"], capture_output=True, check=True).stdout
    assert "-A DOCKER-INGRESS -p udp -m udp --dport 5300 -j DNAT --to-destination 172.18.0.2:5300" in save


def test_host_mode_publishing(lab: tuple[Lab, dict[str, Any]]) -> None:
    lb, st = lab
    where = _task_ns(st, "hostweb")
    ips = {n["name"]: n["underlay_ip"] for n in st["nodes"]}
    urls = [f"http://{ips[n]}:8080/" for n in sorted(ips)]
    got = dict(zip(sorted(ips), _py(lb, "client", HTTP_REQ, *urls), strict=True))
    for node, answer in got.items():
        mine = [t for t, n in where.items() if n == node]
        if mine:  # answered by the task on this node, from its docker_gwbridge address (no routing mesh)
            assert answer.startswith(f"Host IP is {ips[node]}, task {mine[0]} 172.18."), answer
        else:
            assert answer.startswith("ERROR"), answer
    node = next(iter(where.values()))
    save = lb.exec(node, ["iptables-save", "-t", "nat"], capture_output=True, check=True).stdout
    assert "-A DOCKER ! -i docker_gwbridge -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0." in save


def test_dnsrr_and_vip_names(lab: tuple[Lab, dict[str, Any]]) -> None:
    lb, st = lab
    peers = sorted(b["ips"]["my-overlay"] for s in st["services"] if s["name"] == "peers" for b in s["backends"])
    vip = next(s["vips"]["my-overlay"] for s in st["services"] if s["name"] == "backend")
    code = ("import json, socket, sys; print(json.dumps({n: sorted(socket.gethostbyname_ex(n)[2]) "
            "for n in sys.argv[1:]}))")
    got = _py(lb, "node1/my-web.1", code, "peers", "tasks.peers", "backend")
    assert got["peers"] == peers and got["tasks.peers"] == peers  # dnsrr: the task addresses, no VIP
    assert got["backend"] == [vip]
    assert not any(s["vips"] for s in st["services"] if s["name"] == "peers")


def _underlay_capture(lb: Lab, node: str, out: Path, cmd: list[str], run_in: str) -> tuple[Path, Any]:
    """Capture ``node``'s eth0 while ``cmd`` runs in ``run_in``; (pcap, the JSON ``cmd`` printed)."""
    with open(out / "answers.json", "w") as fh:
        res = lb.capture([f"{node}.host.eth0"], out, cmd, run_in=run_in, stdout=fh)
    assert res["rc"] == 0
    return out / f"{node}.host.eth0.pcap", json.loads((out / "answers.json").read_text())


def test_encrypted_overlay_esp_only(lab: tuple[Lab, dict[str, Any]], tmp_path: Path) -> None:
    """task -> VIP across nodes on the encrypted overlay: the underlay shows ESP between the nodes with the
    pair's SPIs, and tcpdump finds no cleartext VXLAN datagram of VNI 4097."""
    lb, st = lab
    net = next(n for n in st["networks"] if n["name"] == "my-overlay")
    assert net["encrypted"] is True and net["mtu"] == 1424  # Docker's maxMTU: 1450 - 26, multiple of 4
    urls = ["http://backend/"] * 6 + ["http://my-web/"] * 6
    pcap, answers = _underlay_capture(lb, "node1", tmp_path, [sys.executable, "-c", HTTP_REQ, *urls],
                                      "node1/my-web.1")
    assert all(a.startswith("Host IP is ") for a in answers), answers
    assert {a.split(", task ")[1].split()[0] for a in answers} >= {"backend.1", "backend.2", "my-web.2", "my-web.3"}
    clear = subprocess.run(["tcpdump", "-nn", "-r", str(pcap), "udp dst port 4789 and udp[12:4] >> 8 = 4097"],
                           capture_output=True, text=True)
    assert clear.returncode == 0 and clear.stdout.strip() == "", clear.stdout[:300]
    tsh = subprocess.run(["tshark", "-r", str(pcap), "-Y", "esp", "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                          "-e", "esp.spi"], capture_output=True, text=True, check=True)
    rows = {tuple(line.split("\t")) for line in tsh.stdout.splitlines() if line}
    from meshpkt.lab.plan import plan

    expected = {(x.src, x.dst, f"{x.spi:#010x}") for ns in plan(spec(lb.name), st["lb"], st["esp"]).namespaces
                if ns.node == "node1" and ns.role == "host" for x in ns.xfrm_states}
    seen = {(a, b, f"{int(s, 16):#010x}") for a, b, s in rows}
    assert seen and seen <= expected, (seen, expected)
    ips = {n["name"]: n["underlay_ip"] for n in st["nodes"]}
    assert {(ips["node1"], ips["node2"]), (ips["node1"], ips["node3"])} <= {(a, b) for a, b, _ in seen}
    # the ingress network (VNI 4096) is not encrypted: its VXLAN stays visible
    assert st["esp"] in ("xfrm", "userspace")


def test_encryption_rules_are_dockers(lab: tuple[Lab, dict[str, Any]]) -> None:
    lb, _st = lab
    save = lb.exec("node2", ["iptables-save"], capture_output=True, check=True).stdout
    u32 = '-m u32 --u32 "0x0>>0x16&0x3c@0xc&0xffffff00=0x100100"'
    assert f"-A OUTPUT -p udp -m udp --dport 4789 {u32} -j MARK --set-xmark 0xd0c4e3/0xffffffff" in save
    drop = [ln for ln in save.splitlines() if ln.startswith("-A INPUT") and "--pol none" in ln]
    assert len(drop) == 1 and u32 in drop[0] and drop[0].endswith("-j DROP")
    inp = [ln for ln in save.splitlines() if ln.startswith("-A INPUT")]
    assert inp[0] == drop[0]  # inserted first, like Docker


def test_removed_policy_leaks_and_is_dropped(lab: tuple[Lab, dict[str, Any]], tmp_path: Path) -> None:
    """Without node1's policy towards node2 the VXLAN of VNI 4097 leaves node1 in cleartext, and node2's
    Docker INPUT rule drops it (its counter moves). Runs last: it breaks the module's lab."""
    lb, st = lab
    ips = {n["name"]: n["underlay_ip"] for n in st["nodes"]}
    lb.remove_xfrm_policy("node1", "node2")
    backend2 = next(b for s in st["services"] if s["name"] == "peers" for b in s["backends"] if b["node"] == "node2")
    url = f"http://{backend2['ips']['my-overlay']}/"
    pcap, answers = _underlay_capture(lb, "node1", tmp_path, [sys.executable, "-c", HTTP_REQ, url], "node1/my-web.1")
    assert answers[0].startswith("ERROR"), answers  # the SYN never got through
    time.sleep(0.2)
    clear = subprocess.run(["tcpdump", "-nn", "-r", str(pcap),
                            f"dst host {ips['node2']} and udp dst port 4789 and udp[12:4] >> 8 = 4097"],
                           capture_output=True, text=True)
    assert clear.returncode == 0 and len(clear.stdout.splitlines()) >= 1, clear.stdout
    save = lb.exec("node2", ["iptables-save", "-c"], capture_output=True, check=True).stdout
    drop = next(ln for ln in save.splitlines() if "--pol none" in ln)
    assert int(drop.split("]")[0].strip("[").split(":")[0]) >= 1, drop


def test_bpf_vni_match_encrypts_too(tmp_path: Path) -> None:
    """``vni_match: bpf`` (Docker >= 24's xt_bpf program): the mark, hence ESP, still selects exactly the
    encrypted VNI; the ingress VNI stays cleartext VXLAN."""
    name = f"b{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    spec = LabSpec.from_dict({"name": name, "nodes": 2, "vni_match": "bpf",
                              "overlays": [{"name": "sec", "subnet": "10.0.1.0/24", "vni": 4097, "encrypted": True}],
                              "services": [{"name": "web", "replicas": 2, "publish": ["9090:80"], "networks": ["sec"]},
                                           {"name": "api", "replicas": 2, "networks": ["sec"]}]})
    try:
        st = lab.up(spec)
        save = lab.exec("node1", ["iptables-save", "-t", "mangle"], capture_output=True, check=True).stdout
        assert '-m bpf --bytecode "7,32 0 0 4294963252,7 0 0 0,64 0 0 4,116 0 0 8,21 1 0 4097,' in save
        ips = [n["underlay_ip"] for n in st["nodes"]]
        urls = ["http://api/"] * 4 + [f"http://{ips[0]}:9090/"] * 4
        pcap, answers = _underlay_capture(lab, "node1", tmp_path, [sys.executable, "-c", HTTP_REQ, *urls],
                                          "node1/web.1")
        assert all(a.startswith("Host IP is ") for a in answers), answers
        def count(bpf: str) -> int:
            r = subprocess.run(["tcpdump", "-nn", "-r", str(pcap), bpf], capture_output=True, text=True)
            return len(r.stdout.splitlines())

        assert count("udp dst port 4789 and udp[12:4] >> 8 = 4097") == 0
        assert count("udp dst port 4789 and udp[12:4] >> 8 = 4096") > 0  # ingress traffic: not encrypted
        assert count("ip proto 50") > 0
    finally:
        lab.down()
        assert not lab_namespaces(name)


def test_dual_stack_overlay_carries_ipv6(tmp_path: Path) -> None:
    """``subnet6`` on an overlay: tasks get IPv6 addresses (same host offset as IPv4), reach each other over
    VXLAN (tshark decodes IPv6 inside VNI 4097 on the underlay: only the two tasks' addresses; neighbour
    discovery is answered by vxlan0's proxy from its permanent entries, like Docker's)."""
    name = f"s{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    spec = LabSpec.from_dict({"name": name, "nodes": 2,
                              "overlays": [{"name": "dual", "subnet": "10.0.1.0/24", "vni": 4097,
                                            "subnet6": "fd00:0:0:1::/64"}],
                              "services": [{"name": "web", "replicas": 2, "networks": ["dual"]}]})
    try:
        st = lab.up(spec)
        six = {b["task"]: b["ips6"]["dual"] for b in st["services"][0]["backends"]}
        v4 = {b["task"]: b["ips"]["dual"] for b in st["services"][0]["backends"]}
        assert all(six[t].rsplit(":", 1)[1] == f"{int(v4[t].rsplit('.', 1)[1]):x}" for t in six)
        code = ("import json, sys, urllib.request; print(json.dumps([urllib.request.urlopen(u, timeout=3).read()"
                ".decode() for u in sys.argv[1:]]))")
        with open(tmp_path / "answers.json", "w") as fh:
            lab.capture(["node1.host.eth0", "node2.web.2.eth0"], tmp_path,
                        [sys.executable, "-c", code, f"http://[{six['web.2']}]/"], run_in="node1/web.1", stdout=fh)
        assert json.loads((tmp_path / "answers.json").read_text()) == [
            f"Host IP is {st['nodes'][1]['underlay_ip']}, task web.2 {six['web.2']}\n"]
        tsh = subprocess.run(["tshark", "-r", str(tmp_path / "node1.host.eth0.pcap"), "-Y", "ipv6", "-T", "fields",
                              "-e", "vxlan.vni", "-e", "ipv6.src", "-e", "ipv6.dst"],
                             capture_output=True, text=True, check=True)
        rows = {tuple(ln.split("\t")) for ln in tsh.stdout.splitlines()}
        assert rows == {("4097", six["web.1"], six["web.2"]), ("4097", six["web.2"], six["web.1"])}, rows
        task = subprocess.run(["tshark", "-r", str(tmp_path / "node2.web.2.eth0.pcap"), "-Y", "tcp", "-T", "fields",
                               "-e", "ipv6.src"], capture_output=True, text=True, check=True)
        assert set(task.stdout.split()) == {six["web.1"], six["web.2"]}  # the connection is IPv6 end to end
    finally:
        lab.down()
        assert not lab_namespaces(name)
