"""meshpkt: craft packets and analyse the traffic of Docker Swarm's routing mesh.

The public API is re-exported lazily so that ``import meshpkt`` stays cheap:

- ``meshpkt.read(paths, ...)``      -> packets DataFrame (columnar decoder)
- ``meshpkt.analyze(captures, ...)`` -> Analysis with ``packets``, ``hops``, ``connections``
- ``meshpkt.filter(**flags)``        -> a tcpdump expression for fields inside VXLAN (``meshpkt.bpf``)
- ``meshpkt.load_status(path)``      -> the typed :class:`meshpkt.Mesh` of a lab ``status.json``
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names mypy and IDEs see; at run time they load on first use (__getattr__)
    from meshpkt.bpf import FilterSpec
    from meshpkt.bpf import filter_string as filter
    from meshpkt.decode import decode_file, read
    from meshpkt.diagnose import diagnose
    from meshpkt.flows import analyze
    from meshpkt.flows.summary import summarize
    from meshpkt.mesh import Mesh, load_status

__version__ = "0.1.0"

_LAZY = {
    "read": ("meshpkt.decode", "read"),
    "decode_file": ("meshpkt.decode", "decode_file"),
    "analyze": ("meshpkt.flows", "analyze"),
    "diagnose": ("meshpkt.diagnose", "diagnose"),
    "summarize": ("meshpkt.flows.summary", "summarize"),
    "filter": ("meshpkt.bpf", "filter_string"),
    "FilterSpec": ("meshpkt.bpf", "FilterSpec"),
    "Mesh": ("meshpkt.mesh", "Mesh"),
    "load_status": ("meshpkt.mesh", "load_status"),
}

__all__ = ["FilterSpec", "Mesh", "__version__", "analyze", "decode_file", "diagnose", "filter", "load_status", "read",
           "summarize"]


def __getattr__(name: str) -> Any:
    try:
        mod, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'meshpkt' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value
