"""Byte ranges of TCP connections compared hop by hop: retransmissions, reordering, losses.

Every TCP segment covers ``[seq, seq + payload length (+1 for SYN, +1 for FIN))`` of its
direction's sequence space, its length taken from the IP total length (never from the captured
bytes). Within one connection and direction the ranges of every hop are cut at all their
boundaries into *elementary intervals*; for each hop and interval the *multiplicity* is how many
times that hop saw those bytes. Segmentation offload does not change multiplicities (a 64 KB
super-segment and its 45 segments cover each byte once), so hops compare exactly:

- a *retransmission* at a hop is a segment that starts behind bytes already seen there, on
  bytes seen twice or more there (a segment that starts behind but on bytes seen once is a
  *reordering*);
- copies *lost* after hop k (travel order) on an interval are ``m_k - max(m_j for later j)``,
  where bytes the receiver acknowledged count as delivered at least once (so a tap that missed
  a packet -- a capture drop, a capture that stopped early -- is not taken for a loss: the
  packet is seen further on, or acknowledged), and ``m_k`` counts only the copies the captures
  could have seen arrive further on (not those in flight when the captures stopped).

Everything is vectorised over (connection, direction, hop, interval) rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_OFF = np.int64(1) << 32  # relative positions are within +-2**31: shifted to be non-negative
_SHIFT = np.int64(1) << 34  # room for a position in a composite (group, position) key


def relative(seq: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``seq - base`` in 32-bit sequence arithmetic, as a signed int64."""
    d = (seq.astype(np.int64) - base.astype(np.int64)) % (np.int64(1) << 32)
    return np.where(d >= (np.int64(1) << 31), d - (np.int64(1) << 32), d)


def segment_ranges(seg: pd.DataFrame) -> pd.DataFrame:
    """``seg``: TCP packets (not duplicates) with ``conn, fwd, hop, ts, seq, ack, plen, syn, fin,
    ack_flag, trusted`` (``trusted``: the capture still ran when the packet would have crossed the
    rest of its path, so its absence further on can be judged). Returns the data-carrying ranges (``conn, fwd, hop, ts, start, end``) and, per
    (conn, fwd), how far the other side acknowledged (``acked``, relative)."""
    order = np.argsort(seg["ts"].to_numpy(), kind="stable")
    seg = seg.iloc[order]
    base = seg.groupby(["conn", "fwd"])["seq"].transform("first").to_numpy()
    start = relative(seg["seq"].to_numpy(), base)
    length = seg["plen"].to_numpy().clip(0) + seg["syn"].to_numpy() + seg["fin"].to_numpy()
    rng = pd.DataFrame({"conn": seg["conn"].to_numpy(), "fwd": seg["fwd"].to_numpy(),
                        "hop": seg["hop"].to_numpy(), "ts": seg["ts"].to_numpy(), "start": start,
                        "end": start + length, "trusted": seg["trusted"].to_numpy()})
    first = seg.drop_duplicates(["conn", "fwd"]).set_index(["conn", "fwd"])["seq"]
    acks = seg[seg["ack_flag"].to_numpy()]
    # an ACK in direction d acknowledges the sequence space of direction not-d
    ack_base = first.reindex(pd.MultiIndex.from_arrays([acks["conn"], ~acks["fwd"].to_numpy()])).to_numpy()
    have = ~np.isnan(ack_base.astype(np.float64))
    acked = pd.DataFrame({"conn": acks["conn"].to_numpy()[have], "fwd": ~acks["fwd"].to_numpy()[have],
                          "acked": relative(acks["ack"].to_numpy()[have], ack_base[have].astype(np.int64))})
    acked = acked.groupby(["conn", "fwd"])["acked"].max()
    return rng[length > 0].assign(acked=acked.reindex(pd.MultiIndex.from_frame(
        rng.loc[length > 0, ["conn", "fwd"]])).fillna(np.iinfo(np.int64).min).to_numpy().astype(np.int64))


def _elements(rng: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per direction group ``g``: the sorted boundaries; returns (composite ``g, position`` keys,
    positions, group start offsets into the boundary arrays)."""
    g = rng["g"].to_numpy()
    bg = np.concatenate([g, g])
    bp = np.concatenate([rng["start"].to_numpy(), rng["end"].to_numpy()])
    comp = np.unique(bg * _SHIFT + (bp + _OFF))
    b_pos = comp % _SHIFT - _OFF
    starts = np.searchsorted(comp // _SHIFT, np.arange(int(g.max()) + 2 if len(g) else 1))
    return comp, b_pos, starts


def _grid(rng: pd.DataFrame, hops: pd.DataFrame) -> pd.DataFrame:
    """One row per (direction group, hop, elementary interval) with the hop's multiplicity there."""
    comp, b_pos, gstart = _elements(rng)
    n_el = np.diff(gstart) - 1  # intervals per group
    n_el = np.maximum(n_el, 0)
    gh_g = hops["g"].to_numpy()
    reps = n_el[gh_g]
    row_gh = np.repeat(np.arange(len(hops)), reps)
    within = np.arange(len(row_gh)) - np.repeat(np.cumsum(reps) - reps, reps)
    el_idx = gstart[gh_g][row_gh] + within
    grid = pd.DataFrame({"gh": row_gh, "g": gh_g[row_gh], "order": hops["order"].to_numpy()[row_gh],
                         "el": within, "lo": b_pos[el_idx], "hi": b_pos[el_idx + 1]})
    gh_of = pd.Series(np.arange(len(hops)), index=pd.MultiIndex.from_frame(hops[["g", "hop"]]))
    r_gh = gh_of.reindex(pd.MultiIndex.from_frame(rng[["g", "hop"]])).to_numpy()
    q = grid["gh"].to_numpy() * _SHIFT + grid["lo"].to_numpy() + _OFF
    for col, sel in (("m", np.ones(len(rng), dtype=bool)), ("mt", rng["trusted"].to_numpy().astype(bool))):
        s_key = np.sort(r_gh[sel] * _SHIFT + rng["start"].to_numpy()[sel] + _OFF)
        e_key = np.sort(r_gh[sel] * _SHIFT + rng["end"].to_numpy()[sel] + _OFF)
        grid[col] = np.searchsorted(s_key, q, "right") - np.searchsorted(e_key, q, "right")
    grid.attrs["gstart"] = gstart
    grid.attrs["comp"] = comp
    return grid


def _losses(grid: pd.DataFrame, acked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies lost after each grid row's hop, in travel order (0 at the last hop), and whether no
    copy of those bytes was seen further on or acknowledged."""
    order = np.lexsort((-grid["order"].to_numpy(), grid["el"].to_numpy(), grid["g"].to_numpy()))
    m = grid["m"].to_numpy()[order]
    g, el = grid["g"].to_numpy()[order], grid["el"].to_numpy()[order]
    grp = pd.Series(m).groupby([g, el])
    downstream = grp.cummax().groupby([g, el]).shift(1).to_numpy()  # max over later hops
    delivered = (grid["hi"].to_numpy()[order] <= acked[g]).astype(np.float64)
    further = np.fmax(downstream, delivered)
    trusted = grid["mt"].to_numpy()[order]
    lost = np.where(np.isnan(downstream), 0, np.maximum(trusted - further, 0))
    out = np.zeros(len(order), dtype=np.int64)
    out[order] = lost
    never = np.zeros(len(order), dtype=bool)
    never[order] = further == 0
    return out, never


def _missed(grid: pd.DataFrame) -> np.ndarray:
    """Grid rows where the hop saw fewer copies than both an earlier and a later hop of its chain:
    the tap missed packets (tcpdump drops); such a tap is not trusted to place a loss."""
    order = np.lexsort((-grid["order"].to_numpy(), grid["el"].to_numpy(), grid["g"].to_numpy()))
    m = pd.Series(grid["m"].to_numpy()[order])
    keys = [grid["g"].to_numpy()[order], grid["el"].to_numpy()[order]]
    later = m.groupby(keys).cummax().groupby(keys).shift(1).to_numpy()
    rev = m.iloc[::-1]
    rkeys = [k[::-1] for k in keys]
    earlier = rev.groupby(rkeys).cummax().groupby(rkeys).shift(1).to_numpy()[::-1]
    out = np.zeros(len(order), dtype=bool)
    out[order] = m.to_numpy() < np.minimum(later, earlier)  # NaN (first or last hop): False
    return out


def compare_hops(rng: pd.DataFrame, hops: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rng`` from :func:`segment_ranges` (non-stray hops only); ``hops``: ``conn, hop, order`` rows
    (``order``: position along the forward path) -- every non-stray hop of the connections; the
    chain of a direction is made of the hops that saw some of its bytes.

    Returns per (conn, fwd, hop): ``segments, bytes, retrans, retrans_bytes, reordered, lost,
    lost_bytes`` (lost = after this hop), ``missed_bytes`` (bytes seen more often before and after
    this hop than at it: the tap missed packets), and the lost ranges (``conn, fwd, hop, start, end,
    copies, delivered``: whether a copy of them got through later, by retransmission)."""
    gid = pd.MultiIndex.from_frame(rng[["conn", "fwd"]].drop_duplicates())
    rng = rng.assign(g=gid.get_indexer(pd.MultiIndex.from_frame(rng[["conn", "fwd"]])))
    gh = pd.DataFrame({"g": np.arange(len(gid)), "conn": gid.get_level_values(0),
                       "fwd": gid.get_level_values(1)}).merge(hops, on="conn")
    gh["order"] = np.where(gh["fwd"], gh["order"], -gh["order"])
    # a direction's chain: the hops that carried some of its bytes (a local flow of the other
    # direction only, e.g. a reply leaving by another route, is not on it)
    carried = pd.MultiIndex.from_frame(rng[["g", "hop"]].drop_duplicates())
    gh = gh[pd.MultiIndex.from_frame(gh[["g", "hop"]]).isin(carried)]
    gh = gh.sort_values(["g", "hop"]).reset_index(drop=True)
    grid = _grid(rng, gh)
    acked = rng.groupby("g")["acked"].first().reindex(range(len(gid))).to_numpy()
    grid["lost"], grid["never"] = _losses(grid, acked)
    grid["missed"] = _missed(grid)
    per = _per_segment(rng, gh, grid)
    stats = _hop_stats(per, grid, gh)
    return stats, _lost_ranges(grid, gh)


def _per_segment(rng: pd.DataFrame, gh: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Each range with: its hop-group row, multiplicity at its start, behind bytes seen before,
    and whether it overlaps lost bytes."""
    gh_of = pd.Series(np.arange(len(gh)), index=pd.MultiIndex.from_frame(gh[["g", "hop"]]))
    r_gh = gh_of.reindex(pd.MultiIndex.from_frame(rng[["g", "hop"]])).to_numpy()
    gstart, comp = grid.attrs["gstart"], grid.attrs["comp"]
    g = rng["g"].to_numpy()
    # elementary index of start/end inside the group's boundaries
    s_idx = np.searchsorted(comp, g * _SHIFT + rng["start"].to_numpy() + _OFF) - gstart[g]
    e_idx = np.searchsorted(comp, g * _SHIFT + rng["end"].to_numpy() + _OFF) - gstart[g]
    row_base = np.r_[0, np.cumsum(np.bincount(grid["gh"].to_numpy(), minlength=len(gh)))][r_gh]
    m_start = grid["m"].to_numpy()[row_base + s_idx]
    lost_cs = np.r_[0, np.cumsum(grid["lost"].to_numpy() > 0)]
    overlaps_lost = lost_cs[row_base + e_idx] - lost_cs[row_base + s_idx] > 0
    seg = pd.DataFrame({"gh": r_gh, "ts": rng["ts"].to_numpy(), "start": rng["start"].to_numpy(),
                        "end": rng["end"].to_numpy(), "m": m_start, "lostov": overlaps_lost})
    seg = seg.sort_values(["gh", "ts"], kind="stable")
    prev_end = seg.groupby("gh")["end"].cummax().groupby(seg["gh"]).shift(1).to_numpy()
    behind = seg["start"].to_numpy() < np.nan_to_num(prev_end, nan=-np.inf)
    return seg.assign(retrans=behind & (seg["m"].to_numpy() >= 2), reordered=behind & (seg["m"].to_numpy() < 2))


def _hop_stats(per: pd.DataFrame, grid: pd.DataFrame, gh: pd.DataFrame) -> pd.DataFrame:
    length = per["end"].to_numpy() - per["start"].to_numpy()
    agg = per.assign(len=length, rlen=np.where(per["retrans"], length, 0)).groupby("gh").agg(
        segments=("len", "size"), bytes=("len", "sum"), retrans=("retrans", "sum"),
        retrans_bytes=("rlen", "sum"), reordered=("reordered", "sum"), lost_overlap=("lostov", "sum"),
        median_len=("len", "median"))
    el_len = grid["hi"].to_numpy() - grid["lo"].to_numpy()
    lost_bytes = pd.Series(grid["lost"].to_numpy() * el_len).groupby(grid["gh"].to_numpy()).sum()
    out = gh.join(agg).fillna({c: 0 for c in agg.columns})
    out["lost_bytes"] = lost_bytes.reindex(out.index, fill_value=0).to_numpy()
    missed = pd.Series(grid["missed"].to_numpy() * el_len).groupby(grid["gh"].to_numpy()).sum()
    out["missed_bytes"] = missed.reindex(out.index, fill_value=0).to_numpy()
    grain = out.groupby("g")["median_len"].transform("min").clip(lower=1).to_numpy()
    est = np.ceil(out["lost_bytes"].to_numpy() / grain)
    out["lost"] = np.minimum(out["lost_overlap"].to_numpy(), est).astype(np.int64)
    cols = ["segments", "bytes", "retrans", "retrans_bytes", "reordered"]
    out[cols] = out[cols].astype(np.int64)
    return out.drop(columns=["lost_overlap", "median_len", "g", "order"])


def _lost_ranges(grid: pd.DataFrame, gh: pd.DataFrame) -> pd.DataFrame:
    """Contiguous lost intervals per (conn, fwd, hop)."""
    lost = grid[grid["lost"].to_numpy() > 0]
    cols = ["conn", "fwd", "hop", "start", "end", "copies", "delivered"]
    if lost.empty:
        return pd.DataFrame(columns=cols)
    gh_v, lo, hi = lost["gh"].to_numpy(), lost["lo"].to_numpy(), lost["hi"].to_numpy()
    new = np.r_[True, (gh_v[1:] != gh_v[:-1]) | (lo[1:] != hi[:-1])]
    run = np.cumsum(new) - 1
    out = pd.DataFrame({"gh": gh_v, "lo": lo, "hi": hi, "c": lost["lost"].to_numpy(), "run": run,
                        "nv": lost["never"].to_numpy()}).groupby("run").agg(
        gh=("gh", "first"), start=("lo", "min"), end=("hi", "max"), copies=("c", "max"), never=("nv", "any"))
    info = gh.iloc[out["gh"].to_numpy()]
    return pd.DataFrame({"conn": info["conn"].to_numpy(), "fwd": info["fwd"].to_numpy(),
                         "hop": info["hop"].to_numpy(), "start": out["start"].to_numpy(),
                         "end": out["end"].to_numpy(), "copies": out["copies"].to_numpy(),
                         "delivered": ~out["never"].to_numpy()})
