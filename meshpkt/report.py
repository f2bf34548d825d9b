"""Tables for machines: the documented export shapes of packets, hops and connections (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_str, mac_str

#: Column order of ``meshpkt analyze --packets`` exports (first the documented minimum).
PACKET_EXPORT_COLUMNS = (
    "point", "ts_ns", "outer_src", "outer_dst", "outer_proto", "outer_sport", "outer_dport", "vni",
    "inner_src", "inner_dst", "inner_proto", "inner_sport", "inner_dport", "ip_id", "tcp_flags", "tcp_seq",
    "tcp_ack", "payload_len",
    "record", "caplen", "wirelen", "truncated", "linktype", "decoded", "eth_src", "eth_dst", "vlan", "vlan2",
    "ethertype", "outer_ipver", "outer_ttl", "outer_ip_id", "outer_df", "outer_frag", "esp_spi", "vxlan_flags",
    "inner_eth_src", "inner_eth_dst", "inner_vlan", "inner_ethertype", "inner_ttl", "tcp_win", "tcp_mss",
    "tcp_wscale", "tcp_tsval", "tcp_tsecr", "icmp_type", "icmp_code", "payload_hash", "conn_id",
)

_ADDR4 = ("outer_src", "outer_dst", "inner_src", "inner_dst")
_MAC = ("eth_src", "eth_dst", "inner_eth_src", "inner_eth_dst")
_NULLABLE_INT = ("outer_proto", "outer_sport", "outer_dport", "vni", "inner_proto", "inner_sport", "inner_dport",
                 "ip_id", "tcp_flags", "tcp_seq", "tcp_ack", "payload_len", "vlan", "vlan2", "outer_ttl",
                 "outer_ip_id", "esp_spi", "vxlan_flags", "inner_vlan", "inner_ttl", "tcp_win", "tcp_mss",
                 "tcp_wscale", "tcp_tsval", "tcp_tsecr", "icmp_type", "icmp_code")


def _hex16(values: np.ndarray) -> np.ndarray:
    """16-digit lowercase hex of uint64 values, vectorised (no Python call per row)."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = ((values[:, None] >> shifts) & np.uint64(0xF)).astype(np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(digits).view("S16").ravel().astype(str)


def packets_for_export(packets: pd.DataFrame) -> pd.DataFrame:
    """The per-packet table with addresses as strings and absent values as nulls."""
    cols = [c for c in PACKET_EXPORT_COLUMNS if c in packets.columns]
    out = packets[cols].copy()
    out["point"] = out["point"].astype(str)
    for c in _ADDR4:
        strs = ip4_str(out[c])
        v6col = c + "6"
        if v6col in packets.columns:
            v6 = packets[v6col].to_numpy()
            has6 = np.array([x is not None for x in v6], dtype=bool)
            if has6.any():
                import ipaddress

                strs[has6] = [str(ipaddress.IPv6Address(bytes(x))) for x in v6[has6]]
        out[c] = strs
    for c in _MAC:
        if c in out.columns:
            out[c] = mac_str(out[c].to_numpy())
    for c in _NULLABLE_INT:
        if c in out.columns:
            s = out[c]
            out[c] = s.where(s >= 0).astype("Int64")
    if "payload_hash" in out.columns:
        h = out["payload_hash"].to_numpy().astype(np.uint64)
        out["payload_hash"] = np.where(h == 0, "", _hex16(h))
    return out


def hops_for_export(hops: pd.DataFrame) -> pd.DataFrame:
    """The per-hop table: one row per (connection, hop) with display strings."""
    drop = [c for c in ("src_ip", "dst_ip") if c in hops.columns]
    return hops.drop(columns=drop)
