"""Reconstruct logical connections across the mesh's hops from the packet table.

Three steps, each usable alone so that an engine can run them per chunk / per partition:

1. :func:`meshpkt.flows.keys.local_flow_summaries` -- per (capture point, local flow) summaries
   (counts, flags, anchor packet keys), mergeable across chunks;
2. :func:`meshpkt.flows.match.match_connections` -- a connection id per local flow, from the
   summaries alone (plus :func:`~meshpkt.flows.match.forward_direction` and
   :func:`~meshpkt.flows.match.clock_offsets`);
3. :func:`connection_detail` -- hop order, byte ranges, retransmissions and losses, from the
   packets of the connections it is given (packets can be partitioned by connection id).

Everything here is pure: the packets DataFrame in, DataFrames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from meshpkt.decode.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from meshpkt.flows.clock import Offset
from meshpkt.flows.keys import PacketIds, local_flow_summaries, packet_ids
from meshpkt.flows.match import clock_offsets, forward_direction, match_connections
from meshpkt.flows.ranges import compare_hops, segment_ranges
from meshpkt.flows.topology import Topology
from meshpkt.flows.view import is_syn, is_synack

ROLE_RANK = {"client": 0, "host": 1, "ingress_sbox": 2, "lb": 2, "overlay": 3, "underlay": 4, "task": 6,
             "unknown": 5}


def _place_ranks() -> dict[str, float]:
    """``"side|role|iface|encapsulated"`` -> position on Swarm's ingress path with a remote backend
    (:func:`meshpkt.mesh.path.place_order`; a local backend's path is the same with stages left out)."""
    from meshpkt.mesh.path import place_order

    return {f"{side}|{role}|{iface}|{enc}": float(rank)
            for (side, role, iface, enc), rank in place_order("ingress", local=False).items()}


def _owners(lf: pd.DataFrame, topology: Topology, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The node each local flow's point belongs to (underlay taps: the VXLAN sender; the client: first),
    the connection's entry node per local flow, and each owner's first time in the connection."""
    enc = (lf["vni"] >= 0).to_numpy()
    role = lf["role"].to_numpy()
    owner = lf["node"].to_numpy().astype(object).copy()
    und = role == "underlay"
    ip_nodes = {**topology.lb_ips, **{ip: t.node for ip, t in topology.tasks.items()}, **topology.node_ips}
    sender = pd.Series(lf["outer_src"].to_numpy()).map(ip_nodes).to_numpy(dtype=object)
    owner[und] = np.where(enc[und], sender[und], None)
    owner[role == "client"] = "~client"
    work = pd.DataFrame({"conn": lf["conn"].to_numpy(), "owner": owner, "t": t})
    host_plain = work[(role == "host") & ~enc]  # entry: the earliest plain host-namespace hop
    entry = host_plain.sort_values("t").drop_duplicates("conn").set_index("conn")["owner"]
    conn_entry = entry.reindex(work["conn"]).to_numpy()
    work["owner"] = np.where(pd.isna(work["owner"].to_numpy()), conn_entry, work["owner"].to_numpy())
    gtime = work.groupby(["conn", "owner"], dropna=False)["t"].transform("min").to_numpy()
    return work["owner"].to_numpy(), conn_entry, np.where(role == "client", -np.inf, gtime)


def _structural_rank(lf: pd.DataFrame, is_entry: np.ndarray) -> np.ndarray:
    """Where each local flow's point sits on the ingress path (mesh.path stages); points of the
    node the request entered on the entry side, others on the backend side. Timestamps of points
    on one machine may disagree with this by microseconds (taps sit at different stages), so
    within a node the structure decides."""
    from meshpkt.mesh.path import NET_IFACE

    enc = (lf["vni"] >= 0).to_numpy()
    role = lf["role"].to_numpy().astype(str)
    iface = lf["iface"].to_numpy().astype(str)
    side = np.where(np.isin(role, ("client", "underlay")), role,
                    np.where(is_entry & (role != "task"), "entry", "backend"))
    iface = np.where(role == "task", NET_IFACE, np.where(role == "underlay", "br0",
                                                         np.where(role == "client", "eth0", iface)))
    key = (pd.Series(side) + "|" + pd.Series(role) + "|" + pd.Series(iface) + "|"
           + pd.Series(np.where(enc, "True", "False")))
    ranks = _place_ranks()
    # off the table (another overlay interface, a load-balancer namespace): after the overlay bridge
    return key.map(ranks).fillna(ranks.get("entry|overlay|br0|False", 5.0) + 0.5).to_numpy(dtype=np.float64)


def _detours(lf: pd.DataFrame) -> np.ndarray:
    """Local flows that carried only replies, at a point where another local flow of the same
    connection carried its requests: replies leaving by another route (e.g. a task answering straight
    through docker_gwbridge when the ingress SNAT is missing). Not on the request's path."""
    req = lf["fwd_packets"].to_numpy() > 0
    key = pd.MultiIndex.from_arrays([lf["conn"].to_numpy(), lf["point_code"].to_numpy()])
    has_req = pd.Series(req, index=key).groupby(level=[0, 1]).transform("any").to_numpy()
    return ~req & (lf["bwd_packets"].to_numpy() > 0) & has_req


def order_hops(lf: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """Sort local flows into path order per connection and number them (``hop``).

    Nodes are ordered by when the connection first reached them (clock-corrected), points within
    a node by the structure of Swarm's data path; connections that do not start at a client or
    a node's host namespace (e.g. task -> VIP) are ordered by time alone. A load-balancer
    namespace on a node the request did not enter is not on its path: a copy seen there was
    flooded by the overlay bridge (unknown destination MAC); it is kept, last, as ``stray``, and so
    are replies that left by another route (``detour``, see :func:`_detours`).
    """
    t = lf["f_delay"].to_numpy()
    t = np.where(np.isnan(t), -lf["b_delay"].fillna(0).to_numpy() + 1e15, t)
    role = lf["role"].to_numpy()
    owner, conn_entry, gtime = _owners(lf, topology, t)
    is_entry = owner == conn_entry
    rank = _structural_rank(lf, is_entry)
    work = pd.DataFrame({"conn": lf["conn"].to_numpy(), "t": t, "r": role})
    first_role = work.sort_values("t").drop_duplicates("conn").set_index("conn")["r"]
    timed = ~first_role.reindex(work["conn"]).isin(["client", "host", "underlay"]).to_numpy()
    gtime = np.where(timed, t, gtime)
    rank = np.where(timed, 0, rank)
    stray = ~timed & ~is_entry & np.isin(role, ("ingress_sbox", "lb"))
    detour = _detours(lf)
    gtime = np.where(stray | detour, np.inf, gtime)
    lf = lf.assign(_g=gtime, _r=rank, _t=t, stray=stray | detour, detour=detour)
    lf = lf.sort_values(["conn", "_g", "_r", "_t", "first_ts_ns"], kind="stable")
    lf["hop"] = lf.groupby("conn").cumcount()
    return lf.drop(columns=["_g", "_r", "_t"])


@dataclass
class Reconstruction:
    """Per-packet assignment, local flows (hops), per-hop range statistics, lost ranges, offsets."""

    assign: pd.DataFrame  # index = packet row; columns lflow, conn, fwd, ts_corr, dup
    lflows: pd.DataFrame  # one row per local flow, with conn, hop order and range statistics
    losses: pd.DataFrame  # conn, fwd, hop, start, end, copies: bytes lost after that hop
    offsets: dict[str, Offset]
    windows: pd.DataFrame  # per capture point (empty ones too): min/max clock-corrected ts (NaN: none)


def reconstruct(packets: pd.DataFrame, topology: Topology, *, max_key_group: int | None = None,
                correct_clocks: bool = True) -> Reconstruction:
    """Link local flows into connections (steps 1 and 2) and detail each connection (step 3)."""
    ids = packet_ids(packets)
    summaries = local_flow_summaries(packets, ids)
    conn = match_connections(summaries, max_key_group=max_key_group)
    fwd_lo = forward_direction(summaries, conn)
    offsets = clock_offsets(summaries, conn, fwd_lo, correct=correct_clocks)
    assign = assign_packets(packets, ids, conn, fwd_lo, offsets)
    lflows = ids.lflows.assign(conn=conn, fwd_lo=fwd_lo)
    return connection_detail(packets.iloc[ids.rows], assign, lflows, topology, offsets,
                             capture_windows(summaries.points, offsets))


def capture_windows(spans: pd.DataFrame, offsets: dict[str, Offset]) -> pd.DataFrame:
    """``min``/``max`` clock-corrected timestamp per capture point (NaN for an empty capture)."""
    off = np.array([offsets[p].offset_ns if p in offsets and offsets[p].applied else 0 for p in spans.index],
                   dtype=np.float64)
    return pd.DataFrame({"min": spans["first_ts_ns"].to_numpy(np.float64) - off,
                         "max": spans["last_ts_ns"].to_numpy(np.float64) - off}, index=spans.index)


def assign_packets(packets: pd.DataFrame, ids: PacketIds, conn: np.ndarray, fwd_lo: np.ndarray,
                   offsets: dict[str, Offset]) -> pd.DataFrame:
    """Per packet row (index = the packet table's): lflow, conn, fwd, ts_corr, dup, key."""
    off = np.array([offsets[n].offset_ns if n in offsets and offsets[n].applied else 0 for n in ids.point_names]
                   or [0], dtype=np.int64)
    ts = packets["ts_ns"].to_numpy()[ids.rows].astype(np.int64)
    return pd.DataFrame({"lflow": ids.lflow, "conn": conn[ids.lflow], "fwd": ids.dir_lo == fwd_lo[ids.lflow],
                         "ts_corr": ts - off[ids.point], "dup": ids.dup, "key": ids.key},
                        index=packets.index[ids.rows])


def connection_detail(packets: pd.DataFrame, assign: pd.DataFrame, lflows: pd.DataFrame, topology: Topology,
                      offsets: dict[str, Offset], windows: pd.DataFrame) -> Reconstruction:
    """Step 3: hop order, per-hop statistics and losses of the connections whose packets are given.

    ``packets`` and ``assign`` have the same rows (``assign`` from :func:`assign_packets`);
    ``lflows``: the local flows (``LFLOW_COLUMNS`` with ``point`` as a code, ``conn``, ``fwd_lo``),
    indexed by the ``lflow`` numbers ``assign`` uses; only those present in ``assign`` are kept;
    ``windows`` from :func:`capture_windows` (over the whole capture, not only these packets).
    """
    point_names = list(offsets)
    lf = _lflow_stats(packets, assign)
    meta = lflows.reindex(lf.index)
    lf = lf.join(_identity(meta, point_names, topology))
    lf = lf.join(_delays(assign))
    lf = order_hops(lf, topology)
    lf.index.name = "lflow"
    lf, losses = _range_stats(packets, assign, lf, windows)
    return Reconstruction(assign=assign[["lflow", "conn", "fwd", "ts_corr", "dup"]], lflows=lf, losses=losses,
                          offsets=offsets, windows=windows)


def _flag_columns(packets: pd.DataFrame, assign: pd.DataFrame) -> pd.DataFrame:
    fl = packets["tcp_flags"].to_numpy()
    pl = packets["payload_len"].to_numpy()
    return pd.DataFrame({
        "lflow": assign["lflow"].to_numpy(), "ts": assign["ts_corr"].to_numpy(), "fwd": assign["fwd"].to_numpy(),
        "wl": packets["wirelen"].to_numpy().astype(np.int64), "pl": np.where(pl > 0, pl, 0),
        "syn": is_syn(fl), "synack": is_synack(fl), "fin": (fl >= 0) & ((fl & TCP_FIN) != 0),
        "rst": (fl >= 0) & ((fl & TCP_RST) != 0),
        "ack": (fl >= 0) & ((fl & TCP_ACK) != 0) & ((fl & TCP_SYN) == 0),
        "osrc": packets["outer_src"].to_numpy(), "odst": packets["outer_dst"].to_numpy(),
    })[~assign["dup"].to_numpy()]


def _lflow_stats(packets: pd.DataFrame, assign: pd.DataFrame) -> pd.DataFrame:
    """Per local flow: time span, packets, bytes (wire lengths), per direction, flags, outer endpoints."""
    a = _flag_columns(packets, assign)
    g = a.groupby("lflow")
    lf = g.agg(first_ts_ns=("ts", "min"), last_ts_ns=("ts", "max"), packets=("ts", "size"), bytes=("wl", "sum"),
               syn=("syn", "any"), synack=("synack", "any"), rst=("rst", "any"))
    lf["duplicates"] = pd.Series(assign["dup"].to_numpy()).groupby(assign["lflow"].to_numpy()).sum()
    for fwd, tag in ((True, "fwd"), (False, "bwd")):
        d = a[a["fwd"].to_numpy() == fwd].groupby("lflow")
        lf[f"{tag}_packets"] = d.size().reindex(lf.index, fill_value=0)
        lf[f"{tag}_payload"] = d["pl"].sum().reindex(lf.index, fill_value=0)
        lf[f"{tag}_first_ts_ns"] = d["ts"].min().reindex(lf.index)
        lf[f"fin_{tag}"] = d["fin"].any().reindex(lf.index, fill_value=False)
        lf[f"rst_{tag}"] = d["rst"].any().reindex(lf.index, fill_value=False)
        if fwd:
            lf["ack_fwd"] = d["ack"].any().reindex(lf.index, fill_value=False)
            lf["outer_src"] = d["osrc"].first().reindex(lf.index, fill_value=0).astype(np.int64)
            lf["outer_dst"] = d["odst"].first().reindex(lf.index, fill_value=0).astype(np.int64)
    return lf


def _identity(meta: pd.DataFrame, point_names: list[str], topology: Topology) -> pd.DataFrame:
    """Point, node, role, interface and the forward-oriented 5-tuple of each local flow."""
    flo = meta["fwd_lo"].to_numpy()
    code = meta["point"].to_numpy().astype(np.int32)
    info = [topology.point(n) for n in point_names]
    return pd.DataFrame({
        "point_code": code, "proto": meta["proto"].to_numpy().astype(np.int16),
        "vni": meta["vni"].to_numpy().astype(np.int32),
        "src": np.where(flo, meta["lo_ip"], meta["hi_ip"]).astype(np.int64),
        "sport": np.where(flo, meta["lo_port"], meta["hi_port"]).astype(np.int32),
        "dst": np.where(flo, meta["hi_ip"], meta["lo_ip"]).astype(np.int64),
        "dport": np.where(flo, meta["hi_port"], meta["lo_port"]).astype(np.int32),
        "conn": meta["conn"].to_numpy(), "epoch": meta["epoch"].to_numpy(),
        "point": pd.Categorical.from_codes(code, categories=point_names),
        "node": np.array([i.node for i in info] + [""], dtype=object)[:-1][code],
        "role": np.array([i.role for i in info] + [""], dtype=object)[:-1][code],
        "iface": np.array([i.iface for i in info] + [""], dtype=object)[:-1][code],
    }, index=meta.index)


def _delays(assign: pd.DataFrame) -> pd.DataFrame:
    """Median delay of each local flow's packets after the same packet's first sighting anywhere,
    per direction (only packets seen at two local flows or more)."""
    obs = assign[~assign["dup"].to_numpy()]
    pair = pd.Series(obs["key"].to_numpy().view(np.int64) ^ (obs["lflow"].to_numpy() * np.int64(0x9E3779B97F4A7C1)))
    obs = obs[~pair.duplicated().to_numpy()]
    g = obs.groupby("key")["ts_corr"]
    shared = g.transform("size").to_numpy() > 1
    delay = (obs["ts_corr"] - g.transform("min")).to_numpy()
    d = pd.DataFrame({"lflow": obs["lflow"].to_numpy(), "fwd": obs["fwd"].to_numpy(), "d": delay})[shared]
    med = d.groupby(["lflow", "fwd"])["d"].median().unstack()
    return pd.DataFrame({"f_delay": med[True] if True in med else np.nan,
                         "b_delay": med[False] if False in med else np.nan}, index=med.index)


def _judgeable(seg: pd.DataFrame, lf: pd.DataFrame, lflow: np.ndarray, capture_end: int) -> np.ndarray:
    """Packets whose copies further along the path would still have been captured: their time plus
    twice the connection's remaining path delay (from the hops' median delays) plus 1 ms is before
    the end of the captures."""
    delay = np.where(seg["fwd"].to_numpy(), lf["f_delay"].reindex(lflow).to_numpy(),
                     lf["b_delay"].reindex(lflow).to_numpy())
    delay = np.nan_to_num(delay, nan=0.0)
    last = pd.Series(delay).groupby([seg["conn"].to_numpy(), seg["fwd"].to_numpy()]).transform("max").to_numpy()
    return (seg["ts"].to_numpy() + 2 * (last - delay) + 1_000_000) <= capture_end


_RANGE_COLUMNS = ("segments", "bytes", "retrans", "retrans_bytes", "reordered", "lost", "lost_bytes",
                  "missed_bytes")


def _range_stats(packets: pd.DataFrame, assign: pd.DataFrame, lf: pd.DataFrame, windows: pd.DataFrame
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per hop and direction: data segments/bytes, retransmissions, reordering, losses after the hop
    (see :mod:`meshpkt.flows.ranges`); and the lost ranges."""
    fl = packets["tcp_flags"].to_numpy()
    tcp = (packets["tcp_seq"].to_numpy() >= 0) & (fl >= 0) & ~assign["dup"].to_numpy()
    hop = lf["hop"].reindex(assign["lflow"]).to_numpy()
    stray = lf["stray"].reindex(assign["lflow"]).to_numpy().astype(bool)
    use = tcp & ~stray
    seg = pd.DataFrame({
        "conn": assign["conn"].to_numpy()[use], "fwd": assign["fwd"].to_numpy()[use], "hop": hop[use],
        "ts": assign["ts_corr"].to_numpy()[use], "seq": packets["tcp_seq"].to_numpy()[use],
        "ack": packets["tcp_ack"].to_numpy()[use], "plen": packets["payload_len"].to_numpy()[use],
        "syn": ((fl & TCP_SYN) != 0)[use], "fin": ((fl & TCP_FIN) != 0)[use],
        "ack_flag": ((fl & TCP_ACK) != 0)[use]})
    ends = windows["max"].to_numpy(dtype=np.float64)
    end = int(np.nanmax(ends)) if np.isfinite(ends).any() else 0
    seg["trusted"] = _judgeable(seg, lf, assign["lflow"].to_numpy()[use], end)
    empty = pd.DataFrame(columns=["conn", "fwd", "hop", "start", "end", "copies", "delivered"])
    for tag in ("fwd", "bwd"):
        for c in _RANGE_COLUMNS:
            lf[f"{c}_{tag}"] = 0
    for tag in ("fwd", "bwd"):
        lf[f"fin_acked_{tag}"] = False
    rng = segment_ranges(seg) if len(seg) else seg
    if rng.empty:
        return lf, empty
    _fin_acked_into(lf, rng)
    hops = lf.loc[~lf["stray"].to_numpy(), ["conn", "hop"]].assign(order=lambda x: x["hop"])
    stats, losses = compare_hops(rng, hops)
    where = pd.MultiIndex.from_frame(lf[["conn", "hop"]])
    for fwd, tag in ((True, "fwd"), (False, "bwd")):
        st = stats[stats["fwd"].to_numpy() == fwd].set_index(["conn", "hop"])
        for c in _RANGE_COLUMNS:
            lf[f"{c}_{tag}"] = st[c].reindex(where).fillna(0).to_numpy().astype(np.int64)
    return lf, losses


def _fin_acked_into(lf: pd.DataFrame, rng: pd.DataFrame) -> None:
    """``fin_acked_fwd``/``fin_acked_bwd`` per local flow (the same for every hop of a connection):
    the other side acknowledged a sequence number past the end of every byte (and SYN/FIN) of that
    direction seen anywhere: the FIN (which takes one sequence number) was sent and received even
    where no tap captured it (bytes acknowledged were delivered; a FIN is the only thing a sender
    adds after its data)."""
    per = rng.groupby(["conn", "fwd"]).agg(end=("end", "max"), acked=("acked", "first"))
    proven = per[per["acked"].to_numpy() > per["end"].to_numpy()].reset_index()
    conn = lf["conn"].to_numpy()
    for fwd, tag in ((True, "fwd"), (False, "bwd")):
        lf[f"fin_acked_{tag}"] = np.isin(conn, proven.loc[proven["fwd"].to_numpy() == fwd, "conn"].to_numpy())
