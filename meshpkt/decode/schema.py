"""The packet table: one row per captured packet, one column per field.

This is the contract between the decoder and everything downstream (flows, bpf --check,
plots, exports). Addresses stay integers (IPv4 as uint32 in host order, MACs as uint64)
until display; IPv6 addresses live in ``*_src6``/``*_dst6`` object columns holding 16-byte
``bytes`` (``None`` elsewhere). "Absent" is encoded per dtype as listed in ``ABSENT``.

**Absent is not zero.** A column whose absent value is -1 or None is self-describing. The
columns whose absent value 0 is also a legitimate value (addresses 0.0.0.0, all-zero MACs,
EtherType 0, payload digest, timestamp) have one bit each in the ``present`` bitmask column
(``PRESENT_BITS``); ``valid(df, column)`` gives the validity mask of any column, and the
exports (``meshpkt.decode.export``) write absent values as empty/null and zeros as values.
Downstream code may keep reading the integer columns as before: their dtypes and absent
values are unchanged.

**Never a silent wrong value.** ``problems`` (``PROBLEM_BITS``) says what is wrong with a
packet: a timestamp that does not fit, a header cut short, a length field that contradicts
the frame, fragments, malformed headers. ``decoded`` is 0 (or 1 when an IPv4 option or IPv6
extension header chain was walked) only when every layer the packet claims was decoded.

Outer = the frame as captured. Inner = the Ethernet frame carried inside VXLAN. The
``ip_id``/``tcp_*``/``icmp_*``/``payload_*`` columns describe the *innermost* transport
header: the inner one for VXLAN packets, the outer one otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# name -> (numpy dtype, absent value, description)
COLUMNS: dict[str, tuple[str, object, str]] = {
    "point": ("category", None, "capture point (file stem, POINT= name, or pcapng interface)"),
    "record": ("int64", -1, "0-based record number within its capture file"),
    "ts_ns": ("int64", 0, "timestamp, nanoseconds since the Unix epoch"),
    "caplen": ("uint32", 0, "bytes captured"),
    "wirelen": ("uint32", 0, "bytes on the wire (frame length)"),
    "truncated": ("bool", False, "caplen < wirelen, or a header runs past the captured bytes"),
    "linktype": ("uint16", 0, "pcap LINKTYPE_* of the record"),
    "decoded": ("uint8", 0, "0 every claimed layer decoded, 1 the same through an IPv4 option / IPv6 "
                          "extension-header chain, 2 a claimed layer not decoded (see problems)"),
    "eth_src": ("uint64", 0, "outer source MAC (0: no Ethernet header)"),
    "eth_dst": ("uint64", 0, "outer destination MAC"),
    "vlan": ("int32", -1, "outer 802.1Q VLAN id (-1: untagged)"),
    "vlan2": ("int32", -1, "second (QinQ inner) VLAN id"),
    "ethertype": ("uint16", 0, "EtherType of the outer L3 after tags (802.3 LLC/SNAP: the SNAP type)"),
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
    "esp_spi": ("int64", -1, "ESP SPI (IP protocol 50, or ESP in UDP 4500)"),
    "vxlan_flags": ("int16", -1, "VXLAN / VXLAN-GPE flags byte (0x08: VNI valid)"),
    "vni": ("int32", -1, "VNI of the outermost tunnel (VXLAN, VXLAN-GPE, Geneve; -1: none)"),
    "inner_eth_src": ("uint64", 0, "inner Ethernet source MAC"),
    "inner_eth_dst": ("uint64", 0, "inner Ethernet destination MAC"),
    "inner_vlan": ("int32", -1, "inner 802.1Q VLAN id"),
    "inner_ethertype": ("uint16", 0, "inner EtherType after tags (Geneve/GPE without Ethernet: of the "
                                         "carried IP)"),
    "inner_src": ("uint32", 0, "inner IPv4 source"),
    "inner_dst": ("uint32", 0, "inner IPv4 destination"),
    "inner_proto": ("int16", -1, "inner IP protocol / IPv6 next header of the transport"),
    "inner_ttl": ("int16", -1, "inner TTL / hop limit"),
    "inner_sport": ("int32", -1, "inner TCP/UDP source port"),
    "inner_dport": ("int32", -1, "inner TCP/UDP destination port"),
    "ip_id": ("int32", -1, "IPv4 identification of the innermost IP header (-1 when it is IPv6)"),
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
    # --- added by issue 17 (validity, problems, tunnels, inner IPv6, fragments)
    "present": ("uint16", 0, "validity bits of the columns whose absent value is also a value (PRESENT_BITS)"),
    "problems": ("uint16", 0, "what is wrong with the packet, bit flags (PROBLEM_BITS); 0: nothing"),
    "tunnel": ("uint8", 0, "outermost UDP tunnel: 0 none, 1 VXLAN, 2 VXLAN-GPE, 3 Geneve"),
    "tunnel_depth": ("uint8", 0, "tunnels decoded (2: a tunnel inside a tunnel)"),
    "tunnel_proto": ("int32", -1, "Geneve protocol type / VXLAN-GPE next protocol of the outermost tunnel"),
    "vni_inner": ("int32", -1, "VNI of the innermost tunnel when tunnel_depth >= 2"),
    "inner_ipver": ("uint8", 0, "4, 6 or 0: the innermost (tunnelled) IP header"),
    "inner_src6": ("object", None, "inner IPv6 source, 16 bytes"),
    "inner_dst6": ("object", None, "inner IPv6 destination, 16 bytes"),
    "outer_frag_off": ("int32", -1, "outer fragment offset in bytes (IPv4 or IPv6 fragment header)"),
    "outer_mf": ("bool", False, "outer fragment has More Fragments set"),
    "outer_frag_len": ("int32", -1, "fragment data bytes an outer IPv4 fragment claims (total length - IHL*4)"),
}

COLUMN_NAMES: tuple[str, ...] = tuple(COLUMNS)
ABSENT: dict[str, object] = {k: v[1] for k, v in COLUMNS.items()}

#: ``present`` bits: the columns whose absent value (0 / False) is also a legitimate value
#: (0.0.0.0, an all-zero MAC, EtherType 0, a timestamp at the epoch, DF clear). Every other
#: column is self-describing: its absent value (-1, None) is never a value.
PRESENT_BITS: dict[str, int] = {
    "ts_ns": 1 << 0,
    "eth_src": 1 << 1,
    "eth_dst": 1 << 2,
    "ethertype": 1 << 3,
    "outer_src": 1 << 4,
    "outer_dst": 1 << 5,
    "inner_eth_src": 1 << 6,
    "inner_eth_dst": 1 << 7,
    "inner_ethertype": 1 << 8,
    "inner_src": 1 << 9,
    "inner_dst": 1 << 10,
    "payload_hash": 1 << 11,
    "outer_df": 1 << 12,      # the IPv4 flags field was read
    "outer_frag": 1 << 13,    # IPv4 flags read, or the IPv6 extension chain walked to its end
    "outer_mf": 1 << 13,
}

#: ``problems`` bits (the summary counts each; ``problem_counts``)
PROBLEM_BITS: dict[str, int] = {
    "ts_range": 1 << 0,          # the timestamp does not fit int64 ns since the epoch (ts_ns absent)
    "header_cut": 1 << 1,        # a header runs past the captured bytes (snaplen)
    "length": 1 << 2,            # a length field contradicts the frame or the enclosing header
    "length_from_frame": 1 << 3,  # IP length 0 (TSO / BIG TCP / jumbogram): the frame's end is used
    "frag_first": 1 << 4,        # first fragment: fields describe only the bytes it holds
    "frag_later": 1 << 5,        # a later fragment: no transport header in it
    "malformed": 1 << 6,         # a header field is invalid (IHL < 5, IP version, TCP data offset, ...)
    "tunnel_depth": 1 << 7,      # a tunnel nested deeper than meshpkt decodes (2)
}

#: ``tunnel`` codes
TUNNEL_NAMES: dict[int, str] = {0: "", 1: "vxlan", 2: "vxlan-gpe", 3: "geneve"}

PRESENT_COLUMNS: tuple[str, ...] = tuple(PRESENT_BITS)

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


def valid(df: pd.DataFrame, column: str) -> np.ndarray:
    """Boolean validity mask of ``column`` in a packet table (True: the value is present)."""
    bit = PRESENT_BITS.get(column)
    if bit is not None:
        return (df["present"].to_numpy() & bit) != 0
    dtype, absent, _ = COLUMNS[column]
    values = df[column].to_numpy()
    if dtype == "object":
        return np.array([v is not None for v in values], dtype=bool)
    if dtype == "category":
        return np.ones(len(values), dtype=bool)
    if dtype == "bool":  # truncated: always known
        return np.ones(len(values), dtype=bool)
    return values != absent


def problem_names(bits: int) -> list[str]:
    """The names of the ``problems`` bits set in ``bits``."""
    return [name for name, b in PROBLEM_BITS.items() if bits & b]
