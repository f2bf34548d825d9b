"""Scalar address helpers: IPv4 and MAC addresses as ints, ``ip:port`` endpoints as a typed value, CIDRs.

Addresses stay ints (or :mod:`ipaddress` objects) through every table and model and are formatted only
when rendered. The vectorised forms for packet columns live in :mod:`meshpkt.decode.addr`; this module is
the one scalar copy every other subsystem imports.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from meshpkt.errors import UsageError

IPv4Like = int | str | IPv4Address


def ip4_int(value: IPv4Like) -> int:
    """``"10.0.0.2"`` (or an :class:`IPv4Address`, or an int) -> 167772162; UsageError otherwise."""
    if isinstance(value, int):
        if 0 <= value <= 0xFFFFFFFF:
            return value
        raise UsageError(f"not an IPv4 address: {value!r}")
    try:
        return int(IPv4Address(value if isinstance(value, IPv4Address) else value.strip()))
    except (ipaddress.AddressValueError, ValueError, AttributeError):
        raise UsageError(f"not an IPv4 address: {value!r}") from None


def ip4_str(value: int | IPv4Address) -> str:
    """167772162 -> ``"10.0.0.2"``."""
    return str(IPv4Address(int(value)))


def try_ip4(value: object) -> IPv4Address | None:
    """An address (``"10.0.0.2"``, ``"10.0.0.2/24"``, int) or None when ``value`` is empty or not IPv4."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int):
            return IPv4Address(value)
        return IPv4Interface(str(value).strip()).ip
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        return None


def mac_int(value: str | int | bytes) -> int:
    """``"02:42:0a:00:00:14"`` (``-`` separators too), 6 bytes or an int -> the integer form."""
    if isinstance(value, int):
        if 0 <= value < 1 << 48:
            return value
        raise UsageError(f"not a MAC address: {value!r}")
    if isinstance(value, bytes):
        if len(value) != 6:
            raise UsageError(f"not a MAC address: {value!r}")
        return int.from_bytes(value, "big")
    parts = value.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise UsageError(f"not a MAC address: {value!r}")
    try:
        return int.from_bytes(bytes(int(p, 16) for p in parts), "big")
    except ValueError:
        raise UsageError(f"not a MAC address: {value!r}") from None


def mac_str(value: int | bytes) -> str:
    """48-bit int (or 6 bytes) -> ``"02:42:0a:00:00:14"``."""
    raw = value if isinstance(value, bytes) else int(value).to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)


def docker_mac(ip: IPv4Like) -> int:
    """The MAC Docker gives an overlay endpoint: ``02:42`` + the four IPv4 bytes."""
    return (0x0242 << 32) | ip4_int(ip)


def parse_cidr(text: str) -> IPv4Interface:
    """``"10.0.0.2/24"`` -> interface (address + network); a bare address is a /32."""
    try:
        return IPv4Interface(text.strip())
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, AttributeError):
        raise UsageError(f"not an IPv4 address/prefix: {text!r}") from None


def parse_network(text: str) -> IPv4Network:
    """``"10.0.0.0/24"`` (host bits allowed) -> network."""
    try:
        return IPv4Network(text.strip(), strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, AttributeError):
        raise UsageError(f"not an IPv4 network: {text!r}") from None


def in_network(ip: IPv4Like, net: IPv4Network) -> bool:
    """True when ``ip`` lies in ``net``."""
    return (ip4_int(ip) & int(net.netmask)) == int(net.network_address)


@dataclass(frozen=True, order=True)
class Endpoint:
    """An IPv4 transport endpoint ``ip:port`` (the ip as an int; port 0 = any/none)."""

    ip: int
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"10.0.0.2:9090"`` or ``"10.0.0.2"`` -> Endpoint; UsageError otherwise."""
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            host, port = text.strip(), "0"
        if not port.isdigit() or int(port) > 65535:
            raise UsageError(f"not an ip:port endpoint: {text!r}")
        return cls(ip4_int(host), int(port))

    @property
    def address(self) -> IPv4Address:
        """The ip as an :class:`IPv4Address`."""
        return IPv4Address(self.ip)

    def __str__(self) -> str:
        return f"{ip4_str(self.ip)}:{self.port}" if self.port else ip4_str(self.ip)
