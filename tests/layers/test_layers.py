"""meshpkt.layers: VXLAN binding, hop builders, round trips through tcpdump/tshark/meshpkt's decoder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from meshpkt.errors import UsageError
from meshpkt.layers import (
    EXAMPLE_SYN,
    VXLAN,
    IngressTopology,
    TcpSegment,
    bind_vxlan_port,
    client_to_node,
    ingress_path,
    sbox_to_task,
    swarm_mac,
    vxlan_src_port,
    vxlan_underlay,
)

REPO = Path(__file__).resolve().parents[2]


def test_vxlan_builds_with_4789_and_rfc_layout() -> None:
    pkt = UDP(sport=1234) / VXLAN(vni=4096)
    assert pkt[UDP].dport == 4789
    raw = bytes(pkt)
    assert raw[8:16] == bytes([0x08, 0, 0, 0, 0x00, 0x10, 0x00, 0])  # flags I, vni 4096 << 8
    assert len(VXLAN()) == 8


@pytest.mark.parametrize("order", ["scapy_first", "meshpkt_first"])
def test_udp_4789_dissects_as_our_vxlan_whatever_the_import_order(order: str) -> None:
    # a fresh interpreter: layer bindings are process-global
    imports = ["import scapy.layers.vxlan", "import meshpkt.layers"]
    if order == "meshpkt_first":
        imports.reverse()
    code = "\n".join([
        *imports,
        "from meshpkt.layers import VXLAN",
        "from scapy.layers.inet import IP, UDP",
        "from scapy.layers.l2 import Ether",
        "p = Ether(bytes(Ether()/IP()/UDP(sport=40000)/VXLAN(vni=77)/Ether()/IP(src='10.0.0.2')))",
        "assert type(p[UDP].payload) is VXLAN, type(p[UDP].payload)",
        "assert p[VXLAN].vni == 77 and p[UDP].dport == 4789",
        "assert p[VXLAN].payload[IP].src == '10.0.0.2'",
        "print('ok')",
    ])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_ours_builds_4789_with_scapys_vxlan_loaded() -> None:
    from scapy.layers.vxlan import VXLAN as ScapyVXLAN

    # scapy's class declares dport 8472 (its overload_fields); depending on the scapy
    # version its last binding makes it 4789 *both ways* (sport too). Ours: dport only.
    assert (UDP() / ScapyVXLAN())[UDP].dport in (8472, 4789)
    assert (UDP(sport=40000) / VXLAN())[UDP].dport == 4789
    assert (UDP(sport=40000) / VXLAN())[UDP].sport == 40000
    # and with both loaded, 4789 still dissects as ours
    assert type(UDP(bytes(UDP() / VXLAN() / Ether())).payload) is VXLAN


def test_bind_vxlan_port_for_data_path_port() -> None:
    raw = bytes(UDP(sport=1, dport=7789) / VXLAN(vni=4097) / Ether() / IP(dst="10.0.0.9"))
    bind_vxlan_port(7789)
    bind_vxlan_port(7789)  # idempotent
    p = UDP(raw)
    assert type(p.payload) is VXLAN and p[VXLAN].vni == 4097 and p[IP].dst == "10.0.0.9"
    with pytest.raises(UsageError):
        bind_vxlan_port(70000)


def test_swarm_mac() -> None:
    assert swarm_mac("10.0.0.20") == "02:42:0a:00:00:14"
    assert swarm_mac("10.255.0.2") == "02:42:0a:ff:00:02"
    with pytest.raises(UsageError):
        swarm_mac("fe80::1")


def test_seed_checksums_reproduced() -> None:
    """The seed's tcpdump printed these TCP checksums; NAT-consistent hops reproduce them."""
    req = {h.point: h.packet for h in ingress_path()}
    rep = {h.point: h.packet for h in ingress_path(direction="reply")}
    cks = {k: TCP(bytes(v[TCP])).chksum for k, v in req.items()}
    assert cks["node_eth0"] == 0xF5AA  # 10.211.55.2.51883 > 10.211.55.10.9090 [SEW] (seed 7.1.2)
    assert cks["gwbridge"] == 0x8B73  # 10.211.55.2.51883 > 172.18.0.2.9090 after DNAT
    rcks = {k: TCP(bytes(v[TCP])).chksum for k, v in rep.items()}
    assert rcks["gwbridge"] == 0xDC93  # seed: "incorrect -> 0xdc93" (offload)
    assert rcks["node_eth0"] == 0x46CB  # seed: "incorrect -> 0x46cb"


def test_path_keeps_what_nat_keeps() -> None:
    seg = TcpSegment(flags="PA", seq=1000, ack=2000, payload=b"GET / HTTP/1.1\r\n\r\n", ip_id=4242,
                     options=[("NOP", None), ("NOP", None), ("Timestamp", (7, 8))])
    hops = ingress_path(seg)
    assert [h.point for h in hops] == ["node_eth0", "gwbridge", "sbox_eth0", "underlay", "task_eth0", "task_socket"]
    for h in hops:
        p = Ether(bytes(h.packet))
        inner = p[VXLAN].payload if VXLAN in p else p
        t = inner[TCP]
        assert (t.seq, t.ack, bytes(t.payload), inner[IP].id) == (1000, 2000, seg.payload, 4242)
        assert dict(t.options)["Timestamp"] == (7, 8)
    by = {h.point: Ether(bytes(h.packet)) for h in hops}
    assert (by["node_eth0"][IP].dst, by["node_eth0"][TCP].dport) == ("10.211.55.10", 9090)
    assert (by["gwbridge"][IP].src, by["gwbridge"][IP].dst) == ("10.211.55.2", "172.18.0.2")
    assert (by["sbox_eth0"][IP].src, by["sbox_eth0"][IP].dst) == ("10.0.0.2", "10.0.0.20")
    assert by["task_socket"][TCP].dport == 80
    u = by["underlay"]
    assert (u[IP].src, u[IP].dst, u[UDP].sport, u[UDP].dport, u[VXLAN].vni) == (
        "10.211.55.10", "10.211.55.18", 45803, 4789, 4096)
    assert bytes(u[VXLAN].payload) == bytes(by["sbox_eth0"])
    # the task on the entry node: no underlay hop
    local = ingress_path(topo=IngressTopology(task="10.0.0.17", task_node=None))
    assert "underlay" not in [h.point for h in local]


def test_underlay_source_port_is_a_stable_flow_hash() -> None:
    a = sbox_to_task(sport=1111)
    b = sbox_to_task(sport=2222)
    assert vxlan_src_port(a) == vxlan_src_port(a.copy()) == vxlan_src_port(bytes(a))
    assert vxlan_src_port(a) != vxlan_src_port(b)
    assert 32768 <= vxlan_src_port(a) <= 60999
    u = vxlan_underlay(a, port=7789, vni=4097)
    assert Ether(bytes(u))[UDP].dport == 7789
    with pytest.raises(UsageError):
        vxlan_underlay(a, vni=1 << 24)


def _sample_packets() -> list:
    seg = TcpSegment(flags="PA", seq=3572036980, ack=499769355, payload=b"hello", ip_id=7)
    return [
        vxlan_underlay(sbox_to_task(seg, sport=60559), sport=45803),
        vxlan_underlay(sbox_to_task(EXAMPLE_SYN, sbox_ip="10.0.0.3", task="10.0.0.21", sport=40000),
                       "10.211.55.18", "10.211.55.22", vni=4097, port=4789),
        client_to_node(seg),
    ]


def test_round_trip_tcpdump(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is required (installed by sh .ci/setup test)")
    path = tmp_path / "l.pcap"
    wrpcap(str(path), _sample_packets())
    out = subprocess.run(["tcpdump", "-nn", "-v", "-e", "-r", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "10.211.55.10.45803 > 10.211.55.18.4789: VXLAN, flags [I] (0x08), vni 4096" in out
    assert "02:42:0a:00:00:02 > 02:42:0a:00:00:14" in out
    assert re.search(r"10\.0\.0\.2\.60559 > 10\.0\.0\.20\.9090: Flags \[P\.\], cksum 0x[0-9a-f]+ \(correct\), "
                     r"seq 3572036980:3572036985, ack 499769355", out)
    sport = vxlan_src_port(sbox_to_task(EXAMPLE_SYN, sbox_ip="10.0.0.3", task="10.0.0.21", sport=40000))
    assert f"10.211.55.18.{sport} > 10.211.55.22.4789: VXLAN, flags [I] (0x08), vni 4097" in out
    assert "10.0.0.3.40000 > 10.0.0.21.9090: Flags [SEW]" in out
    assert "10.211.55.2.51883 > 10.211.55.10.9090: Flags [P.]" in out
    assert "bad" not in out  # no bad checksums / lengths


def test_round_trip_tshark(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required (installed by sh .ci/setup test)")
    path = tmp_path / "l.pcap"
    wrpcap(str(path), _sample_packets())
    fields = ["udp.dstport", "vxlan.vni", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
              "eth.src"]
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
           "-E", "aggregator=,", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out]
    assert rows[0] == {"udp.dstport": "4789", "vxlan.vni": "4096", "ip.src": "10.211.55.10,10.0.0.2",
                       "ip.dst": "10.211.55.18,10.0.0.20", "tcp.srcport": "60559", "tcp.dstport": "9090",
                       "tcp.seq_raw": "3572036980", "eth.src": "00:1c:42:ae:b6:41,02:42:0a:00:00:02"}
    assert rows[1]["vxlan.vni"] == "4097" and rows[1]["ip.dst"] == "10.211.55.22,10.0.0.21"
    assert rows[2]["vxlan.vni"] == "" and rows[2]["ip.src"] == "10.211.55.2"
    bad = subprocess.run(["tshark", "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o",
                          "ip.check_checksum:TRUE", "-Y", "tcp.checksum.status == 0 || ip.checksum.status == 0"],
                         capture_output=True, text=True, check=True).stdout
    assert bad.strip() == ""


def test_round_trip_meshpkt_decoder(tmp_path: Path) -> None:
    from meshpkt.decode import decode_file

    path = tmp_path / "l.pcap"
    pkts = _sample_packets()
    wrpcap(str(path), pkts)
    df = decode_file(path)
    assert len(df) == 3
    r = df.iloc[0]
    assert int(r["outer_dport"]) == 4789 and int(r["outer_sport"]) == 45803 and int(r["vni"]) == 4096
    assert int(r["inner_src"]) == 0x0A000002 and int(r["inner_dst"]) == 0x0A000014
    assert (int(r["inner_sport"]), int(r["inner_dport"])) == (60559, 9090)
    assert int(r["tcp_seq"]) == 3572036980 and int(r["tcp_ack"]) == 499769355
    assert int(r["payload_len"]) == 5 and int(r["ip_id"]) == 7
    assert int(r["inner_eth_src"]) == 0x02420A000002 and int(r["outer_src"]) == 0x0AD3370A
    assert int(df.iloc[1]["vni"]) == 4097 and int(df.iloc[1]["inner_dst"]) == 0x0A000015
    r2 = df.iloc[2]
    assert int(r2["vni"]) == -1 and int(r2["outer_dport"]) == 9090 and int(r2["tcp_seq"]) == 3572036980
