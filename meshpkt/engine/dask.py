"""The Dask engine: the partitioned analysis (:mod:`meshpkt.engine.partitioned`) as tasks on a Dask
cluster (``dask.distributed``).

1. one task per capture file decodes it chunk by chunk on a worker; the small local-flow summaries
   come back to the client, the per-packet detail table stays in the worker's memory;
2. the client matches the summaries into connections and broadcasts the (per local flow) result;
3. one task per file splits its detail table by connection partition, and one task per partition
   gathers its pieces from every worker (Dask's transfer is the shuffle) and reconstructs them;
4. the client concatenates the connection, hop and translation tables.

Every task is a pure function of file paths and broadcast data, so when a worker dies Dask
recomputes what it held on another worker (lineage) and the result does not change. A file
that cannot be read is one problem naming it, as with the local engine.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from meshpkt.capture.reader import CaptureProblem
from meshpkt.decode import api
from meshpkt.engine.decode import CaptureArg, _items, default_workers
from meshpkt.engine.partitioned import (
    CHUNK_RECORDS,
    PARTITION_ROWS,
    Matched,
    Pass1,
    _Carry,
    absorb,
    assemble,
    decode_chunk,
    infer_topology_from_sample,
    iter_chunks,
    match,
    partition_count,
    partition_detail,
    split,
)

#: Times a task is retried when its worker dies while running it.
RETRIES = 3


@dataclass
class FileResult:
    """What one decode task returns: the file's summaries (small) and detail table (big)."""

    state: Pass1
    detail: pa.Table | None


def decode_file_task(point: str | None, path: str, size: int, ports: tuple[int, ...], chunk: int,
                     parquet: bool = False) -> FileResult:
    """Worker: decode one capture file chunk by chunk (see ``partitioned.first_pass``), or read one
    file of a ``meshpkt decode`` dataset (``parquet``)."""
    from meshpkt.engine.dataset import read_part
    from meshpkt.engine.decode import _File

    state, carry, tables = Pass1(), _Carry(), []
    problems: list[CaptureProblem] = []
    if parquet:
        tables.append(absorb(state, carry, read_part(point or "", Path(path)))[0])
    for _f, cap, start, _n in [] if parquet else iter_chunks([_File(point, Path(path), size)], problems, chunk):
        table, _count = absorb(state, carry, decode_chunk(point, cap, start, ports))
        tables.append(table)
    state.problems = problems + state.problems
    detail = pa.concat_tables(tables) if tables else None
    return FileResult(state, detail)


def summaries_of(result: FileResult) -> Pass1:
    """Worker: the small part of a decode task's result (what the client gathers)."""
    return result.state


def split_task(result: FileResult, m: Matched, n: int) -> list[pa.Table | None]:
    """Worker: one file's detail rows by partition."""
    if result.detail is None:
        return [None] * n
    return list(split(result.detail, m.ident, m.conn, n))


def partition_task(pieces: list[pa.Table | None], m: Matched, topology: Any) -> tuple[pd.DataFrame, ...]:
    """Worker: one partition's pieces from every file, reconstructed."""
    tables = [p for p in pieces if p is not None and p.num_rows]
    if not tables:
        return (pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    return partition_detail(pa.concat_tables(tables), m, topology)


def _client(stack: ExitStack, client: Any, scheduler: str | None, workers: int | None) -> Any:
    """The client to use: the one given, one connected to ``scheduler``, or a local cluster."""
    if client is not None:
        return client
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return stack.enter_context(Client(scheduler))
    cluster = stack.enter_context(LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                               processes=True, dashboard_address=None))
    return stack.enter_context(Client(cluster))


def _merge_states(states: list[Pass1]) -> Pass1:
    out = Pass1()
    for s in states:
        out.summaries.extend(s.summaries)
        out.counts.merge(s.counts)
        out.topo_sample.extend(s.topo_sample)
        out.problems.extend(s.problems)
        out.rows += s.rows
    return out


def analyze_dask(captures: list[CaptureArg], *, topology: Any = None, vxlan_ports: Sequence[int] = (4789,),
                 problems: list[Any] | None = None, correct_clocks: bool = True, workers: int | None = None,
                 client: Any = None, scheduler: str | None = None, chunk_records: int = CHUNK_RECORDS,
                 partition_rows: int = PARTITION_ROWS, on_stage: Callable[[str, Any], None] | None = None) -> Any:
    """Decode and reconstruct ``captures`` on a Dask cluster (see the module docstring).

    ``client``: a ``distributed.Client`` to use; else ``scheduler`` (``tcp://host:8786``); else a
    local cluster of ``workers`` processes. ``on_stage(name, client)`` is called after
    ``"decoded"`` and ``"split"`` (progress, and tests that kill a worker mid-run).
    """
    from meshpkt.engine.dataset import dataset_files, split_inputs
    from meshpkt.engine.run import resolve_topology

    plain, sets = split_inputs(captures)
    tasks = [(f.point, str(f.path), f.size, False) for f in _items(plain, problems)]
    tasks += [(point, str(path), 0, True) for root in sets for point, path in dataset_files(root)]
    ports = api._ports(vxlan_ports)
    with ExitStack() as stack:
        c = _client(stack, client, scheduler, workers)
        decoded = [c.submit(decode_file_task, point, path, size, ports, chunk_records, parquet,
                            key=f"meshpkt-decode-{i}-{Path(path).name}", retries=RETRIES)
                   for i, (point, path, size, parquet) in enumerate(tasks)]
        state = _merge_states(c.gather([c.submit(summaries_of, d, retries=RETRIES) for d in decoded]))
        if on_stage is not None:
            on_stage("decoded", c)
        state.problems.sort(key=lambda p: not p.fatal)  # as the local engines: unreadable files first
        if problems is not None:
            problems.extend(state.problems)
        elif any(p.fatal for p in state.problems):
            from meshpkt.errors import CaptureError

            bad = next(p for p in state.problems if p.fatal)
            raise CaptureError(bad.message, bad.path)
        topo = infer_topology_from_sample(state, resolve_topology(captures, topology))
        if state.rows == 0:
            from meshpkt.engine.run import empty_analysis

            return empty_analysis(state.counts.result(), topo, problems)
        m = match(state, correct_clocks)
        small = replace(m, summaries=replace(m.summaries, anchors=m.summaries.anchors.iloc[:0]))
        m_fut = c.scatter(small, broadcast=True)
        n = partition_count(state.rows, partition_rows)
        splits = [c.submit(split_task, d, m_fut, n, retries=RETRIES) for d in decoded]
        if on_stage is not None:
            on_stage("split", c)
        parts = [c.submit(partition_task, [c.submit(operator.getitem, s, i, retries=RETRIES) for s in splits],
                          m_fut, topo, retries=RETRIES) for i in range(n)]
        results = c.gather(parts)
    return assemble(list(results), state, m, topo, problems)
