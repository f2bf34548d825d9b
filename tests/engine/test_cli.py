"""`meshpkt analyze` outputs: the table (problems first, top N), streamed JSON, CSV/Parquet from Arrow."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from meshpkt.flows import analyze
from meshpkt.report import hops_for_export

from .conftest import SHIPPED


def _meshpkt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", "analyze", *args], capture_output=True, text=True,
                          check=True)


def _table_ids(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^│ (\d+) +│ 10\.211\.55\.2:", text, flags=re.M)]


def test_table_shows_problems_first_then_the_first_ones(many_connections):
    a = analyze([many_connections])
    conns = a.connections
    bad = conns[conns["verdict"] != "ok"].sort_values("first_ts_ns")["conn_id"].tolist()
    good = conns[conns["verdict"] == "ok"].sort_values("first_ts_ns")["conn_id"].tolist()
    assert len(bad) >= 2 and len(conns) == 40
    shown = _table_ids(_meshpkt(str(many_connections)).stdout)
    assert shown == (bad + good)[:30]
    out = _meshpkt(str(many_connections)).stdout
    assert "... and 10 more (--all shows every connection)" in out
    every = _meshpkt(str(many_connections), "--all").stdout
    assert sorted(_table_ids(every)) == sorted(conns["conn_id"].tolist()) and "more" not in every


def test_json_is_the_documented_document(many_connections, tmp_path):
    a = analyze([many_connections])
    out = tmp_path / "a.json"
    _meshpkt(str(many_connections), "-f", "json", "-o", str(out))
    assert json.loads(out.read_text()) == a.to_json()
    assert json.loads(_meshpkt(str(SHIPPED), "-f", "json").stdout) == analyze([SHIPPED]).to_json()


def test_csv_is_the_connections_table(many_connections):
    a = analyze([many_connections])
    got = pd.read_csv(io.StringIO(_meshpkt(str(many_connections), "-f", "csv").stdout))
    want = a.connections
    assert got["conn_id"].tolist() == want["conn_id"].tolist()
    for col in ("client", "entry", "status", "verdict", "path"):
        assert got[col].tolist() == want[col].tolist(), col
    assert got["missing_at"].fillna("").tolist() == want["missing_at"].fillna("").tolist()
    assert (got["bytes_fwd"].to_numpy() == want["bytes_fwd"].to_numpy()).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_hop_and_packet_tables_round_trip(fmt, tmp_path):
    a = analyze([SHIPPED])
    out = tmp_path / f"hops.{fmt}"
    if fmt == "parquet":
        _meshpkt(str(SHIPPED), "-f", "parquet", "-o", str(out))
        got = pd.read_parquet(out)
        want = hops_for_export(a.hops)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        assert got["point"].tolist() == want["point"].tolist()
        assert got["vni"].astype("Int64").tolist() == want["vni"].astype("Int64").tolist()
    else:
        _meshpkt(str(SHIPPED), "--packets", "-f", "csv", "-o", str(out))
        got = pd.read_csv(out)
        assert len(got) == len(a.packets) == 673
        assert got["vni"].dropna().eq(4096).all() and got["vni"].notna().sum() == (a.packets["vni"] >= 0).sum()
