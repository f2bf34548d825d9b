"""`meshpkt diagnose` as a user runs it: exit codes, JSON shape, table, diagram, bad input; the catalogue
and its documentation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from diagnose_craft import T0, Capture, handshake, segment

import meshpkt
from meshpkt.diagnose import DETECTORS, catalogue

REPO = Path(__file__).resolve().parents[2]
KINDS = {"published-port-not-forwarded", "lb-mark-missing", "lb-stale-backend", "snat-missing", "vxlan-dropped",
         "fdb-missing", "mtu-blackhole", "redirect-missing", "checksum-offload", "ipvs-idle-timeout", "esp-blocked",
         "esp-one-way", "esp-leak", "iptables-split-brain", "wrong-vtep-source", "conntrack-invalid-reset"}


def mp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", "diagnose", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    ok = Capture()
    t = T0
    for direction, seg in handshake():
        segment(ok, seg, t, direction)
        t += 1_000_000
    broken = Capture()  # the SYN is never DNATed: the host answers RST
    from meshpkt.layers.swarm import TcpSegment

    for k in range(3):
        segment(broken, TcpSegment(flags="S", seq=1000, ip_id=k), T0 + k * 10**9, stop_after="node1.host.eth0")
        segment(broken, TcpSegment(flags="RA", seq=0, ack=1001, ip_id=0, options=[]), T0 + k * 10**9 + 50_000,
                "reply", start_at="node_eth0")
    return {"ok": ok.write(base / "ok"), "broken": broken.write(base / "broken")}


def test_catalogue_is_complete_and_documented() -> None:
    cat = catalogue()
    assert {d["kind"] for d in cat} == KINDS == set(DETECTORS)
    for d in cat:
        assert d["severity"] in ("error", "warning", "info") and d["reproduced"] in ("lab", "crafted")
        assert len(d["detects"]) > 40 and len(d["evidence"]) > 30 and len(d["check"]) > 30
    doc = (REPO / "docs" / "diagnose.md").read_text()
    for kind in KINDS:
        assert f"`{kind}`" in doc, kind


def test_cli_catalogue_json() -> None:
    r = mp("--catalogue", "--format", "json")
    assert r.returncode == 0 and {d["kind"] for d in json.loads(r.stdout)} == KINDS


def test_exit_0_and_json_shape_when_healthy(dirs: dict[str, Path]) -> None:
    r = mp(dirs["ok"], "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"findings", "analysis"} and doc["findings"] == []
    assert doc["analysis"]["connections"] == 1 and doc["analysis"]["failed_connections"] == 0


def test_exit_1_json_table_and_diagram_when_broken(dirs: dict[str, Path], tmp_path: Path) -> None:
    r = mp(dirs["broken"], "--format", "json", "--out", tmp_path / "d.json", "--diagram", tmp_path / "d.png")
    assert r.returncode == 1, r.stderr
    doc = json.loads((tmp_path / "d.json").read_text())
    f = doc["findings"][0]
    assert set(f) >= {"kind", "severity", "summary", "node", "points", "addresses", "connections", "evidence"}
    assert f["kind"] == "published-port-not-forwarded" and f["severity"] == "error" and f["node"] == "node1"
    assert f["connections"] == [1] and all(isinstance(e, str) for e in f["evidence"])
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t = mp(dirs["broken"])
    assert t.returncode == 1
    lines = t.stdout.splitlines()
    assert any("published-port-not-forwarded" in ln and "node1" in ln for ln in lines[:6])
    assert any(ln.strip().startswith("- ") for ln in lines) and "check:" in t.stdout


def test_library_entry_point(dirs: dict[str, Path]) -> None:
    d = meshpkt.diagnose([dirs["broken"]])
    assert d.exit_code() == 1 and d.findings[0].kind == "published-port-not-forwarded"


@pytest.mark.parametrize("case", ["missing", "text", "dumps", "no-args"])
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, dirs: dict[str, Path]) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("hello, this is not a capture\n")
    args = {"missing": [tmp_path / "nope.pcap"], "text": [text], "dumps": [dirs["ok"], "--dumps", tmp_path / "x"],
            "no-args": []}[case]
    r = mp(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr


def test_truncated_capture_is_reported_and_the_rest_diagnosed(dirs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "cut"
    shutil.copytree(dirs["broken"], d)
    f = d / "client.host.eth0.pcap"
    f.write_bytes(f.read_bytes()[:-20])
    r = mp(d)
    assert r.returncode == 1  # the finding still stands
    assert "published-port-not-forwarded" in r.stdout and "client.host.eth0" in r.stderr
