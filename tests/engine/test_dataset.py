"""`meshpkt decode --out DIR` and `meshpkt analyze DIR`: the same analysis as on the pcaps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas.testing as pdt

from meshpkt.decode import read
from meshpkt.engine import analyze as engine_analyze
from meshpkt.engine.dataset import is_dataset, write_dataset
from meshpkt.engine.decode import read_captures
from meshpkt.flows import analyze

from .conftest import SHIPPED


def test_dataset_holds_the_packet_table(tmp_path):
    doc = write_dataset([SHIPPED], tmp_path / "ds")
    assert is_dataset(tmp_path / "ds") and doc["packets"] == 673
    assert (tmp_path / "ds" / "status.json").is_file() == (SHIPPED / "status.json").is_file()
    got = read_captures([tmp_path / "ds"])
    want = read([SHIPPED])
    key = ["point", "record"]
    got = got.assign(point=got["point"].astype(str)).sort_values(key).reset_index(drop=True)
    want = want.assign(point=want["point"].astype(str)).sort_values(key).reset_index(drop=True)
    pdt.assert_frame_equal(got, want)


def test_every_engine_analyses_a_dataset_like_the_pcaps(tmp_path):
    write_dataset([SHIPPED], tmp_path / "ds")
    want = analyze([SHIPPED]).to_json()["connections"]
    for engine in ("local", "partitioned"):
        assert engine_analyze([tmp_path / "ds"], engine=engine).to_json()["connections"] == want, engine


def test_dataset_alongside_pcaps_and_cli(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    names = sorted(p.name for p in SHIPPED.glob("*.pcap"))
    for name in names[: len(names) // 2]:
        shutil.copy(SHIPPED / name, half)
    rest = tmp_path / "rest"
    rest.mkdir()
    for name in names[len(names) // 2:]:
        shutil.copy(SHIPPED / name, rest)
    r = subprocess.run([sys.executable, "-m", "meshpkt", "decode", str(half), "--out", str(tmp_path / "ds")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "meshpkt", "analyze", str(tmp_path / "ds"), str(rest), "-f", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["connections"]
    want = analyze([SHIPPED]).to_json()["connections"]
    assert sorted((c["client"], c["backend"], c["status"], len(c["hops"])) for c in got) == \
        sorted((c["client"], c["backend"], c["status"], len(c["hops"])) for c in want)
