"""Tunnels found next to Swarm (VXLAN on 8472 or any port, Geneve, VXLAN-GPE, nested VXLAN,
ESP in UDP), inner IPv6 with extension headers, 802.3 LLC/SNAP, IPv4 fragments of tunnel
datagrams: field by field against tshark, and the exact reference decoder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from decode_helpers import T0, equal_tables
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import LLC, SNAP, STP, Dot3, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from tshark_compare import compare_capture

from meshpkt.capture import open_capture, write_pcap
from meshpkt.decode import decode_file
from meshpkt.decode.api import decode_buffer
from meshpkt.decode.findings import fragments, problem_counts, tunnel_ports
from meshpkt.decode.schema import PROBLEM_BITS

OE = Ether(src="52:54:00:00:00:0a", dst="52:54:00:00:00:12")
O4 = IP(src="192.168.10.1", dst="192.168.10.2", id=77)
IE = Ether(src="02:42:0a:00:00:02", dst="02:42:0a:00:00:14")
I4 = IP(src="10.0.0.2", dst="10.0.0.20", id=4321)
I6 = IPv6(src="fd00:1::2", dst="fd00:1::20", hlim=61)
SYN = TCP(sport=40001, dport=9090, flags="S", seq=1000, options=[("MSS", 1410)])


def _vxlan(vni: int) -> Raw:
    """A plain VXLAN header (scapy's VXLAN layer turns itself into VXLAN-GPE before Ethernet)."""
    return Raw(b"\x08\x00\x00\x00" + vni.to_bytes(3, "big") + b"\x00")


def _caps() -> dict[str, Packet]:
    return {
        "vxlan-8472": OE / O4 / UDP(sport=51000, dport=8472) / _vxlan(1) / IE / I4 / SYN,
        "vxlan-any-port": OE / O4 / UDP(sport=51000, dport=7777) / _vxlan(42) / IE / I4 / SYN,
        "geneve-eth": OE / O4 / UDP(sport=51000, dport=6081)
        / GENEVE(vni=99, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x80, data=b"\x00" * 4)])
        / IE / I4 / SYN,
        "geneve-ip": OE / O4 / UDP(sport=51000, dport=6081) / GENEVE(vni=100, proto=0x0800) / I4 / SYN,
        "gpe-ipv6": OE / O4 / UDP(sport=51000, dport=4790) / VXLAN(flags=0x0C, NextProtocol=2, vni=7) / I6 / SYN,
        "nested": OE / O4 / UDP(sport=51000, dport=4789) / _vxlan(4096) / IE
        / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=52000, dport=4789) / _vxlan(4097)
        / Ether(src="02:42:0b:00:00:03", dst="02:42:0b:00:00:04") / I6 / SYN,
        "esp-in-udp": OE / O4 / UDP(sport=4500, dport=4500) / ESP(spi=0xC0FFEE01, seq=3, data=b"\x11" * 48),
        "inner-ipv6-ext": OE / O4 / UDP(sport=51000, dport=4789) / _vxlan(5) / IE
        / IPv6(src="fd00:1::2", dst="fd00:1::20", nh=0) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=["fd00:1::99"]) / TCP(sport=1, dport=2, flags="A", seq=9) / b"data6",
        "snap-ip": Dot3(src="52:54:00:00:00:0a", dst="52:54:00:00:00:12") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
        / SNAP(OUI=0, code=0x0800) / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=5, dport=6) / b"x",
        "stp": Dot3(src="52:54:00:00:00:0a", dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP(),
    }


def _write(tmp_path: Path, name: str, frames: list[bytes]) -> Path:
    p = tmp_path / f"{name}.pcap"
    write_pcap(p, [(T0 + i * 1000, f) for i, f in enumerate(frames)])
    return p


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    tmp = tmp_path_factory.mktemp("tun")
    out = {}
    for name, pkt in _caps().items():
        p = _write(tmp, name, [bytes(pkt)])
        out[name] = (p, decode_file(p).iloc[0])
    return out


def test_vxlan_on_8472_and_geneve_decode_with_no_flag(decoded: dict) -> None:
    for name, vni in (("vxlan-8472", 1), ("geneve-eth", 99), ("geneve-ip", 100), ("vxlan-any-port", 42)):
        r = decoded[name][1]
        assert (r.decoded, r.problems, r.vni) == (0, 0, vni), name
        assert (r.inner_src, r.inner_dst, r.inner_sport, r.inner_dport, r.inner_proto) == (
            0x0A000002, 0x0A000014, 40001, 9090, 6), name
        assert r.tcp_mss == 1410 and r.tcp_seq == 1000
    assert decoded["geneve-eth"][1].tunnel == 3 and decoded["geneve-eth"][1].tunnel_proto == 0x6558
    assert decoded["geneve-ip"][1].inner_eth_src == 0 and decoded["geneve-ip"][1].inner_ethertype == 0x800


def test_nested_vxlan_gives_the_innermost_five_tuple(decoded: dict) -> None:
    r = decoded["nested"][1]
    assert (r.tunnel_depth, r.vni, r.vni_inner, r.decoded) == (2, 4096, 4097, 0)
    assert r.inner_ipver == 6
    assert bytes(r.inner_src6) == bytes.fromhex("fd000001" + "0" * 23 + "2")
    assert (r.inner_sport, r.inner_dport, r.inner_proto, r.inner_src) == (40001, 9090, 6, 0)
    assert r.inner_eth_src == 0x02420B000003


def test_esp_in_udp_gives_the_spi(decoded: dict) -> None:
    r = decoded["esp-in-udp"][1]
    assert r.esp_spi == 0xC0FFEE01 and r.outer_dport == 4500 and r.decoded == 0


def test_inner_ipv6_with_extension_headers(decoded: dict) -> None:
    r = decoded["inner-ipv6-ext"][1]
    assert (r.inner_ipver, r.inner_proto, r.inner_ttl, r.decoded) == (6, 6, 64, 1)
    assert (r.inner_sport, r.inner_dport, r.tcp_seq, r.payload_len) == (1, 2, 9, 5)
    r = decoded["gpe-ipv6"][1]
    assert (r.tunnel, r.vni, r.tunnel_proto, r.inner_ipver, r.inner_dport, r.decoded) == (2, 7, 2, 6, 9090, 0)


def test_llc_snap_and_plain_llc(decoded: dict) -> None:
    r = decoded["snap-ip"][1]
    assert (r.ethertype, r.outer_src, r.outer_dport, r.decoded) == (0x800, 0x01020304, 6, 0)
    r = decoded["stp"][1]
    assert r.ethertype == 0 and r.decoded == 2  # no length in ethertype; STP is not decoded


def test_every_shape_matches_tshark_and_the_exact_decoder(decoded: dict) -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required")
    for name, (p, _r) in decoded.items():
        df = decode_file(p)
        diffs, checks = compare_capture(df, p, name)
        assert not diffs, [str(d) for d in diffs]
        assert checks >= 3, name
        cap = open_capture(p)
        equal_tables(df, decode_buffer(cap, force_slow=True), skip=())


def test_fragmented_tunnel_datagram(tmp_path: Path) -> None:
    """The first fragment's fields cover only its own bytes; fragments pair up."""
    big = OE / IP(src="192.168.10.1", dst="192.168.10.2", id=555) / UDP(sport=51000, dport=4789) / _vxlan(9) \
        / IE / I4 / TCP(sport=40001, dport=9090, flags="PA", seq=5) / (b"z" * 1448)
    frames = [bytes(OE / f) for f in fragment(big[IP], fragsize=1400)]
    p = _write(tmp_path, "frag", frames)
    df = decode_file(p)
    first, later = df.iloc[0], df.iloc[1]
    assert first.problems & PROBLEM_BITS["frag_first"] and later.problems & PROBLEM_BITS["frag_later"]
    assert first.vni == 9 and first.inner_dport == 9090
    held = first.wirelen - 14 - 20 - 8 - 8 - 14 - 20 - 20
    assert first.payload_len == held < 1448  # not the inner header's claim
    assert later.tunnel == 0 and later.payload_len == -1 and later.outer_frag_off == 1400
    fr = fragments(df)
    assert len(fr) == 1 and fr["complete"].iloc[0] and fr["fragments"].iloc[0] == 2
    assert fr["size"].iloc[0] == len(bytes(big[IP])) - 20 and fr["first_row"].iloc[0] == 0
    assert problem_counts(df)["frag_first"] == 1 and problem_counts(df)["frag_later"] == 1
    diffs, _ = compare_capture(df, p)
    assert not diffs, [str(d) for d in diffs]
    equal_tables(df, decode_buffer(open_capture(p), force_slow=True), skip=())


def test_tunnel_ports_and_big_tcp(tmp_path: Path) -> None:
    frames = [bytes(pkt) for pkt in _caps().values()]
    # IPv6 with payload length 0 (BIG TCP as captured): the frame's end, flagged
    big6 = bytearray(bytes(OE / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, flags="A") / (b"b" * 100)))
    big6[18:20] = b"\x00\x00"
    frames.append(bytes(big6))
    df = decode_file(_write(tmp_path, "mix", frames))
    ports = tunnel_ports(df)
    assert ports["vxlan"] == {8472: 1, 7777: 1, 4789: 2} and ports["geneve"] == {6081: 2}
    assert ports["vxlan-gpe"] == {4790: 1}
    r = df.iloc[-1]
    assert r.payload_len == 100 and r.decoded == 0 and r.problems == PROBLEM_BITS["length_from_frame"]
