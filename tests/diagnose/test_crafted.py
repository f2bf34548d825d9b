"""Detectors whose failure cannot be produced in this lab, on captures crafted with the project's hop
builders (:mod:`meshpkt.layers.swarm`, see diagnose_craft.py), each with a control that must not fire:

* checksum-offload: needs a faulty NIC/hypervisor (veths never corrupt checksums);
* ipvs-idle-timeout: needs real IPVS (no ip_vs in this kernel) and a 15-minute silence;
* esp-blocked / esp-one-way / esp-leak: the lab has no encrypted overlay yet;
* wrong-vtep-source without dumps (the live test covers it with dumps).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from diagnose_craft import N1, N2, T0, TOPO, Capture, cleartext_vxlan, esp, handshake, segment
from scapy.layers.inet import IP, TCP
from scapy.packet import Packet

from meshpkt.diagnose import Diagnosis, diagnose
from meshpkt.layers.swarm import TcpSegment, ingress_path, vxlan_underlay
from meshpkt.layers.vxlan import VXLAN

UNDER = ["node1.host.eth0", "underlay.host.br0"]


def kinds(d: Diagnosis, severity: str | None = "error") -> list[str]:
    assert d.analysis["detector_errors"] == []
    return [f.kind for f in d.findings if severity is None or f.severity == severity]


def syn_retries(cap: Capture, mutate=None, n: int = 3) -> None:  # type: ignore[no-untyped-def]
    for k in range(n):
        segment(cap, TcpSegment(flags="S", seq=1000, ip_id=1 + k), T0 + k * 1_000_000_000, "request",
                stop_after="node2.host.eth0", mutate=mutate)


def _checksum(value: int, where: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def mutate(point: str, pkt: Packet) -> Packet:
        if point in where and pkt.haslayer(VXLAN):
            pkt = pkt.copy()
            pkt[VXLAN][TCP].chksum = value
        return pkt
    return mutate


def test_checksum_offload_bad_at_the_receiver_only(tmp_path: Path) -> None:
    cap = Capture()
    syn_retries(cap, _checksum(0xBAD1, ("underlay.host.br0", "node2.host.eth0")))
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d) == ["checksum-offload"]
    f = d.findings[0]
    assert f.node == "node1" and f.points == ["node1.host.eth0", "underlay.host.br0"]
    assert "node2" in f.summary and any("0xbad1" in e for e in f.evidence)


def test_checksum_control_bad_at_the_sender_too_is_not_offload(tmp_path: Path) -> None:
    cap = Capture()
    syn_retries(cap, _checksum(0xBAD1, ("node1.host.eth0", "underlay.host.br0", "node2.host.eth0")))
    d = diagnose([cap.write(tmp_path / "c")])
    assert "checksum-offload" not in kinds(d, None)


def test_checksum_control_offload_pending_is_not_bad(tmp_path: Path) -> None:
    """A checksum field holding only the pseudo-header sum (TX offload not done yet, what veths and a
    sender's own capture show) is 'partial', never 'bad'."""
    def partial(point: str, pkt: Packet) -> Packet:
        if point in ("underlay.host.br0", "node2.host.eth0") and pkt.haslayer(VXLAN):
            pkt = pkt.copy()
            ip = pkt[VXLAN][IP]
            s, d = (int(ipaddress.IPv4Address(a)) for a in (ip.src, ip.dst))
            pseudo = (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF) + 6 + len(bytes(pkt[VXLAN][TCP]))
            while pseudo >> 16:
                pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
            pkt[VXLAN][TCP].chksum = pseudo
        return pkt

    cap = Capture()
    syn_retries(cap, partial)
    d = diagnose([cap.write(tmp_path / "c")])
    assert "checksum-offload" not in kinds(d, None)


def idle_connection(tmp: Path, gap_s: int) -> Path:
    """A connection served normally, silent for ``gap_s``, then a segment IPVS no longer knows: it reaches
    the sandbox's eth1 only and the sandbox answers RST."""
    cap = Capture()
    t = T0
    for direction, seg in handshake():
        segment(cap, seg, t, direction)
        t += 1_000_000
    t += gap_s * 10**9
    data = TcpSegment(flags="PA", seq=1027, ack=5026, ip_id=10, options=[], payload=b"GET /again HTTP/1.1\r\n\r\n")
    segment(cap, data, t, "request", stop_after="node1.ingress_sbox.eth1")
    rst = TcpSegment(flags="R", seq=5026, ack=0, ip_id=0, options=[])
    segment(cap, rst, t + 100_000, "reply", start_at="node1.ingress_sbox.eth1")
    return cap.write(tmp)


def test_ipvs_idle_timeout(tmp_path: Path) -> None:
    d = diagnose([idle_connection(tmp_path / "c", 1000)])
    assert kinds(d) == ["ipvs-idle-timeout"]
    f = d.findings[0]
    assert f.node == "node1" and f.addresses == [f"{N1}:9090"] and f.connections == [1]
    assert any("idle for 1000 s" in e for e in f.evidence)
    assert any("RST seen first at node1.ingress_sbox.eth1" in e for e in f.evidence)


def test_ipvs_idle_control_short_gap_and_timeout_option(tmp_path: Path) -> None:
    path = idle_connection(tmp_path / "c", 100)
    assert "ipvs-idle-timeout" not in kinds(diagnose([path]), None)
    assert "ipvs-idle-timeout" in kinds(diagnose([path], lb_timeout_s=60))


def test_esp_blocked(tmp_path: Path) -> None:
    cap = Capture()
    esp(cap, N1, N2, T0, UNDER, spi=0x1001)  # never seen at node2
    esp(cap, N2, N1, T0 + 500_000, ["node2.host.eth0", *reversed(UNDER)], spi=0x2002)
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d) == ["esp-blocked"]
    f = d.findings[0]
    assert f.node == "node2" and f.addresses == [N1, N2, "ip proto 50"]


def test_esp_one_way(tmp_path: Path) -> None:
    cap = Capture()
    esp(cap, N1, N2, T0, [*UNDER, "node2.host.eth0"], spi=0x1001)
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d) == ["esp-one-way"]
    assert d.findings[0].node == "node2" and d.findings[0].addresses == [N1, N2]


def test_esp_control_both_ways_is_healthy(tmp_path: Path) -> None:
    cap = Capture()
    esp(cap, N1, N2, T0, [*UNDER, "node2.host.eth0"], spi=0x1001)
    esp(cap, N2, N1, T0 + 500_000, ["node2.host.eth0", *reversed(UNDER)], spi=0x2002)
    assert kinds(diagnose([cap.write(tmp_path / "c")]), None) == []


def test_esp_leak_of_an_encrypted_vni(tmp_path: Path) -> None:
    cap = Capture()
    cleartext_vxlan(cap, N1, N2, 4097, T0, [*UNDER, "node2.host.eth0"])
    cleartext_vxlan(cap, N1, N2, 4096, T0 + 100_000, [*UNDER, "node2.host.eth0"])  # not encrypted: fine
    path = cap.write(tmp_path / "c")
    assert kinds(diagnose([path]), None) == []  # nothing says 4097 is encrypted
    d = diagnose([path], encrypted_vnis=[4097])
    assert kinds(d) == ["esp-leak"]
    f = d.findings[0]
    assert f.node == "node1" and f.addresses == [N1, N2] and "vni 4097" in f.summary


def test_esp_leak_inferred_from_esp_between_the_same_nodes_is_a_warning(tmp_path: Path) -> None:
    cap = Capture()
    esp(cap, N1, N2, T0, [*UNDER, "node2.host.eth0"], spi=0x1001)
    esp(cap, N2, N1, T0 + 500_000, ["node2.host.eth0", *reversed(UNDER)], spi=0x2002)
    cleartext_vxlan(cap, N1, N2, 4097, T0 + 900_000, [*UNDER, "node2.host.eth0"])
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d) == [] and kinds(d, "warning") == ["esp-leak"]


def test_wrong_vtep_source_without_dumps(tmp_path: Path) -> None:
    """node2 answers from 10.211.55.99 (not its advertised address): the topology (status.json) knows
    node2 as 10.211.55.18 and the inner source belongs to node2's task."""
    cap = Capture()
    t = T0
    for direction, seg in handshake():
        segment(cap, seg, t, direction)
        t += 1_000_000
    inner = next(h for h in ingress_path(TcpSegment(flags="A", seq=5026, ack=1027, ip_id=7, options=[]), TOPO,
                                         "reply") if h.point == "task_eth0")
    for p in ("node2.host.eth0", "underlay.host.br0", "node1.host.eth0"):
        cap.add(p, t, vxlan_underlay(inner.packet, "10.211.55.99", N1))
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d) == []
    f = next(f for f in d.findings if f.kind == "wrong-vtep-source")
    assert f.severity == "warning" and f.node == "node2" and f.addresses == ["10.211.55.99", N2]


def test_capture_started_mid_connection_is_not_a_failure(tmp_path: Path) -> None:
    """No SYN in the captures (they started while the connection ran): the reconstruction says
    incomplete-capture and no detector may call it a failure."""
    cap = Capture()
    t = T0
    for direction, seg in handshake()[2:]:  # from the ACK on
        segment(cap, seg, t, direction)
        t += 1_000_000
    d = diagnose([cap.write(tmp_path / "c")])
    assert kinds(d, None) == [] and d.exit_code() == 0 and d.unexplained == []
