"""The packet table for machines: addresses as text, absent values as nulls (pure).

Validity comes from the table itself (``schema.valid``): a field that is absent is null
(empty in CSV, null in JSON), a zero that was read -- 0.0.0.0, port 0, VNI 0, an all-zero
MAC, DF clear -- is a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_str, ip6_strs, mac_str
from meshpkt.decode.schema import COLUMNS, TUNNEL_NAMES, problem_names, valid

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

_ADDR = ("outer_src", "outer_dst", "inner_src", "inner_dst")
_MAC = ("eth_src", "eth_dst", "inner_eth_src", "inner_eth_dst")
_TEXT = ("point",)


def _hex16(values: np.ndarray) -> np.ndarray:
    """16-digit lowercase hex of uint64 values, vectorised (no Python call per row)."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = ((values[:, None] >> shifts) & np.uint64(0xF)).astype(np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(digits).view("S16").ravel().astype(str)


def _address(packets: pd.DataFrame, col: str) -> np.ndarray:
    """IPv4 text where the IPv4 field is valid, else the IPv6 text of ``<col>6``, else ""."""
    strs = ip4_str(packets[col].to_numpy())
    ok = valid(packets, col)
    strs[ok & (packets[col].to_numpy() == 0)] = "0.0.0.0"
    strs[~ok] = ""
    v6col = col + "6"
    if v6col in packets.columns:
        v6 = packets[v6col].to_numpy()
        has6 = np.array([x is not None for x in v6], dtype=bool)
        if has6.any():
            strs[has6] = ip6_strs(v6[has6])
    return strs


def _mac(packets: pd.DataFrame, col: str) -> np.ndarray:
    strs = mac_str(packets[col].to_numpy())
    ok = valid(packets, col)
    strs[ok & (packets[col].to_numpy() == 0)] = "00:00:00:00:00:00"
    strs[~ok] = ""
    return strs


def _nullable(packets: pd.DataFrame, col: str) -> pd.Series:
    """An integer/boolean column with its absent rows as nulls."""
    s = packets[col]
    ok = valid(packets, col)
    if COLUMNS[col][0] == "bool":
        return s.astype("boolean").where(ok)
    return s.astype("Int64").where(ok)


def packets_for_export(packets: pd.DataFrame) -> pd.DataFrame:
    """The per-packet table with addresses as strings and absent values as nulls."""
    cols = [c for c in PACKET_EXPORT_COLUMNS if c in packets.columns]
    out = packets[cols].copy()
    out["point"] = out["point"].astype(str)
    for c in cols:
        if c in _ADDR:
            out[c] = _text(out, _address(packets, c))
        elif c in _MAC:
            out[c] = _text(out, _mac(packets, c))
        elif c == "payload_hash":
            h = packets[c].to_numpy().astype(np.uint64)
            out[c] = _text(out, np.where(valid(packets, c), _hex16(h), ""))
        elif c == "problems":
            out[c] = _text(out, _problem_text(packets[c].to_numpy()))
        elif c == "tunnel":
            names = np.array([TUNNEL_NAMES.get(int(k), str(k)) for k in range(256)], dtype=object)
            out[c] = _text(out, names[packets[c].to_numpy()])
        elif c in COLUMNS and c not in _TEXT and c not in ("truncated", "decoded", "record", "caplen",
                                                             "wirelen", "linktype", "tunnel_depth"):
            out[c] = _nullable(packets, c)
    return out


def _text(out: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """A text column with a string dtype even when empty (so every chunk has one schema)."""
    return pd.Series(values, index=out.index, dtype="str")


def _problem_text(bits: np.ndarray) -> np.ndarray:
    """``problems`` as ``name+name`` text ("" for none), each distinct value formatted once."""
    uniq, inv = np.unique(bits, return_inverse=True)
    text = np.array(["+".join(problem_names(int(u))) for u in uniq], dtype=object)
    return text[inv.reshape(bits.shape)]
