"""`meshpkt diagram` end to end: files written, one-line errors, matplotlib not imported by --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fixtures import MESHLAB_DUMPS, REPO, require

ROOT = REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", "diagram", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture
def capdir(tmp_path, figtools):
    C = figtools.Conn
    conns = [C("node1", "10.0.0.6", 51883, 57786), C("node2", "10.0.0.6", 51884, 57787),
             C("node1", "10.0.0.7", 51885, 57788, drop_after="node1.ingress_sbox.eth0")]
    return figtools.synth.build(conns, tmp_path / "caps")


def test_first_connection_png(capdir, tmp_path):
    from PIL import Image

    out = tmp_path / "flow.png"
    r = run(str(capdir), "--first", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr and "connection 1" in r.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 1000


def test_connection_svg_and_balance(capdir, tmp_path):
    svg = tmp_path / "c3.svg"
    r = run(str(capdir), "--connection", "3", "-o", str(svg))
    assert r.returncode == 0, r.stderr
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "SYN" in text
    bal = tmp_path / "bal.pdf"
    r = run("--balance", str(capdir), "--out", str(bal))
    assert r.returncode == 0, r.stderr
    assert bal.read_bytes()[:5] == b"%PDF-"


def test_topology_only(tmp_path, figtools):
    status = tmp_path / "lab-status.json"
    status.write_text(json.dumps(figtools.synth_status()))
    out = tmp_path / "topo.png"
    r = run("--topology", str(status), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--out", "x.png"], "nothing to draw"),
    (["{caps}", "--out", "x.png"], "choose the connection"),
    (["{caps}", "--connection", "99", "--out", "x.png"], "no connection 99"),
    (["{caps}", "--first", "--connection", "1", "--out", "x.png"], "either --connection ID or --first"),
    (["{caps}", "--first", "--out", "x.gif"], "use .png, .svg or .pdf"),
    (["--topology", "{missing}", "--out", "x.png"], "no such file"),
    (["--topology", "{notjson}", "--out", "x.png"], "not a lab status JSON"),
    (["--topology", "{notstatus}", "--out", "x.png"], "not a lab status document"),
    (["{caps}", "--first", "--out", "{nodir}/x.png"], "cannot write"),
])
def test_errors_are_one_line(capdir, tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "other.json").write_text('{"name": 1}')
    subs = {"caps": str(capdir), "missing": str(tmp_path / "missing.json"), "notjson": str(tmp_path / "bad.json"),
            "notstatus": str(tmp_path / "other.json"), "nodir": str(tmp_path / "no" / "such")}
    r = run(*[a.format(**subs) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshpkt: error:") and message in lines[0], r.stderr


def test_help_does_not_import_matplotlib():
    code = ("import sys\nfrom meshpkt.cli.main import app\n"
            "bad = [m for m in ('matplotlib', 'pandas', 'numpy') if m in sys.modules]\nprint(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "meshpkt", "diagram", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "--topology" in r.stdout and "--balance" in r.stdout


def test_topology_from_dumps(tmp_path):
    dumps = require(MESHLAB_DUMPS)
    out = tmp_path / "topo.svg"
    r = run("--topology", str(dumps), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "VNI 4097" in out.read_text()
