"""Helpers for the decoder tests: packets built with scapy, table equality (tshark: tshark_compare.py).

Imported by the test modules as ``decode_helpers`` (the directory is put on sys.path)."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

T0 = 1_718_000_000_000_000_007
SYN_OPTS = [("MSS", 1410), ("SAckOK", b""), ("Timestamp", (123456, 0)), ("NOP", None), ("WScale", 7)]
TS_OPTS = [("NOP", None), ("NOP", None), ("Timestamp", (4000000001, 77))]

MAC_A, MAC_B = "02:42:0a:00:00:02", "02:42:0a:00:00:14"
U_A, U_B = "52:54:00:12:34:0a", "52:54:00:12:34:12"


def inner_frames() -> list[Packet]:
    """Inner (VXLAN-carried) Ethernet frames of several shapes."""
    e = Ether(src=MAC_A, dst=MAC_B)
    ip = IP(src="10.0.0.2", dst="10.0.0.20", id=4321, ttl=63, flags="DF")
    return [
        e / ip / TCP(sport=60559, dport=9090, flags="S", seq=1000, window=64860, options=SYN_OPTS),
        e / ip / TCP(sport=60559, dport=9090, flags="PA", seq=2**32 - 5, ack=99, window=502,
                     options=TS_OPTS) / (b"GET / HTTP/1.1\r\n" * 5),
        e / ip / UDP(sport=53000, dport=53) / Raw(b"\x12\x34" + bytes(30)),
        e / ip / ICMP(type=8, code=0, id=7, seq=9) / b"ping-payload",
        Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=42) / ip / TCP(sport=1, dport=2, flags="A", seq=5, ack=6),
        e / ARP(psrc="10.0.0.2", pdst="10.0.0.20"),
        e / IP(src="10.0.0.3", dst="10.0.0.21", id=55, options=[IPOption_RR(routers=["1.1.1.1"])])
        / TCP(sport=3, dport=4, flags="FA", seq=7, ack=8) / b"bye",
    ]


def _vx(outer: Packet, inner: Packet, port: int = 4789, flags: int = 0x08, vni: int = 4096) -> Packet:
    return outer / UDP(sport=45803, dport=port) / VXLAN(flags=flags, vni=vni) / inner


def packet_set() -> list[Packet]:
    """Frames (Ethernet link type) covering the decoder's shapes, incl. slow-path ones."""
    oe = Ether(src=U_A, dst=U_B)
    o4 = IP(src="10.211.55.10", dst="10.211.55.18", ttl=64, id=777)
    o6 = IPv6(src="fd00::a", dst="fd00::12", hlim=60)
    inn = inner_frames()
    pk: list[Packet] = [_vx(oe / o4, f, vni=4096 + i) for i, f in enumerate(inn)]
    pk += [
        _vx(oe / Dot1Q(vlan=100) / o4, inn[0]),
        _vx(Ether(src=U_A, dst=U_B, type=0x88A8) / Dot1AD(vlan=200) / Dot1Q(vlan=300) / o4, inn[1]),
        _vx(oe / o6, inn[0], vni=5000),
        oe / IP(src="192.168.1.1", dst="192.168.1.2", id=1) / TCP(sport=443, dport=51000, flags="SA",
                                                                    options=SYN_OPTS),
        oe / IP(src="192.168.1.1", dst="192.168.1.2", id=2) / UDP(sport=7946, dport=7946) / (b"gossip" * 3),
        oe / IP(src="192.168.1.1", dst="192.168.1.2", id=3) / ICMP() / (b"x" * 20),
        oe / o6 / TCP(sport=80, dport=40000, flags="A", seq=10, ack=20, options=TS_OPTS) / b"v6data",
        oe / o6 / ICMPv6EchoRequest(id=1, seq=2, data=b"hi6"),
        oe / IP(src="10.211.55.10", dst="10.211.55.18", proto=50) / ESP(spi=0xDEADBEEF, seq=5, data=b"\x01" * 40),
        _vx(oe / IP(src="10.211.55.10", dst="10.211.55.18", options=[IPOption_RR(routers=["2.2.2.2"])]), inn[1]),
        _vx(oe / IPv6(src="fd00::a", dst="fd00::12") / IPv6ExtHdrHopByHop(), inn[0]),
        oe / IPv6(src="fd00::a", dst="fd00::12") / IPv6ExtHdrFragment(offset=0, m=1, id=9)
        / TCP(sport=5, dport=6, seq=1) / b"frag0",
        oe / IPv6(src="fd00::a", dst="fd00::12") / IPv6ExtHdrFragment(offset=2, m=0, id=9, nh=6) / b"frag-rest",
        oe / IP(src="1.1.1.1", dst="2.2.2.2", flags="MF", frag=0, proto=6) / TCP(sport=7, dport=8) / (b"a" * 16),
        oe / IP(src="1.1.1.1", dst="2.2.2.2", frag=5, proto=6) / (b"b" * 24),
        oe / ARP(psrc="10.211.55.10", pdst="10.211.55.18"),
        _vx(oe / o4, inn[0], flags=0x00),                                   # I flag clear: not VXLAN
        oe / o4 / UDP(sport=45803, dport=4789) / VXLAN(vni=7) / b"\x02\x42",  # inner too short
        _vx(oe / o4, inn[1], port=4790, vni=4097),                          # only with vxlan_ports 4790
    ]
    return pk


def frames_bytes(pk: list[Packet]) -> list[bytes]:
    return [bytes(p) for p in pk]


def l3_bytes(frames: list[bytes]) -> list[tuple[int, bytes]]:
    """(EtherType, L3 bytes) of Ethernet frames (tags stripped)."""
    out = []
    for f in frames:
        et = struct.unpack(">H", f[12:14])[0]
        pos = 14
        while et in (0x8100, 0x88A8):
            et = struct.unpack(">H", f[pos + 2:pos + 4])[0]
            pos += 4
        out.append((et, f[pos:]))
    return out


def sll(et: int, l3: bytes, mac: bytes = b"\x52\x54\x00\x12\x34\x0a") -> bytes:
    return struct.pack(">HHH", 0, 1, 6) + mac + b"\0\0" + struct.pack(">H", et) + l3


def sll2(et: int, l3: bytes, mac: bytes = b"\x52\x54\x00\x12\x34\x0a") -> bytes:
    return struct.pack(">HHIHBB", et, 0, 3, 1, 4, 6) + mac + b"\0\0" + l3


def equal_tables(a: pd.DataFrame, b: pd.DataFrame, skip: tuple[str, ...] = ("decoded",)) -> None:
    """Assert two packet tables hold the same values (object columns compared elementwise)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        if col in skip:
            continue
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype == object:
            diff = np.array([u != v for u, v in zip(x, y, strict=True)], dtype=bool)
        else:
            diff = x != y
        if diff.any():
            k = int(np.nonzero(diff)[0][0])
            raise AssertionError(f"column {col} differs at row {k}: {x[k]!r} != {y[k]!r}")
