"""Analysis engines: how captures become an :class:`~meshpkt.flows.Analysis`.

``local`` (default): decode in this process, or several files at once in worker processes, then
reconstruct. Imported lazily so that ``import meshpkt.engine`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshpkt.engine.decode import read_captures
    from meshpkt.engine.run import analyze

_LAZY = {"analyze": "meshpkt.engine.run", "read_captures": "meshpkt.engine.decode"}

__all__ = ["analyze", "read_captures"]


def __getattr__(name: str) -> Any:
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'meshpkt.engine' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
