"""Exception types. Every command maps them to one line on stderr and an exit status."""

from __future__ import annotations


class MeshpktError(Exception):
    """Base of meshpkt's expected errors: shown as one line, exit status ``exit_code``."""

    exit_code = 2


class UsageError(MeshpktError):
    """The user asked for something that cannot be done as asked."""


class CaptureError(MeshpktError):
    """A capture file cannot be read (missing, not a capture, damaged).

    ``path``, ``record`` (0-based record number) and ``offset`` (byte offset in the
    decompressed stream) say where, when known.
    """

    def __init__(self, message: str, path: str | None = None, record: int | None = None,
                 offset: int | None = None) -> None:
        self.message = message
        self.path = path
        self.record = record
        self.offset = offset
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class NeedRootError(MeshpktError):
    """The operation needs root (network namespaces, iptables, raw sockets)."""


class LabError(MeshpktError):
    """The lab cannot be built, found or torn down as asked."""


class ToolMissingError(MeshpktError):
    """An external program (tcpdump, tshark, ip, nft ...) is not installed."""
