"""Reading pcap / pcapng captures (plain or gzip) into one buffer plus per-record arrays.

The whole (decompressed) file is read into a single ``uint8`` buffer; a small numba kernel
walks the record headers sequentially and fills per-record arrays (offset of the packet
bytes, lengths, timestamp, interface); everything after that is numpy. Damaged data does
not lose the good records: a truncated last record or garbage in the middle is skipped
(the reader resynchronises on the next plausible record header) and described in
``CaptureBuffer.problems``. Input that is not a capture at all raises ``CaptureError``.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshpkt.capture import linktypes
from meshpkt.errors import CaptureError

#: spare bytes allocated after decompressed data (avoids regrowing for the last chunk)
PAD = 1024

PCAP_MAGICS: dict[bytes, tuple[bool, int]] = {
    # first 4 bytes of the file -> (byte-swapped relative to little-endian?, fraction unit)
    b"\xd4\xc3\xb2\xa1": (False, 1_000_000),       # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (True, 1_000_000),        # big-endian, microseconds
    b"\x4d\x3c\xb2\xa1": (False, 1_000_000_000),   # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (True, 1_000_000_000),    # big-endian, nanoseconds
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class CaptureProblem:
    """Damage found (and skipped) while reading a capture."""

    path: str
    record: int
    offset: int
    message: str
    #: True when the whole file was skipped (``read(..., problems=[...])`` of a non-capture)
    fatal: bool = False

    def __str__(self) -> str:
        where = [self.path]
        if self.record >= 0:
            where.append(f"record {self.record}")
        if self.offset >= 0:
            where.append(f"byte offset {self.offset}")
        return f"{', '.join(where)}: {self.message}"


@dataclass
class CaptureBuffer:
    """A whole capture in memory: one byte buffer and per-record numpy arrays.

    ``buffer`` holds the decompressed file; ``data_off[i]`` is where record ``i``'s packet
    bytes start in it, ``caplen[i]`` how many were captured. ``record_off[i]`` is the byte
    offset of the record (or pcapng block) header, for error messages. Offsets refer to the
    decompressed stream. ``iface`` indexes ``iface_names``/``iface_linktypes`` (a pcap file
    has one nameless interface).
    """

    path: str
    format: str
    buffer: np.ndarray
    data_off: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    linktype: np.ndarray
    iface: np.ndarray
    record_off: np.ndarray
    iface_names: list[str] = field(default_factory=list)
    iface_linktypes: list[int] = field(default_factory=list)
    problems: list[CaptureProblem] = field(default_factory=list)
    #: per record: TS_OK, TS_ABSENT (a pcapng simple packet block) or TS_RANGE (does not fit
    #: int64 nanoseconds since the epoch; ``ts_ns`` is 0 there); None: every one TS_OK
    ts_flags: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.data_off.shape[0])

    def packet(self, i: int) -> bytes:
        """The captured bytes of record ``i``."""
        o = int(self.data_off[i])
        return self.buffer[o:o + int(self.caplen[i])].tobytes()


# ------------------------------------------------------------------------------ loading


def _load(path: str | Path) -> tuple[np.ndarray, int, list[str]]:
    """(read-only byte buffer, data length, notes about the compression layer).

    A plain file is memory-mapped (private, read-only, pre-faulted): no copy, and the pages
    are the page cache's. A gzip file is decompressed into one array.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CaptureError("no such file", str(path)) from None
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}", str(path)) from None
    if p.is_dir():
        raise CaptureError("is a directory, not a capture file", str(path))
    if st.st_size == 0 and p.is_file():
        raise CaptureError("empty file (0 bytes), not a capture", str(path))
    try:
        with open(p, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == GZIP_MAGIC:
                buf, n, notes = _load_gzip(f, st.st_size, str(path))
            else:
                buf = _load_plain(f, st.st_size)
                n, notes = int(buf.shape[0]), []
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}", str(path)) from None
    if n == 0:
        raise CaptureError("empty file (0 bytes), not a capture", str(path))
    buf = buf[:n]
    buf.flags.writeable = False
    return buf, n, notes


def _load_plain(f, size: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    try:
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        return np.frombuffer(mm, dtype=np.uint8)
    except (ValueError, OSError):  # not mappable (pipe, special file): read it
        data = f.read()
        return np.frombuffer(data, dtype=np.uint8)


def _load_gzip(f, csize: int, path: str) -> tuple[np.ndarray, int, list[str]]:  # type: ignore[no-untyped-def]
    notes: list[str] = []
    f.seek(max(0, csize - 4))
    tail = f.read(4)
    f.seek(0)
    hint = struct.unpack("<I", tail)[0] if len(tail) == 4 else 0
    hint = min(hint, csize * 1100) if hint else csize * 4
    buf = np.zeros(max(hint, 1024) + PAD, dtype=np.uint8)
    n = 0
    d = zlib.decompressobj(wbits=31)
    in_member = False
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        while chunk:
            try:
                out = d.decompress(chunk)
            except zlib.error as e:
                if n == 0:
                    raise CaptureError(f"not a valid gzip file ({e})", path) from None
                notes.append(f"gzip data damaged after {n} decompressed bytes ({e}); rest ignored")
                return buf, n, notes
            in_member = True
            if n + len(out) + PAD > buf.shape[0]:
                nb = np.zeros(max(2 * buf.shape[0], n + len(out) + PAD), dtype=np.uint8)
                nb[:n] = buf[:n]
                buf = nb
            buf[n:n + len(out)] = np.frombuffer(out, dtype=np.uint8)
            n += len(out)
            chunk = b""
            if d.eof:
                in_member = False
                rest = d.unused_data
                d = zlib.decompressobj(wbits=31)
                if rest[:2] == GZIP_MAGIC:
                    chunk = rest
                elif rest:
                    # trailing garbage after the last member: gzip(1) ignores it too
                    notes.append("trailing bytes after the gzip stream ignored")
    if in_member:
        notes.append("gzip stream ends early (file truncated?)")
    return buf, n, notes


def _mmap_of(buf: np.ndarray) -> mmap.mmap | None:
    b: object = buf
    while b is not None:
        if isinstance(b, mmap.mmap):
            return b
        if isinstance(b, memoryview):
            b = b.obj
            continue
        b = getattr(b, "base", None)
    return None


def release_pages(buf: np.ndarray, start: int, end: int) -> int:
    """Tell the kernel this process no longer needs bytes [start, end) of a memory-mapped
    capture buffer (they stay in the page cache and are mapped again if touched). Keeps the
    resident set small while a big capture is decoded front to back. Returns the page-aligned
    end actually released (``start`` when nothing was done)."""
    mm = _mmap_of(buf)
    if mm is None or not hasattr(mmap, "MADV_DONTNEED"):
        return start
    page = mmap.PAGESIZE
    lo = (start + page - 1) // page * page
    hi = end // page * page
    if hi <= lo:
        return start
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError):
        return start
    return hi


# ------------------------------------------------------------------------------ parsing


def open_capture(path: str | Path) -> CaptureBuffer:
    """Read a whole pcap/pcapng capture (plain or gzip, detected by magic) into memory.

    Raises ``CaptureError`` for input that is not a readable capture (missing file,
    directory, empty, wrong magic, unsupported link type). Damage after a valid header
    is skipped and reported in ``problems``.
    """
    buf, n, notes = _load(path)
    spath = str(path)
    head = buf[:4].tobytes()
    if n < 4:
        raise CaptureError(f"not a pcap or pcapng file (only {n} bytes)", spath)
    if head in PCAP_MAGICS:
        cap = _read_pcap(buf, n, spath)
        fmt_note_off = n
    elif head == PCAPNG_SHB:
        cap = _read_pcapng(buf, n, spath)
        fmt_note_off = n
    else:
        raise CaptureError(f"not a pcap or pcapng file (starts with {_show(buf[:8].tobytes())})", spath)
    for note in notes:
        cap.problems.append(CaptureProblem(spath, len(cap), fmt_note_off, note))
    return cap


def _show(b: bytes) -> str:
    if all(32 <= c < 127 or c in (9, 10, 13) for c in b):
        return repr(b.decode("ascii"))
    return "0x" + b.hex()


def _check_linktypes(path: str, lts: list[int], used: np.ndarray | None = None,
                     record_off: np.ndarray | None = None) -> None:
    for i, lt in enumerate(lts):
        if lt in linktypes.SUPPORTED:
            continue
        record: int | None = None
        offset: int | None = 20  # the pcap file header's link-type field
        if used is not None:
            hits = np.nonzero(used == i)[0]
            if not hits.size:
                continue  # an interface nobody captured on
            record = int(hits[0])
            offset = int(record_off[record]) if record_off is not None else None
        raise CaptureError(
            f"unsupported link type {lt} ({linktypes.name(lt)}); meshpkt reads "
            + ", ".join(str(x) for x in sorted(linktypes.SUPPORTED)), path, record, offset)


CAP0 = 4096


def _grow(arrs: list[np.ndarray], n: int, start: int, pos: int, n_bytes: int) -> list[np.ndarray]:
    """Bigger record arrays: room for the whole file at the average record size seen so far."""
    guess = int((n_bytes - start) / max((pos - start) / max(n, 1), 1.0) * 1.1) + 1024
    size = max(2 * arrs[0].shape[0], guess)
    out = []
    for a in arrs:
        b = np.empty(size, dtype=a.dtype)
        b[:n] = a[:n]
        out.append(b)
    return out


def _read_pcap(buf: np.ndarray, n: int, path: str) -> CaptureBuffer:
    from meshpkt.capture import _scan

    if n < 24:
        raise CaptureError(f"pcap file header truncated ({n} of 24 bytes)", path, offset=0)
    swapped, unit = PCAP_MAGICS[buf[:4].tobytes()]
    end = ">" if swapped else "<"
    _vmaj, _vmin, _tz, _sig, snaplen, lt_field = struct.unpack(end + "HHiIII", buf[4:24].tobytes())
    lt = lt_field & 0xFFFF
    _check_linktypes(path, [lt])
    maxsnap = max(int(snaplen), 262144)
    cap0 = CAP0
    roff = np.empty(cap0, np.int64)
    ts = np.empty(cap0, np.int64)
    cl = np.empty(cap0, np.int64)
    wl = np.empty(cap0, np.int64)
    problems: list[CaptureProblem] = []
    pos, cnt, prev = 24, 0, -1
    while True:
        st, cnt, pos, prev, _ = _scan.scan_pcap(buf, n, pos, swapped, unit, maxsnap, prev, roff, ts, cl, wl,
                                                 cnt)
        if st == _scan.OK_END:
            break
        if st == _scan.FULL:
            roff, ts, cl, wl = _grow([roff, ts, cl, wl], cnt, 24, pos, n)
            continue
        q = int(_scan.resync_pcap(buf, n, pos + 1, swapped, unit, maxsnap, prev))
        if q < 0:
            problems.append(CaptureProblem(path, cnt, pos, _pcap_tail_message(buf, n, pos, swapped)))
            break
        problems.append(CaptureProblem(
            path, cnt, pos, f"damaged data: no valid record header, skipped {q - pos} bytes "
                            f"up to byte offset {q} and resumed"))
        pos = q
    roff = roff[:cnt].copy()
    return CaptureBuffer(
        path=path, format="pcap", buffer=buf[:n], data_off=roff + 16,
        caplen=cl[:cnt].astype(np.uint32), wirelen=wl[:cnt].astype(np.uint32), ts_ns=ts[:cnt].copy(),
        linktype=np.full(cnt, lt, np.uint16), iface=np.zeros(cnt, np.int32), record_off=roff,
        iface_names=[""], iface_linktypes=[lt], problems=problems)


def _pcap_tail_message(buf: np.ndarray, n: int, pos: int, swapped: bool) -> str:
    left = n - pos
    if left < 16:
        return f"truncated last record: only {left} of 16 header bytes present"
    fmt = ">IIII" if swapped else "<IIII"
    _s, _f, incl, _o = struct.unpack(fmt, buf[pos:pos + 16].tobytes())
    if incl <= 262144 * 4 and pos + 16 + incl > n:
        return f"truncated last record: header says {incl} bytes, only {left - 16} present"
    return f"damaged data: no valid record header in the last {left} bytes; ignored"


# ------------------------------------------------------------------------------- pcapng


TS_OK, TS_ABSENT, TS_RANGE = 0, 1, 2
_I64_MAX = 2**63 - 1


def _ts_fits(raw: np.ndarray, resol: int, tsoff: int) -> np.ndarray:
    """Which raw pcapng timestamps (non-negative) convert to int64 ns without overflow."""
    if resol & 0x80:
        scale = 1e9 / 2.0 ** (resol & 0x7F)
    else:
        scale = 10.0 ** (9 - resol)
    approx = raw.astype(np.float64) * scale + float(tsoff) * 1e9
    fits = (approx < 9.2e18) & (approx > -9.2e18)
    if not (resol & 0x80) and resol <= 9:  # exact for the common decimal resolutions
        fits &= raw <= (_I64_MAX - max(tsoff, 0) * 1_000_000_000) // 10 ** (9 - resol)
    return fits


def _pcapng_times(raw: np.ndarray, ifs: np.ndarray, resols: list[int],
                  tsoffs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ts_ns, TS_* flags) of raw pcapng timestamps: -1 marks a simple packet block (no
    timestamp), another negative value a 64-bit count above 2**63 (does not fit)."""
    ts_ns = np.zeros(raw.shape[0], np.int64)
    flags = np.where(raw == -1, TS_ABSENT, np.where(raw < 0, TS_RANGE, TS_OK)).astype(np.uint8)
    for g in range(len(resols)):
        m = (ifs == g) & (flags == TS_OK)
        if not m.any():
            continue
        r = raw[m]
        fits = _ts_fits(r, resols[g], tsoffs[g])
        with np.errstate(over="ignore"):
            conv = _tsresol_to_ns(np.where(fits, r, 0), resols[g]) + tsoffs[g] * 1_000_000_000
        ts_ns[m] = np.where(fits, conv, 0)
        sub = flags[m]
        sub[~fits] = TS_RANGE
        flags[m] = sub
    return ts_ns, flags


def _tsresol_to_ns(raw: np.ndarray, resol: int) -> np.ndarray:
    if resol & 0x80:
        k = resol & 0x7F
        if k <= 30:
            return (raw >> k) * 1_000_000_000 + (((raw & ((1 << k) - 1)) * 1_000_000_000) >> k)
        return (raw.astype(np.float64) * (1e9 / 2.0 ** k)).astype(np.int64)
    if resol <= 9:
        return raw * (10 ** (9 - resol))
    return raw // (10 ** (resol - 9))


class _Pcapng:
    """The state of a pcapng scan: interfaces so far, record arrays, problems."""

    def __init__(self, buf: np.ndarray, n: int, path: str) -> None:
        self.buf, self.n, self.path = buf, n, path
        self.names: list[str] = []
        self.lts: list[int] = []
        self.resols: list[int] = []
        self.tsoffs: list[int] = []
        self.problems: list[CaptureProblem] = []
        self.arrays = [np.empty(CAP0, np.int64) for _ in range(6)]  # roff, doff, ts, cl, wl, ifs
        self.swapped = False
        self.n_if = 0
        self.base = 0
        self.sections = 0
        self.status = 0

    def _u32(self, at: int) -> int:
        return int(struct.unpack((">" if self.swapped else "<") + "I", self.buf[at:at + 4].tobytes())[0])

    def section(self, pos: int) -> int | None:
        """A section header block at pos: the next position, or None when it is damaged (the
        caller resynchronises; in the first section that is fatal)."""
        from meshpkt.capture import _scan

        bom = self.buf[pos + 8:pos + 12].tobytes()
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            if self.sections == 0:
                raise CaptureError("not a pcapng file (bad byte-order magic in the section header)",
                                   self.path, offset=pos)
            self.status = _scan.BAD
            return None
        new_swapped = bom == b"\x1a\x2b\x3c\x4d"
        blen = struct.unpack(">I" if new_swapped else "<I", self.buf[pos + 4:pos + 8].tobytes())[0]
        if blen < 28 or blen % 4 or pos + blen > self.n:
            if self.sections == 0:
                raise CaptureError("pcapng section header block damaged", self.path, offset=pos)
            self.status = _scan.BAD if pos + blen <= self.n else _scan.SHORT
            return None
        self.swapped = new_swapped
        self.sections += 1
        self.base = len(self.names)
        self.n_if = 0
        return int(pos + blen)

    def interface(self, pos: int) -> int:
        """An interface description block at pos: the next position."""
        end = ">" if self.swapped else "<"
        blen = self._u32(pos + 4)
        lt, _res, _snap = struct.unpack(end + "HHI", self.buf[pos + 8:pos + 16].tobytes())
        name, resol, tsoff = _idb_options(self.buf[pos + 16:pos + blen - 4].tobytes(), end)
        self.names.append(name)
        self.lts.append(int(lt))
        self.resols.append(resol)
        self.tsoffs.append(tsoff)
        self.n_if += 1
        return pos + blen

    def damaged(self, pos: int, cnt: int, short: bool) -> int | None:
        """Resynchronise after a bad block at pos: the next good position, or None at the end."""
        from meshpkt.capture import _scan

        q = int(_scan.resync_pcapng(self.buf, self.n, pos + 1, self.swapped))
        if q < 0:
            left = self.n - pos
            msg = (f"truncated last block: only {left} bytes present" if short
                   else f"damaged data: no valid block in the last {left} bytes; ignored")
            self.problems.append(CaptureProblem(self.path, cnt, pos, msg))
            return None
        self.problems.append(CaptureProblem(self.path, cnt, pos, f"damaged data: invalid block, skipped "
                                                                 f"{q - pos} bytes up to byte offset {q} and resumed"))
        return q

    def scan(self) -> int:
        """Walk every block; the number of packet records."""
        from meshpkt.capture import _scan

        pos, cnt = 0, 0
        while True:
            before = cnt
            roff, doff, ts, cl, wl, ifs = self.arrays
            self.status, cnt, pos, _ = _scan.scan_pcapng(self.buf, self.n, pos, self.swapped, self.n_if,
                                                         roff, doff, ts, cl, wl, ifs, cnt)
            if cnt > before and self.base:
                self.arrays[5][before:cnt] += self.base
            nxt: int | None = None
            if self.status == _scan.OK_END:
                return cnt
            if self.status == _scan.FULL:
                self.arrays = _grow(self.arrays, cnt, 0, pos, self.n)
                continue
            if self.status == _scan.NEED_PY:
                is_shb = self.buf[pos:pos + 4].tobytes() == PCAPNG_SHB
                nxt = self.section(pos) if is_shb else self.interface(pos)
            elif self.status == _scan.BAD_IFACE:
                self.problems.append(CaptureProblem(self.path, cnt, pos, f"packet block names an interface "
                                                    f"not described in its section ({self.n_if} interfaces); skipped"))
                nxt = pos + self._u32(pos + 4)
            if nxt is None:
                nxt = self.damaged(pos, cnt, self.status == _scan.SHORT)
                if nxt is None:
                    return cnt
            pos = nxt


def _read_pcapng(buf: np.ndarray, n: int, path: str) -> CaptureBuffer:
    if n < 28:
        raise CaptureError(f"pcapng section header truncated ({n} bytes)", path, offset=0)
    ng = _Pcapng(buf, n, path)
    cnt = ng.scan()
    roff, doff, ts, cl, wl, ifs = ng.arrays
    ifs_a = ifs[:cnt].astype(np.int32)
    ts_ns, ts_flags = _pcapng_times(ts[:cnt], ifs_a, ng.resols, ng.tsoffs)
    lt_arr = np.asarray(ng.lts, dtype=np.uint16)[ifs_a] if ng.lts else np.zeros(cnt, np.uint16)
    _check_linktypes(path, ng.lts, ifs_a, roff[:cnt])
    return CaptureBuffer(
        path=path, format="pcapng", buffer=buf[:n], data_off=doff[:cnt].copy(),
        caplen=cl[:cnt].astype(np.uint32), wirelen=wl[:cnt].astype(np.uint32), ts_ns=ts_ns,
        linktype=lt_arr, iface=ifs_a, record_off=roff[:cnt].copy(),
        iface_names=ng.names, iface_linktypes=ng.lts, problems=ng.problems,
        ts_flags=None if not ts_flags.any() else ts_flags)


def _idb_options(opts: bytes, end: str) -> tuple[str, int, int]:
    name, resol, tsoff = "", 6, 0
    i = 0
    while i + 4 <= len(opts):
        code, ln = struct.unpack(end + "HH", opts[i:i + 4])
        val = opts[i + 4:i + 4 + ln]
        if code == 0:
            break
        if code == 2:
            name = val.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif code == 9 and ln >= 1:
            resol = val[0]
        elif code == 14 and ln == 8:
            tsoff = struct.unpack(end + "q", val)[0]
        i += 4 + ln + (-ln % 4)
    return name, resol, tsoff


# ------------------------------------------------------------------------------ streams


def iter_records(path: str | Path) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield ``(ts_ns, linktype, iface, captured_bytes)`` for every good record.

    Like dpkt's ``pcap.Reader`` but for every format ``open_capture`` reads. Damage is
    skipped as in ``open_capture`` (read ``open_capture(path).problems`` to see it).
    """
    cap = open_capture(path)
    buf = cap.buffer
    for i in range(len(cap)):
        o = int(cap.data_off[i])
        yield (int(cap.ts_ns[i]), int(cap.linktype[i]), int(cap.iface[i]),
               buf[o:o + int(cap.caplen[i])].tobytes())


def capture_size(path: str | Path) -> int:
    """Size of the file on disk (0 when it cannot be stat'ed); used for progress."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
