"""What the decoder found beyond the fields: problem counts, tunnel ports, fragment pairing (pure).

For summaries and the analysis: ``problem_counts`` counts every ``problems`` bit (and the
rows not fully decoded), ``tunnel_ports`` says on which UDP ports which tunnels were
recognised (so ``--vxlan-port`` is a hint, not a requirement), and ``fragments`` pairs the
outer IPv4 fragments of one datagram by (point, source, destination, protocol, IP id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.schema import PROBLEM_BITS, TUNNEL_NAMES


def problem_counts(packets: pd.DataFrame) -> dict[str, int]:
    """Rows per problem (``schema.PROBLEM_BITS`` names), plus ``not_decoded`` (decoded == 2)."""
    bits = packets["problems"].to_numpy()
    out = {name: int(((bits & bit) != 0).sum()) for name, bit in PROBLEM_BITS.items()}
    out["not_decoded"] = int((packets["decoded"].to_numpy() == 2).sum())
    return out


def tunnel_ports(packets: pd.DataFrame) -> dict[str, dict[int, int]]:
    """{tunnel name: {UDP destination port: packets}} of the outermost tunnels found."""
    kind = packets["tunnel"].to_numpy()
    sel = kind > 0
    if not sel.any():
        return {}
    counts = (pd.DataFrame({"kind": kind[sel], "port": packets["outer_dport"].to_numpy()[sel]})
              .groupby(["kind", "port"]).size())
    out: dict[str, dict[int, int]] = {}
    for (k, port), n in counts.items():
        out.setdefault(TUNNEL_NAMES.get(int(k), str(k)), {})[int(port)] = int(n)
    return out


FRAGMENT_KEY = ("point", "outer_src", "outer_dst", "outer_proto", "outer_ip_id")


def fragments(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per fragmented outer IPv4 datagram.

    Columns: the key (``FRAGMENT_KEY``), ``first_row`` (index label of the fragment at
    offset 0, -1 if not captured), ``fragments``, ``bytes`` (fragment data captured, from
    the fragments' own lengths), ``size`` (the datagram's data length when the last
    fragment -- MF clear -- was seen, else -1) and ``complete`` (offset 0 and the last
    fragment seen, and the fragments cover every byte in between exactly once).
    """
    m = (packets["outer_ipver"].to_numpy() == 4) & packets["outer_frag"].to_numpy()
    frag = packets.loc[m, list(FRAGMENT_KEY) + ["outer_frag_off", "outer_frag_len", "outer_mf"]]
    if frag.empty:
        return pd.DataFrame(columns=[*FRAGMENT_KEY, "first_row", "fragments", "bytes", "size", "complete"])
    frag = frag.assign(row=frag.index.to_numpy(), end=frag["outer_frag_off"] + frag["outer_frag_len"])
    frag = frag.sort_values([*FRAGMENT_KEY, "outer_frag_off"])
    g = frag.groupby(list(FRAGMENT_KEY), observed=True, sort=False)
    first = frag["row"].where(frag["outer_frag_off"] == 0, -1)
    last_end = frag["end"].where(~frag["outer_mf"], -1)
    # contiguous: every fragment starts where the previous one (by offset) ended
    gap = frag["outer_frag_off"].to_numpy() != g["end"].shift(1).fillna(0).to_numpy()
    out = pd.DataFrame({
        "first_row": first.groupby([frag[k] for k in FRAGMENT_KEY], observed=True, sort=False).max(),
        "fragments": g.size(),
        "bytes": g["outer_frag_len"].sum(),
        "size": last_end.groupby([frag[k] for k in FRAGMENT_KEY], observed=True, sort=False).max(),
        "gaps": pd.Series(gap, index=frag.index).groupby([frag[k] for k in FRAGMENT_KEY], observed=True,
                                                          sort=False).sum(),
    })
    out["complete"] = (out["first_row"] >= 0) & (out["size"] >= 0) & (out["gaps"] == 0) & (out["bytes"] == out["size"])
    return out.drop(columns="gaps").reset_index().astype({"first_row": np.int64, "size": np.int64})
