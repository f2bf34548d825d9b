"""Numba kernels for the sequential part of reading a capture: walking record headers.

Each kernel fills preallocated arrays and returns a status so that the (rare) unusual
cases -- capacity exhausted, damaged data, pcapng section/interface blocks -- are handled
in Python. Everything here is compiled once and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# kernel status codes
OK_END = 0          # reached the end of the buffer exactly
FULL = 1            # output arrays are full; call again from ``pos``
BAD = 2             # implausible record/block header at ``pos``
SHORT = 3           # the record at ``pos`` runs past the end of the buffer
NEED_PY = 4         # pcapng: a block Python must parse (SHB, IDB) at ``pos``
BAD_IFACE = 5       # pcapng: a packet block names an interface that was not described

#: the scans read every cache line of the buffer in order, this many bytes ahead of the record
#: being parsed (a sequential stream the hardware prefetcher follows; without it each record
#: header is a dependent cache miss -- the walk is a pointer chase)
TOUCH_AHEAD = 4096

DAY_NS = 86_400 * 1_000_000_000
YEAR_NS = 366 * DAY_NS
MAX_WIRE = 1 << 24


@njit(cache=True, inline="always")
def _u32(buf, p, swapped):  # type: ignore[no-untyped-def]  # pragma: no cover - numba
    p = np.uint64(p)  # unsigned index: no negative-index wraparound code
    if swapped:
        return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + np.uint64(1)]) << 16)
                | (np.int64(buf[p + np.uint64(2)]) << 8) | np.int64(buf[p + np.uint64(3)]))
    return ((np.int64(buf[p + np.uint64(3)]) << 24) | (np.int64(buf[p + np.uint64(2)]) << 16)
            | (np.int64(buf[p + np.uint64(1)]) << 8) | np.int64(buf[p]))


@njit(cache=True, inline="always")
def _u16(buf, p, swapped):  # type: ignore[no-untyped-def]  # pragma: no cover - numba
    p = np.uint64(p)
    if swapped:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + np.uint64(1)])
    return (np.int64(buf[p + np.uint64(1)]) << 8) | np.int64(buf[p])


@njit(cache=True, inline="always")
def _touch(buf, pf, upto, acc):  # type: ignore[no-untyped-def]  # pragma: no cover - numba
    """Read one byte per 64-byte line of buf[pf:upto]; returns (new pf, acc ^ those bytes)."""
    while pf < upto:
        acc ^= np.int64(buf[np.uint64(pf)])
        pf += 64
    return pf, acc


@njit(cache=True)
def _pcap_hdr(buf, p, swapped, unit, maxsnap):  # pragma: no cover - numba
    """(ok, ts_ns, incl, orig) of the pcap record header at ``p`` (loose checks)."""
    sec = _u32(buf, p, swapped)
    frac = _u32(buf, p + 4, swapped)
    incl = _u32(buf, p + 8, swapped)
    orig = _u32(buf, p + 12, swapped)
    ok = frac < unit and incl <= maxsnap and 1 <= orig <= MAX_WIRE
    ts = sec * 1_000_000_000 + frac * (1_000_000_000 // unit)
    return ok, ts, incl, orig


@njit(cache=True)
def scan_pcap(buf, n_bytes, pos, swapped, unit, maxsnap, prev_ts,
              out_roff, out_ts, out_cap, out_wire, n):  # pragma: no cover - numba
    """Walk pcap records from ``pos``; returns (status, n, pos, prev_ts, touch) (``touch``:
    a meaningless checksum of the prefetch reads, returned so they are not optimised away).

    A record is accepted when its header is plausible: fraction < 1 s, caplen <= the
    snap length, 1 <= wire length <= 16 MiB.
    """
    cap = out_roff.shape[0]
    pf = pos
    acc = np.int64(0)
    while True:
        pf, acc = _touch(buf, pf, min(pos + TOUCH_AHEAD, n_bytes), acc)
        if pos == n_bytes:
            return OK_END, n, pos, prev_ts, acc
        if pos + 16 > n_bytes:
            return SHORT, n, pos, prev_ts, acc
        ok, ts, incl, orig = _pcap_hdr(buf, pos, swapped, unit, maxsnap)
        if not ok:
            return BAD, n, pos, prev_ts, acc
        if pos + 16 + incl > n_bytes:
            return SHORT, n, pos, prev_ts, acc
        if n >= cap:
            return FULL, n, pos, prev_ts, acc
        out_roff[n] = pos
        out_ts[n] = ts
        out_cap[n] = incl
        out_wire[n] = orig
        n += 1
        prev_ts = ts
        pos += 16 + incl


@njit(cache=True)
def _pcap_strict(buf, q, n_bytes, swapped, unit, maxsnap, ref_ts):  # pragma: no cover - numba
    if q + 16 > n_bytes:
        return False, 0
    ok, ts, incl, orig = _pcap_hdr(buf, q, swapped, unit, maxsnap)
    if not ok or incl > orig or q + 16 + incl > n_bytes:
        return False, 0
    if ref_ts >= 0 and (ts < ref_ts - DAY_NS or ts > ref_ts + DAY_NS):
        return False, 0
    return True, ts


@njit(cache=True)
def resync_pcap(buf, n_bytes, start, swapped, unit, maxsnap, prev_ts):  # pragma: no cover - numba
    """First offset >= ``start`` where a plausible record begins and is followed by another
    plausible record (or by the end of the file). -1 if there is none."""
    for q in range(start, n_bytes - 15):
        ok, ts = _pcap_strict(buf, q, n_bytes, swapped, unit, maxsnap, prev_ts)
        if not ok:
            continue
        nxt = q + 16 + _u32(buf, q + 8, swapped)
        if nxt == n_bytes:
            return q
        ok2, ts2 = _pcap_strict(buf, nxt, n_bytes, swapped, unit, maxsnap, ts)
        if ok2:
            return q
    return -1


# ---------------------------------------------------------------------------------- pcapng

SHB_TYPE = 0x0A0D0D0A


@njit(cache=True)
def _block_ok(buf, p, n_bytes, swapped):  # pragma: no cover - numba
    """(shape_ok, fits, btype, blen) for a pcapng block at p."""
    if p + 12 > n_bytes:
        return False, False, 0, 0
    btype = _u32(buf, p, swapped)
    blen = _u32(buf, p + 4, swapped)
    if blen < 12 or blen % 4 != 0:
        return False, False, btype, blen
    if p + blen > n_bytes:
        return True, False, btype, blen
    if _u32(buf, p + blen - 4, swapped) != blen:
        return False, True, btype, blen
    return True, True, btype, blen


@njit(cache=True)
def scan_pcapng(buf, n_bytes, pos, swapped, n_if,
                out_roff, out_doff, out_ts, out_cap, out_wire, out_if, n):  # pragma: no cover - numba
    """Walk pcapng blocks of one section; returns (status, n, pos, touch) (``touch`` as in
    ``scan_pcap``).

    Packet blocks (EPB 6, SPB 3, OPB 2) are recorded; statistics, name-resolution and
    unknown blocks are skipped; SHB and IDB blocks are handed back to Python.
    """
    cap = out_roff.shape[0]
    pf = pos
    acc = np.int64(0)
    while True:
        pf, acc = _touch(buf, pf, min(pos + TOUCH_AHEAD, n_bytes), acc)
        if pos == n_bytes:
            return OK_END, n, pos, acc
        shape_ok, fits, btype, blen = _block_ok(buf, pos, n_bytes, swapped)
        if btype == SHB_TYPE or (btype == 1 and shape_ok and fits):
            return NEED_PY, n, pos, acc
        if not shape_ok:
            return BAD, n, pos, acc
        if not fits:
            return SHORT, n, pos, acc
        if btype == 6 or btype == 2:
            if blen < 32:
                return BAD, n, pos, acc
            if btype == 6:
                iface = _u32(buf, pos + 8, swapped)
            else:
                iface = _u16(buf, pos + 8, swapped)
            tsh = _u32(buf, pos + 12, swapped)
            tsl = _u32(buf, pos + 16, swapped)
            incl = _u32(buf, pos + 20, swapped)
            orig = _u32(buf, pos + 24, swapped)
            if incl > blen - 32:
                return BAD, n, pos, acc
            if iface >= n_if:
                return BAD_IFACE, n, pos, acc
            if n >= cap:
                return FULL, n, pos, acc
            out_roff[n] = pos
            out_doff[n] = pos + 28
            out_ts[n] = (tsh << 32) | tsl
            out_cap[n] = incl
            out_wire[n] = orig
            out_if[n] = iface
            n += 1
        elif btype == 3:
            if blen < 16:
                return BAD, n, pos, acc
            if n_if < 1:
                return BAD_IFACE, n, pos, acc
            if n >= cap:
                return FULL, n, pos, acc
            orig = _u32(buf, pos + 8, swapped)
            incl = min(orig, blen - 16)
            out_roff[n] = pos
            out_doff[n] = pos + 12
            out_ts[n] = -1
            out_cap[n] = incl
            out_wire[n] = orig
            out_if[n] = 0
            n += 1
        pos += blen


@njit(cache=True)
def resync_pcapng(buf, n_bytes, start, swapped):  # pragma: no cover - numba
    """First offset >= start where a well-formed known block begins (followed by another
    well-formed block or the end of the file); -1 if none."""
    for q in range(start, n_bytes - 11):
        shape_ok, fits, btype, blen = _block_ok(buf, q, n_bytes, swapped)
        if not (shape_ok and fits):
            continue
        if not (btype == 6 or btype == 3 or btype == 2 or btype == 1 or btype == 5 or btype == 4
                or btype == SHB_TYPE):
            continue
        nxt = q + blen
        if nxt == n_bytes:
            return q
        ok2, fits2, bt2, bl2 = _block_ok(buf, nxt, n_bytes, swapped)
        if ok2 and fits2:
            return q
    return -1
