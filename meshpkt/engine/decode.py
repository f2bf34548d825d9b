"""Captures -> the packet table, in this process or in parallel worker processes.

The same table as ``meshpkt.decode.read`` (same rows, same order, same dtypes, damage reported
the same way), plus progress in packets as well as bytes, and several capture files decoded at
once by a process pool (one file per task). Workers hand their table back as an Arrow IPC file
in shared memory (``/dev/shm``), which the parent copies into the one allocation of the final
table and deletes: no pickled DataFrames, and at most one file's table is held twice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from meshpkt.capture.reader import CaptureBuffer, CaptureProblem, capture_size, open_capture
from meshpkt.decode import api
from meshpkt.errors import CaptureError

if TYPE_CHECKING:
    import pyarrow as pa

#: ``progress(bytes_done, bytes_total, packets_done)``
Progress = Callable[[int, int, int], None]
CaptureArg = str | Path | tuple[str, str | Path]

#: A worker's answer: (Arrow IPC path, packets, point names, damage, fatal problem)
_Result = tuple[str | None, int, list[str], list[CaptureProblem], CaptureProblem | None]

#: Below this much input, worker processes cost more (their start-up) than they save.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class _File:
    point: str | None
    path: Path
    size: int


def _items(captures: Iterable[CaptureArg], problems: list[CaptureProblem] | None) -> list[_File]:
    try:
        items = api.expand_captures(captures)
    except CaptureError as e:
        if problems is None:
            raise
        problems.append(CaptureProblem(e.path or "", -1, -1, e.message, fatal=True))
        return []
    return [_File(point, path, capture_size(path)) for point, path in items]


def _fatal(path: Path, e: CaptureError) -> CaptureProblem:
    return CaptureProblem(str(path), -1 if e.record is None else e.record, -1 if e.offset is None else e.offset,
                          e.message, fatal=True)


def default_workers() -> int:
    """Worker processes for decoding: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def read_captures(captures: Iterable[CaptureArg], *, vxlan_ports: Sequence[int] = (4789,),
                  problems: list[CaptureProblem] | None = None, progress: Progress | None = None,
                  workers: int | None = None) -> pd.DataFrame:
    """Decode captures into one packet table (see ``meshpkt.decode.read`` for the arguments and
    how bad input is reported). ``workers``: processes for decoding several files at once
    (default: the CPUs available; used only for two files or more and enough input). Datasets
    written by ``meshpkt decode --out DIR`` are read alongside the captures."""
    from meshpkt.engine.dataset import read_datasets, split_inputs

    captures, sets = split_inputs(list(captures))
    files = _items(captures, problems)
    ports = api._ports(vxlan_ports)
    nworkers = default_workers() if workers is None else max(1, workers)
    total = max(sum(f.size for f in files), 1)
    if progress is not None:
        progress(0, total, 0)
    parallel = nworkers > 1 and len(files) > 1 and total >= PARALLEL_MIN_BYTES
    if parallel:
        table, found = _decode_parallel(files, ports, min(nworkers, len(files)), problems, progress, total)
    else:
        table, found = _decode_local(files, ports, problems, progress, total)
    if problems is not None:
        problems.extend(found)
    else:
        for pr in found:
            warnings.warn(str(pr), stacklevel=2)
    if sets:
        table = concat_tables([table, *read_datasets(sets)] if files else read_datasets(sets))
    table.attrs["problems"] = found
    return table


def concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Packet tables one after the other (``point`` categories in order of first appearance)."""
    if len(tables) == 1:
        return tables[0]
    names = list(dict.fromkeys(str(c) for t in tables for c in t["point"].cat.categories))
    fixed = [t.assign(point=pd.Categorical(t["point"].astype(str), categories=names)) for t in tables]
    return pd.concat(fixed, ignore_index=True)


class _Points:
    """Point names of the whole table, and each file's codes mapped onto them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.codes: list[np.ndarray] = []

    def add(self, file_codes: np.ndarray, file_names: list[str]) -> None:
        for name in file_names:
            if name not in self.names:
                self.names.append(name)
        remap = np.array([self.names.index(c) for c in file_names], dtype=np.int32)
        self.codes.append(remap[file_codes] if len(file_names) else file_codes.astype(np.int32))

    def all_codes(self) -> np.ndarray:
        return np.concatenate(self.codes) if self.codes else np.zeros(0, np.int32)


def _decode_local(files: list[_File], ports: tuple[int, ...], problems: list[CaptureProblem] | None,
                  progress: Progress | None, total: int) -> tuple[pd.DataFrame, list[CaptureProblem]]:
    """Every file in this process, into one allocation (no per-file tables to concatenate)."""
    opened: list[tuple[_File, CaptureBuffer]] = []
    done = 0
    for f in files:
        try:
            opened.append((f, open_capture(f.path)))  # memory-mapped; records scanned
        except CaptureError as e:
            if problems is None:
                raise
            problems.append(_fatal(f.path, e))
            done += f.size
    cols = api._alloc(sum(len(cap) for _, cap in opened))
    points, found = _Points(), []
    base = 0
    for f, cap in opened:
        n = len(cap)

        def tick(frac: float, b: int = done, sz: int = f.size, p0: int = base, n_: int = n) -> None:
            if progress is not None:
                progress(b + int(frac * sz), total, p0 + int(frac * n_))

        api._decode_into(cap, cols, base, ports, tick if progress is not None else None)
        points.add(*api.point_names(cap, f.point))
        found.extend(cap.problems)
        base += n
        done += f.size
        if progress is not None:
            progress(done, total, base)
    opened.clear()
    return api._frame(cols, points.all_codes(), points.names), found


def _decode_to_ipc(point: str | None, path: str, ports: tuple[int, ...], out_dir: str
                   ) -> _Result:
    """Worker: decode one file into an Arrow IPC file; (ipc path, packets, point names, damage,
    fatal problem)."""
    import pyarrow as pa

    try:
        df = api.decode_buffer(open_capture(path), point=point, vxlan_ports=ports)
    except CaptureError as e:
        return None, 0, [], [], _fatal(Path(path), e)
    found = list(df.attrs.get("problems", []))
    names = [str(c) for c in df["point"].cat.categories]
    df.attrs = {}
    df["point"] = df["point"].cat.codes.to_numpy().astype(np.int32)
    table = pa.Table.from_pandas(df, preserve_index=False)
    del df
    fd, ipc = tempfile.mkstemp(suffix=".arrow", dir=out_dir)
    with os.fdopen(fd, "wb") as fh, pa.ipc.new_file(fh, table.schema) as writer:
        writer.write_table(table)
    return ipc, table.num_rows, names, found, None


def _shm_dir() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="meshpkt-decode-", dir=base)


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["meshpkt.engine.decode"])  # imports and numba kernels loaded once
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _decode_parallel(files: list[_File], ports: tuple[int, ...], workers: int,
                     problems: list[CaptureProblem] | None, progress: Progress | None,
                     total: int) -> tuple[pd.DataFrame, list[CaptureProblem]]:
    """One task per file on a process pool; results gathered in file order."""
    out_dir = _shm_dir()
    try:
        results: dict[int, _Result] = {}
        with _pool(workers) as pool:
            futs: dict[Future[_Result], int] = {
                pool.submit(_decode_to_ipc, f.point, str(f.path), ports, out_dir): i for i, f in enumerate(files)}
            done = packets = 0
            for fut in as_completed(futs):
                i = futs[fut]
                results[i] = fut.result()
                done += files[i].size
                packets += results[i][1]
                if progress is not None:
                    progress(done, total, packets)
        for i in range(len(files)):
            fatal = results[i][4]
            if fatal is not None:
                if problems is None:
                    raise CaptureError(fatal.message, fatal.path)
                problems.append(fatal)
        return _gather([results[i] for i in range(len(files))]), [p for i in range(len(files))
                                                                   for p in results[i][3]]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _gather(results: list[_Result]) -> pd.DataFrame:
    """Copy the workers' IPC tables into one allocation, in file order, deleting each when copied."""
    import pyarrow as pa

    cols = api._alloc(sum(n for ipc, n, _, _, _ in results if ipc is not None))
    points = _Points()
    base = 0
    for ipc, n, names, _, _ in results:
        if ipc is None:
            continue
        with pa.memory_map(ipc) as source:
            table = pa.ipc.open_file(source).read_all()
            for name, arr in cols.items():
                _copy_column(table.column(name), arr, base, n)
            points.add(table.column("point").to_numpy().astype(np.int32), names)
            del table
        os.unlink(ipc)
        base += n
    return api._frame(cols, points.all_codes(), points.names)


def _copy_column(col: pa.ChunkedArray, arr: np.ndarray, base: int, n: int) -> None:
    """Rows ``base .. base + n`` of ``arr`` from an Arrow column (object columns: only non-nulls)."""
    if arr.dtype != object:
        arr[base:base + n] = col.to_numpy()
        return
    flat = col.combine_chunks()
    valid = flat.is_valid()
    if flat.null_count < len(flat):
        arr[base + np.flatnonzero(valid.to_numpy(zero_copy_only=False))] = flat.filter(valid).to_pylist()
