"""The columnar decoder: chunks of packets through the numba packet kernel.

``decode_chunk`` hands a chunk of records to ``_packet.decode_rows`` (one compiled loop
that decodes blocks of packets into a cached staging matrix and scatters them into the
table's typed columns), then turns the IPv6 address offsets the
kernel found into 16-byte values and hashes the payload prefixes (``_kernels.fnv1a64``, four
messages in lockstep). Every shape -- IPv4 options, IPv6 extension-header chains, tunnels,
nested tunnels -- goes through the same kernel; ``slow.decode_packet`` is the independent
per-packet reference with the same semantics (the tests compare the two).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meshpkt.decode._layout import ABSENT_ROW, DTYPES, GROUPS, V6_COLUMNS
from meshpkt.decode.schema import PRESENT_BITS

CHUNK = 65536
_ABSENT = np.array(ABSENT_ROW, dtype=np.int64)


def column_groups(out: dict[str, np.ndarray]) -> tuple[tuple[np.ndarray, ...], ...]:
    """The output columns as the kernel's tuple of per-dtype tuples, in ``_layout.STAGED`` order."""
    return tuple(tuple(out[name] for name in GROUPS[dt] if name != "payload_hash") for dt in DTYPES)


def hint_array(ports: Sequence[int]) -> np.ndarray:
    return np.array([p for p in ports if p >= 0], dtype=np.int64)


def decode_chunk(buf: np.ndarray, off: np.ndarray, cap: np.ndarray, wire: np.ndarray, lt: np.ndarray,
                 ports: Sequence[int], out: dict[str, np.ndarray], s: int,
                 groups: tuple[tuple[np.ndarray, ...], ...] | None = None) -> None:
    """Decode packets ``s .. s+len(off)`` into the ``out`` columns (pre-filled with absent
    values). ``ports``: UDP ports that carry VXLAN besides 4789 and 8472."""
    from meshpkt.decode._packet import decode_rows

    n = off.shape[0]
    v6off = np.full((len(V6_COLUMNS), n), -1, np.int64)
    pay = np.full((2, n), -1, np.int64)
    decode_rows(buf, off, cap, wire, lt, hint_array(ports), _ABSENT, groups or column_groups(out), s, v6off, pay)
    _v6_values(buf, v6off, out, s)
    _payload_digest(buf, pay, out, s)


def _v6_values(buf: np.ndarray, v6off: np.ndarray, out: dict[str, np.ndarray], s: int) -> None:
    """16-byte address objects at the offsets the kernel recorded (one object per distinct
    address: rows of the same address share it)."""
    for k, name in enumerate(V6_COLUMNS):
        idx = np.nonzero(v6off[k] >= 0)[0]
        if not idx.size:
            continue
        addrs = buf[v6off[k, idx][:, None] + np.arange(16)].view("V16").ravel()
        uniq, inv = np.unique(addrs, return_inverse=True)
        out[name][idx + s] = uniq.astype(object)[inv.ravel()]


def _payload_digest(buf: np.ndarray, pay: np.ndarray, out: dict[str, np.ndarray], s: int) -> None:
    """FNV-1a 64 of each recorded payload prefix (see ``slow.HASH_BYTES``)."""
    from meshpkt.decode._kernels import fnv1a64

    rows = np.nonzero(pay[0] >= 0)[0]
    if not rows.size:
        return
    hs = np.empty(rows.size, np.uint64)
    fnv1a64(buf, pay[0, rows], pay[1, rows], hs)
    out["payload_hash"][rows + s] = hs
    out["present"][rows + s] |= PRESENT_BITS["payload_hash"]
