"""`meshpkt filter` end to end (subprocess, real tcpdump/tshark)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import wrpcap

from meshpkt.layers import IngressTopology, TcpSegment, ingress_path

REPO = Path(__file__).resolve().parents[2]


def meshpkt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", *args], capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def mesh_captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-point captures of two connections through the seed's mesh (the second one as noise)."""
    d = tmp_path_factory.mktemp("mesh")
    t = 1700000000.0
    per_point: dict[str, list] = {}
    for topo, seq in ((IngressTopology(), 1000), (IngressTopology(client_port=51999, underlay_sport=41000,
                                                                  underlay_reply_sport=42000), 9000)):
        for direction, seg in (("request", TcpSegment(seq=seq)),
                               ("reply", TcpSegment(flags="SAE", seq=77, ack=seq + 1))):
            for h in ingress_path(seg, topo, direction=direction):  # type: ignore[arg-type]
                if h.point == "task_socket":
                    continue
                p = h.packet.copy()
                t += 0.0001
                p.time = t
                per_point.setdefault(h.point, []).append(p)
    for point, pkts in per_point.items():
        wrpcap(str(d / f"{point}.pcap"), pkts)
    return d


def test_prints_the_expression_alone() -> None:
    r = meshpkt("filter", "--outer-ip", "4", "--inner-proto", "tcp", "--inner-src", "10.0.0.2",
                "--inner-src", "10.0.0.20")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == ("udp dst port 4789 and udp[28:2]=0x0800 and udp[39]=6 and "
                        "(udp[42:4]=0x0a000002 or udp[42:4]=0x0a000014)\n")


def test_explain_gives_the_byte_map() -> None:
    r = meshpkt("filter", "--inner-proto", "tcp", "--inner-dport", "9090", "--explain")
    assert r.returncode == 0
    first, *rest = r.stdout.splitlines()
    assert first.startswith("udp dst port 4789 and (")
    text = "\n".join(rest)
    assert "udp[39]=6: 8 UDP + 8 VXLAN + 14 inner Ethernet + 9 = protocol byte of the inner IPv4 header" in text
    assert "low nibble (IHL) times 4" in text


def test_usable_in_tcpdump(mesh_captures: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is required (installed by sh .ci/setup test)")
    expr = meshpkt("filter", "--vni", "4096", "--inner-port", "51883").stdout.strip()
    r = subprocess.run(["tcpdump", "-nn", "-r", str(mesh_captures / "underlay.pcap"), expr],
                       capture_output=True, text=True, check=True)
    vx = [x for x in r.stdout.splitlines() if "VXLAN" in x]
    assert len(vx) == 2 and all("vni 4096" in x for x in vx)
    assert r.stdout.count("51883") == 2


def test_wireshark_dialect(mesh_captures: Path) -> None:
    r = meshpkt("filter", "--dialect", "wireshark", "--inner-host", "10.0.0.20", "--inner-sport", "51999")
    assert r.returncode == 0
    assert "ip.src#2 == 10.0.0.20" in r.stdout and "||" in r.stdout
    if shutil.which("tshark") is None:
        return
    t = subprocess.run(["tshark", "-n", "-r", str(mesh_captures / "underlay.pcap"), "-Y", r.stdout.strip(),
                        "-T", "fields", "-e", "tcp.srcport"], capture_output=True, text=True, check=True)
    assert t.stdout.split() == ["51999"]


def test_check(mesh_captures: Path) -> None:
    r = meshpkt("filter", "--inner-proto", "tcp", "--inner-dst", "10.0.0.20", "--check",
                str(mesh_captures / "underlay.pcap"))
    assert r.returncode == 0, r.stderr
    assert "libpcap matches" in r.stdout and "equal" in r.stdout
    r = meshpkt("filter", "--inner-tcp-flags", "syn,ack", "--json", "--check", str(mesh_captures / "underlay.pcap"))
    doc = json.loads(r.stdout)
    assert doc["packets"] == 4 and doc["libpcap"] == doc["decoder"] == 2 and doc["equal"] is True


def test_connection_prints_one_filter_per_point(mesh_captures: Path) -> None:
    caps = sorted(str(p) for p in mesh_captures.glob("*.pcap"))
    r = meshpkt("filter", "--json", "--connection", "1", *caps)
    assert r.returncode == 0, r.stderr
    filters = json.loads(r.stdout)["filters"]
    assert set(filters) == {"node_eth0", "gwbridge", "sbox_eth0", "underlay", "task_eth0"}
    from meshpkt.bpf import libpcap as lp

    for point, text in filters.items():
        got = lp.filter_file(mesh_captures / f"{point}.pcap", text)
        assert sum(got) == 2 and (got == [True, True, False, False] or got == [False, False, True, True]), point
    r = meshpkt("filter", "--connection", "99", *caps)
    assert r.returncode == 2 and "no connection 99" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--inner-proto", "foo"], "protocol"),
    (["--inner-src", "10.0.0.300"], "IPv4"),
    (["--inner-proto", "icmp", "--inner-port", "80"], "inner ports need"),
    (["--vni", "x"], "VNI must be a number"),
    (["--inner-vlan-id", "5000"], "VLAN id must be in 0..4095"),
    (["--port", "-1"], "port must be in"),
    (["--check", "/nonexistent.pcap"], "nonexistent"),
    (["--connection", "1"], "needs the captures"),
    (["stray"], "unexpected"),
])
def test_bad_input_is_one_line(args: list[str], words: str) -> None:
    r = meshpkt("filter", *args)
    assert r.returncode == 2, r
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
