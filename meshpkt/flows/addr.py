"""Small address helpers for flows (display only; data stays integers)."""

from __future__ import annotations

import ipaddress


def ip4(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value))) if value else ""


def ip4_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def endpoint(ip: int, port: int) -> str:
    """``"ip:port"``; just ``"ip"`` when the protocol has no ports."""
    if not ip:
        return ""
    return f"{ip4(ip)}:{int(port)}" if port is not None and int(port) >= 0 else ip4(ip)
