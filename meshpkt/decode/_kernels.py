"""The decoder's numba kernels: a bounds-checked multi-field byte gather, the TCP option
walk and the FNV-1a 64 payload digest.

``read_fields`` is the columnar decoder's only way of touching packet bytes: for every
packet of a layer it reads a fixed list of big-endian fields at "layer start + constant"
and yields -1 for a field that does not lie below the packet's limit. The control logic
(which packets have which layer, at which offset) is numpy array code in ``fast.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
#: see ``copy_headers``
TOUCH_AHEAD = 4096


@njit(cache=True)
def copy_headers(buf, off, cap, width, hdr):  # pragma: no cover - numba
    """hdr[i, :k] = the first k = min(cap[i], width) bytes of packet i (a compact, cache-friendly
    copy of the header region that ``read_fields`` reads from).

    Also reads one byte of every 64-byte line of the chunk's bytes, ``TOUCH_AHEAD`` bytes
    ahead of the copy: a sequential stream the hardware prefetcher follows, so the copy (and
    the later option walk and payload digest) find the packets in cache. Returns a
    meaningless checksum of those reads (so they are not optimised away).
    """
    n = off.shape[0]
    flat = hdr.reshape(-1)
    w = np.uint64(width)
    nbuf = buf.shape[0]
    pf = off[0] if n else 0
    acc = np.int64(0)
    for i in range(n):
        upto = min(off[i] + TOUCH_AHEAD, nbuf)
        while pf < upto:
            acc ^= np.int64(buf[np.uint64(pf)])
            pf += 64
        k = np.uint64(min(cap[i], width))
        o = np.uint64(off[i])
        d = np.uint64(i) * w
        for j in range(k):
            flat[d + j] = buf[o + j]
    return acc


@njit(cache=True, inline="always")
def _be(a, u, nb):  # type: ignore[no-untyped-def]  # pragma: no cover - numba
    """The big-endian unsigned integer of a[u:u+nb] (unsigned index ``u``)."""
    if nb == 1:
        return np.int64(a[u])
    if nb == 2:
        return (np.int64(a[u]) << 8) | np.int64(a[u + np.uint64(1)])
    if nb == 4:
        return ((np.int64(a[u]) << 24) | (np.int64(a[u + np.uint64(1)]) << 16)
                | (np.int64(a[u + np.uint64(2)]) << 8) | np.int64(a[u + np.uint64(3)]))
    if nb == 6:  # MAC addresses
        return ((np.int64(a[u]) << 40) | (np.int64(a[u + np.uint64(1)]) << 32)
                | (np.int64(a[u + np.uint64(2)]) << 24) | (np.int64(a[u + np.uint64(3)]) << 16)
                | (np.int64(a[u + np.uint64(4)]) << 8) | np.int64(a[u + np.uint64(5)]))
    v = np.int64(0)
    for k in range(np.uint64(nb)):
        v = (v << 8) | np.int64(a[u + k])
    return v


@njit(cache=True)
def read_fields(buf, off, hdr, base, ok, lim, spec, out, fill):  # pragma: no cover - numba
    """For each row i with ok[i]: out[j, i] = the big-endian field j at absolute offset
    base[i] + spec[j, 0] (spec[j, 1] bytes, 1..6), or -1 when it does not end at or before
    lim[i] (or when spec[j, 1] is 0). Bytes come from ``hdr`` (``copy_headers``) when they lie
    in its window, else from ``buf``. Rows without ok get -1 when ``fill``, else are left
    untouched.

    The loop is packet-major (all fields of one packet, then the next): each packet's
    header row is read while it is in L1.
    """
    n = base.shape[0]
    m = spec.shape[0]
    width = hdr.shape[1]
    flat = hdr.reshape(-1)
    # the span [lo, hi) of the spec's fields: a packet whose whole span lies below its limit
    # and inside its header row takes the check-free path
    lo = np.int64(1 << 40)
    hi = np.int64(0)
    full = True
    for j in range(m):
        if spec[j, 1] == 0:
            full = False
            continue
        lo = min(lo, spec[j, 0])
        hi = max(hi, spec[j, 0] + spec[j, 1])
    for i in range(n):
        if not ok[i]:
            if fill:
                for j in range(m):
                    out[j, i] = -1
            continue
        b = base[i]
        li = lim[i]
        q0 = b - off[i]
        row = i * width
        if full and b + lo >= 0 and b + hi <= li and q0 + lo >= 0 and q0 + hi <= width:
            for j in range(m):
                out[j, i] = _be(flat, np.uint64(row + q0 + spec[j, 0]), spec[j, 1])
            continue
        for j in range(m):
            r = spec[j, 0]
            nb = spec[j, 1]
            p = b + r
            if nb == 0 or p < 0 or p + nb > li:
                out[j, i] = -1
                continue
            q = q0 + r
            if 0 <= q and q + nb <= width:
                out[j, i] = _be(flat, np.uint64(row + q), nb)
            else:
                out[j, i] = _be(buf, np.uint64(p), nb)


@njit(cache=True)
def fnv1a64(buf, start, stop, out):  # pragma: no cover - numba
    """out[i] = FNV-1a 64 of buf[start[i]:stop[i]] (0 when the range is empty).

    FNV is a serial multiply chain per message, so four messages are hashed in lockstep
    (independent chains keep the multiplier busy); a lane that finishes is refilled with
    the next message.
    """
    n = start.shape[0]
    for i in range(n):
        out[i] = 0
    nxt = 0
    # lane state: message index (-1 idle), position, end, hash
    i0 = i1 = i2 = i3 = -1
    p0 = p1 = p2 = p3 = 0
    e0 = e1 = e2 = e3 = 0
    h0 = h1 = h2 = h3 = FNV_OFFSET
    while True:
        # refill idle lanes with the next non-empty message
        while i0 < 0 and nxt < n:
            if stop[nxt] > start[nxt]:
                i0, p0, e0, h0 = nxt, start[nxt], stop[nxt], FNV_OFFSET
            nxt += 1
        while i1 < 0 and nxt < n:
            if stop[nxt] > start[nxt]:
                i1, p1, e1, h1 = nxt, start[nxt], stop[nxt], FNV_OFFSET
            nxt += 1
        while i2 < 0 and nxt < n:
            if stop[nxt] > start[nxt]:
                i2, p2, e2, h2 = nxt, start[nxt], stop[nxt], FNV_OFFSET
            nxt += 1
        while i3 < 0 and nxt < n:
            if stop[nxt] > start[nxt]:
                i3, p3, e3, h3 = nxt, start[nxt], stop[nxt], FNV_OFFSET
            nxt += 1
        if i0 < 0 and i1 < 0 and i2 < 0 and i3 < 0:
            break
        if i0 >= 0 and i1 >= 0 and i2 >= 0 and i3 >= 0:
            m = min(e0 - p0, e1 - p1, e2 - p2, e3 - p3)
            # unsigned indices: no negative-index wraparound code in the hot loop
            u0, u1, u2, u3 = np.uint64(p0), np.uint64(p1), np.uint64(p2), np.uint64(p3)
            for k in range(np.uint64(m)):
                h0 = (h0 ^ np.uint64(buf[u0 + k])) * FNV_PRIME
                h1 = (h1 ^ np.uint64(buf[u1 + k])) * FNV_PRIME
                h2 = (h2 ^ np.uint64(buf[u2 + k])) * FNV_PRIME
                h3 = (h3 ^ np.uint64(buf[u3 + k])) * FNV_PRIME
            p0 += m
            p1 += m
            p2 += m
            p3 += m
        else:  # fewer than four messages left: finish them one by one
            if i0 >= 0:
                for p in range(p0, e0):
                    h0 = (h0 ^ np.uint64(buf[p])) * FNV_PRIME
                p0 = e0
            if i1 >= 0:
                for p in range(p1, e1):
                    h1 = (h1 ^ np.uint64(buf[p])) * FNV_PRIME
                p1 = e1
            if i2 >= 0:
                for p in range(p2, e2):
                    h2 = (h2 ^ np.uint64(buf[p])) * FNV_PRIME
                p2 = e2
            if i3 >= 0:
                for p in range(p3, e3):
                    h3 = (h3 ^ np.uint64(buf[p])) * FNV_PRIME
                p3 = e3
        if i0 >= 0 and p0 >= e0:
            out[i0] = h0
            i0 = -1
        if i1 >= 0 and p1 >= e1:
            out[i1] = h1
            i1 = -1
        if i2 >= 0 and p2 >= e2:
            out[i2] = h2
            i2 = -1
        if i3 >= 0 and p3 >= e3:
            out[i3] = h3
            i3 = -1


@njit(cache=True, inline="always")
def _walk(a, p, e, i, mss, wscale, tsval, tsecr):  # pragma: no cover - numba
    """Walk the TCP options in a[p:e] (unsigned offsets) for row i (see ``tcp_options``)."""
    if (e - p == np.uint64(12) and a[p] == 1 and a[p + np.uint64(1)] == 1 and a[p + np.uint64(2)] == 8
            and a[p + np.uint64(3)] == 10):  # common: NOP, NOP, timestamps (what the walk finds)
        tsval[i] = _be(a, p + np.uint64(4), 4)
        tsecr[i] = _be(a, p + np.uint64(8), 4)
        return
    while p < e:
        kind = a[p]
        if kind == 0:
            break
        if kind == 1:
            p += np.uint64(1)
            continue
        if p + np.uint64(1) >= e:
            break
        ln = np.uint64(a[p + np.uint64(1)])
        if ln < np.uint64(2) or p + ln > e:
            break
        if kind == 2 and ln == 4:
            mss[i] = (np.int64(a[p + np.uint64(2)]) << 8) | np.int64(a[p + np.uint64(3)])
        elif kind == 3 and ln == 3:
            wscale[i] = a[p + np.uint64(2)]
        elif kind == 8 and ln == 10:
            v = np.int64(0)
            for k in range(np.uint64(2), np.uint64(6)):
                v = (v << 8) | np.int64(a[p + k])
            tsval[i] = v
            v = np.int64(0)
            for k in range(np.uint64(6), np.uint64(10)):
                v = (v << 8) | np.int64(a[p + k])
            tsecr[i] = v
        p += ln


@njit(cache=True)
def tcp_options(buf, off, hdr, t4, doff, lim, rows, mss, wscale, tsval, tsecr):  # pragma: no cover - numba
    """For each row i in ``rows``: walk the TCP options of the header at t4[i] (data offset
    doff[i] words) up to min(header end, lim[i]); fill mss[i] (kind 2), wscale[i] (kind 3)
    and tsval[i]/tsecr[i] (kind 8). End-of-list or an option running past the end ends the
    walk. Bytes come from the header copy ``hdr`` (``copy_headers``) when the options lie in
    its window, else from ``buf``."""
    width = hdr.shape[1]
    flat = hdr.reshape(-1)
    for k in range(rows.shape[0]):
        i = rows[k]
        start = t4[i] + 20
        stop = min(t4[i] + doff[i] * 4, lim[i])
        if stop <= start or start < 0:
            continue
        q = start - off[i]
        if q >= 0 and stop - off[i] <= width:
            row = np.uint64(i * width)
            _walk(flat, row + np.uint64(q), row + np.uint64(stop - off[i]), i, mss, wscale, tsval, tsecr)
        else:
            _walk(buf, np.uint64(start), np.uint64(stop), i, mss, wscale, tsval, tsecr)
