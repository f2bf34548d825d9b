"""Parallel decoding (``meshpkt.engine.decode``): the same table as ``meshpkt.decode.read``."""

from __future__ import annotations

import shutil

import pandas.testing as pdt
import pytest

from meshpkt.decode import read
from meshpkt.engine import decode as engine_decode
from meshpkt.errors import CaptureError

from .conftest import SHIPPED


@pytest.fixture
def always_parallel(monkeypatch):
    monkeypatch.setattr(engine_decode, "PARALLEL_MIN_BYTES", 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_table_as_the_decoder(always_parallel, many_connections, workers):
    for caps in ([SHIPPED], [many_connections], [SHIPPED, ("extra", many_connections / "client.host.eth0.pcap")]):
        seen: list[tuple[int, int, int]] = []
        got = engine_decode.read_captures(caps, workers=workers, progress=lambda *a, s=seen: s.append(a))
        pdt.assert_frame_equal(got, read(caps))
        assert seen[-1][0] == seen[-1][1] and seen[-1][2] == len(got)  # all bytes, every packet


def test_bad_files_are_reported_and_the_rest_decoded(always_parallel, tmp_path):
    caps = tmp_path / "caps"
    shutil.copytree(SHIPPED, caps)
    (caps / "text.pcap").write_text("hello, not a capture\n")
    good = caps / "node1.host.eth0.pcap"
    (caps / "cut.pcap").write_bytes(good.read_bytes()[:-7])
    want_problems: list = []
    want = read([caps], problems=want_problems)
    problems: list = []
    got = engine_decode.read_captures([caps], workers=2, problems=problems)
    pdt.assert_frame_equal(got, want)
    assert [str(p) for p in problems] == [str(p) for p in want_problems]
    assert any("text.pcap" in str(p) and p.fatal for p in problems)
    assert any("cut.pcap" in str(p) for p in problems)
    with pytest.raises(CaptureError, match="text.pcap"):
        engine_decode.read_captures([caps], workers=2)
