"""The out-of-core engine: captures of any size analysed in bounded memory.

Three passes over data that never has to fit in memory at once (the flows' decomposition,
:mod:`meshpkt.flows.reconstruct`):

1. *decode in chunks* (a file, or a range of its records): each chunk is reduced to its local-flow
   summaries (:func:`~meshpkt.flows.keys.local_flow_summaries`), partial capture counts, a small
   sample for topology inference, and the few per-packet columns the per-connection detail needs
   (in compact dtypes), spilled to an Arrow file on disk;
2. *match* the merged summaries into connections (:func:`~meshpkt.flows.match.match_connections`),
   forward directions and clock offsets, then *partition* the spilled packets by connection id
   (``conn % partitions``) into one file per partition;
3. *reconstruct each partition alone* (:func:`~meshpkt.flows.reconstruct.connection_detail` and the
   hop/translation/connection tables) and concatenate.

Memory is bounded by one chunk, the summaries (per local flow, not per packet) and one partition.
Plain files on a local disk were chosen over DuckDB: the partitions are written once and read
once, in the order we want, which needs no query engine (and no extra dependency).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from meshpkt.capture.reader import CaptureBuffer, CaptureProblem, open_capture
from meshpkt.decode import api
from meshpkt.engine.decode import CaptureArg, Progress, _fatal, _items
from meshpkt.engine.summary import PartialSummary
from meshpkt.errors import CaptureError
from meshpkt.flows.clock import Offset
from meshpkt.flows.keys import (
    LFLOW_COLUMNS,
    PacketIds,
    Summaries,
    local_flow_summaries,
    merge_summaries,
    packet_ids,
)

#: Records decoded at once (a chunk): about 30 MB of packet table.
CHUNK_RECORDS = 131_072
#: Spilled packets per partition reconstructed at once.
PARTITION_ROWS = 400_000
#: Per-packet columns the per-connection detail reads (``connection_detail`` and ``build_*``).
DETAIL_COLUMNS = {"ts_ns": np.int64, "wirelen": np.uint32, "outer_src": np.uint32, "outer_dst": np.uint32,
                  "tcp_flags": np.int16, "tcp_seq": np.int64, "tcp_ack": np.int64, "payload_len": np.int32}
_TOPO_COLUMNS = ["point", "outer_ipver", "outer_src", "outer_dst", "tcp_flags"]


def return_freed_memory(setup: bool = False) -> None:
    """Keep big arrays out of the C heap and hand freed memory back to the system (glibc only).

    glibc raises its mmap threshold after big frees, after which numpy's large arrays come from
    the heap, whose freed pages are not returned: the process then holds the peak of every chunk.
    A fixed threshold (``M_MMAP_THRESHOLD``) and ``malloc_trim`` keep the RSS at what is in use.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if setup:
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB and up straight from mmap
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def lflow_ident(lflows: pd.DataFrame, point_names: Sequence[str]) -> np.ndarray:
    """A uint64 identity of each local flow (``LFLOW_COLUMNS``, point by name), the same in every
    chunk: what ties a chunk's packets to the merged summaries."""
    codes = np.asarray(lflows["point"].cat.codes if isinstance(lflows["point"].dtype, pd.CategoricalDtype)
                       else lflows["point"], dtype=np.int64)
    names = np.array(list(point_names) + [""], dtype=object)[codes]
    frame = pd.DataFrame({"point": names, **{c: lflows[c].to_numpy().astype(np.int64) for c in LFLOW_COLUMNS
                                             if c != "point"}})
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def iter_chunks(files: list[Any], problems: list[CaptureProblem] | None, chunk: int
                ) -> Iterator[tuple[Any, CaptureBuffer, int, int]]:
    """(file, capture slice, first record, records in the file) per chunk of at most ``chunk``
    records of every file."""
    for f in files:
        try:
            cap = open_capture(f.path)
        except CaptureError as e:
            if problems is None:
                raise
            problems.append(_fatal(f.path, e))
            continue
        n = len(cap)
        for start in range(0, max(n, 1), chunk):
            stop = min(n, start + chunk)
            part = replace(cap, **{k: getattr(cap, k)[start:stop] for k in
                                   ("data_off", "caplen", "wirelen", "ts_ns", "linktype", "iface", "record_off")},
                           problems=list(cap.problems) if start == 0 else [])
            yield f, part, start, n


@dataclass
class _Carry:
    """Epoch (ISN) of each 5-tuple at each point at the end of the chunks seen so far, so that a
    connection cut by a chunk boundary keeps one local-flow identity."""

    epochs: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.int64))

    def apply(self, ids: PacketIds) -> PacketIds:
        lf = ids.lflows
        names = np.array(ids.point_names + [""], dtype=object)
        tup = pd.util.hash_pandas_object(pd.DataFrame({"p": names[lf["point"].to_numpy()], **{
            c: lf[c].to_numpy() for c in LFLOW_COLUMNS if c not in ("point", "epoch")}}), index=False).to_numpy()
        epoch = lf["epoch"].to_numpy().astype(np.int64)
        carried = self.epochs.reindex(tup).to_numpy()
        fix = (epoch < 0) & ~np.isnan(carried)
        if fix.any():
            epoch = np.where(fix, np.nan_to_num(carried, nan=-1).astype(np.int64), epoch)
            lf = lf.assign(epoch=epoch)
        last = pd.Series(ids.lflow).groupby(tup[ids.lflow]).last()  # the latest local flow of each tuple
        self.epochs = pd.concat([self.epochs, pd.Series(epoch[last.to_numpy()], index=last.index)])
        self.epochs = self.epochs[~self.epochs.index.duplicated(keep="last")]
        if not fix.any():
            return ids
        new, _ = pd.factorize(lflow_ident(lf, ids.point_names))
        first = np.unique(new, return_index=True)[1]
        return replace(ids, lflow=new[ids.lflow].astype(np.int64), lflows=lf.iloc[first].reset_index(drop=True))


@dataclass
class Pass1:
    """What the first pass keeps: summaries, counts, topology sample, spill files."""

    summaries: list[Summaries] = field(default_factory=list)
    counts: PartialSummary = field(default_factory=PartialSummary)
    topo_sample: list[pd.DataFrame] = field(default_factory=list)
    spills: list[str] = field(default_factory=list)
    problems: list[CaptureProblem] = field(default_factory=list)
    rows: int = 0
    exports: list[str] = field(default_factory=list)  # per chunk: the packet export, with `_lfid`
    export_dir: str | None = None


def detail_table(packets: pd.DataFrame, ids: PacketIds) -> pa.Table:
    """The chunk's transport packets: detail columns (compact), local-flow identity, key, direction, dup."""
    p = packets.iloc[ids.rows]
    cols: dict[str, Any] = {c: p[c].to_numpy().astype(t) for c, t in DETAIL_COLUMNS.items()}
    cols["lfid"] = lflow_ident(ids.lflows, ids.point_names)[ids.lflow]
    cols.update(key=ids.key, dir_lo=ids.dir_lo, dup=ids.dup)
    return pa.table(cols)


def spill(table: pa.Table, out_dir: str) -> str:
    """Write an Arrow table to a new file in ``out_dir``; its path."""
    fd, path = tempfile.mkstemp(suffix=".arrow", dir=out_dir)
    with os.fdopen(fd, "wb") as fh, pa.ipc.new_file(fh, table.schema) as writer:
        writer.write_table(table)
    return path


def decode_chunk(point: str | None, cap: CaptureBuffer, start: int, ports: tuple[int, ...]) -> pd.DataFrame:
    """The packet table of one chunk (record numbers counted from the file's start)."""
    packets = api.decode_buffer(cap, point=point, vxlan_ports=ports)
    packets["record"] = packets["record"].to_numpy() + start
    return packets


def absorb(state: Pass1, carry: _Carry, packets: pd.DataFrame) -> tuple[pa.Table, int]:
    """Reduce one chunk's packets into ``state`` (summaries, counts, topology sample); (detail
    table, packets)."""
    state.problems.extend(packets.attrs.get("problems", []))
    state.counts.add(packets)
    state.topo_sample.append(packets[_TOPO_COLUMNS].drop_duplicates())
    ids = carry.apply(packet_ids(packets))
    state.summaries.append(_compact(local_flow_summaries(packets, ids)))
    state.rows += len(ids.rows)
    detail = detail_table(packets, ids)
    if state.export_dir is not None:
        state.exports.append(_export_chunk(packets, ids, detail, state.export_dir))
    return detail, len(packets)


def _export_chunk(packets: pd.DataFrame, ids: PacketIds, detail: pa.Table, out_dir: str) -> str:
    """The chunk's rows of ``--packets`` (``report.packets_for_export``) and each row's local-flow
    identity (0: no transport), for :func:`write_packets` once connections are known."""
    import pyarrow.parquet as pq

    from meshpkt.report import packets_for_export

    lfid = np.zeros(len(packets), dtype=np.uint64)
    lfid[ids.rows] = detail.column("lfid").to_numpy()
    table = pa.Table.from_pandas(packets_for_export(packets), preserve_index=False)
    fd, path = tempfile.mkstemp(suffix=".parquet", dir=out_dir)
    os.close(fd)
    pq.write_table(table.append_column("_lfid", pa.array(lfid)), path)
    return path


def _export_order(names: list[str]) -> list[str]:
    """Columns in ``PACKET_EXPORT_COLUMNS`` order (``conn_id`` where the in-memory export has it)."""
    from meshpkt.report import PACKET_EXPORT_COLUMNS

    known = [c for c in PACKET_EXPORT_COLUMNS if c in names]
    return known + [c for c in names if c not in known]


def write_packets(state: Pass1, m: Matched, fmt: str, out: Any) -> int:
    """Write the per-packet export (``csv`` or ``parquet``) chunk by chunk, with each packet's
    ``conn_id``; returns the rows written."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    writer: Any = None
    rows = 0
    schema = pa.unify_schemas([pq.read_schema(p) for p in state.exports]) if state.exports else None
    try:
        for path in state.exports:
            table = pq.read_table(path).cast(schema)
            lfid = table.column("_lfid").to_numpy()
            lflow = m.ident.get_indexer(lfid)
            known = (lfid != 0) & (lflow >= 0)
            conn_id = pa.array(np.where(known, m.conn[lflow] + 1, 0), mask=~known, type=pa.int64())
            table = table.drop_columns(["_lfid"]).append_column("conn_id", conn_id)
            table = table.select(_export_order(table.column_names))
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema) if fmt == "parquet" else pcsv.CSVWriter(
                    out, table.schema, write_options=pcsv.WriteOptions(quoting_style="needed"))
            writer.write_table(table)
            rows += table.num_rows
            os.unlink(path)
    finally:
        if writer is not None:
            writer.close()
    return rows


def first_pass(captures: list[CaptureArg], ports: tuple[int, ...], out_dir: str,
               problems: list[CaptureProblem] | None, progress: Progress | None, chunk: int,
               export: bool = False) -> Pass1:
    """Decode chunk by chunk, keeping only summaries and spilling the detail columns (datasets of
    ``meshpkt decode``: file by file)."""
    from meshpkt.engine.dataset import dataset_files, read_part, split_inputs

    captures, sets = split_inputs(captures)
    files = _items(captures, problems)
    total = max(sum(f.size for f in files), 1)
    state, carry = Pass1(export_dir=out_dir if export else None), {}  # type: ignore[var-annotated]
    done_packets = done_bytes = 0
    for f, cap, start, n_file in iter_chunks(files, problems, chunk):
        table, n = absorb(state, carry.setdefault(str(f.path), _Carry()), decode_chunk(f.point, cap, start, ports))
        state.spills.append(spill(table, out_dir))
        done_packets += n
        del table
        return_freed_memory()
        if start + len(cap) >= n_file:
            done_bytes += f.size
        if progress is not None:
            progress(done_bytes + int(f.size * (start + len(cap)) / max(n_file, 1)) * (start + len(cap) < n_file),
                     total, done_packets)
    for root in sets:
        for point, path in dataset_files(root):
            table, _n = absorb(state, carry.setdefault(f"{root}:{point}", _Carry()), read_part(point, path))
            state.spills.append(spill(table, out_dir))
    return state


def _compact(s: Summaries) -> Summaries:
    """Summaries in their smallest dtypes (they are kept for every chunk until matching)."""
    anchors = s.anchors.astype({"lflow": np.int32, "seq": np.int64})
    return replace(s, anchors=anchors)


@dataclass
class Matched:
    """The outcome of matching: per merged local flow its connection and direction; offsets."""

    summaries: Summaries
    ident: pd.Index
    conn: np.ndarray
    fwd_lo: np.ndarray
    offsets: dict[str, Offset]
    windows: pd.DataFrame


def match(state: Pass1, correct_clocks: bool) -> Matched:
    """Step 2 on the merged summaries of every chunk."""
    from meshpkt.flows.match import clock_offsets, forward_direction, match_connections
    from meshpkt.flows.reconstruct import capture_windows

    merged = merge_summaries(state.summaries) if len(state.summaries) != 1 else state.summaries[0]
    state.summaries.clear()  # the merged copy is all that is needed from here on
    gc.collect()
    return_freed_memory()
    conn = match_connections(merged)
    fwd_lo = forward_direction(merged, conn)
    offsets = clock_offsets(merged, conn, fwd_lo, correct=correct_clocks)
    ident = pd.Index(lflow_ident(merged.lflows, merged.point_names))
    return Matched(merged, ident, conn, fwd_lo, offsets, capture_windows(merged.points, offsets))


def split(table: pa.Table, ident: pd.Index, conn: np.ndarray, n: int) -> list[pa.Table]:
    """A detail table's rows by partition (``conn % n``), each with its merged ``lflow`` number."""
    lflow = ident.get_indexer(table.column("lfid").to_numpy())
    table = table.append_column("lflow", pa.array(lflow))
    part = conn[lflow] % n
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n + 1))
    table = table.take(pa.array(order))
    return [table.slice(bounds[i], bounds[i + 1] - bounds[i]) for i in range(n)]


def partition_count(rows: int, rows_per_partition: int) -> int:
    return max(1, -(-rows // rows_per_partition))


def partition(state: Pass1, m: Matched, out_dir: str, rows_per_partition: int) -> list[str]:
    """Spilled packets regrouped by connection (``conn % n``), one Arrow stream file per partition."""
    n = partition_count(state.rows, rows_per_partition)
    paths = [os.path.join(out_dir, f"part-{i:05d}.arrow") for i in range(n)]
    writers: list[Any] = [None] * n
    try:
        for path in state.spills:
            with pa.memory_map(path) as src:
                table = pa.ipc.open_file(src).read_all()
            for i, piece in enumerate(split(table, m.ident, m.conn, n)):
                if piece.num_rows:
                    if writers[i] is None:
                        writers[i] = pa.ipc.new_stream(paths[i], piece.schema)
                    writers[i].write_table(piece)
            del table
            os.unlink(path)
    finally:
        for w in writers:
            if w is not None:
                w.close()
    return [p for p, w in zip(paths, writers, strict=True) if w is not None]


def read_partition(path: str) -> pa.Table:
    with pa.OSFile(path, "rb") as src:
        return pa.ipc.open_stream(src).read_all()


def partition_detail(table: pa.Table, m: Matched, topology: Any) -> tuple[pd.DataFrame, ...]:
    """Step 3 on one partition: (hops, translations, connections, losses) of its connections."""
    from meshpkt.flows.connections import build_connections, build_hops, build_losses, build_translations
    from meshpkt.flows.reconstruct import connection_detail

    lflow = table.column("lflow").to_numpy()
    packets = pd.DataFrame({c: table.column(c).to_numpy() for c in DETAIL_COLUMNS})
    point = m.summaries.lflows["point"].cat.codes.to_numpy()[lflow]
    off = np.array([o.offset_ns if o.applied else 0 for o in m.offsets.values()] or [0], dtype=np.int64)
    fwd = table.column("dir_lo").to_numpy(zero_copy_only=False) == m.fwd_lo[lflow]
    assign = pd.DataFrame({"lflow": lflow, "conn": m.conn[lflow], "fwd": fwd,
                           "ts_corr": packets["ts_ns"].to_numpy() - off[point],
                           "dup": table.column("dup").to_numpy(zero_copy_only=False),
                           "key": table.column("key").to_numpy()})
    del table
    lf = m.summaries.lflows[list(LFLOW_COLUMNS)].assign(point=point_codes(m), conn=m.conn, fwd_lo=m.fwd_lo)
    rec = connection_detail(packets, assign, lf, topology, m.offsets, m.windows)
    hops = build_hops(rec)
    conns = build_connections(rec, hops, topology) if len(hops) else None
    return hops, build_translations(hops, topology), conns if conns is not None else pd.DataFrame(), \
        build_losses(rec, hops)


def point_codes(m: Matched) -> np.ndarray:
    return m.summaries.lflows["point"].cat.codes.to_numpy().astype(np.int32)


def _concat(frames: list[pd.DataFrame], sort: list[str]) -> pd.DataFrame:
    full = [f for f in frames if len(f)]
    if not full:
        return frames[0].iloc[:0].reset_index(drop=True) if frames else pd.DataFrame()
    out = pd.concat(full, ignore_index=True)
    return out.sort_values(sort, kind="stable").reset_index(drop=True)


def analyze_partitioned(captures: list[CaptureArg], *, topology: Any = None, vxlan_ports: Sequence[int] = (4789,),
                        problems: list[Any] | None = None, progress: Progress | None = None,
                        correct_clocks: bool = True, chunk_records: int = CHUNK_RECORDS,
                        partition_rows: int = PARTITION_ROWS, spill_dir: str | Path | None = None,
                        packets_out: tuple[str, Any] | None = None) -> Any:
    """Decode and reconstruct ``captures`` in bounded memory (see the module docstring); the
    :class:`~meshpkt.flows.Analysis` holds no packet table (``packets`` is empty): with
    ``packets_out=(format, path or binary stream)`` the per-packet export is written there instead."""
    from meshpkt.engine.run import resolve_topology

    return_freed_memory(setup=True)
    work = tempfile.mkdtemp(prefix="meshpkt-spill-", dir=spill_dir)
    try:
        state = first_pass(captures, api._ports(vxlan_ports), work, problems, progress, chunk_records,
                           export=packets_out is not None)
        if problems is not None and state.rows:
            problems.extend(state.problems)
        topo = infer_topology_from_sample(state, resolve_topology(captures, topology))
        state.topo_sample.clear()
        if state.rows == 0:
            from meshpkt.engine.run import empty_analysis

            if problems is not None:
                problems.extend(state.problems)
            return empty_analysis(state.counts.result(), topo, problems)
        m = match(state, correct_clocks)
        if packets_out is not None:
            write_packets(state, m, *packets_out)
        parts = partition(state, m, work, partition_rows)
        results = []
        for path in parts:
            results.append(partition_detail(read_partition(path), m, topo))
            os.unlink(path)
            return_freed_memory()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return assemble(results, state, m, topo, problems)


def infer_topology_from_sample(state: Pass1, topo: Any) -> Any:
    """``infer_topology`` on the distinct (point, addresses, flags) rows of every chunk: the same
    answer as on all packets (it only asks which addresses every packet of a point carries, and
    which sources sent SYNs)."""
    from meshpkt.flows.topology import infer_topology

    if state.topo_sample:
        sample = pd.concat([s.assign(point=s["point"].astype(str)) for s in state.topo_sample],
                           ignore_index=True).drop_duplicates(ignore_index=True)
    else:
        sample = pd.DataFrame({c: pd.Series([], dtype=np.int64) for c in _TOPO_COLUMNS})
    return infer_topology(sample, topo)


def assemble(results: list[tuple[pd.DataFrame, ...]], state: Pass1, m: Matched, topo: Any,
              problems: list[Any] | None) -> Any:
    from meshpkt.flows import Analysis, _empty_connections
    from meshpkt.flows.balance import balance

    hops = _concat([r[0] for r in results], ["conn_id"])
    translations = _concat([r[1] for r in results], ["conn_id"])
    conns = _concat([r[2] for r in results], ["conn_id"]) if len(hops) else _empty_connections()
    losses = _concat([r[3] for r in results], ["conn_id", "dir", "start"])
    summary = state.counts.result()
    summary["topology"] = "inferred" if topo.inferred else topo.source
    summary["connections"] = int(len(conns))
    summary["status"] = {str(k): int(v) for k, v in conns["status"].value_counts().items()} if len(conns) else {}
    summary["clock_offsets"] = {k: {"offset_ns": o.offset_ns, "uncertainty_ns": o.uncertainty_ns,
                                    "reference": o.reference, "applied": o.applied} for k, o in m.offsets.items()}
    bal = balance(conns) if len(conns) else {"per_entry": {}, "round_robin": {}}
    summary["balance"] = bal
    summary["problems"] = [str(getattr(p, "message", p)) for p in (problems or [])]
    return Analysis(api.empty_table(), hops, conns, translations, summary, m.offsets, bal, topo,
                    list(problems or []), losses)
