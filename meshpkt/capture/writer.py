"""Writing pcap and pcapng files (used by tests, benchmarks, fault injection and the lab)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from meshpkt.errors import UsageError


def _open_out(path: str | Path, compress: bool | None) -> IO[bytes]:
    p = Path(path)
    if compress is None:
        compress = p.suffix == ".gz"
    if compress:
        return gzip.open(p, "wb", compresslevel=6)  # type: ignore[return-value]
    return open(p, "wb")


def write_pcap(path: str | Path, packets: Iterable[tuple[int, bytes] | tuple[int, bytes, int]], *,
               linktype: int = 1, nanosecond: bool = True, snaplen: int = 262144,
               byteorder: str = "little", compress: bool | None = None) -> int:
    """Write a classic pcap file; returns the number of records written.

    ``packets`` yields ``(ts_ns, data)`` or ``(ts_ns, data, wirelen)``. Data longer than
    ``snaplen`` is cut (like tcpdump ``-s``) and the record keeps the original length.
    ``nanosecond=False`` writes the microsecond format (timestamps rounded down).
    ``byteorder`` 'little' or 'big'. Gzip-compressed when ``compress`` is true, or when it
    is None and the path ends in ``.gz``.
    """
    if byteorder not in ("little", "big"):
        raise UsageError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    e = "<" if byteorder == "little" else ">"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    div = 1 if nanosecond else 1000
    hdr = struct.Struct(e + "IIII")
    count = 0
    with _open_out(path, compress) as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype & 0xFFFFFFFF))
        for item in packets:
            ts_ns, data = int(item[0]), bytes(item[1])
            wire = int(item[2]) if len(item) > 2 else len(data)  # type: ignore[misc]
            if len(data) > snaplen:
                data = data[:snaplen]
            sec, frac = divmod(ts_ns, 1_000_000_000)
            f.write(hdr.pack(sec & 0xFFFFFFFF, frac // div, len(data), wire))
            f.write(data)
            count += 1
    return count


def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(e: str, btype: int, body: bytes) -> bytes:
    ln = 12 + len(body)
    return struct.pack(e + "II", btype, ln) + body + struct.pack(e + "I", ln)


def write_pcapng(path: str | Path, interfaces: Sequence[tuple[str, int]],
                 packets: Iterable[tuple[int, int, bytes, str | None]], *,
                 snaplen: int = 262144, byteorder: str = "little", compress: bool | None = None,
                 tsresol: int = 9) -> int:
    """Write a pcapng file with one section; returns the number of packets written.

    ``interfaces`` lists ``(if_name, linktype)``; ``packets`` yields
    ``(iface_index, ts_ns, data, comment_or_None)`` written as Enhanced Packet Blocks (a
    comment becomes the block's ``opt_comment``). Timestamps use ``if_tsresol`` = 10^-``tsresol``
    seconds (nanoseconds by default). Gzip as in ``write_pcap``.
    """
    if byteorder not in ("little", "big"):
        raise UsageError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    if not 0 <= tsresol <= 9:
        raise UsageError("tsresol must be 0..9 (a power of ten)")
    e = "<" if byteorder == "little" else ">"
    div = 10 ** (9 - tsresol)
    count = 0
    with _open_out(path, compress) as f:
        shb = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(e, 4, b"meshpkt") + _opt(e, 0, b"")
        f.write(_block(e, 0x0A0D0D0A, shb))
        for name, lt in interfaces:
            body = struct.pack(e + "HHI", lt, 0, snaplen)
            body += _opt(e, 2, name.encode()) + _opt(e, 9, bytes([tsresol])) + _opt(e, 0, b"")
            f.write(_block(e, 1, body))
        for iface, ts_ns, data, comment in packets:
            if not 0 <= iface < len(interfaces):
                raise UsageError(f"packet names interface {iface}, only {len(interfaces)} described")
            data = bytes(data)
            wire = len(data)
            if len(data) > snaplen:
                data = data[:snaplen]
            t = int(ts_ns) // div
            body = struct.pack(e + "IIIII", iface, (t >> 32) & 0xFFFFFFFF, t & 0xFFFFFFFF, len(data), wire)
            body += data + b"\0" * (-len(data) % 4)
            if comment:
                body += _opt(e, 1, comment.encode()) + _opt(e, 0, b"")
            f.write(_block(e, 6, body))
            count += 1
    return count
