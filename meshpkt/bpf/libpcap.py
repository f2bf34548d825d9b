"""Compile and run filters with the installed libpcap (ctypes, no tcpdump process).

- :func:`compile_filter` -- ``pcap_compile`` for a link type; raises :class:`UsageError` with
  libpcap's message when the expression does not compile.
- :func:`bpf_program` -- the compiled instructions (as ``tcpdump -d`` would list them).
- :func:`filter_file` -- run an expression over every record of a pcap/pcapng file
  (``pcap_open_offline`` + ``pcap_offline_filter``) and return the per-record verdicts, in
  record order (the same order as the packet table's ``record`` column). Gzip files are
  decompressed to a temporary file first (libpcap cannot read them).

This module touches the file system and a C library; the rest of :mod:`meshpkt.bpf` is pure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshpkt.errors import CaptureError, ToolMissingError, UsageError

LINKTYPE_ETHERNET = 1
_LINKTYPE_TO_DLT = {101: 12}  # LINKTYPE_RAW is DLT_RAW (12 on Linux); the others are equal
_SNAPLEN = 262144
_ERRBUF = 256


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is not None:
        return _LIB
    names = [ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise ToolMissingError("libpcap is not installed (apt-get install libpcap0.8)")
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_open_offline.restype = ctypes.c_void_p
    lib.pcap_open_offline.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_datalink.restype = ctypes.c_int
    lib.pcap_datalink.argtypes = [ctypes.c_void_p]
    lib.pcap_next_ex.restype = ctypes.c_int
    lib.pcap_next_ex.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(_PktHdr)),
                                 ctypes.POINTER(ctypes.c_void_p)]
    lib.pcap_offline_filter.restype = ctypes.c_int
    lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr), ctypes.c_void_p]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    _LIB = lib
    return lib


def version() -> str:
    """libpcap's version string."""
    return str(_lib().pcap_lib_version().decode())


def _compile(handle: int, expr: str, optimize: bool = True) -> _BpfProgram:
    lib = _lib()
    prog = _BpfProgram()
    if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1 if optimize else 0, 0xFFFFFFFF) != 0:
        err = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
        if "rejects all packets" in err:
            raise UsageError("libpcap proves the filter can match no packet (expression rejects all packets): "
                             "options contradict each other, or the link type cannot carry them")
        raise UsageError(f"libpcap cannot compile the filter: {err}")
    return prog


def compile_filter(expr: str, linktype: int = LINKTYPE_ETHERNET, optimize: bool = True) -> int:
    """Compile ``expr`` for ``linktype`` (a pcap LINKTYPE_* value); return the number of BPF
    instructions.

    Raises :class:`UsageError` with libpcap's message when it does not compile.
    """
    return len(bpf_program(expr, linktype, optimize))


def bpf_program(expr: str, linktype: int = LINKTYPE_ETHERNET, optimize: bool = True
                ) -> list[tuple[int, int, int, int]]:
    """The compiled program as ``(code, jt, jf, k)`` tuples."""
    lib = _lib()
    handle = lib.pcap_open_dead(_LINKTYPE_TO_DLT.get(linktype, linktype), _SNAPLEN)
    if not handle:
        raise UsageError(f"libpcap does not know link type {linktype}")
    try:
        prog = _compile(handle, expr, optimize)
        try:
            insns = ctypes.cast(prog.bf_insns, ctypes.POINTER(_BpfInsn))
            return [(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


@contextmanager
def _plain_file(path: Path) -> Iterator[Path]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        yield path
        return
    fd, tmp = tempfile.mkstemp(suffix=".pcap", prefix="meshpkt-")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, out)
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def filter_file(path: str | os.PathLike[str], expr: str) -> list[bool]:
    """Run ``expr`` (pcap-filter syntax) over every record of the capture at ``path``.

    Returns one verdict per record, in file order. Raises :class:`CaptureError` when libpcap
    cannot open or read the file, :class:`UsageError` when the filter does not compile for
    the file's link type.
    """
    p = Path(path)
    if not p.is_file():
        raise CaptureError("no such capture file" if not p.exists() else "not a file", str(p))
    lib = _lib()
    out: list[bool] = []
    with _plain_file(p) as plain:
        errbuf = ctypes.create_string_buffer(_ERRBUF)
        handle = lib.pcap_open_offline(str(plain).encode(), errbuf)
        if not handle:
            raise CaptureError(f"libpcap cannot read it: {errbuf.value.decode(errors='replace')}", str(p))
        try:
            prog = _compile(handle, expr)
            try:
                hdr = ctypes.POINTER(_PktHdr)()
                data = ctypes.c_void_p()
                while True:
                    rc = lib.pcap_next_ex(handle, ctypes.byref(hdr), ctypes.byref(data))
                    if rc == 1:
                        out.append(lib.pcap_offline_filter(ctypes.byref(prog), hdr, data) != 0)
                    elif rc == -2:
                        break
                    else:
                        err = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
                        raise CaptureError(f"libpcap stopped reading: {err}", str(p), record=len(out))
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)
    return out
