"""meshpkt.decode: captures -> the packet table (pandas DataFrame, columns in ``schema``).

``read``, ``decode_file`` and ``decode_buffer`` are imported lazily so that
``import meshpkt.decode.schema`` (or ``.addr``) does not pull in numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshpkt.decode.api import decode_buffer, decode_file, read

_LAZY = {
    "read": "meshpkt.decode.api",
    "decode_file": "meshpkt.decode.api",
    "decode_buffer": "meshpkt.decode.api",
    "empty_table": "meshpkt.decode.api",
}

__all__ = ["decode_buffer", "decode_file", "empty_table", "read"]


def __getattr__(name: str) -> Any:
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'meshpkt.decode' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
