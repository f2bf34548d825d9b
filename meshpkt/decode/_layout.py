"""Where the packet kernel writes (pure data, no numba).

``_packet.decode_rows`` writes a chunk's fields into one int64 staging matrix, one row per
column in ``STAGED`` (``at(name)`` is the row), pre-filled with ``ABSENT_ROW``;
``fast.decode_chunk`` then copies each row into its typed column (a contiguous cast). One
small matrix keeps the kernel's helpers cheap to call (a tuple of 60 arrays is not).
Columns the kernel does not write (the capture's own ``record``/``ts_ns``/``caplen``/
``wirelen``/``linktype``, the ``point`` category, the IPv6 address objects and the payload
digest) are not staged.
"""

from __future__ import annotations

from meshpkt.decode.schema import COLUMNS, PRESENT_BITS, PROBLEM_BITS

#: dtypes of the kernel's column groups, in the order of the tuple it receives
DTYPES: tuple[str, ...] = ("int64", "int32", "int16", "uint64", "uint32", "uint16", "uint8", "bool")
GIVEN: tuple[str, ...] = ("record", "ts_ns", "caplen", "wirelen", "linktype")

GROUPS: dict[str, tuple[str, ...]] = {
    dt: tuple(n for n, (d, _a, _t) in COLUMNS.items() if d == dt and n not in GIVEN) for dt in DTYPES}
GROUP: dict[str, int] = {n: DTYPES.index(dt) for dt, names in GROUPS.items() for n in names}
INDEX: dict[str, int] = {n: names.index(n) for names in GROUPS.values() for n in names}
#: IPv6 address columns: the kernel writes each address's buffer offset into row k of ``v6off``
V6_COLUMNS: tuple[str, ...] = ("outer_src6", "outer_dst6", "inner_src6", "inner_dst6")


STAGED: tuple[str, ...] = tuple(n for dt in DTYPES for n in GROUPS[dt] if n != "payload_hash")
ABSENT_ROW: tuple[int, ...] = tuple(int(COLUMNS[n][1]) for n in STAGED)  # type: ignore[call-overload]


def at(name: str) -> int:
    """The staging row of a kernel-written column."""
    return STAGED.index(name)


def present_bit(name: str) -> int:
    return PRESENT_BITS[name]


def problem_bit(name: str) -> int:
    return PROBLEM_BITS[name]
