"""pcap LINKTYPE_* values meshpkt decodes, with display names."""

from __future__ import annotations

NULL = 0
ETHERNET = 1
RAW_12 = 12
RAW_14 = 14
RAW = 101
LOOP = 108
LINUX_SLL = 113
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276

NAMES: dict[int, str] = {
    NULL: "NULL (BSD loopback)",
    ETHERNET: "EN10MB (Ethernet)",
    RAW_12: "RAW (12)",
    RAW_14: "RAW (14)",
    RAW: "RAW (IP)",
    LOOP: "LOOP (OpenBSD loopback)",
    LINUX_SLL: "LINUX_SLL (Linux cooked v1)",
    IPV4: "IPV4 (raw IPv4)",
    IPV6: "IPV6 (raw IPv6)",
    LINUX_SLL2: "LINUX_SLL2 (Linux cooked v2)",
}

SUPPORTED: frozenset[int] = frozenset(NAMES)


def name(linktype: int) -> str:
    """A short display name for a link type (``LINKTYPE_<n>`` when unknown)."""
    return NAMES.get(int(linktype), f"LINKTYPE_{int(linktype)}")
