"""Captures -> the packet table (one row per packet, columns of ``schema.COLUMNS``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from meshpkt.capture.reader import (
    TS_OK,
    TS_RANGE,
    CaptureBuffer,
    CaptureProblem,
    capture_size,
    open_capture,
    release_pages,
)
from meshpkt.decode import fast, slow
from meshpkt.decode.schema import ABSENT, COLUMN_NAMES, COLUMNS, PRESENT_BITS, PROBLEM_BITS
from meshpkt.errors import CaptureError, UsageError

CAPTURE_GLOBS = ("*.pcap", "*.pcapng", "*.pcap.gz", "*.pcapng.gz")


def capture_stem(path: str | Path) -> str:
    """File name without ``.gz`` and ``.pcap``/``.pcapng``: ``node1.ingress_sbox.eth0.pcap.gz``
    -> ``node1.ingress_sbox.eth0``."""
    name = Path(path).name
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in (".pcapng", ".pcap"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def point_names(cap: CaptureBuffer, point: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(per-record category codes, category names) for the ``point`` column.

    A pcap, or a pcapng with one interface, is one point: ``point`` if given, else the file
    stem. A pcapng with several interfaces gives one point per interface: its ``if_name``
    (``<stem>.if<N>`` when it has none), prefixed with ``<point>.`` when ``point`` is given.
    """
    n = len(cap)
    base = point if point else capture_stem(cap.path)
    if cap.format != "pcapng" or len(cap.iface_names) <= 1:
        return np.zeros(n, np.int32), [base]
    stem = capture_stem(cap.path)
    names = []
    for i, nm in enumerate(cap.iface_names):
        leaf = nm if nm else f"{stem}.if{i}"
        if point and nm:
            leaf = f"{point}.{nm}"
        elif point:
            leaf = f"{point}.if{i}"
        names.append(leaf)
    cats = list(dict.fromkeys(names))
    code_of = np.array([cats.index(x) for x in names], dtype=np.int32)
    return code_of[cap.iface], cats


_GIVEN = ("record", "ts_ns", "caplen", "wirelen", "linktype")  # filled from the capture, not pre-filled


def _ports(vxlan_ports: Sequence[int]) -> tuple[int, ...]:
    ports = tuple(int(p) for p in vxlan_ports)
    if any(not 0 <= p <= 65535 for p in ports):
        raise UsageError(f"VXLAN ports must be 0..65535, got {list(vxlan_ports)}")
    return ports


def _alloc(n: int) -> dict[str, np.ndarray]:
    """Output columns for ``n`` packets, absent values pre-filled (except the given ones)."""
    cols = {name: np.full(n, absent, dtype=dtype) for name, (dtype, absent, _d) in COLUMNS.items()
            if dtype != "category" and name not in _GIVEN}
    for name in _GIVEN:
        cols[name] = np.empty(n, dtype=COLUMNS[name][0])
    return cols


def _decode_into(cap: CaptureBuffer, cols: dict[str, np.ndarray], base: int, ports: tuple[int, ...],
                 on_progress: Callable[[float], None] | None = None, force_slow: bool = False) -> None:
    """Decode every record of ``cap`` into rows ``base .. base + len(cap)`` of ``cols``."""
    n = len(cap)
    _given_columns(cap, cols, base)
    buf = cap.buffer
    off = np.asarray(cap.data_off, dtype=np.int64)
    cl = np.asarray(cap.caplen, dtype=np.int64)
    wl = np.asarray(cap.wirelen, dtype=np.int64)
    lt = np.asarray(cap.linktype, dtype=np.int64)
    if force_slow:
        _decode_slow(buf, off, cl, wl, lt, ports, cols, base)
    else:
        released = 0
        for s in range(0, n, fast.CHUNK):
            e = min(n, s + fast.CHUNK)
            fast.decode_chunk(buf, off[s:e], cl[s:e], wl[s:e], lt[s:e], ports, cols, base + s)
            if e < n:  # the file's pages before the next chunk are done with
                released = release_pages(buf, released, int(off[e]))
            if on_progress is not None:
                on_progress(e / n)
    _timestamp_validity(cap, cols, base)


def _given_columns(cap: CaptureBuffer, cols: dict[str, np.ndarray], base: int) -> None:
    rows_all = slice(base, base + len(cap))
    cols["record"][rows_all] = np.arange(len(cap), dtype=np.int64)
    cols["ts_ns"][rows_all] = cap.ts_ns
    cols["caplen"][rows_all] = cap.caplen
    cols["wirelen"][rows_all] = cap.wirelen
    cols["linktype"][rows_all] = cap.linktype


def _timestamp_validity(cap: CaptureBuffer, cols: dict[str, np.ndarray], base: int) -> None:
    """``present`` bit of ``ts_ns`` and the ``ts_range`` problem from the reader's flags."""
    rows_all = slice(base, base + len(cap))
    flags = cap.ts_flags
    if flags is None:
        cols["present"][rows_all] |= PRESENT_BITS["ts_ns"]
        return
    cols["present"][rows_all] |= np.where(flags == TS_OK, PRESENT_BITS["ts_ns"], 0).astype(np.uint16)
    cols["problems"][rows_all] |= np.where(flags == TS_RANGE, PROBLEM_BITS["ts_range"], 0).astype(np.uint16)


def _decode_slow(buf: np.ndarray, off: np.ndarray, cl: np.ndarray, wl: np.ndarray, lt: np.ndarray,
                 ports: tuple[int, ...], cols: dict[str, np.ndarray], base: int) -> None:
    """Every record through the exact per-packet reference decoder (for the tests)."""
    for i in range(off.shape[0]):
        o = int(off[i])
        r = slow.decode_packet(buf[o:o + int(cl[i])].tobytes(), int(wl[i]), int(lt[i]), ports)
        for k, v in r.items():
            cols[k][base + i] = v


def _frame(cols: dict[str, np.ndarray], codes: np.ndarray, cats: list[str]) -> pd.DataFrame:
    data: dict[str, object] = {}
    for name in COLUMN_NAMES:
        if name == "point":
            data[name] = pd.Categorical.from_codes(codes, categories=cats)
        elif COLUMNS[name][0] == "object":  # an explicit dtype spares pandas scanning for one
            data[name] = pd.Series(cols.pop(name), dtype=object, copy=False)
        else:
            data[name] = cols.pop(name)
    return pd.DataFrame(data, copy=False)


def decode_buffer(cap: CaptureBuffer, *, point: str | None = None, vxlan_ports: Sequence[int] = (4789,),
                  on_progress: Callable[[float], None] | None = None,
                  force_slow: bool = False) -> pd.DataFrame:
    """Decode every record of ``cap`` into the packet table (``schema.COLUMN_NAMES`` order).

    ``vxlan_ports``: UDP ports (source or destination) carrying VXLAN. ``force_slow`` runs
    every packet through the exact per-packet decoder (for testing). ``on_progress`` gets
    the fraction done now and then. The reader's damage reports are in
    ``df.attrs["problems"]`` (a list of ``CaptureProblem``).
    """
    ports = _ports(vxlan_ports)
    n = len(cap)
    cols = _alloc(n)
    _decode_into(cap, cols, 0, ports, on_progress, force_slow)
    codes, cats = point_names(cap, point)
    df = _frame(cols, codes, cats)
    df.attrs["problems"] = list(cap.problems)
    return df


def decode_file(path: str | Path, *, point: str | None = None,
                vxlan_ports: Sequence[int] = (4789,)) -> pd.DataFrame:
    """Read and decode one capture file (see ``decode_buffer``)."""
    return decode_buffer(open_capture(path), point=point, vxlan_ports=vxlan_ports)


def empty_table() -> pd.DataFrame:
    """A packet table with no rows and the schema's dtypes."""
    data: dict[str, object] = {}
    for name, (dtype, _absent, _) in COLUMNS.items():
        if dtype == "category":
            data[name] = pd.Categorical([])
        else:
            data[name] = np.array([], dtype=dtype)
    df = pd.DataFrame(data)
    df.attrs["problems"] = []
    return df


def expand_captures(captures: Iterable[str | Path | tuple[str, str | Path]]) -> list[tuple[str | None, Path]]:
    """(point or None, file) for every capture; directories expand to their capture files."""
    if isinstance(captures, (str, Path)):
        captures = [captures]
    out: list[tuple[str | None, Path]] = []
    for item in captures:
        if isinstance(item, tuple):
            point, path = item
            p = Path(path)
        else:
            point, p = None, Path(item)
        if p.is_dir():
            files = sorted({f for g in CAPTURE_GLOBS for f in p.glob(g) if f.is_file()})
            if not files:
                raise CaptureError("directory holds no capture files (*.pcap, *.pcapng, *.pcap.gz, "
                                   "*.pcapng.gz)", str(p))
            out.extend((point, f) for f in files)
        else:
            out.append((point, p))
    return out


def read(captures: Iterable[str | Path | tuple[str, str | Path]], *, vxlan_ports: Sequence[int] = (4789,),
         progress: Callable[[int, int], None] | None = None,
         problems: list[CaptureProblem] | None = None) -> pd.DataFrame:
    """Decode several captures into one packet table.

    ``captures``: paths, ``(point, path)`` tuples, or directories (their ``*.pcap``,
    ``*.pcapng``, ``*.pcap.gz``, ``*.pcapng.gz`` files, sorted). With ``problems`` a list,
    a file that cannot be read is recorded there (``fatal=True``) and skipped, and damage
    inside readable files is appended too; with ``problems=None`` the first unreadable file
    raises ``CaptureError`` and damage is reported with ``warnings.warn``.
    ``progress(bytes_done, bytes_total)`` is called now and then (on-disk sizes).
    """
    try:
        items = expand_captures(captures)
    except CaptureError as e:
        if problems is None:
            raise
        problems.append(CaptureProblem(e.path or "", -1, -1, e.message, fatal=True))
        items = []
    sizes = [capture_size(p) for _, p in items]
    total = max(sum(sizes), 1)
    done = 0
    if progress is not None:
        progress(0, total)
    found: list[CaptureProblem] = []
    opened: list[tuple[str | None, CaptureBuffer, int]] = []
    for (point, path), size in zip(items, sizes, strict=True):
        try:
            opened.append((point, open_capture(path), size))  # memory-mapped; records scanned
        except CaptureError as e:
            if problems is None:
                raise
            problems.append(CaptureProblem(str(path), -1 if e.record is None else e.record,
                                           -1 if e.offset is None else e.offset, e.message, fatal=True))
            done += size
            if progress is not None:
                progress(done, total)
    # one allocation for every file's rows: no per-file tables to concatenate afterwards
    ports = _ports(vxlan_ports)
    cols = _alloc(sum(len(cap) for _, cap, _ in opened))
    cats: list[str] = []
    codes: list[np.ndarray] = []
    base = 0
    for point, cap, size in opened:
        if progress is not None:
            progress(done + size // 4, total)

        def _chunk(frac: float, b: int = done, sz: int = size) -> None:
            if progress is not None:
                progress(b + sz // 4 + int(frac * (sz - sz // 4)), total)

        _decode_into(cap, cols, base, ports, _chunk if progress is not None else None)
        fcodes, fcats = point_names(cap, point)
        remap = np.array([_index(cats, c) for c in fcats], dtype=np.int32)
        codes.append(remap[fcodes])
        found.extend(cap.problems)
        base += len(cap)
        done += size
        if progress is not None:
            progress(done, total)
    opened.clear()
    if problems is not None:
        problems.extend(found)
    else:
        for pr in found:
            warnings.warn(str(pr), stacklevel=2)
    out = _frame(cols, np.concatenate(codes) if codes else np.zeros(0, np.int32), cats)
    out.attrs["problems"] = found
    return out


def _index(names: list[str], name: str) -> int:
    """Position of ``name`` in ``names``, appending it when new."""
    if name not in names:
        names.append(name)
    return names.index(name)


__all__ = ["ABSENT", "capture_stem", "decode_buffer", "decode_file", "empty_table", "expand_captures",
           "point_names", "read"]
