"""Where the packet kernel writes: the schema's columns grouped by dtype (pure data, no numba).

``_packet.decode_rows`` receives the output columns as one tuple per dtype (numba indexes a
tuple of same-typed arrays with a compile-time constant); ``GROUP`` and ``INDEX`` say which
tuple and which position hold a column. Columns the kernel does not write (the capture's
own ``record``/``ts_ns``/``caplen``/``wirelen``/``linktype``, the ``point`` category and the
IPv6 address objects) are not in any group.
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


def at(name: str) -> tuple[int, int]:
    """(group, index) of a kernel-written column."""
    return GROUP[name], INDEX[name]


def present_bit(name: str) -> int:
    return PRESENT_BITS[name]


def problem_bit(name: str) -> int:
    return PROBLEM_BITS[name]
