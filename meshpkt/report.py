"""Tables for machines: the documented export shapes of packets, hops and connections (pure)."""

from __future__ import annotations

import pandas as pd

from meshpkt.decode.export import PACKET_EXPORT_COLUMNS, packets_for_export

__all__ = ["PACKET_EXPORT_COLUMNS", "hops_for_export", "packets_for_export"]


def hops_for_export(hops: pd.DataFrame) -> pd.DataFrame:
    """The per-hop table: one row per (connection, hop) with display strings."""
    drop = [c for c in ("src_ip", "dst_ip") if c in hops.columns]
    return hops.drop(columns=drop)
