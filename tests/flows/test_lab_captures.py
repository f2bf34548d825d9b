"""Reconstruction on real captures made by the lab: the shipped ones, and live fault runs (root)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from meshpkt.flows import analyze, analyze_packets

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "captures" / "ingress-3node"
ANSWER = re.compile(rb"Host IP is ([\d.]+), task (\S+) ([\d.]+)")


def http_answers(client_pcap: Path) -> dict[int, tuple[str, str, str]]:
    """client port -> (node IP, task name, task IP) from the HTTP responses the client received."""
    out: dict[int, tuple[str, str, str]] = {}
    with open(client_pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            m = ANSWER.search(bytes(ip.data.data))
            if m:
                out[ip.data.dport] = tuple(x.decode() for x in m.groups())  # type: ignore[assignment]
    return out


SEED_CHAIN_LOCAL = ["client.host.eth0", "underlay.host.br0", "{e}.host.eth0", "{e}.ingress_sbox.eth1",
                    "{e}.ingress_sbox.eth0", "{e}.1-*.br0", "{b}.{task}.eth0"]
SEED_CHAIN_REMOTE = ["client.host.eth0", "underlay.host.br0", "{e}.host.eth0", "{e}.ingress_sbox.eth1",
                     "{e}.ingress_sbox.eth0", "{e}.1-*.br0", "{e}.1-*.vxlan0", "{e}.host.eth0", "underlay.host.br0",
                     "{b}.host.eth0", "{b}.1-*.vxlan0", "{b}.1-*.br0", "{b}.{task}.eth0"]


def _chain_matches(points: list[str], pattern: list[str]) -> bool:
    from fnmatch import fnmatch

    return len(points) == len(pattern) and all(fnmatch(p, q) for p, q in zip(points, pattern, strict=True))


def check_against_http(a, client_pcap: Path) -> int:
    answers = http_answers(client_pcap)
    assert answers, "no HTTP answers in the client capture"
    conns = a.to_json()["connections"]
    checked = 0
    for c in conns:
        if not c["client"].startswith("10.211.55.2:"):
            continue
        port = int(c["client"].rsplit(":", 1)[1])
        if port not in answers:
            continue
        node_ip, task, task_ip = answers[port]
        assert c["backend"] == f"{task_ip}:9090", c
        assert c["backend_task"] == task
        assert c["status"] == "closed"
        assert c["missing_at"] is None
        e, b = c["entry_node"], c["backend_node"]
        pattern = SEED_CHAIN_LOCAL if e == b else SEED_CHAIN_REMOTE
        want = [q.format(e=e, b=b, task=task) for q in pattern]
        got = [h["point"] for h in c["hops"]]
        assert _chain_matches(got, want), (got, want)
        hops = {h["point"]: h for h in c["hops"]}
        # seed 001 section 7: DNAT to 172.18.0.2, SNAT to the node's ingress IP, VXLAN vni 4096 udp 4789
        assert hops[f"{e}.ingress_sbox.eth1"]["dst"] == "172.18.0.2:9090"
        kinds = {t["kind"] for t in c["translations"]}
        assert {"dnat", "ipvs-masq+snat", "redirect"} <= kinds
        redirect = next(t for t in c["translations"] if t["kind"] == "redirect")
        assert redirect["after"].endswith(f"{task_ip}:80")
        if e != b:
            enc = [h for h in c["hops"] if h["vni"] is not None]
            assert enc and all(h["vni"] == 4096 for h in enc)
            assert {"vxlan-encap", "vxlan-decap"} <= kinds
        checked += 1
    return checked


def test_shipped_captures_reconstruct_like_seed_001():
    a = analyze([SHIPPED])
    assert a.summary["topology"].endswith("status.json")
    assert check_against_http(a, SHIPPED / "client.host.eth0.pcap") == 6
    assert a.balance["round_robin"]["node1"]["round_robin"]
    ingress = {p["point"] for p in a.to_json()["connections"][0]["hops"]}
    assert "client.host.eth0" in ingress


def test_shipped_captures_without_topology_infers_the_same_backends():
    caps = sorted(SHIPPED.glob("*.pcap"))
    a = analyze(caps)  # files, not the directory: status.json beside them is still found
    b = analyze_packets(a.packets.drop(columns=["conn_id", "ts_corr_ns"]))
    assert b.summary["topology"] == "inferred"
    got = sorted(zip(b.connections["client"], b.connections["backend"], strict=True))
    want = sorted(zip(a.connections["client"], a.connections["backend"], strict=True))
    assert got == want


# ---------------------------------------------------------------------------- live lab (root)

def _meshpkt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def lab():
    import uuid

    from meshpkt.lab import Lab

    name = f"fl{uuid.uuid4().hex[:5]}"
    lab = Lab(name)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def _capture(lab, out: Path, requests: list[str]) -> Path:
    script = "; ".join(f"curl -s -m 2 http://{u}/ ; sleep 0.2" for u in requests)
    lab.capture(None, out, ["sh", "-c", script], all_points=True, run_in="client", grace=0.5,
                stdout=subprocess.DEVNULL)
    return out


@pytest.mark.root
def test_live_lab_thirty_requests_per_node(lab, tmp_path):
    urls = [f"{ip}:9090" for ip in ("10.211.55.10", "10.211.55.18", "10.211.55.22") for _ in range(10)]
    d = _capture(lab, tmp_path / "cap", urls)
    a = analyze([d])
    assert check_against_http(a, d / "client.host.eth0.pcap") == 30
    for node in ("node1", "node2", "node3"):
        assert a.balance["round_robin"][node]["round_robin"], a.balance["round_robin"][node]
        assert len(a.balance["per_entry"][node]) == 3


@pytest.fixture
def fresh_lab():
    import uuid

    from meshpkt.lab import Lab

    lab = Lab(f"ff{uuid.uuid4().hex[:5]}")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def _dead(a) -> list[dict]:
    return [c for c in a.to_json()["connections"] if c["client"].startswith("10.211.55.2:") and
            c["status"] != "closed"]


@pytest.mark.root
def test_live_lab_dropped_vxlan_is_named(fresh_lab, tmp_path):
    fresh_lab.drop_vxlan("node1", "node2")
    d = _capture(fresh_lab, tmp_path / "cap", ["10.211.55.10:9090"] * 3)
    a = analyze([d])
    dead = _dead(a)
    assert len(dead) == 1, [(c["backend"], c["status"]) for c in a.to_json()["connections"]]
    c = dead[0]
    assert c["status"] == "syn-unanswered"
    assert c["backend"] == "10.0.0.7:9090" and c["backend_node"] == "node2"
    assert c["missing_at"] in ("node2.host.eth0", "underlay.host.br0")
    assert c["last_seen_point"] in ("node1.host.eth0", "underlay.host.br0")
    assert "never arrived" in c["verdict"]
    assert c["retransmissions"] >= 1


@pytest.mark.root
def test_live_lab_killed_task_is_named(fresh_lab, tmp_path):
    fresh_lab.kill_task("my-web.3")
    d = _capture(fresh_lab, tmp_path / "cap", ["10.211.55.22:9090"] * 3)
    a = analyze([d])
    dead = _dead(a)
    assert len(dead) == 1, [(c["backend"], c["status"]) for c in a.to_json()["connections"]]
    c = dead[0]
    assert c["status"] == "syn-unanswered"
    # my-web.3 is node3's local task and its namespace is gone: the load balancer picks it, ARP for
    # 10.0.0.8 gets no answer, so the SYN never leaves ingress_sbox (exactly what a real node does)
    assert c["last_seen_point"] == "node3.ingress_sbox.eth1"
    assert c["missing_at"] == "node3.ingress_sbox.eth0"
    assert "never arrived at node3.ingress_sbox.eth0" in c["verdict"]
    assert c["retransmissions"] >= 1


@pytest.mark.root
def test_live_lab_missing_snat_is_named(fresh_lab, tmp_path):
    fresh_lab.remove_snat("node1")
    d = _capture(fresh_lab, tmp_path / "cap", ["10.211.55.10:9090"] * 3)
    a = analyze([d])
    dead = _dead(a)
    assert len(dead) == 3
    for c in dead:
        sbox0 = next(h for h in c["hops"] if h["point"] == "node1.ingress_sbox.eth0")
        assert sbox0["src"].startswith("10.211.55.2:")  # the client address was not replaced
        # the task's SYN-ACKs leave by docker_gwbridge (no SNAT to return through): the same
        # connection (one ISN), seen on the way back at the host and the client, not at the task
        task_hop = next(h for h in c["hops"] if ".my-web." in h["point"])
        assert c["missing_at"] == task_hop["point"]
        assert "no reply" in c["verdict"]


BIG_REQUESTS = r"""
import socket, sys, time
for k in range(3):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: DF, ignore learned PMTU
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(1.5)
    try:
        s.connect((sys.argv[1], 9090))
        mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        req = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 4000 + b"\r\nConnection: close\r\n\r\n"
        for i in range(0, len(req), mss):  # one full-size segment per write (no GSO super-packets)
            s.sendall(req[i:i + mss])
            time.sleep(0.002)
        s.recv(65536)
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.2)
"""


@pytest.mark.root
def test_live_lab_mtu_black_hole_is_named(fresh_lab, tmp_path):
    fresh_lab.set_mtu("node2", "eth0", 1400)  # VXLAN frames of full-size segments no longer fit
    fresh_lab.exec("client", ["ip", "route", "flush", "cache"])
    d = tmp_path / "cap"
    fresh_lab.capture(None, d, [sys.executable, "-c", BIG_REQUESTS, "10.211.55.10"], all_points=True,
                      run_in="client", grace=0.5, stdout=subprocess.DEVNULL)
    a = analyze([d])
    conns = [c for c in a.to_json()["connections"] if c["client"].startswith("10.211.55.2:")]
    assert len(conns) == 3
    dead = [c for c in conns if c["backend_node"] == "node2"]
    assert len(dead) == 1, [(c["backend"], c["status"], c["verdict"]) for c in conns]
    c = dead[0]
    assert c["lost_fwd"] >= 1
    assert c["lost_at"] in ("node1.host.eth0", "underlay.host.br0")
    assert c["missing_at"] in ("underlay.host.br0", "node2.host.eth0")
    assert "never arrived" in c["verdict"]
    for ok in (c2 for c2 in conns if c2["backend_node"] != "node2"):
        assert ok["lost_fwd"] == 0 and ok["missing_at"] is None
