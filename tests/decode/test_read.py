"""``read`` / ``decode_file``: several captures, point naming, progress, problems; address helpers."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from decode_helpers import T0, frames_bytes, packet_set

from meshpkt.capture import CaptureError, CaptureProblem, write_pcap, write_pcapng
from meshpkt.decode import decode_file, empty_table, read
from meshpkt.decode.addr import ip4_int, ip4_str, ip6_bytes, ip6_str, ip6_strs, mac_int, mac_str
from meshpkt.decode.api import capture_stem
from meshpkt.decode.schema import COLUMN_NAMES
from meshpkt.errors import UsageError


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return frames_bytes(packet_set())


def _w(path: Path, frames: list[bytes], t0: int = T0) -> Path:
    write_pcap(path, [(t0 + i, f) for i, f in enumerate(frames)])
    return path


def test_capture_stem() -> None:
    assert capture_stem("/x/node1.ingress_sbox.eth0.pcap") == "node1.ingress_sbox.eth0"
    assert capture_stem("a.b.pcapng.gz") == "a.b"
    assert capture_stem("c.pcap.gz") == "c"
    assert capture_stem("noext") == "noext"


def test_read_directory_tuples_and_categories(tmp_path: Path, frames: list[bytes]) -> None:
    d = tmp_path / "caps"
    d.mkdir()
    _w(d / "node2.eth0.pcap", frames[:5])
    p1 = _w(tmp_path / "x.pcap", frames[:3])
    gz = d / "node1.eth0.pcap.gz"
    gz.write_bytes(gzip.compress(_w(tmp_path / "tmp.pcap", frames[:4]).read_bytes()))
    (d / "notes.txt").write_text("not a capture and not matched")
    seen: list[tuple[int, int]] = []
    df = read([d, ("client", p1)], progress=lambda a, b: seen.append((a, b)))
    assert len(df) == 12
    assert df["point"].dtype == "category"
    assert df["point"].tolist() == ["node1.eth0"] * 4 + ["node2.eth0"] * 5 + ["client"] * 3
    assert df["point"].cat.categories.tolist() == ["node1.eth0", "node2.eth0", "client"]
    assert df["record"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]
    assert tuple(df.columns) == COLUMN_NAMES
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1]
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False))
    # a single path (str) works too
    assert len(read(str(p1))) == 3


def test_read_problems_list_and_raise(tmp_path: Path, frames: list[bytes]) -> None:
    good = _w(tmp_path / "good.pcap", frames[:4])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good.read_bytes()[:-5])
    text = tmp_path / "text.pcap"
    text.write_text("hello\n")
    probs: list[CaptureProblem] = []
    df = read([good, text, cut, tmp_path / "missing.pcap"], problems=probs)
    assert len(df) == 4 + 3
    fatal = [p for p in probs if p.fatal]
    assert [Path(p.path).name for p in fatal] == ["text.pcap", "missing.pcap"]
    damage = [p for p in probs if not p.fatal]
    assert len(damage) == 1 and damage[0].record == 3 and "truncated last record" in damage[0].message
    assert df.attrs["problems"] == damage
    with pytest.raises(CaptureError) as ei:
        read([good, text])
    assert "text.pcap" in str(ei.value) and "\n" not in str(ei.value)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert len(read([cut])) == 3
    assert any("truncated last record" in str(x.message) for x in w)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CaptureError) as ei:
        read([tmp_path / "empty_dir"])
    assert "no capture files" in str(ei.value)


def test_empty_table_and_no_files() -> None:
    df = empty_table()
    assert tuple(df.columns) == COLUMN_NAMES and len(df) == 0
    assert len(read([])) == 0


def test_pcapng_interface_points(tmp_path: Path, frames: list[bytes]) -> None:
    p = tmp_path / "node3.pcapng"
    write_pcapng(p, [("eth0", 1), ("", 1)], [(i % 2, T0 + i, f, None) for i, f in enumerate(frames[:6])])
    assert decode_file(p)["point"].tolist() == ["eth0", "node3.if1"] * 3
    assert decode_file(p, point="n3")["point"].tolist() == ["n3.eth0", "n3.if1"] * 3
    q = tmp_path / "single.pcapng"
    write_pcapng(q, [("eth0", 1)], [(0, T0, frames[0], None)])
    assert decode_file(q)["point"].tolist() == ["single"]
    assert decode_file(q, point="P")["point"].tolist() == ["P"]


def test_vxlan_ports_validation(tmp_path: Path, frames: list[bytes]) -> None:
    p = _w(tmp_path / "v.pcap", frames[:2])
    with pytest.raises(UsageError):
        decode_file(p, vxlan_ports=(70000,))
    # 4789 and 8472 are VXLAN whatever the hints say
    assert decode_file(p, vxlan_ports=())["vni"].tolist() == [4096, 4097]


def test_addr_helpers() -> None:
    a = np.array([0, ip4_int("10.0.0.2"), ip4_int("255.255.255.255"), ip4_int("10.0.0.2")], dtype=np.uint32)
    assert ip4_str(a).tolist() == ["", "10.0.0.2", "255.255.255.255", "10.0.0.2"]
    assert ip4_str(pd.Series(a)).tolist() == ip4_str(a).tolist()
    assert ip4_str(np.array([], dtype=np.uint32)).tolist() == []
    m = np.array([0, mac_int("02:42:0a:00:00:14")], dtype=np.uint64)
    assert mac_str(m).tolist() == ["", "02:42:0a:00:00:14"]
    assert mac_int("02-42-0A-00-00-14") == 0x02420A000014
    assert ip6_str(None) == "" and ip6_str(ip6_bytes("fd00::a")) == "fd00::a"
    assert ip6_strs([None, ip6_bytes("::1"), ip6_bytes("::1")]).tolist() == ["", "::1", "::1"]
    for bad in ("10.0.0", "x", "300.1.1.1"):
        with pytest.raises(UsageError):
            ip4_int(bad)
    with pytest.raises(UsageError):
        mac_int("02:42")


def test_many_chunks_mmap_and_gzip_agree(tmp_path: Path, frames: list[bytes]) -> None:
    """More packets than one decoder chunk: the memory-mapped file (whose pages are released
    behind the decoder) and the gzip copy (one array) decode identically."""
    from decode_helpers import equal_tables

    from meshpkt.decode import fast

    n = fast.CHUNK * 2 + 123
    pk = [(T0 + i * 10, frames[i % len(frames)]) for i in range(n)]
    p = tmp_path / "many.pcap"
    write_pcap(p, pk)
    g = tmp_path / "many.pcap.gz"
    g.write_bytes(gzip.compress(p.read_bytes(), compresslevel=1))
    a = decode_file(p, point="x")
    b = decode_file(g, point="x")
    assert len(a) == n and a["ts_ns"].iloc[-1] == T0 + (n - 1) * 10
    equal_tables(a, b, skip=())
    assert (a["vni"].to_numpy()[: len(frames)] == a["vni"].to_numpy()[len(frames): 2 * len(frames)]).all()


def test_header_only_capture(tmp_path: Path) -> None:
    p = tmp_path / "none.pcap"
    write_pcap(p, [])
    df = decode_file(p)
    assert len(df) == 0 and tuple(df.columns) == COLUMN_NAMES
    assert df["point"].cat.categories.tolist() == ["none"]
