"""The shipped captures (captures/ingress-3node, made by captures/make_captures.sh) match their
status.json and show the hops of seed 001 section 7. No root needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DIR = Path(__file__).resolve().parents[2] / "captures" / "ingress-3node"



@pytest.fixture(scope="module")
def status() -> dict[str, Any]:
    return json.loads((DIR / "status.json").read_text())


def test_one_pcap_per_capture_point(status: dict[str, Any]) -> None:
    assert status["schema"] == "meshpkt.lab.status/1"
    names = {p["point"] for p in status["capture_points"]}
    assert {f.stem for f in DIR.glob("*.pcap")} == names
    assert sum(f.stat().st_size for f in DIR.iterdir()) < 1_000_000


def test_six_connections_through_every_hop(status: dict[str, Any], pcap: Any) -> None:
    node_ip = {n["name"]: n["underlay_ip"] for n in status["nodes"]}
    ingress_ip = {n["name"]: n["ingress_ip"] for n in status["nodes"]}
    web = status["services"][0]
    where = {b["ip"]: b["node"] for b in web["backends"]}
    client = [f for f in pcap.read(DIR / "client.host.eth0.pcap") if pcap.is_syn(f)]
    assert len(client) == 6
    by_port = {f["sport"]: f["dst"] for f in client}
    served: dict[int, str] = {}
    for node, ip in node_ip.items():
        eth1 = [f for f in pcap.read(DIR / f"{node}.ingress_sbox.eth1.pcap") if pcap.is_syn(f)]
        assert {(f["dst"], f["dport"]) for f in eth1} == {("172.18.0.2", 9090)}
        assert {by_port[f["sport"]] for f in eth1} == {ip}
        eth0 = [f for f in pcap.read(DIR / f"{node}.ingress_sbox.eth0.pcap")
                if pcap.is_syn(f) and f["src"] == ingress_ip[node]]
        assert len(eth0) == 2
        for f in eth0:
            served[f["sport"]] = f["dst"]
    assert set(served) == set(by_port)
    local = [p for p in served if where[served[p]] == next(n for n, ip in node_ip.items() if ip == by_port[p])]
    assert len(local) == 3  # one local backend per node, three cross-node connections
    vx = [f for f in pcap.read(DIR / "underlay.host.br0.pcap") if "inner" in f and pcap.is_syn(f["inner"])]
    assert len(vx) == 3
    for f in vx:
        assert f["vni"] == 4096 and f["dport"] == 4789
        assert f["inner"]["src_mac"].startswith("02:42:") and f["inner"]["dst_mac"].startswith("02:42:")
        assert f["dst"] == node_ip[where[f["inner"]["dst"]]]
