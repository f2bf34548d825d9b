"""Address display helpers: the packet table keeps addresses as integers/bytes until display.

Vectorised over arrays/Series: each distinct value is formatted once (``np.unique``), so
formatting a million-row column costs about as much as its distinct addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from meshpkt.errors import UsageError


def _map_unique(values: Any, fmt: Callable[[int], str], zero: str = "") -> np.ndarray:
    a = np.asarray(values)
    if a.size == 0:
        return np.array([], dtype=object)
    uniq, inv = np.unique(a, return_inverse=True)
    strs = np.array([zero if int(u) == 0 else fmt(int(u)) for u in uniq], dtype=object)
    return strs[inv.reshape(a.shape)]


def ip4_str(values: Any) -> np.ndarray:
    """Dotted-quad strings for uint32 IPv4 addresses (host order); "" for 0 (absent)."""
    return _map_unique(values, lambda v: socket.inet_ntoa(v.to_bytes(4, "big")))


def mac_str(values: Any) -> np.ndarray:
    """``aa:bb:cc:dd:ee:ff`` strings for MACs stored as uint64; "" for 0 (absent)."""
    def fmt(v: int) -> str:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    return _map_unique(values, fmt)


def ip6_str(value: bytes | None) -> str:
    """Compressed IPv6 text for 16 address bytes; "" for None."""
    if value is None:
        return ""
    return str(ipaddress.IPv6Address(bytes(value)))


def ip6_strs(values: Iterable[bytes | None]) -> np.ndarray:
    """``ip6_str`` over an object array/Series (each distinct address formatted once)."""
    cache: dict[bytes | None, str] = {None: ""}
    out = []
    for v in values:
        s = cache.get(v)
        if s is None:
            s = cache[v] = ip6_str(v)
        out.append(s)
    return np.array(out, dtype=object)


def ip4_int(text: str) -> int:
    """``"10.0.0.2"`` -> 167772162 (raises UsageError for anything else)."""
    try:
        return int(ipaddress.IPv4Address(text.strip()))
    except (ipaddress.AddressValueError, ValueError, AttributeError):
        raise UsageError(f"not an IPv4 address: {text!r}") from None


def ip6_bytes(text: str) -> bytes:
    """``"fd00::1"`` -> 16 bytes, the form of the ``*_src6``/``*_dst6`` columns."""
    try:
        return ipaddress.IPv6Address(text.strip()).packed
    except (ipaddress.AddressValueError, ValueError, AttributeError):
        raise UsageError(f"not an IPv6 address: {text!r}") from None


def mac_int(text: str) -> int:
    """``"02:42:0a:00:00:14"`` (or with ``-``) -> integer, the form of the MAC columns."""
    parts = text.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise UsageError(f"not a MAC address: {text!r}")
    try:
        return int.from_bytes(bytes(int(p, 16) for p in parts), "big")
    except ValueError:
        raise UsageError(f"not a MAC address: {text!r}") from None
