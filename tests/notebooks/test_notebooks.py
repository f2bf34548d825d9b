"""The notebooks run top to bottom (nbclient, kernel ``python3``) and are committed without outputs.

01 and 02 run on the shipped captures; 03 runs its lab cells only as root (``@pytest.mark.root``) and,
always, with ``MESHPKT_NO_LAB=1`` to show that every lab cell skips with a clear message. The
notebooks assert their own claims (the seed 001 chain, filter counts, verify results), so a wrong
story fails the test.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
EXPECTED = ("01-ingress-walkthrough.ipynb", "02-filters.ipynb", "03-lab-and-verify.ipynb")
CELL_TIMEOUT = 120  # seconds per cell; the slowest notebook (03 as root) takes about 25 s in all


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


strip_mod = _load("meshpkt_notebooks_strip", NOTEBOOKS / "strip.py")


@pytest.fixture(scope="session")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``python3`` kernelspec for *this* interpreter, in a private prefix (put first on JUPYTER_PATH),
    so the notebooks run with the Python that runs the tests even if no spec is installed or the
    user's ``python3`` spec points elsewhere."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    return prefix / "share" / "jupyter"


@pytest.fixture
def run_notebook(kernel_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``run_notebook(name, env={...})`` -> the executed NotebookNode (raises CellExecutionError with
    the failing cell's traceback when a cell fails)."""
    import os

    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernel_path),
                                                                   os.environ.get("JUPYTER_PATH")])))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    def run(name: str, env: dict[str, str] | None = None) -> Any:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, startup_timeout=60,
                                         resources={"metadata": {"path": str(NOTEBOOKS)}})
        client.execute()
        return nb

    yield run


def _outputs(nb: Any) -> list[tuple[int, Any]]:
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs]


def _text(nb: Any) -> str:
    parts = []
    for _, o in _outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(str(o.data.get("text/plain", "")))
    return "\n".join(parts)


def _images(nb: Any) -> int:
    return sum(1 for _, o in _outputs(nb) if o.output_type in ("execute_result", "display_data")
               and "image/png" in o.data)


def _errors(nb: Any) -> list[str]:
    return [f"cell {i}: {o.ename}: {o.evalue}" for i, o in _outputs(nb) if o.output_type == "error"]


# ---------------------------------------------------------------------------- committed state


def test_committed_notebooks_are_valid_and_have_no_outputs() -> None:
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(EXPECTED)
    for name in EXPECTED:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert strip_mod.dirty_cells(nb) == [], f"{name}: run `python3 notebooks/strip.py` before committing"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
    assert strip_mod.main(["--check"]) == 0


def test_notebooks_use_only_public_api() -> None:
    """No private module or name (``meshpkt._x``, ``meshpkt.x._y``, ``from meshpkt.x import _y``)."""
    import re

    private = re.compile(r"\bmeshpkt(\.\w+)*\._\w+|from meshpkt[\w.]* import .*\b_\w+")
    for name in EXPECTED:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert not private.search(cell.source), f"{name} cell {i}: {private.search(cell.source)}"


# ---------------------------------------------------------------------------- execution


def test_01_walkthrough_runs(run_notebook: Any, tmp_path: Path) -> None:
    nb = run_notebook("01-ingress-walkthrough.ipynb")
    assert _errors(nb) == []
    text = _text(nb)
    # the seed 001 section 7 chain, as printed by the notebook's check cell
    assert "-> 172.18.0.2:9090 -> 10.0.0.2:" in text
    assert "vxlan 4096 10.211.55.10 > 10.211.55.18" in text and "10.0.0.7:80" in text
    assert "673 packets at 20 capture points" in text
    assert _images(nb) == 3  # sequence diagram, balance plot, topology
    # the strip step turns the executed notebook back into the committed one
    path = tmp_path / "01.ipynb"
    nbformat.write(nb, path)
    assert strip_mod.main(["--check", str(path)]) == 1
    assert strip_mod.main([str(path)]) == 0
    stripped = nbformat.read(path, as_version=4)
    committed = nbformat.read(NOTEBOOKS / "01-ingress-walkthrough.ipynb", as_version=4)
    assert strip_mod.dirty_cells(stripped) == []
    assert [c.source for c in stripped.cells] == [c.source for c in committed.cells]
    assert all(c.get("outputs", []) == [] for c in stripped.cells)


def test_02_filters_runs(run_notebook: Any) -> None:
    nb = run_notebook("02-filters.ipynb")
    assert _errors(nb) == []
    text = _text(nb)
    assert "udp[39]=6 and (udp[42:4]=0x0a000002 or udp[42:4]=0x0a000014)" in text
    assert "udp[39]=6: 8 UDP + 8 VXLAN + 14 inner Ethernet + 9" in text
    assert "VXLAN datagrams" in text or "tcpdump is not installed" in text


def test_03_skips_every_lab_cell_without_a_lab(run_notebook: Any) -> None:
    nb = run_notebook("03-lab-and-verify.ipynb", env={"MESHPKT_NO_LAB": "1"})
    assert _errors(nb) == []
    lab_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "if not LAB_OK" in c.source]
    assert len(lab_cells) >= 7
    for i in lab_cells:
        out = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")
        assert out.startswith("needs root: skipped"), (i, out)
    assert _images(nb) == 0


@pytest.mark.root
def test_03_lab_and_verify_runs(run_notebook: Any) -> None:
    from meshpkt.lab import Lab

    name = f"nb{uuid.uuid4().hex[:6]}"
    try:
        nb = run_notebook("03-lab-and-verify.ipynb", env={"MESHPKT_NB_LAB": name})
    finally:
        leftover = Lab(name).is_up()
        if leftover:
            Lab(name).down()
    assert not leftover, "the notebook's last cell did not take the lab down"
    assert _errors(nb) == []
    text = _text(nb)
    assert "needs root" not in text
    assert f"lab {name} up" in text and f"nothing of lab {name} is left" in text
    assert "syn-unanswered" in text and "never arrived at node2.host.eth0" in text
    assert "FAIL " in text and "udp dport 4789" in text
    assert _images(nb) == 4  # topology, sequence diagram, balance plot, sequence diagram of the lost one
