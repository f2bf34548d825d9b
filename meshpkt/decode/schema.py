"""The packet table: one row per captured packet, one column per field.

This is the contract between the decoder and everything downstream (flows, bpf --check,
plots, exports). Addresses stay integers (IPv4 as uint32 in host order, MACs as uint64)
until display; IPv6 addresses live in ``*_src6``/``*_dst6`` object columns holding 16-byte
``bytes`` (``None`` elsewhere). "Absent" is encoded per dtype as listed in ``ABSENT``.

Outer = the frame as captured. Inner = the Ethernet frame carried inside VXLAN. The
``ip_id``/``tcp_*``/``icmp_*``/``payload_*`` columns describe the *innermost* transport
header: the inner one for VXLAN packets, the outer one otherwise.
"""

from __future__ import annotations

import numpy as np

# name -> (numpy dtype, absent value, description)
COLUMNS: dict[str, tuple[str, object, str]] = {
    "point": ("category", None, "capture point (file stem, POINT= name, or pcapng interface)"),
    "record": ("int64", -1, "0-based record number within its capture file"),
    "ts_ns": ("int64", 0, "timestamp, nanoseconds since the Unix epoch"),
    "caplen": ("uint32", 0, "bytes captured"),
    "wirelen": ("uint32", 0, "bytes on the wire (frame length)"),
    "truncated": ("bool", False, "caplen < wirelen, or a header runs past the captured bytes"),
    "linktype": ("uint16", 0, "pcap LINKTYPE_* of the record"),
    "decoded": ("uint8", 0, "0 fast path, 1 exact (slow) path, 2 not decodable beyond L2/L3"),
    "eth_src": ("uint64", 0, "outer source MAC (0: no Ethernet header)"),
    "eth_dst": ("uint64", 0, "outer destination MAC"),
    "vlan": ("int32", -1, "outer 802.1Q VLAN id (-1: untagged)"),
    "vlan2": ("int32", -1, "second (QinQ inner) VLAN id"),
    "ethertype": ("uint16", 0, "EtherType of the outer L3 after tags"),
    "outer_ipver": ("uint8", 0, "4, 6 or 0"),
    "outer_src": ("uint32", 0, "outer IPv4 source"),
    "outer_dst": ("uint32", 0, "outer IPv4 destination"),
    "outer_src6": ("object", None, "outer IPv6 source, 16 bytes"),
    "outer_dst6": ("object", None, "outer IPv6 destination, 16 bytes"),
    "outer_proto": ("int16", -1, "outer IP protocol / IPv6 next header of the transport"),
    "outer_ttl": ("int16", -1, "outer TTL / hop limit"),
    "outer_ip_id": ("int32", -1, "outer IPv4 identification"),
    "outer_df": ("bool", False, "outer IPv4 DF bit"),
    "outer_frag": ("bool", False, "outer IPv4 is a fragment (MF set or offset > 0)"),
    "outer_sport": ("int32", -1, "outer TCP/UDP source port"),
    "outer_dport": ("int32", -1, "outer TCP/UDP destination port"),
    "esp_spi": ("int64", -1, "ESP SPI when the outer IP protocol is 50"),
    "vxlan_flags": ("int16", -1, "VXLAN flags byte (0x08: VNI valid)"),
    "vni": ("int32", -1, "VXLAN network identifier (-1: not VXLAN)"),
    "inner_eth_src": ("uint64", 0, "inner Ethernet source MAC"),
    "inner_eth_dst": ("uint64", 0, "inner Ethernet destination MAC"),
    "inner_vlan": ("int32", -1, "inner 802.1Q VLAN id"),
    "inner_ethertype": ("uint16", 0, "inner EtherType after tags"),
    "inner_src": ("uint32", 0, "inner IPv4 source"),
    "inner_dst": ("uint32", 0, "inner IPv4 destination"),
    "inner_proto": ("int16", -1, "inner IP protocol"),
    "inner_ttl": ("int16", -1, "inner TTL"),
    "inner_sport": ("int32", -1, "inner TCP/UDP source port"),
    "inner_dport": ("int32", -1, "inner TCP/UDP destination port"),
    "ip_id": ("int32", -1, "IPv4 identification of the innermost IP header"),
    "tcp_seq": ("int64", -1, "TCP sequence number (innermost)"),
    "tcp_ack": ("int64", -1, "TCP acknowledgement number"),
    "tcp_flags": ("int16", -1, "TCP flags byte (FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80)"),
    "tcp_win": ("int32", -1, "TCP window (unscaled)"),
    "tcp_mss": ("int32", -1, "TCP MSS option"),
    "tcp_wscale": ("int16", -1, "TCP window scale option"),
    "tcp_tsval": ("int64", -1, "TCP timestamp option TSval"),
    "tcp_tsecr": ("int64", -1, "TCP timestamp option TSecr"),
    "icmp_type": ("int16", -1, "ICMP type (innermost)"),
    "icmp_code": ("int16", -1, "ICMP code"),
    "payload_len": ("int32", -1, "innermost L4 payload length from the IP header (not caplen)"),
    "payload_hash": ("uint64", 0, "FNV-1a 64 of the first 64 captured bytes of the innermost L4 payload "
                                  "(0: none): an identity key used with seq/ack/TS/IP id/payload_len"),
}

COLUMN_NAMES: tuple[str, ...] = tuple(COLUMNS)
ABSENT: dict[str, object] = {k: v[1] for k, v in COLUMNS.items()}

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def empty_columns(n: int) -> dict[str, np.ndarray]:
    """Arrays of length ``n`` for every numeric column, filled with the absent value."""
    out: dict[str, np.ndarray] = {}
    for name, (dtype, absent, _) in COLUMNS.items():
        if dtype == "category":
            continue
        if dtype == "object":
            out[name] = np.full(n, None, dtype=object)
        else:
            out[name] = np.full(n, absent, dtype=dtype)
    return out
