"""meshpkt.capture: read pcap/pcapng (plain or gzip) into one buffer + per-record arrays; write them.

Names are imported lazily so that ``import meshpkt.capture.linktypes`` stays cheap (numba is
only loaded when a capture is actually read).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshpkt.capture.reader import CaptureBuffer, CaptureProblem, iter_records, open_capture
    from meshpkt.capture.writer import write_pcap, write_pcapng
    from meshpkt.errors import CaptureError

_LAZY = {
    "CaptureBuffer": "meshpkt.capture.reader",
    "CaptureProblem": "meshpkt.capture.reader",
    "open_capture": "meshpkt.capture.reader",
    "iter_records": "meshpkt.capture.reader",
    "write_pcap": "meshpkt.capture.writer",
    "write_pcapng": "meshpkt.capture.writer",
    "CaptureError": "meshpkt.errors",
}

__all__ = ["CaptureBuffer", "CaptureError", "CaptureProblem", "iter_records", "open_capture",
           "write_pcap", "write_pcapng"]


def __getattr__(name: str) -> Any:
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'meshpkt.capture' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
