"""Clock offsets between capture points, from packets seen at both.

For two points A and B and a packet seen at both, ``D = ts_B - ts_A = ±d + θ`` where ``θ`` is
B's clock minus A's and ``d >= 0`` the one-way delay; its sign depends on which point the packet
crossed first. Packets of one connection flowing both ways bound θ from both sides (NTP's
reasoning): ``θ ∈ [max D_back, min D_fwd]``. The bounds of all connections are intersected. An
offset is applied only when the bounds rule out zero, so captures taken on one clock stay as
they are. Offsets are chained from a reference point along the tightest bounds (Prim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Offset:
    point: str
    offset_ns: int  # subtract from this point's timestamps
    uncertainty_ns: int  # half-width of the interval the data allow
    reference: str
    via: str | None  # the neighbour it was estimated against
    applied: bool  # False when zero is consistent with the data


def pair_bounds(obs: pd.DataFrame) -> pd.DataFrame:
    """Bounds on θ per point pair.

    ``obs`` has one row per (packet key, local flow) with columns ``key, comp, point, ts, fwd``
    (point as an integer code) -- only local flows that are the sole one of their point in
    their connection. Returns rows ``a, b, lo, hi, n`` meaning ``clock_b - clock_a ∈ [lo, hi]``.
    """
    if obs.empty:
        return pd.DataFrame(columns=["a", "b", "lo", "hi", "n"])
    ref_point = obs.groupby("key")["point"].transform("min").to_numpy()
    is_ref = obs["point"].to_numpy() == ref_point
    ref = obs[is_ref].drop_duplicates("key").set_index("key")["ts"]
    other = obs[~is_ref]
    d = other["ts"].to_numpy() - ref.reindex(other["key"]).to_numpy()
    pairs = pd.DataFrame({
        "a": ref_point[~is_ref], "b": other["point"].to_numpy(), "comp": other["comp"].to_numpy(),
        "fwd": other["fwd"].to_numpy(), "d": d,
    })
    g = pairs.groupby(["a", "b", "comp", "fwd"])["d"].agg(["min", "max"]).unstack("fwd")
    if g.empty or g.shape[1] < 4:
        return pd.DataFrame(columns=["a", "b", "lo", "hi", "n"])
    g = g.dropna()
    min_f, max_f = g[("min", True)], g[("max", True)]
    min_b, max_b = g[("min", False)], g[("max", False)]
    ok1 = (min_f - max_b) >= 0  # a before b on the forward path
    ok2 = (min_b - max_f) >= 0  # b before a
    lo = np.where(ok1, max_b, np.where(ok2, max_f, np.nan))
    hi = np.where(ok1, min_f, np.where(ok2, min_b, np.nan))
    per = pd.DataFrame({"lo": lo, "hi": hi}, index=g.index).dropna().reset_index()[["a", "b", "lo", "hi"]]
    if per.empty:
        return pd.DataFrame(columns=["a", "b", "lo", "hi", "n"])
    agg = per.groupby(["a", "b"]).agg(lo=("lo", "max"), hi=("hi", "min"), n=("lo", "size")).reset_index()
    # inconsistent bounds (jitter): fall back to the median midpoint, uncertainty = spread
    mids = per.assign(m=(per["lo"] + per["hi"]) / 2).groupby(["a", "b"])["m"]
    bad = agg["lo"] > agg["hi"]
    if bad.any():
        med = mids.median().reindex(pd.MultiIndex.from_frame(agg[["a", "b"]])).to_numpy()
        spread = (mids.max() - mids.min()).reindex(pd.MultiIndex.from_frame(agg[["a", "b"]])).to_numpy() / 2
        agg.loc[bad, "lo"] = (med - spread)[bad.to_numpy()]
        agg.loc[bad, "hi"] = (med + spread)[bad.to_numpy()]
    return agg[["a", "b", "lo", "hi", "n"]]


def solve_offsets(bounds: pd.DataFrame, points: list[str], reference: int | None = None) -> dict[str, Offset]:
    """Chain pairwise bounds into one offset per point (codes index ``points``)."""
    result: dict[str, Offset] = {}
    if not points:
        return result
    edges: dict[int, list[tuple[float, int, float, float]]] = {}
    for a, b, lo, hi in bounds[["a", "b", "lo", "hi"]].itertuples(index=False):
        a, b = int(a), int(b)
        w = float(hi - lo)
        edges.setdefault(a, []).append((w, b, float(lo), float(hi)))
        edges.setdefault(b, []).append((w, a, float(-hi), float(-lo)))
    if reference is None:
        reference = max(edges, key=lambda p: len(edges[p])) if edges else 0
    ref_name = points[reference]
    off: dict[int, tuple[float, float, int | None, bool]] = {reference: (0.0, 0.0, None, False)}
    frontier = [(w, reference, b, lo, hi) for (w, b, lo, hi) in edges.get(reference, [])]
    while frontier:
        frontier.sort(key=lambda e: e[0])
        w, a, b, lo, hi = frontier.pop(0)
        if b in off:
            continue
        base, base_unc, _, _ = off[a]
        applied = not (lo <= 0 <= hi)
        theta = (lo + hi) / 2 if applied else 0.0
        off[b] = (base + theta, base_unc + max(w, 0.0) / 2, a, applied)
        frontier.extend((w2, b, c, lo2, hi2) for (w2, c, lo2, hi2) in edges.get(b, []) if c not in off)
    for code, name in enumerate(points):
        if code in off:
            o, unc, via, applied = off[code]
            result[name] = Offset(name, int(round(o)), int(round(unc)), ref_name,
                                  points[via] if via is not None else None, applied or (o != 0))
        else:
            result[name] = Offset(name, 0, -1, ref_name, None, False)
    return result
