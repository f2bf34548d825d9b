"""The public API of ``import meshpkt``: lazy at run time, typed for mypy users."""

from __future__ import annotations

import subprocess
import sys

import meshpkt
from tests.fixtures import REPO


def test_lazy_names_are_the_public_names() -> None:
    assert set(meshpkt.__all__) - {"__version__"} == set(meshpkt._LAZY)
    for name in meshpkt._LAZY:
        assert getattr(meshpkt, name) is not None


def test_import_stays_cheap() -> None:
    code = ("import sys, meshpkt; "
            "print(sorted(m for m in ('pandas', 'numpy', 'scapy', 'matplotlib') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_mypy_sees_the_real_signatures() -> None:
    code = ("import meshpkt\nreveal_type(meshpkt.analyze)\nreveal_type(meshpkt.read)\n"
            "reveal_type(meshpkt.load_status)\nreveal_type(meshpkt.filter)\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "-c", code], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    notes = [line for line in r.stdout.splitlines() if "Revealed type" in line]
    assert len(notes) == 4, r.stdout + r.stderr
    assert "-> meshpkt.flows.Analysis" in notes[0]
    assert "captures:" in notes[1]
    assert "-> meshpkt.mesh.model.Mesh" in notes[2]
    assert all('"Any"' not in n for n in notes), notes
