"""The FNV-1a 64 payload digest kernel (the packet kernel is ``_packet.decode_rows``)."""

from __future__ import annotations

import numpy as np
from numba import njit

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


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
