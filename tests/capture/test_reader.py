"""Capture readers and writers, checked against tshark/tcpdump/editcap on the same files."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpkt.capture import CaptureError, iter_records, open_capture, write_pcap, write_pcapng
from meshpkt.capture.reader import CaptureBuffer

T0 = 1_718_000_000_123_456_789


def _frames(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ln = int(rng.integers(14, 200))
        body = rng.integers(0, 256, ln, dtype=np.uint8).tobytes()
        # Ethernet with an unassigned EtherType so tshark does not dissect further
        out.append(bytes(6) + bytes([2, 0, 0, 0, 0, i % 256]) + b"\x88\xb5" + body[14:])
    return out


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split("|") for line in r.stdout.splitlines()]


def _check_same(cap: CaptureBuffer, ts: list[int], frames: list[bytes], wire: list[int] | None = None) -> None:
    assert len(cap) == len(frames)
    assert cap.ts_ns.tolist() == ts
    assert [cap.packet(i) for i in range(len(cap))] == frames
    assert cap.caplen.tolist() == [len(f) for f in frames]
    assert cap.wirelen.tolist() == (wire or [len(f) for f in frames])
    assert not cap.problems


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("nanosecond", [True, False])
@pytest.mark.parametrize("gz", [False, True])
def test_pcap_roundtrip_against_tshark(tmp_path: Path, byteorder: str, nanosecond: bool, gz: bool) -> None:
    frames = _frames(20)
    ts = [T0 + i * 1_000_003 for i in range(20)]
    if not nanosecond:
        ts = [t // 1000 * 1000 for t in ts]
    p = tmp_path / ("f.pcap.gz" if gz else "f.pcap")
    write_pcap(p, zip(ts, frames, strict=True), byteorder=byteorder, nanosecond=nanosecond)
    head = gzip.decompress(p.read_bytes())[:4] if gz else p.read_bytes()[:4]
    magic = (0xA1B23C4D if nanosecond else 0xA1B2C3D4)
    assert head == struct.pack("<I" if byteorder == "little" else ">I", magic)
    cap = open_capture(p)
    assert cap.format == "pcap" and cap.linktype.tolist() == [1] * 20
    _check_same(cap, ts, frames)
    # tshark reads gzip too: its epoch timestamps and lengths must match ours
    rows = _tshark(p, "frame.time_epoch", "frame.len", "frame.cap_len")
    assert [int(r[0].replace(".", "")) * (1 if nanosecond else 1) for r in rows] == \
        [t if nanosecond else t for t in [int(str(x)[:19]) for x in ts]]
    assert [int(r[1]) for r in rows] == [len(f) for f in frames]


def test_snaplen_truncation_kept(tmp_path: Path) -> None:
    frames = _frames(5, seed=3)
    p = tmp_path / "s.pcap"
    write_pcap(p, [(T0 + i, f) for i, f in enumerate(frames)], snaplen=40)
    cap = open_capture(p)
    assert cap.caplen.tolist() == [min(40, len(f)) for f in frames]
    assert cap.wirelen.tolist() == [len(f) for f in frames]
    assert [cap.packet(i) for i in range(5)] == [f[:40] for f in frames]
    r = subprocess.run(["tcpdump", "-nn", "-r", str(p)], capture_output=True, text=True)
    heads = [ln for ln in r.stdout.splitlines() if not ln.startswith("\t")]
    assert r.returncode == 0 and [int(h.split("length ")[1].rstrip(": ")) for h in heads] == [len(f) for f in frames]


def test_pcapng_from_editcap(tmp_path: Path) -> None:
    frames = _frames(30, seed=1)
    ts = [T0 + i * 7_777 for i in range(30)]
    src = tmp_path / "a.pcap"
    write_pcap(src, zip(ts, frames, strict=True))
    ng = tmp_path / "a.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(src), str(ng)], check=True, capture_output=True)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    cap = open_capture(ng)
    assert cap.format == "pcapng"
    _check_same(cap, ts, frames)
    assert cap.iface.tolist() == [0] * 30 and cap.iface_linktypes == [1]


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("tsresol", [9, 6])
def test_pcapng_interfaces_comments(tmp_path: Path, byteorder: str, tsresol: int) -> None:
    frames = _frames(12, seed=2)
    raw_ip = [bytes.fromhex("4500001c000100004001f6e00a0000010a000002") + bytes(8)] * 3
    ts = [T0 + i * 1_234_567 for i in range(15)]
    div = 10 ** (9 - tsresol)
    pk = [(i % 2, ts[i], f, f"c{i}" if i % 3 == 0 else None) for i, f in enumerate(frames)]
    pk += [(2, ts[12 + j], r, None) for j, r in enumerate(raw_ip)]
    p = tmp_path / "m.pcapng"
    write_pcapng(p, [("eth0", 1), ("veth1", 1), ("tun0", 101)], pk, byteorder=byteorder, tsresol=tsresol)
    cap = open_capture(p)
    assert cap.iface_names == ["eth0", "veth1", "tun0"]
    assert cap.iface_linktypes == [1, 1, 101]
    assert cap.iface.tolist() == [x[0] for x in pk]
    assert cap.linktype.tolist() == [1] * 12 + [101] * 3
    assert cap.ts_ns.tolist() == [t // div * div for t in ts]
    assert [cap.packet(i) for i in range(15)] == [x[2] for x in pk]
    rows = _tshark(p, "frame.interface_name", "frame.comment", "frame.time_epoch")
    assert [r[0] for r in rows] == [cap.iface_names[i] for i in cap.iface.tolist()]
    assert [r[1] for r in rows] == [x[3] or "" for x in pk]
    assert [int(r[2].replace(".", "").ljust(19, "0")) for r in rows] == cap.ts_ns.tolist()


def _shb(e: str = "<") -> bytes:
    body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return struct.pack(e + "II", 0x0A0D0D0A, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))


def _blk(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(e + "II", btype, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))


def test_pcapng_simple_and_obsolete_blocks_and_sections(tmp_path: Path) -> None:
    f1, f2, f3 = _frames(3, seed=9)
    data = _shb()
    data += _blk(1, struct.pack("<HHI", 1, 0, 0))                      # IDB, no options: usec
    data += _blk(3, struct.pack("<I", len(f1)) + f1)                    # SPB (no timestamp)
    t = 1_718_000_000_000_001                                          # usec
    data += _blk(2, struct.pack("<HHIIII", 0, 0, t >> 32, t & 0xFFFFFFFF, len(f2), len(f2)) + f2)  # OPB
    data += _blk(5, struct.pack("<III", 0, 0, 0))                       # ISB: skipped
    data += _shb(">")                                                  # second section, big-endian
    opt = struct.pack(">HH", 2, 4) + b"wan0" + struct.pack(">HH", 9, 1) + b"\x83\0\0\0" + bytes(4)
    data += _blk(1, struct.pack(">HHI", 101, 0, 0) + opt, ">")          # IDB raw IP, 2^-3 s resolution
    raw = bytes.fromhex("4500001c000100004001f6e00a0000010a000002") + bytes(8)
    tt = 17 * 8 + 3                                                    # 17.375 s
    data += _blk(6, struct.pack(">IIIII", 0, 0, tt, len(raw), len(raw)) + raw, ">")
    p = tmp_path / "x.pcapng"
    p.write_bytes(data)
    cap = open_capture(p)
    assert not cap.problems
    assert [cap.packet(i) for i in range(len(cap))] == [f1, f2, raw]
    assert cap.iface.tolist() == [0, 0, 1]
    assert cap.iface_names == ["", "wan0"]
    assert cap.linktype.tolist() == [1, 1, 101]
    assert cap.ts_ns.tolist() == [0, t * 1000, 17_375_000_000]
    assert f3  # unused frame keeps the helper honest


# ----------------------------------------------------------------------------- bad input


def _one_line(e: CaptureError) -> str:
    s = str(e)
    assert "\n" not in s and s
    return s


def test_missing_directory_empty_text_random(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "nope.pcap")
    assert "no such file" in _one_line(ei.value) and "nope.pcap" in str(ei.value)
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path)
    assert "directory" in _one_line(ei.value)
    (tmp_path / "empty.pcap").write_bytes(b"")
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "empty.pcap")
    assert "empty" in _one_line(ei.value)
    (tmp_path / "t.pcap").write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "t.pcap")
    assert "not a pcap or pcapng" in _one_line(ei.value) and "hell" in str(ei.value)
    (tmp_path / "r.pcap").write_bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "r.pcap")
    assert "not a pcap or pcapng" in _one_line(ei.value)
    (tmp_path / "g.pcap.gz").write_bytes(gzip.compress(b"just text inside gzip"))
    with pytest.raises(CaptureError):
        open_capture(tmp_path / "g.pcap.gz")
    (tmp_path / "short.pcap").write_bytes(struct.pack("<I", 0xA1B2C3D4) + b"\x02\x00")
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "short.pcap")
    assert "header truncated" in _one_line(ei.value)


def test_unknown_linktype(tmp_path: Path) -> None:
    p = tmp_path / "u.pcap"
    write_pcap(p, [(T0, b"\x00" * 30)], linktype=147)
    with pytest.raises(CaptureError) as ei:
        open_capture(p)
    assert "unsupported link type 147" in _one_line(ei.value)
    q = tmp_path / "u.pcapng"
    write_pcapng(q, [("a", 1), ("b", 127)], [(1, T0, b"\x00" * 30, None)])
    with pytest.raises(CaptureError):
        open_capture(q)
    # an unsupported interface that carries no packets does not matter
    write_pcapng(q, [("a", 1), ("b", 127)], [(0, T0, b"\x00" * 30, None)])
    assert len(open_capture(q)) == 1


def _good(tmp_path: Path, n: int = 10, name: str = "g.pcap") -> tuple[Path, list[bytes], list[int]]:
    frames = _frames(n, seed=4)
    ts = [T0 + i * 1000 for i in range(n)]
    p = tmp_path / name
    write_pcap(p, zip(ts, frames, strict=True))
    return p, frames, ts


def test_truncated_last_record(tmp_path: Path) -> None:
    p, frames, ts = _good(tmp_path)
    data = p.read_bytes()
    for cut in (5, 16 + 3, 10):  # inside the data, just after the header, inside the header
        q = tmp_path / f"cut{cut}.pcap"
        q.write_bytes(data[:-cut] if cut != 10 else data[: len(data) - len(frames[-1]) - 16 + 10])
        cap = open_capture(q)
        assert len(cap) == 9
        assert [cap.packet(i) for i in range(9)] == frames[:9]
        assert len(cap.problems) == 1
        pr = cap.problems[0]
        assert pr.record == 9 and "truncated last record" in pr.message
        assert pr.offset == len(data) - len(frames[-1]) - 16
        assert str(pr).startswith(str(q)) and "record 9" in str(pr)
    # tcpdump agrees that the first 9 are fine
    r = subprocess.run(["tcpdump", "-nn", "-r", str(tmp_path / "cut5.pcap")], capture_output=True, text=True)
    assert len([ln for ln in r.stdout.splitlines() if not ln.startswith("\t")]) == 9
    assert "truncated" in r.stderr


@pytest.mark.parametrize("garbage", [b"\xff" * 37, b"\x00" * 64, b"junk" * 9, bytes(range(256)) * 3])
def test_garbage_in_middle_resyncs(tmp_path: Path, garbage: bytes) -> None:
    p, frames, ts = _good(tmp_path, n=20)
    data = p.read_bytes()
    cut = 24 + sum(16 + len(f) for f in frames[:7])
    q = tmp_path / "mid.pcap"
    q.write_bytes(data[:cut] + garbage + data[cut:])
    cap = open_capture(q)
    assert [cap.packet(i) for i in range(len(cap))] == frames
    assert cap.ts_ns.tolist() == ts
    assert len(cap.problems) == 1
    assert cap.problems[0].offset == cut and cap.problems[0].record == 7
    assert f"skipped {len(garbage)} bytes" in cap.problems[0].message
    # garbage that overwrites a record header: that record is lost, the rest kept
    q.write_bytes(data[:cut] + b"\xee" * 10 + data[cut + 10:])
    cap = open_capture(q)
    assert [cap.packet(i) for i in range(len(cap))] == frames[:7] + frames[8:]
    # trailing garbage after the last record
    q.write_bytes(data + b"\x07" * 100)
    cap = open_capture(q)
    assert len(cap) == 20 and len(cap.problems) == 1


def test_pcapng_damage(tmp_path: Path) -> None:
    frames = _frames(10, seed=6)
    p = tmp_path / "d.pcapng"
    write_pcapng(p, [("eth0", 1)], [(0, T0 + i, f, None) for i, f in enumerate(frames)])
    data = p.read_bytes()
    # truncated last block
    q = tmp_path / "t.pcapng"
    q.write_bytes(data[:-7])
    cap = open_capture(q)
    assert [cap.packet(i) for i in range(len(cap))] == frames[:9]
    assert len(cap.problems) == 1 and "truncated" in cap.problems[0].message
    # garbage between blocks
    cap_full = open_capture(p)
    cut = int(cap_full.record_off[4])
    q.write_bytes(data[:cut] + b"\x13" * 30 + data[cut:])
    cap = open_capture(q)
    assert [cap.packet(i) for i in range(len(cap))] == frames
    assert len(cap.problems) == 1 and cap.problems[0].offset == cut


def test_truncated_gzip(tmp_path: Path) -> None:
    p, frames, ts = _good(tmp_path, n=200, name="z.pcap.gz")
    data = p.read_bytes()
    q = tmp_path / "zt.pcap.gz"
    q.write_bytes(data[: len(data) * 2 // 3])
    cap = open_capture(q)
    assert 0 < len(cap) < 200
    assert [cap.packet(i) for i in range(len(cap))] == frames[: len(cap)]
    assert any("gzip stream ends early" in pr.message for pr in cap.problems)


def test_iter_records_matches(tmp_path: Path) -> None:
    p, frames, ts = _good(tmp_path)
    recs = list(iter_records(p))
    assert recs == [(t, 1, 0, f) for t, f in zip(ts, frames, strict=True)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pk=st.lists(st.tuples(st.integers(0, 2**62), st.binary(min_size=1, max_size=300)), max_size=30),
       fmt=st.sampled_from(["pcap-le", "pcap-be-usec", "pcapng", "pcapng-be"]))
def test_roundtrip_property(tmp_path_factory: pytest.TempPathFactory, pk: list[tuple[int, bytes]], fmt: str) -> None:
    d = tmp_path_factory.mktemp("rt")
    p = d / "x"
    ts = [t % (2**32 * 10**9) for t, _ in pk]
    if fmt == "pcap-be-usec":
        ts = [t // 1000 * 1000 for t in ts]
    ts.sort()
    data = [b for _, b in pk]
    if fmt.startswith("pcap-"):
        write_pcap(p, zip(ts, data, strict=True), byteorder="big" if "be" in fmt else "little",
                   nanosecond="usec" not in fmt)
    else:
        write_pcapng(p, [("e", 1)], [(0, t, b, None) for t, b in zip(ts, data, strict=True)],
                     byteorder="big" if "be" in fmt else "little")
    cap = open_capture(p)
    assert cap.ts_ns.tolist() == ts
    assert [cap.packet(i) for i in range(len(cap))] == data
    assert not cap.problems
    os.unlink(p)


def test_pcapng_timestamp_that_does_not_fit_is_flagged(tmp_path: Path) -> None:
    """A timestamp beyond int64 nanoseconds is absent and flagged, never a silent 0."""
    from meshpkt.capture import write_pcapng
    from meshpkt.capture.reader import TS_OK, TS_RANGE
    from meshpkt.decode.api import decode_buffer
    from meshpkt.decode.schema import PRESENT_BITS, PROBLEM_BITS

    frame = bytes(12) + b"\x08\x06" + bytes(28)
    p = tmp_path / "ts.pcapng"
    ok_ns = 1_718_000_000 * 10**9
    write_pcapng(p, [("eth0", 1)], [(0, ok_ns, frame, None), (0, 10**10 * 10**9, frame, None),
                                    (0, 2**63 * 10**9, frame, None)], tsresol=0)
    cap = open_capture(p)
    assert cap.ts_flags is not None and cap.ts_flags.tolist() == [TS_OK, TS_RANGE, TS_RANGE]
    df = decode_buffer(cap)
    assert df["ts_ns"].tolist() == [ok_ns, 0, 0]
    assert ((df["present"] & PRESENT_BITS["ts_ns"]) != 0).tolist() == [True, False, False]
    assert ((df["problems"] & PROBLEM_BITS["ts_range"]) != 0).tolist() == [False, True, True]
