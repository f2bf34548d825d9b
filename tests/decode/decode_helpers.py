"""Helpers for the decoder tests: packets built with scapy, a tshark field-by-field comparison.

Imported by the test modules as ``decode_helpers`` (the directory is put on sys.path)."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

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


# --------------------------------------------------------------------------------- tshark

FIELDS = ["frame.time_epoch", "frame.len", "frame.cap_len", "eth.src", "eth.dst", "sll.src.eth", "ieee8021ad.id", "vlan.id",
          "ip.src", "ip.dst", "ip.id", "ip.ttl", "ip.proto", "ip.flags.df", "ipv6.src", "ipv6.dst", "ipv6.hlim",
          "udp.srcport", "udp.dstport", "vxlan.flags", "vxlan.vni", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
          "tcp.ack_raw", "tcp.flags", "tcp.window_size_value", "tcp.options.mss_val",
          "tcp.options.wscale.shift", "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.len",
          "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code", "esp.spi"]


def tshark_rows(path: Path, decode_as: list[str] | None = None) -> list[dict[str, list[str]]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for d in decode_as or []:
        cmd += ["-d", d]
    for f in FIELDS:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = []
    for line in r.stdout.splitlines():
        vals = line.split("|")
        rows.append({f: [x for x in v.split(",") if x] for f, v in zip(FIELDS, vals, strict=True)})
    return rows


def _ip4(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


def _num(s: str) -> int:
    return int(s, 0)


def compare_with_tshark(df: pd.DataFrame, rows: list[dict[str, list[str]]],
                        ports: tuple[int, ...] = (4789,)) -> int:
    """Field-by-field comparison; returns the number of checks made. Raises AssertionError
    naming the row and field on the first mismatch."""
    import ipaddress

    assert len(df) == len(rows)
    checks = 0

    def eq(i: int, name: str, ours: object, theirs: object) -> None:
        nonlocal checks
        checks += 1
        assert ours == theirs, f"row {i} {name}: meshpkt {ours!r} != tshark {theirs!r}"

    for i, (r, row) in enumerate(zip(df.itertuples(index=False), rows, strict=True)):
        eq(i, "ts_ns", r.ts_ns, int(row["frame.time_epoch"][0].replace(".", "").ljust(19, "0")))
        eq(i, "wirelen", r.wirelen, int(row["frame.len"][0]))
        eq(i, "caplen", r.caplen, int(row["frame.cap_len"][0]))
        complete = r.caplen == r.wirelen and not r.truncated
        vx = r.vxlan_flags >= 0 and bool(r.vxlan_flags & 0x08)
        inner4 = r.inner_src != 0 or r.inner_dst != 0
        # Ethernet / cooked source
        es = [_mac(x) for x in row["eth.src"]]
        if r.linktype == 1 and es:
            eq(i, "eth_src", r.eth_src, es[0])
            eq(i, "eth_dst", r.eth_dst, _mac(row["eth.dst"][0]))
        elif r.linktype in (113, 276) and row["sll.src.eth"]:
            eq(i, "eth_src(sll)", r.eth_src, _mac(row["sll.src.eth"][0]))
        k_eth = int(r.linktype == 1)
        if vx and r.inner_eth_src and len(es) > k_eth:
            eq(i, "inner_eth_src", r.inner_eth_src, es[k_eth])
        if vx and r.inner_eth_dst and len(row["eth.dst"]) > k_eth:
            eq(i, "inner_eth_dst", r.inner_eth_dst, _mac(row["eth.dst"][k_eth]))
        eq(i, "vlans", [v for v in (r.vlan, r.vlan2, r.inner_vlan) if v >= 0],
           [int(x) for x in row["ieee8021ad.id"] + row["vlan.id"]])
        # IPv4 layers in order: outer (if IPv4) then inner
        def at(f: str, k: int, row: dict[str, list[str]] = row) -> str | None:
            return row[f][k] if len(row[f]) > k else None

        def cmp(name: str, ours: object, f: str, k: int, conv: Callable[[str], object],
                i: int = i, complete: bool = complete, row: dict[str, list[str]] = row) -> None:
            v = row[f][k] if len(row[f]) > k else None
            if v is not None:
                eq(i, name, ours, conv(v))
            elif complete:
                raise AssertionError(f"row {i} {name}: tshark has no {f}[{k}]")

        n_ip = int(r.outer_ipver == 4) + int(vx and inner4)
        if complete and not (r.vxlan_flags >= 0 and not r.vxlan_flags & 0x08):
            # (meshpkt requires the I flag for VXLAN; tshark dissects the inner frame anyway)
            eq(i, "ip count", n_ip, len(row["ip.src"]))
        if r.outer_ipver == 4 and row["ip.src"]:
            cmp("outer_src", r.outer_src, "ip.src", 0, _ip4)
            cmp("outer_dst", r.outer_dst, "ip.dst", 0, _ip4)
            cmp("outer_ip_id", r.outer_ip_id, "ip.id", 0, _num)
            cmp("outer_ttl", r.outer_ttl, "ip.ttl", 0, int)
            cmp("outer_proto", r.outer_proto, "ip.proto", 0, int)
            cmp("outer_df", r.outer_df, "ip.flags.df", 0, lambda x: x in ("1", "True"))
            if not vx:
                cmp("ip_id(outer)", r.ip_id, "ip.id", 0, _num)
        k_in = int(r.outer_ipver == 4)
        if vx and inner4 and at("ip.src", k_in) is not None:
            cmp("inner_src", r.inner_src, "ip.src", k_in, _ip4)
            cmp("inner_dst", r.inner_dst, "ip.dst", k_in, _ip4)
            cmp("ip_id(inner)", r.ip_id, "ip.id", k_in, _num)
            cmp("inner_ttl", r.inner_ttl, "ip.ttl", k_in, int)
            cmp("inner_proto", r.inner_proto, "ip.proto", k_in, int)
        if r.outer_ipver == 6 and row["ipv6.src"]:
            cmp("outer_src6", r.outer_src6, "ipv6.src", 0, lambda x: ipaddress.IPv6Address(x).packed)
            cmp("outer_dst6", r.outer_dst6, "ipv6.dst", 0, lambda x: ipaddress.IPv6Address(x).packed)
            cmp("outer_ttl(hlim)", r.outer_ttl, "ipv6.hlim", 0, int)
        # UDP: outer first, inner last
        us = [int(x) for x in row["udp.srcport"]]
        if r.outer_proto == 17 and us:
            eq(i, "outer_sport", r.outer_sport, us[0])
            eq(i, "outer_dport", r.outer_dport, int(row["udp.dstport"][0]))
        if row["vxlan.flags"] and r.outer_sport not in ports and r.outer_dport not in ports:
            continue  # tshark's own port table (4790 = VXLAN-GPE), not ours
        if row["vxlan.flags"]:
            eq(i, "vxlan_flags", r.vxlan_flags, _num(row["vxlan.flags"][0]) >> 8)
            if r.vxlan_flags & 0x08 and row["vxlan.vni"]:
                eq(i, "vni", r.vni, int(row["vxlan.vni"][0]))
        elif complete:
            eq(i, "vxlan_flags absent", r.vxlan_flags, -1)
        if vx and r.inner_proto == 17 and len(us) > 1:
            eq(i, "inner_sport(udp)", r.inner_sport, us[1])
        if r.vxlan_flags >= 0 and not r.vxlan_flags & 0x08:
            continue  # tshark dissects an inner frame meshpkt deliberately does not
        # TCP (one layer: inner for VXLAN, else outer)
        if row["tcp.srcport"]:
            sp, dp = int(row["tcp.srcport"][0]), int(row["tcp.dstport"][0])
            if vx:
                eq(i, "inner_sport", r.inner_sport, sp)
                eq(i, "inner_dport", r.inner_dport, dp)
            else:
                eq(i, "outer_sport(tcp)", r.outer_sport, sp)
                eq(i, "outer_dport(tcp)", r.outer_dport, dp)
        elif complete:
            eq(i, "no tcp", r.tcp_seq, -1)
        pairs = [("tcp_seq", "tcp.seq_raw"), ("tcp_ack", "tcp.ack_raw"), ("tcp_flags", "tcp.flags"),
                 ("tcp_win", "tcp.window_size_value"), ("tcp_mss", "tcp.options.mss_val"),
                 ("tcp_wscale", "tcp.options.wscale.shift"), ("tcp_tsval", "tcp.options.timestamp.tsval"),
                 ("tcp_tsecr", "tcp.options.timestamp.tsecr"), ("icmp_type", "icmp.type"),
                 ("icmp_code", "icmp.code"), ("esp_spi", "esp.spi")]
        if r.outer_ipver == 6 and not vx:
            pairs += [("icmp_type", "icmpv6.type"), ("icmp_code", "icmpv6.code")]
        for col, f in pairs:
            if f.startswith("icmp.") and vx is False and r.outer_ipver == 6:
                continue
            if row[f]:
                eq(i, col, getattr(r, col), _num(row[f][-1]))
            elif complete and not (f.startswith("icmp") and r.icmp_type >= 0):
                eq(i, col + " absent", getattr(r, col), -1)
        if row["tcp.len"]:
            eq(i, "payload_len(tcp)", r.payload_len, int(row["tcp.len"][0]))
    return checks


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
