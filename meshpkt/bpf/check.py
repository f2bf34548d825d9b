"""``meshpkt filter --check``: run a filter with libpcap over a capture and compare the packets it
selects with the packets meshpkt's decoder says should match (:func:`meshpkt.bpf.match`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpkt.bpf.libpcap import filter_file
from meshpkt.bpf.match import match
from meshpkt.bpf.render import render
from meshpkt.bpf.spec import FilterSpec, build
from meshpkt.errors import CaptureError
from meshpkt.mesh.proto import VXLAN_PORT


@dataclass
class CheckResult:
    """Counts of one check; ``equal`` when libpcap and the decoder agree on every record."""

    path: str
    expression: str
    packets: int
    libpcap: int
    decoder: int
    disagree: list[int] = field(default_factory=list)  # record numbers (0-based), at most 20

    @property
    def equal(self) -> bool:
        return not self.disagree and self.libpcap == self.decoder

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "expression": self.expression, "packets": self.packets,
                "libpcap": self.libpcap, "decoder": self.decoder, "equal": self.equal,
                "disagree": self.disagree}


def check_capture(spec: FilterSpec, path: str | os.PathLike[str]) -> CheckResult:
    """Compile ``spec``'s filter with libpcap, run it over ``path``, and compare per record with
    ``match(spec, decode_file(path))`` (VXLAN decoded on the spec's ports)."""
    import numpy as np

    from meshpkt.decode import decode_file

    expr = build(spec)
    text = render(expr, "pcap")
    verdicts = np.asarray(filter_file(path, text), dtype=bool)
    df = decode_file(Path(path), vxlan_ports=tuple(sorted({VXLAN_PORT, *spec.ports})))
    if len(df) != len(verdicts):
        raise CaptureError(f"libpcap read {len(verdicts)} records but the decoder {len(df)}; the file is "
                           f"damaged, compare on a repaired copy", str(path))
    want = match(expr, df)
    diff = np.flatnonzero(verdicts != want)
    return CheckResult(str(path), text, int(len(df)), int(verdicts.sum()), int(want.sum()),
                       [int(i) for i in diff[:20]])
