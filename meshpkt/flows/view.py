"""The transport view of the packet table: the 5-tuple a connection has at each capture point.

For VXLAN packets that is the inner IPv4 header, otherwise the outer one. Pure numpy/pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.schema import TCP_ACK, TCP_SYN


def transport_view(packets: pd.DataFrame) -> pd.DataFrame:
    """Columns ``enc, src, dst, proto, sport, dport`` (innermost IPv4), one row per packet.

    ``enc`` is True when the packet is VXLAN-encapsulated with a decoded inner IPv4 header.
    Packets without an IPv4 transport get ``src == 0``.
    """
    vni = packets["vni"].to_numpy()
    inner_ok = (vni >= 0) & (packets["inner_src"].to_numpy() != 0)
    outer_v4 = packets["outer_ipver"].to_numpy() == 4

    def pick(inner: str, outer: str) -> np.ndarray:
        return np.where(inner_ok, packets[inner].to_numpy(), packets[outer].to_numpy())

    src = np.where(inner_ok | outer_v4, pick("inner_src", "outer_src"), 0).astype(np.uint32)
    dst = np.where(inner_ok | outer_v4, pick("inner_dst", "outer_dst"), 0).astype(np.uint32)
    return pd.DataFrame(
        {
            "enc": inner_ok,
            "src": src,
            "dst": dst,
            "proto": pick("inner_proto", "outer_proto").astype(np.int16),
            "sport": pick("inner_sport", "outer_sport").astype(np.int32),
            "dport": pick("inner_dport", "outer_dport").astype(np.int32),
        },
        index=packets.index,
    )


def is_syn(flags: np.ndarray) -> np.ndarray:
    """SYN without ACK (a connection opening)."""
    return (flags >= 0) & ((flags & TCP_SYN) != 0) & ((flags & TCP_ACK) == 0)


def is_synack(flags: np.ndarray) -> np.ndarray:
    return (flags >= 0) & ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
