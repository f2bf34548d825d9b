"""Fixtures for the decoder tests (helpers live in decode_helpers.py)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tshark_compare import compare_capture  # noqa: E402


@pytest.fixture
def tshark_check() -> Callable[..., int]:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required (installed by sh .ci/setup test)")

    def run(df: pd.DataFrame, path: Path, ports: tuple[int, ...] = (4789,)) -> int:
        diffs, checks = compare_capture(df, path)
        assert not diffs, "\n".join(str(d) for d in diffs[:20])
        return checks
    return run


