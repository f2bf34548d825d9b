"""The Dask engine (issue 16): decoding as tasks on a Dask cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from meshpkt.errors import UsageError


def read_captures_dask(captures: list[Any], *, vxlan_ports: Sequence[int] = (4789,),
                       problems: list[Any] | None = None, workers: int | None = None, client: Any = None,
                       scheduler: str | None = None) -> pd.DataFrame:
    """Decode ``captures`` on a Dask cluster (not available yet)."""
    raise UsageError("--engine dask is not available yet")
