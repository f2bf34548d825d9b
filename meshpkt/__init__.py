"""meshpkt: craft packets and analyse the traffic of Docker Swarm's routing mesh.

The public API is re-exported lazily so that ``import meshpkt`` stays cheap:

- ``meshpkt.read(paths, ...)``      -> packets DataFrame (columnar decoder)
- ``meshpkt.analyze(captures, ...)`` -> Analysis with ``packets``, ``hops``, ``connections``
- ``meshpkt.filter(**flags)``        -> a tcpdump expression for fields inside VXLAN (``meshpkt.bpf``)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "read": ("meshpkt.decode", "read"),
    "decode_file": ("meshpkt.decode", "decode_file"),
    "analyze": ("meshpkt.flows", "analyze"),
    "diagnose": ("meshpkt.diagnose", "diagnose"),
    "summarize": ("meshpkt.flows.summary", "summarize"),
    "filter": ("meshpkt.bpf", "filter_string"),
    "FilterSpec": ("meshpkt.bpf", "FilterSpec"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        mod, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'meshpkt' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value
