"""Acceptance (issue 15): each fault injected in a fresh lab, traffic from the lab client under capture at
every point, dumps of every namespace; ``diagnose`` must name exactly that kind (the only error-level
finding), at the right node/address, and the connections it names must be exactly the ones the client
saw fail (read from the client's pcap with dpkt, independently of meshpkt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from diagnose_lab import (
    NODE_IPS,
    answered_ports,
    big_cmd,
    curl_cmd,
    fresh_lab,
    out_of_window_cmd,
    record,
    rst_ports,
    syn_ports,
)

from meshpkt.diagnose import Diagnosis, Finding, diagnose
from meshpkt.lab import faults

pytestmark = [pytest.mark.root, pytest.mark.slow]

N1, N2, N3 = NODE_IPS["node1"], NODE_IPS["node2"], NODE_IPS["node3"]
ALL = curl_cmd([f"{ip}:9090" for ip in (N1, N2, N3) for _ in range(3)])
NODE1 = curl_cmd([f"{N1}:9090"] * 3)


def run(tmp: Path, fault: Any, cmd: list[str], needs_dumps: bool = False,
        snaplen: int = 262144) -> tuple[Diagnosis, Path, dict[str, Any]]:
    """Diagnose with the dumps; without them (captures and status.json only) the same error-level
    findings must come out, at the same node and addresses, unless the failure lives only in the rules."""
    with fresh_lab() as lab:
        status = lab.status()
        if fault is not None:
            fault(lab)
        caps, dumps = record(lab, tmp, cmd, snaplen)
    d = diagnose([caps], dumps=[dumps])
    assert d.analysis["detector_errors"] == []
    plain = diagnose([caps])
    assert plain.analysis["detector_errors"] == []
    errors = [(f.kind, f.node, f.addresses, f.connections) for f in d.findings if f.severity == "error"]
    if needs_dumps:
        assert [f for f in plain.findings if f.severity == "error"] == []
    else:
        assert [(f.kind, f.node, f.addresses, f.connections) for f in plain.findings if f.severity == "error"] == errors
    return d, caps / "client.host.eth0.pcap", status


def only(d: Diagnosis, kind: str) -> Finding:
    """The single error-level finding, of ``kind``."""
    errors = [f for f in d.findings if f.severity == "error"]
    assert [f.kind for f in errors] == [kind], [(f.kind, f.summary) for f in d.findings]
    assert d.exit_code() == 1
    return errors[0]


def client_ports(d: Diagnosis, f: Finding) -> set[int]:
    c = d.analysis_obj.connections.set_index("conn_id")
    return {int(str(c.loc[i, "client"]).rsplit(":", 1)[1]) for i in f.connections
            if str(c.loc[i, "client"]).startswith("10.211.55.2:")}


def failed_ports(client_pcap: Path) -> set[int]:
    return syn_ports(client_pcap) - answered_ports(client_pcap)


def task_ip(status: dict[str, Any], task: str) -> str:
    return next(b["ip"] for s in status["services"] for b in s["backends"] if b["task"] == task)


def test_healthy_lab_has_no_error(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, None, ALL)
    assert len(answered_ports(client)) == 9 and not failed_ports(client)
    assert [f for f in d.findings if f.severity == "error"] == [], [f.summary for f in d.findings]
    assert d.exit_code() == 0 and d.analysis["connections"] >= 9 and d.unexplained == []


def test_healthy_lab_with_megabyte_transfers_and_short_snaplen(tmp_path: Path) -> None:
    """GSO/GRO super-packets, 4 MB answers, headers-only captures: still no error."""
    cmd = curl_cmd([f"{ip}:9090/bytes/4000000" for ip in (N1, N2, N3) for _ in range(2)], timeout=20)
    d, client, _ = run(tmp_path, None, cmd, snaplen=128)
    assert len(syn_ports(client)) == 6
    assert [f for f in d.findings if f.severity == "error"] == [], [f.summary for f in d.findings]
    assert d.analysis["connections"] >= 6 and d.unexplained == []


def test_published_port_not_forwarded(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: lab.remove_dnat("node1"), NODE1)
    f = only(d, "published-port-not-forwarded")
    assert f.node == "node1" and f.addresses == [f"{N1}:9090"]
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 3
    assert any("no DNAT for dport 9090" in e for e in f.evidence)


def test_lb_mark_missing(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: lab.remove_mark("node1"), NODE1)
    f = only(d, "lb-mark-missing")
    assert f.node == "node1" and f.points == ["node1.ingress_sbox.eth1"]
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 3
    assert any("no MARK rule for dport 9090" in e for e in f.evidence)


def test_lb_stale_backend(tmp_path: Path) -> None:
    cmd = curl_cmd([f"{N1}:9090"] * 3 + [f"{N3}:9090"] * 3)
    d, client, status = run(tmp_path, lambda lab: lab.kill_task("my-web.3"), cmd)
    f = only(d, "lb-stale-backend")
    dead = task_ip(status, "my-web.3")
    assert f.addresses == [dead]
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 2  # one per entry node
    assert any("still lists " + dead in e for e in f.evidence)


def test_snat_missing(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: lab.remove_snat("node1"), NODE1)
    f = only(d, "snat-missing")
    assert f.node == "node1" and f.points == ["node1.ingress_sbox.eth0"]
    assert client_ports(d, f) == failed_ports(client) and len(client_ports(d, f)) == 3
    assert any("nat SNAT rules: none" in e for e in f.evidence)


def test_vxlan_dropped(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: lab.drop_vxlan("node1", "node2"), NODE1)
    f = only(d, "vxlan-dropped")
    assert f.node == "node2" and f.addresses == [N1, N2, "udp/4789"]
    assert "node1" in f.summary and "node2" in f.summary
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 1


def test_fdb_missing(tmp_path: Path) -> None:
    d, client, status = run(tmp_path, lambda lab: lab.remove_fdb("node1", "node2", neigh=True), NODE1)
    f = only(d, "fdb-missing")
    ip = task_ip(status, "my-web.2")
    mac = "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
    assert f.node == "node1" and f.addresses == [ip, mac]
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 1
    assert any(f"no entry for {mac}" in e for e in f.evidence)


def test_mtu_blackhole(tmp_path: Path) -> None:
    def fault(lab: Any) -> None:
        lab.set_mtu("node2", "eth0", 1400)
        lab.exec("client", ["ip", "route", "flush", "cache"])

    d, _, _ = run(tmp_path, fault, big_cmd(N1), snaplen=128)  # headers only: sizes come from IP lengths
    f = only(d, "mtu-blackhole")
    assert f.node == "node2" and f.points[1] == "node2.host.eth0"
    assert any("node2/host eth0 mtu 1400" in e for e in f.evidence)
    backends = d.analysis_obj.connections.set_index("conn_id").loc[f.connections, "backend_node"]
    assert set(backends) == {"node2"}


def test_redirect_missing(tmp_path: Path) -> None:
    d, client, status = run(tmp_path, lambda lab: lab.remove_redirect("my-web.2"), NODE1)
    f = only(d, "redirect-missing")
    assert f.node == "node2" and f.addresses == [f"{task_ip(status, 'my-web.2')}:9090"]
    assert client_ports(d, f) == failed_ports(client) and len(f.connections) == 1


def test_wrong_vtep_source(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: faults.wrong_vtep_source(lab, "node2", "10.211.55.99"), ALL)
    f = only(d, "wrong-vtep-source")
    assert f.node == "node2" and f.addresses == ["10.211.55.99", N2]
    # the peers' kernels drop VXLAN whose inner MAC has a static fdb entry for another VTEP
    assert client_ports(d, f) == failed_ports(client) and failed_ports(client)


def test_iptables_split_brain(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, lambda lab: faults.iptables_split_brain(lab, "node1"), NODE1, needs_dumps=True)
    f = only(d, "iptables-split-brain")
    assert f.node == "node1" and "node1/host" in f.summary
    assert any("MASQUERADE" in e for e in f.evidence)
    assert len(answered_ports(client)) == 3  # nothing visible broke: only the dumps show it


def test_conntrack_invalid_reset(tmp_path: Path) -> None:
    d, client, _ = run(tmp_path, None, out_of_window_cmd(N1))
    f = only(d, "conntrack-invalid-reset")
    assert f.node == "node1" and f.points == ["node1.host.eth0"]
    assert client_ports(d, f) == rst_ports(client, N1) and client_ports(d, f)
