"""Paths and generators shared by the tests: ``from tests.fixtures import SHIPPED, flows_synth``.

The repository root is on pytest's path (``pythonpath`` in pyproject.toml), so no test edits ``sys.path``.
Committed fixtures are required: :func:`require` fails the test when one is missing (a skipped test would
hide a broken checkout)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
SHIPPED = CAPTURES / "ingress-3node"
"""One run of the 3-node lab captured at every hop, with its status.json (see captures/README.md)."""
SHIPPED_STATUS = SHIPPED / "status.json"
RULES_DATA = REPO / "tests" / "rules" / "data"
MESHLAB_DUMPS = RULES_DATA / "meshlab"
"""Dumps (``meshpkt collect``) of the default lab: the same cluster as the shipped captures."""
FLOWS_SYNTH = REPO / "tests" / "flows" / "conftest.py"


def require(path: Path) -> Path:
    """``path``, failing the test (not skipping it) when the committed fixture is missing."""
    if not path.exists():
        pytest.fail(f"committed fixture missing: {path.relative_to(REPO)} (a broken checkout?)")
    return path


def flows_synth() -> ModuleType:
    """The crafted-capture generator of the flows tests (``tests/flows/conftest.py``), loaded once."""
    name = "meshpkt_tests_flows_synth"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FLOWS_SYNTH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod
