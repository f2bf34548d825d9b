"""Raw bytes the packet table does not hold: ARP fields and TCP/UDP checksum validity.

:class:`Frames` maps capture points to their files and reads (once) only the captures a
detector asks about; every computation over the selected records is vectorised numpy
(gathers of fixed-offset fields, ``np.add.reduceat`` over 16-bit words for checksums).
Only Ethernet captures (LINKTYPE 1, optionally 802.1Q tagged) are examined; other link
types give no rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ETH_ARP = 0x0806
ETH_IP = 0x0800


class Frames:
    """Lazy access to the captured bytes of each capture point."""

    def __init__(self, files: Mapping[str, str | Path] | None = None, buffers: Mapping[str, Any] | None = None):
        self.files = {str(k): Path(v) for k, v in (files or {}).items()}
        self._bufs: dict[str, Any] = dict(buffers or {})

    def buffer(self, point: str) -> Any | None:
        """The :class:`~meshpkt.capture.reader.CaptureBuffer` of ``point`` (None if unknown)."""
        if point not in self._bufs:
            path = self.files.get(point)
            if path is None:
                return None
            from meshpkt.capture.reader import open_capture

            try:
                self._bufs[point] = open_capture(path)
            except Exception:  # damaged file: the decoder already reported it
                self._bufs[point] = None
        return self._bufs[point]

    def gather(self, point: str, records: np.ndarray, offsets: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Bytes ``[offsets, offsets + width)`` of each record: (matrix n x width uint8, ok mask)."""
        cap = self.buffer(point)
        n = len(records)
        if cap is None or n == 0:
            return np.zeros((n, width), np.uint8), np.zeros(n, bool)
        recs = np.asarray(records, np.int64)
        inside = (recs >= 0) & (recs < len(cap))
        recs = np.where(inside, recs, 0)
        start = cap.data_off[recs].astype(np.int64) + np.asarray(offsets, np.int64)
        ok = inside & (np.asarray(offsets) + width <= cap.caplen[recs]) & (cap.linktype[recs] == 1)
        idx = np.where(ok, start, 0)[:, None] + np.arange(width)[None, :]
        return cap.buffer[np.minimum(idx, len(cap.buffer) - 1)], ok


def _be(m: np.ndarray, a: int, b: int) -> np.ndarray:
    out = np.zeros(m.shape[0], np.int64)
    for k in range(a, b):
        out = (out << 8) | m[:, k].astype(np.int64)
    return out


def arp_table(packets: pd.DataFrame, frames: Frames) -> pd.DataFrame:
    """Every ARP packet: point, ts_ns, op (1 request, 2 reply), sender/target IPs (ints), sender MAC."""
    cols = ["point", "ts_ns", "op", "sender_ip", "target_ip", "sender_mac"]
    sel = packets[packets["ethertype"].to_numpy() == ETH_ARP]
    parts = []
    for point, grp in sel.groupby(sel["point"].astype(str), observed=True):
        base = np.where(grp["vlan"].to_numpy() >= 0, 18, 14)
        m, ok = frames.gather(str(point), grp["record"].to_numpy(), base, 28)
        if not ok.any():
            continue
        parts.append(pd.DataFrame({"point": str(point), "ts_ns": grp["ts_ns"].to_numpy()[ok],
                                   "op": _be(m, 6, 8)[ok], "sender_mac": _be(m, 8, 14)[ok],
                                   "sender_ip": _be(m, 14, 18)[ok], "target_ip": _be(m, 24, 28)[ok]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.int64)
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksums(packets: pd.DataFrame, frames: Frames) -> pd.DataFrame:
    """TCP/UDP checksum state of the innermost IPv4 header of ``packets`` (rows of the packet
    table): index = the rows' index; ``state`` is ``ok``, ``bad``, ``partial`` (the field holds
    only the pseudo-header sum: checksum offload, normal at the sender), ``none`` (UDP without
    checksum) or ``unknown`` (not captured whole, not Ethernet)."""
    out = pd.DataFrame({"state": "unknown", "field": -1}, index=packets.index)
    for point, grp in packets.groupby(packets["point"].astype(str), observed=True):
        st, fld = _checksums_at(str(point), grp, frames)
        out.loc[grp.index, "state"] = st
        out.loc[grp.index, "field"] = fld
    return out


def _l3_offset(grp: pd.DataFrame, frames: Frames, point: str) -> np.ndarray:
    l2 = np.where(grp["vlan"].to_numpy() >= 0, 18, 14)
    enc = grp["vni"].to_numpy() >= 0
    if not enc.any():
        return l2
    m, ok = frames.gather(point, grp["record"].to_numpy(), l2, 1)
    outer_ihl = (m[:, 0].astype(np.int64) & 0x0F) * 4
    inner = l2 + outer_ihl + 8 + 8 + 14 + np.where(grp["inner_vlan"].to_numpy() >= 0, 4, 0)
    return np.where(enc, np.where(ok, inner, -10_000), l2)


def _checksums_at(point: str, grp: pd.DataFrame, frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    n = len(grp)
    state = np.full(n, "unknown", dtype=object)
    field = np.full(n, -1, np.int64)
    cap = frames.buffer(point)
    if cap is None or n == 0:
        return state, field
    recs = grp["record"].to_numpy().astype(np.int64)
    l3 = _l3_offset(grp, frames, point)
    hdr, ok = frames.gather(point, recs, np.maximum(l3, 0), 20)
    ok &= l3 >= 0
    ihl = (hdr[:, 0].astype(np.int64) & 0x0F) * 4
    tot = _be(hdr, 2, 4)
    proto = hdr[:, 9].astype(np.int64)
    ok &= ((hdr[:, 0] >> 4) == 4) & np.isin(proto, (6, 17)) & (ihl >= 20) & (tot > ihl)
    ok &= (_be(hdr, 6, 8) & 0x3FFF) == 0  # not a fragment
    l4 = l3 + ihl
    l4len = tot - ihl
    ok &= (l4 + l4len) <= cap.caplen[recs].astype(np.int64)
    k = np.flatnonzero(ok)
    if len(k) == 0:
        return state, field
    start = cap.data_off[recs[k]].astype(np.int64) + l4[k]
    ln = l4len[k]
    wl = (ln + 1) // 2  # 16-bit words (odd length padded with a zero byte)
    first = np.r_[0, np.cumsum(wl)[:-1]]
    wpos = np.arange(int(wl.sum())) - np.repeat(first, wl)
    bpos = np.repeat(start, wl) + 2 * wpos
    hi = cap.buffer[bpos].astype(np.int64)
    lo_in = (2 * wpos + 1) < np.repeat(ln, wl)
    lo = np.where(lo_in, cap.buffer[np.minimum(bpos + 1, len(cap.buffer) - 1)].astype(np.int64), 0)
    s = np.add.reduceat((hi << 8) | lo, first) if len(first) else np.zeros(0, np.int64)
    src, dst = _be(hdr[k], 12, 16), _be(hdr[k], 16, 20)
    pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto[k] + ln
    total = _fold(s + pseudo)
    coff = np.where(proto[k] == 6, 16, 6)
    cf = (cap.buffer[start + coff].astype(np.int64) << 8) | cap.buffer[start + coff + 1].astype(np.int64)
    field[k] = cf
    partial = cf == _fold(pseudo)  # what a NIC with TX offload still has to fill in
    st = np.where(total == 0xFFFF, "ok", np.where(partial, "partial", "bad")).astype(object)
    st[(proto[k] == 17) & (cf == 0)] = "none"
    state[k] = st
    return state, field
