"""Fixtures for the decoder tests (helpers live in decode_helpers.py)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_helpers import compare_with_tshark, tshark_rows  # noqa: E402


@pytest.fixture
def tshark_check() -> Callable[..., int]:
    if shutil.which("tshark") is None:
        pytest.skip("needs tshark")

    def run(df: pd.DataFrame, path: Path, ports: tuple[int, ...] = (4789,)) -> int:
        decode_as = [f"udp.port=={p},vxlan" for p in ports if p != 4789]
        return compare_with_tshark(df, tshark_rows(path, decode_as), ports)
    return run


