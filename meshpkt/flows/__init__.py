"""Connections across the mesh's hops: ``meshpkt.analyze(...)``.

Pure logic over the packet table (``meshpkt.decode``); only :func:`analyze`'s convenience of
accepting file paths reads files, through the decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from meshpkt.flows.balance import balance
from meshpkt.flows.clock import Offset
from meshpkt.flows.connections import build_connections, build_hops, build_losses, build_translations
from meshpkt.flows.reconstruct import reconstruct
from meshpkt.flows.summary import summarize
from meshpkt.flows.topology import Topology, from_lab_status, infer_topology, load_topology

__all__ = ["Analysis", "analyze", "analyze_packets", "Topology", "load_topology"]

CaptureArg = str | Path | tuple[str, str | Path]


@dataclass
class Analysis:
    """Result of an analysis: DataFrames plus plain-data summaries."""

    packets: pd.DataFrame
    hops: pd.DataFrame
    connections: pd.DataFrame
    translations: pd.DataFrame
    summary: dict[str, Any]
    offsets: dict[str, Offset]
    balance: dict[str, Any]
    topology: Topology
    problems: list[Any] = field(default_factory=list)
    losses: pd.DataFrame = field(default_factory=pd.DataFrame)  # lost byte ranges, see build_losses

    def connection(self, conn_id: int) -> dict[str, Any]:
        """The JSON object of one connection (see README, "JSON output")."""
        from meshpkt.report import connection_json

        return connection_json(self, conn_id)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document: ``summary`` and ``connections`` (``meshpkt.report.write_json``
        streams the same document to a file)."""
        from meshpkt.report import json_document

        return json_document(self)


def _find_status(captures: Sequence[CaptureArg]) -> Path | None:
    for c in captures:
        path = Path(c[1] if isinstance(c, tuple) else c)
        cand = path / "status.json" if path.is_dir() else path.parent / "status.json"
        if cand.is_file():
            return cand
    return None


def _stats_beside(captures: Sequence[CaptureArg]) -> dict[str, int]:
    from meshpkt.flows.topology import read_capture_stats

    for c in captures:
        path = Path(c[1] if isinstance(c, tuple) else c)
        found = read_capture_stats(path if path.is_dir() else path.parent)
        if found:
            return found
    return {}


def analyze(
    captures: Iterable[CaptureArg] | None = None,
    *,
    packets: pd.DataFrame | None = None,
    topology: Topology | dict[str, Any] | str | Path | None = None,
    vxlan_ports: Sequence[int] = (4789,),
    progress: Callable[[int, int], None] | None = None,
    problems: list[Any] | None = None,
    correct_clocks: bool = True,
) -> Analysis:
    """Decode ``captures`` (paths, ``(point, path)`` pairs or directories) or take a decoded
    ``packets`` table, and reconstruct every connection across the capture points.

    ``topology``: a :class:`Topology`, a lab status dict, or the path of ``lab status --json``
    output. When omitted, a ``status.json`` next to the captures is used if present, else the
    roles are inferred (and ``summary["topology"]`` says so).
    """
    caps = list(captures or [])
    if packets is None:
        from meshpkt.decode import read

        packets = read(caps, vxlan_ports=vxlan_ports, progress=progress, problems=problems)
    if topology is None and caps:
        found = _find_status(caps)
        if found is not None:
            topology = found
    if isinstance(topology, (str, Path)):
        topo = load_topology(topology)
    elif isinstance(topology, dict):
        topo = from_lab_status(topology)
    elif topology is None:
        topo = Topology()
    else:
        topo = topology
    if caps and not topo.capture_drops:
        topo.capture_drops.update(_stats_beside(caps))
    return analyze_packets(packets, topo, problems=problems, correct_clocks=correct_clocks)


def analyze_packets(packets: pd.DataFrame, topology: Topology | None = None, *,
                    problems: list[Any] | None = None, correct_clocks: bool = True) -> Analysis:
    """Reconstruct connections from a packet table (pure)."""
    topo = infer_topology(packets, topology)
    rec = reconstruct(packets, topo, correct_clocks=correct_clocks)
    hops = build_hops(rec)
    translations = build_translations(hops, topo)
    conns = build_connections(rec, hops, topo) if len(hops) else _empty_connections()
    losses = build_losses(rec, hops)
    pk = packets.copy(deep=False)  # pandas 3 copy-on-write: the new columns never touch `packets`
    pos = packets.index.get_indexer(rec.assign.index)
    absent = np.ones(len(pk), dtype=bool)
    absent[pos] = False
    for name, values, add in (("conn_id", rec.assign["conn"], 1), ("ts_corr_ns", rec.assign["ts_corr"], 0)):
        col = np.zeros(len(pk), dtype=np.int64)
        col[pos] = values.to_numpy() + add
        pk[name] = pd.arrays.IntegerArray(col, absent.copy())
    summary = summarize(packets)
    summary["topology"] = "inferred" if topo.inferred else topo.source
    summary["connections"] = int(len(conns))
    summary["status"] = {str(k): int(v) for k, v in conns["status"].value_counts().items()} if len(conns) else {}
    summary["clock_offsets"] = {
        k: {"offset_ns": o.offset_ns, "uncertainty_ns": o.uncertainty_ns, "reference": o.reference,
            "applied": o.applied}
        for k, o in rec.offsets.items()
    }
    bal = balance(conns) if len(conns) else {"per_entry": {}, "round_robin": {}}
    summary["balance"] = bal
    summary["problems"] = [str(getattr(p, "message", p)) for p in (problems or [])]
    return Analysis(pk, hops, conns, translations, summary, rec.offsets, bal, topo, list(problems or []), losses)


def _empty_connections() -> pd.DataFrame:
    cols = ["conn_id", "proto", "client", "entry", "entry_node", "backend", "backend_node", "backend_task",
            "status", "hops_seen", "flooded_to", "path", "lost_fwd", "lost_bwd", "lost_at", "first_ts_ns", "duration_ns", "bytes_fwd", "bytes_bwd", "retrans",
            "packets", "last_seen_point", "missing_at", "verdict", "verdict_code", "ev_from", "ev_to", "ev_dir",
            "ev_count", "ev_bytes", "ev_packets", "no_data_at", "ev_missed_at", "ev_capture_drops", "lost_bytes_fwd", "lost_bytes_bwd", "lost_to",
            "undelivered", "syn_seen"]
    return pd.DataFrame(columns=cols)
