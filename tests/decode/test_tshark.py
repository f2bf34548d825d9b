"""The decoder against tshark, field by field, on crafted captures of every supported shape."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from decode_helpers import T0, equal_tables, frames_bytes, l3_bytes, packet_set, sll, sll2

from meshpkt.capture import open_capture, write_pcap, write_pcapng
from meshpkt.decode import decode_file
from meshpkt.decode.api import decode_buffer
from meshpkt.decode.schema import COLUMN_NAMES, COLUMNS, PRESENT_BITS, PROBLEM_BITS

Check = Callable[..., int]


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return frames_bytes(packet_set())


def _write(path: Path, frames: list[bytes], **kw: object) -> Path:
    write_pcap(path, [(T0 + i * 1_000_003, f) for i, f in enumerate(frames)], **kw)  # type: ignore[arg-type]
    return path


def test_schema_dtypes_and_order(tmp_path: Path, frames: list[bytes]) -> None:
    df = decode_file(_write(tmp_path / "node1.ingress_sbox.eth0.pcap", frames))
    assert tuple(df.columns) == COLUMN_NAMES
    for name, (dtype, _, _) in COLUMNS.items():
        assert str(df[name].dtype) == dtype, name
    assert df["point"].cat.categories.tolist() == ["node1.ingress_sbox.eth0"]
    assert df["record"].tolist() == list(range(len(frames)))


def test_vxlan_capture_matches_tshark(tmp_path: Path, frames: list[bytes], tshark_check: Check) -> None:
    p = _write(tmp_path / "set.pcap", frames)
    df = decode_file(p)
    assert tshark_check(df, p) > 500
    df2 = decode_file(p, vxlan_ports=(4789, 4790))
    assert tshark_check(df2, p, (4789, 4790)) > 500
    # port 4790 without the GPE P bit: VXLAN found by its header, with or without the hint
    assert df["vni"].iloc[-1] == 4097 and df2["vni"].iloc[-1] == 4097 and df["inner_dport"].iloc[-1] == 9090
    assert df["tunnel"].iloc[-1] == 1
    # option / extension-header chains (1), and what is not decodable (2)
    dec = df["decoded"].tolist()
    assert dec[6] == 1 and dec[16] == 1 and dec[17] == 1 and dec[18] == 1 and dec[19] == 1  # options, v6 ext
    assert dec[5] == 2 and dec[22] == 2 and dec[24] == 2  # ARP inside/outside, inner frame cut short
    assert dec.count(0) == len(dec) - 8
    # a few values spelled out
    r = df.iloc[0]
    assert (r.vni, r.vxlan_flags, r.outer_dport, r.inner_sport, r.inner_dport) == (4096, 8, 4789, 60559, 9090)
    assert (r.tcp_mss, r.tcp_wscale, r.tcp_tsval, r.tcp_tsecr, r.tcp_flags) == (1410, 7, 123456, 0, 2)
    assert r.ip_id == 4321 and r.outer_ip_id == 777 and r.payload_len == 0 and r.payload_hash == 0
    r = df.iloc[1]
    assert r.tcp_seq == 2**32 - 5 and r.payload_len == 80 and r.payload_hash != 0
    r = df.iloc[15]
    assert r.esp_spi == 0xDEADBEEF and r.outer_proto == 50 and r.payload_len == 40
    r = df.iloc[20]
    assert r.outer_frag and r.outer_sport == 7
    r = df.iloc[21]
    assert r.outer_frag and r.outer_sport == -1 and r.payload_len == -1
    r = df.iloc[23]
    assert r.vxlan_flags == 0 and r.vni == -1 and r.inner_src == 0 and r.payload_len > 0
    r = df.iloc[24]
    assert r.vni == 7 and r.inner_ethertype == 0 and r.inner_src == 0


def test_fast_path_equals_exact_path(tmp_path: Path, frames: list[bytes]) -> None:
    cap = open_capture(_write(tmp_path / "set.pcap", frames))
    for ports in ((4789,), (4789, 4790), ()):
        a = decode_buffer(cap, vxlan_ports=ports)
        b = decode_buffer(cap, vxlan_ports=ports, force_slow=True)
        equal_tables(a, b)
        assert (a["decoded"] == b["decoded"]).all()


@pytest.mark.parametrize("snaplen", [20, 40, 54, 62, 70, 80, 96, 110, 130])
def test_snaplen_truncated(tmp_path: Path, frames: list[bytes], snaplen: int, tshark_check: Check) -> None:
    p = _write(tmp_path / f"s{snaplen}.pcap", frames, snaplen=snaplen)
    df = decode_file(p)
    short = np.array([len(f) > snaplen for f in frames])
    assert (df["truncated"].to_numpy()[short]).all()
    assert (df["caplen"] <= snaplen).all()
    tshark_check(df, p)
    equal_tables(df, decode_buffer(open_capture(p), force_slow=True))
    # fields that lie inside the captured bytes are kept
    full = decode_file(_write(tmp_path / "full.pcap", frames))
    if snaplen >= 14:
        assert (df["eth_src"] == full["eth_src"]).all()
    if snaplen >= 34:
        m = full["outer_ipver"] == 4
        assert (df["outer_src"][m] == full["outer_src"][m]).all()
    got = df["vni"] >= 0
    assert (df["vni"][got] == full["vni"][got]).all()
    if snaplen >= 49:  # untagged Ethernet + IPv4 + UDP + VXLAN up to the VNI
        m = (full["vlan"] == -1) & (full["outer_ipver"] == 4) & (full["vni"] >= 0) & (full["decoded"] == 0)
        m &= full["outer_dport"].isin([4789, 8472])  # elsewhere VXLAN is recognised by its inner frame
        assert (df["vni"][m] == full["vni"][m]).all()


@pytest.mark.parametrize("variant", ["pcapng", "gzip", "pcapng-gzip", "big-endian-usec"])
def test_formats_decode_the_same(tmp_path: Path, frames: list[bytes], variant: str, tshark_check: Check) -> None:
    base = _write(tmp_path / "set.pcap", frames)
    ref = decode_file(base)
    if variant.startswith("pcapng"):
        if shutil.which("editcap") is None:
            pytest.fail("editcap is required (installed by sh .ci/setup test)")
        p = tmp_path / "set.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(base), str(p)], check=True, capture_output=True)
        if variant.endswith("gzip"):
            q = tmp_path / "set.pcapng.gz"
            q.write_bytes(gzip.compress(p.read_bytes()))
            p = q
    elif variant == "gzip":
        p = tmp_path / "set.pcap.gz"
        p.write_bytes(gzip.compress(base.read_bytes()))
    else:
        p = _write(tmp_path / "set.be.pcap", frames, byteorder="big", nanosecond=False)
        ref = ref.assign(ts_ns=ref["ts_ns"] // 1000 * 1000)
    df = decode_file(p, point="set")
    equal_tables(df, ref.assign(point=pd.Categorical(["set"] * len(ref))))
    assert df["point"].cat.categories.tolist() == ["set"]
    tshark_check(df, p)


def _other_linktypes(frames: list[bytes]) -> dict[int, list[bytes]]:
    l3 = [(et, b) for et, b in l3_bytes(frames) if et in (0x800, 0x86DD)]
    fam_le = {0x800: struct.pack("<I", 2), 0x86DD: struct.pack("<I", 30)}
    fam_be = {0x800: struct.pack(">I", 2), 0x86DD: struct.pack(">I", 24)}
    return {
        113: [sll(et, b) for et, b in l3],
        276: [sll2(et, b) for et, b in l3],
        101: [b for _, b in l3],
        0: [fam_le[et] + b for et, b in l3],
        108: [fam_be[et] + b for et, b in l3],
        228: [b for et, b in l3 if et == 0x800],
        229: [b for et, b in l3 if et == 0x86DD],
    }


L3_COLS = [c for c in COLUMN_NAMES if c not in ("point", "record", "ts_ns", "caplen", "wirelen", "linktype",
                                                "eth_src", "eth_dst", "vlan", "vlan2", "truncated", "present")]
L2_BITS = PRESENT_BITS["eth_src"] | PRESENT_BITS["eth_dst"]


@pytest.mark.parametrize("linktype", [113, 276, 101, 0, 108, 228, 229])
def test_linktypes(tmp_path: Path, frames: list[bytes], linktype: int, tshark_check: Check) -> None:
    pk = _other_linktypes(frames)[linktype]
    p = _write(tmp_path / f"lt{linktype}.pcap", pk, linktype=linktype)
    df = decode_file(p)
    assert (df["linktype"] == linktype).all()
    tshark_check(df, p)
    equal_tables(df, decode_buffer(open_capture(p), force_slow=True))
    # the same L3 packets carried in Ethernet decode to the same L3+ columns
    l3 = [(et, b) for et, b in l3_bytes(frames) if et in (0x800, 0x86DD)]
    if linktype == 228:
        l3 = [x for x in l3 if x[0] == 0x800]
    elif linktype == 229:
        l3 = [x for x in l3 if x[0] == 0x86DD]
    eth = [b"\x52\x54\x00\x12\x34\x12\x52\x54\x00\x12\x34\x0a" + struct.pack(">H", et) + b for et, b in l3]
    ref = decode_file(_write(tmp_path / "eth.pcap", eth))
    equal_tables(df[L3_COLS], ref[L3_COLS])
    assert ((df["present"] & (0xFFFF ^ L2_BITS)) == (ref["present"] & (0xFFFF ^ L2_BITS))).all()
    if linktype in (113, 276):
        assert (df["eth_src"] == 0x52540012340A).all() and (df["eth_dst"] == 0).all()


def test_sll_vlan_and_pcapng_mixed_linktypes(tmp_path: Path, frames: list[bytes], tshark_check: Check) -> None:
    l3 = l3_bytes(frames)
    et, b = l3[0]
    tagged_sll = struct.pack(">HHH", 4, 1, 6) + b"\x52\x54\x00\x12\x34\x0a\0\0" + b"\x81\x00" \
        + struct.pack(">HH", 0x2064, et) + b
    tagged_sll2 = struct.pack(">HHIHBB", 0x8100, 0, 3, 1, 4, 6) + b"\x52\x54\x00\x12\x34\x0a\0\0" \
        + struct.pack(">HH", 0x0064, et) + b
    p = tmp_path / "mixed.pcapng"
    write_pcapng(p, [("eth0", 1), ("any", 113), ("any2", 276), ("tun0", 101)],
                 [(0, T0, frames[0], None), (1, T0 + 1, tagged_sll, "sll with a VLAN"),
                  (2, T0 + 2, tagged_sll2, None), (3, T0 + 3, b, None)])
    df = decode_file(p)
    assert df["point"].tolist() == ["eth0", "any", "any2", "tun0"]
    assert df["vlan"].tolist() == [-1, 100, 100, -1]
    assert df["vni"].tolist() == [4096] * 4 and df["inner_dport"].tolist() == [9090] * 4
    tshark_check(df, p)
    df2 = decode_file(p, point="node1")
    assert df2["point"].tolist() == ["node1.eth0", "node1.any", "node1.any2", "node1.tun0"]


def test_inner_frame_garbage_never_raises(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    base = Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=4789)
    rng = np.random.default_rng(11)
    pk = [bytes(base / VXLAN(vni=9) / rng.integers(0, 256, n, dtype=np.uint8).tobytes()) for n in range(0, 80, 3)]
    pk += [bytes(base / VXLAN(flags=0x08, vni=9) / (b"\x00" * 12 + b"\x08\x00" + b"\x4f" + bytes(30)))]
    p = _write(tmp_path / "g.pcap", pk)
    df = decode_file(p)
    assert (df["vni"] == 9).all() and (df["outer_src"] == 0x01020304).all()
    equal_tables(df, decode_buffer(open_capture(p), force_slow=True))
    # inner IPv4 claiming 60 header bytes where 31 are: cut short, not decoded
    assert df["decoded"].iloc[-1] == 2 and df["problems"].iloc[-1] & PROBLEM_BITS["header_cut"]
