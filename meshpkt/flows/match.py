"""Step 2 of the reconstruction: local flows linked into connections, from summaries alone.

Local flows that share an anchor key (see :mod:`meshpkt.flows.keys`) are the same connection seen
at two points: the connections are the connected components of "local flow -- shares a key with
-- local flow", found with a vectorised hash join and min-label propagation (no loop over pairs).
Keys shared by more local flows than a connection can have (more than two per capture point)
are ambiguous and not used. The forward direction of each local flow and the clock offsets of
the capture points come from the same anchors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.flows.clock import Offset, pair_bounds, solve_offsets
from meshpkt.flows.keys import Summaries


def components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes with edges ``u -- v``: min-label propagation with
    pointer jumping, vectorised."""
    label = np.arange(n, dtype=np.int64)
    if len(u) == 0:
        return label
    while True:
        prev = label.copy()
        m = np.minimum(label[u], label[v])
        np.minimum.at(label, u, m)
        np.minimum.at(label, v, m)
        label = label[label]
        label = label[label]
        if np.array_equal(label, prev):
            return label


def _linkable(s: Summaries, max_key_group: int | None) -> pd.DataFrame:
    anc = s.anchors
    size = anc.groupby("key")["lflow"].transform("size").to_numpy()
    limit = max_key_group if max_key_group is not None else 2 * len(s.point_names) + 2
    return anc[(size > 1) & (size <= limit)]


def match_connections(s: Summaries, *, max_key_group: int | None = None) -> np.ndarray:
    """Step (b): a connection number (0..n-1, in order of first appearance) per local flow of ``s``."""
    n = len(s.lflows)
    linked = _linkable(s, max_key_group)
    root = linked.groupby("key")["lflow"].transform("min").to_numpy()
    label = components(n, linked["lflow"].to_numpy(), root)
    return pd.factorize(label)[0].astype(np.int64)


def forward_direction(s: Summaries, conn: np.ndarray) -> np.ndarray:
    """True where a local flow's forward (client -> server) direction is lo -> hi: its first SYN's
    direction, else carried over a shared key from a local flow that knows it, else (see below) its
    first packet's or towards the lower port."""
    n = len(s.lflows)
    anc = s.anchors.sort_values("ts", kind="stable")
    fwd_lo = np.full(n, -1, dtype=np.int8)
    syn = anc[anc["syn"].to_numpy()]
    syn = syn[_is_opening(s, syn)].drop_duplicates("lflow")  # SYNs, not SYN-ACKs
    fwd_lo[syn["lflow"].to_numpy()] = syn["dir_lo"].to_numpy().astype(np.int8)
    known = fwd_lo[anc["lflow"].to_numpy()] >= 0
    same = anc["dir_lo"].to_numpy() == (fwd_lo[anc["lflow"].to_numpy()] == 1)
    ref = pd.DataFrame({"key": anc["key"].to_numpy()[known], "same": same[known]}).drop_duplicates("key")
    cand = anc[~known].merge(ref, on="key", how="inner").drop_duplicates("lflow")
    if len(cand):
        d = cand["dir_lo"].to_numpy()
        fwd_lo[cand["lflow"].to_numpy()] = np.where(cand["same"].to_numpy(), d, ~d).astype(np.int8)
    # no SYN anywhere: a flow that saw an opening's SYN-ACK only (a reply by another route) keeps
    # the direction of its first packet, as it appears on the wire; one without (a capture started
    # mid-connection) goes towards the lower port (the service's), the first packet's on a tie
    first = anc.drop_duplicates("lflow")
    unset = fwd_lo[first["lflow"].to_numpy()] < 0
    lfs = first["lflow"].to_numpy()[unset]
    lo_port = s.lflows["lo_port"].to_numpy()[lfs]
    hi_port = s.lflows["hi_port"].to_numpy()[lfs]
    opened = s.lflows["epoch"].to_numpy()[lfs] >= 0
    by_port = np.where(lo_port == hi_port, first["dir_lo"].to_numpy()[unset], lo_port > hi_port)
    fwd_lo[lfs] = np.where(opened, first["dir_lo"].to_numpy()[unset], by_port).astype(np.int8)
    return fwd_lo == 1


def _is_opening(s: Summaries, syn: pd.DataFrame) -> np.ndarray:
    """For SYN-flagged anchors: True for a SYN (the seq is the flow's epoch ISN), False for a SYN-ACK."""
    epoch = s.lflows["epoch"].to_numpy()[syn["lflow"].to_numpy()]
    return syn["seq"].to_numpy() == epoch


def clock_offsets(s: Summaries, conn: np.ndarray, fwd_lo: np.ndarray, *, correct: bool = True
                  ) -> dict[str, Offset]:
    """Clock offset of every capture point, from anchors seen at points that hold a single local
    flow of their connection (NTP-style bounds, see :mod:`meshpkt.flows.clock`)."""
    names = s.point_names
    if not correct:
        return {name: Offset(name, 0, -1, name, None, False) for name in names}
    linked = _linkable(s, None)
    lf = linked["lflow"].to_numpy()
    point = s.lflows["point"].cat.codes.to_numpy()
    per_cp = pd.Series(1, index=pd.MultiIndex.from_arrays([conn, point])).groupby(level=[0, 1]).size()
    single = per_cp[per_cp == 1].index
    ok = pd.MultiIndex.from_arrays([conn[lf], point[lf]]).isin(single)
    obs = pd.DataFrame({"key": linked["key"].to_numpy(), "comp": conn[lf], "point": point[lf],
                        "ts": linked["ts"].to_numpy(), "fwd": linked["dir_lo"].to_numpy() == fwd_lo[lf]})[ok]
    return solve_offsets(pair_bounds(obs), names)
