"""Reconstruct logical connections across the mesh's hops from the packet table.

A *local flow* is what one capture point saw of a connection: its packets with one
encapsulation (VNI or none) and one 5-tuple. The same TCP segment keeps its sequence and
acknowledgement numbers, flags, timestamps option, IP id, payload length and payload bytes
through DNAT, IPVS masquerading, SNAT, REDIRECT and VXLAN encapsulation, so those fields form a
*packet key*. Local flows that share packet keys belong to one connection: the connections are
the connected components of the graph "local flow -- shares a key with -- local flow", found
with a vectorised hash join and label propagation (linear in packets; no loop over pairs).

Everything here is pure: the packets DataFrame in, DataFrames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from meshpkt.decode.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from meshpkt.flows.clock import Offset, pair_bounds, solve_offsets
from meshpkt.flows.topology import Topology
from meshpkt.flows.view import is_syn, is_synack, transport_view

KEY_COLUMNS = ("tcp_seq", "tcp_ack", "tcp_flags", "tcp_tsval", "tcp_tsecr", "ip_id", "payload_len",
               "payload_hash", "icmp_type", "icmp_code")

ROLE_RANK = {"client": 0, "host": 1, "ingress_sbox": 2, "lb": 2, "overlay": 3, "underlay": 4, "task": 6,
             "unknown": 5}

# Where a capture point sits on one node's stretch of an ingress path, (role, iface kind, encapsulated).
# On the node the request enters: host eth0 -> ingress_sbox eth1 -> eth0 -> overlay br0 -> (local task)
# -> vxlan0 -> host eth0 encapsulated -> underlay. On the node of a remote backend: host eth0
# encapsulated -> vxlan0 -> br0 -> task. Timestamps of points on one machine may disagree with this
# by microseconds (taps sit at different stages), so within a node the structure decides.
_ENTRY_RANK = {("underlay", False): 0, ("host", False): 1, ("ingress_sbox", "eth1"): 2, ("ingress_sbox", "eth0"): 3,
               ("lb", False): 3, ("overlay", "br0"): 4, ("overlay", "other"): 5, ("task", False): 6,
               ("overlay", "vxlan0"): 7, ("host", True): 8, ("underlay", True): 9}
_PEER_RANK = {("host", True): 0, ("overlay", "vxlan0"): 1, ("overlay", "br0"): 2, ("overlay", "other"): 3,
              ("task", False): 4, ("ingress_sbox", "eth1"): 5, ("ingress_sbox", "eth0"): 5, ("lb", False): 5,
              ("host", False): 6}


def _flat(table: dict[tuple[str, object], int]) -> dict[str, int]:
    """``(role, iface kind or encapsulated)`` keys as ``"role|kind"`` strings, for vectorised lookup."""
    return {f"{role}|{kind}": rank for (role, kind), rank in table.items()}


def order_hops(lf: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """Sort local flows into path order per connection and number them (``hop``).

    Nodes are ordered by when the connection first reached them (clock-corrected), points within
    a node by the structure of Swarm's data path; connections that do not start at a client or
    a node's host namespace (e.g. task -> VIP) are ordered by time alone.
    """
    enc = (lf["vni"] >= 0).to_numpy()
    t = lf["f_delay"].to_numpy()
    t = np.where(np.isnan(t), -lf["b_delay"].fillna(0).to_numpy() + 1e15, t)
    role = lf["role"].to_numpy()
    node = lf["node"].to_numpy().astype(object)
    owner = node.copy()
    und = role == "underlay"
    ip_nodes = {**topology.lb_ips, **{ip: t.node for ip, t in topology.tasks.items()}, **topology.node_ips}
    sender = pd.Series(lf["outer_src"].to_numpy()).map(ip_nodes).to_numpy(dtype=object)
    owner[und] = np.where(enc[und], sender[und], None)
    owner[role == "client"] = "~client"
    work = pd.DataFrame({"conn": lf["conn"].to_numpy(), "owner": owner, "t": t, "role": role})
    # entry node: the node of the earliest host-namespace hop that is not encapsulated
    host_plain = work[(role == "host") & ~enc]
    entry = host_plain.sort_values("t").drop_duplicates("conn").set_index("conn")["owner"]
    conn_entry = entry.reindex(work["conn"]).to_numpy()
    work["owner"] = np.where(pd.isna(work["owner"].to_numpy()), conn_entry, work["owner"].to_numpy())
    gtime = work.groupby(["conn", "owner"], dropna=False)["t"].transform("min").to_numpy()
    gtime = np.where(role == "client", -np.inf, gtime)
    is_entry = work["owner"].to_numpy() == conn_entry
    ifaces = lf["iface"].to_numpy().astype(str)
    kind = np.where(role == "ingress_sbox", np.where(ifaces == "eth1", "eth1", "eth0"),
                    np.where(role == "overlay", np.where(np.isin(ifaces, ("br0", "vxlan0")), ifaces, "other"),
                             np.where(enc, "True", "False")))
    key = pd.Series(role.astype(str)) + "|" + pd.Series(kind)
    rank = np.where(is_entry, key.map(_flat(_ENTRY_RANK)).fillna(5).to_numpy(),
                    key.map(_flat(_PEER_RANK)).fillna(5).to_numpy()).astype(np.float64)
    # connections that start elsewhere (task -> VIP): time order only
    first_role = work.assign(r=role).sort_values("t").drop_duplicates("conn").set_index("conn")["r"]
    timed = ~first_role.reindex(work["conn"]).isin(["client", "host", "underlay"]).to_numpy()
    gtime = np.where(timed, t, gtime)
    rank = np.where(timed, 0, rank)
    # A load-balancer namespace on a node the request did not enter is not on its path: a copy
    # seen there was flooded by the overlay bridge (unknown destination MAC). Keep it, last.
    stray = ~timed & ~is_entry & np.isin(role, ("ingress_sbox", "lb"))
    gtime = np.where(stray, np.inf, gtime)
    lf = lf.assign(_g=gtime, _r=rank, _t=t, stray=stray)
    lf = lf.sort_values(["conn", "_g", "_r", "_t", "first_ts_ns"], kind="stable")
    lf["hop"] = lf.groupby("conn").cumcount()
    return lf.drop(columns=["_g", "_r", "_t"])


@dataclass
class Reconstruction:
    """Per-packet assignment, local flows (hops) and the clock offsets used."""

    assign: pd.DataFrame  # index = packet row; columns lflow, conn, fwd, ts_corr, dup
    lflows: pd.DataFrame  # one row per local flow, with conn and hop order
    keys: pd.DataFrame  # one row per (packet key, local flow): key, lflow, conn, point, ts, fwd
    offsets: dict[str, Offset]


def _hash(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes with edges ``u -- v``: min-label propagation with
    pointer jumping, vectorised."""
    label = np.arange(n, dtype=np.int64)
    if len(u) == 0:
        return label
    while True:
        prev = label.copy()
        lu, lv = label[u], label[v]
        m = np.minimum(lu, lv)
        np.minimum.at(label, u, m)
        np.minimum.at(label, v, m)
        label = label[label]
        label = label[label]
        if np.array_equal(label, prev):
            return label


def reconstruct(packets: pd.DataFrame, topology: Topology, *, max_key_group: int | None = None,
                correct_clocks: bool = True) -> Reconstruction:
    """Link local flows into connections and order each connection's hops."""
    view = transport_view(packets)
    proto = view["proto"].to_numpy()
    valid = (view["src"].to_numpy() != 0) & np.isin(proto, (1, 6, 17))
    rows = np.flatnonzero(valid)
    v = view.iloc[rows]
    need = list(dict.fromkeys(["vni", "ts_ns", "wirelen", "outer_src", "outer_dst", *KEY_COLUMNS]))
    p = packets.iloc[rows, packets.columns.get_indexer(need)]  # not the whole table
    point_cat = packets["point"].astype("category")
    point_names = [str(c) for c in point_cat.cat.categories]
    point_code = point_cat.cat.codes.to_numpy()[rows].astype(np.int32)
    src, dst = v["src"].to_numpy().astype(np.int64), v["dst"].to_numpy().astype(np.int64)
    sport, dport = v["sport"].to_numpy(), v["dport"].to_numpy()
    swap = (src > dst) | ((src == dst) & (sport > dport))
    lo_ip, hi_ip = np.where(swap, dst, src), np.where(swap, src, dst)
    lo_port, hi_port = np.where(swap, dport, sport), np.where(swap, sport, dport)
    dir_lo = ~swap  # packet goes lo -> hi
    enc = v["enc"].to_numpy()
    vni_key = np.where(enc, p["vni"].to_numpy(), -1)

    lf_hash = _hash(pd.DataFrame({"p": point_code, "v": vni_key, "pr": v["proto"].to_numpy(), "a": lo_ip,
                                  "ap": lo_port, "b": hi_ip, "bp": hi_port}))
    lflow, _ = pd.factorize(lf_hash)
    lflow = lflow.astype(np.int64)
    n_lflows = int(lflow.max()) + 1 if len(lflow) else 0

    key = _hash(pd.DataFrame({"pr": v["proto"].to_numpy(), **{c: p[c].to_numpy() for c in KEY_COLUMNS}}))
    ts = p["ts_ns"].to_numpy().astype(np.int64)
    flags = p["tcp_flags"].to_numpy()

    # duplicates of one packet within one local flow (e.g. `-i any` sees it twice): keep the first
    order = np.lexsort((ts, key, lflow))
    lf_o, key_o = lflow[order], key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (lf_o[1:] != lf_o[:-1]) | (key_o[1:] != key_o[:-1])
    dup = np.zeros(len(rows), dtype=bool)
    dup[order[~first]] = True
    urow = order[first]  # positions (into rows) of unique (lflow, key) observations

    # link local flows sharing a key
    u_key, u_lf = key[urow], lflow[urow]
    keys_df = pd.DataFrame({"key": u_key, "lflow": u_lf, "pos": urow})
    gsize = keys_df.groupby("key")["lflow"].transform("size").to_numpy()
    limit = max_key_group if max_key_group is not None else 2 * len(point_names) + 2
    linkable = (gsize > 1) & (gsize <= limit)
    kd = keys_df[linkable]
    root = kd.groupby("key")["lflow"].transform("min").to_numpy()
    comp_of_lf = _components(n_lflows, kd["lflow"].to_numpy(), root)
    comp_ids, comp_of_lf = np.unique(comp_of_lf, return_inverse=True)
    conn = comp_of_lf[lflow]

    # forward direction of each local flow: its first SYN, else propagated through a shared key
    # from a local flow that has one, else its first packet
    syn = is_syn(flags)
    fwd_lo = np.full(n_lflows, -1, dtype=np.int8)
    if syn.any():
        s_rows = np.flatnonzero(syn)
        s_rows = s_rows[np.lexsort((ts[s_rows], lflow[s_rows]))]
        firsts = s_rows[np.r_[True, lflow[s_rows][1:] != lflow[s_rows][:-1]]]
        fwd_lo[lflow[firsts]] = dir_lo[firsts].astype(np.int8)
    if (fwd_lo < 0).any():
        known = fwd_lo[u_lf] >= 0
        anchor = pd.DataFrame({"key": u_key[known], "same": (dir_lo[urow][known] == (fwd_lo[u_lf][known] == 1))})
        anchor = anchor.drop_duplicates("key")
        need = ~known
        cand = pd.DataFrame({"key": u_key[need], "lflow": u_lf[need], "dl": dir_lo[urow][need]})
        cand = cand.merge(anchor, on="key", how="inner").drop_duplicates("lflow")
        if len(cand):
            fwd_lo[cand["lflow"].to_numpy()] = np.where(cand["same"].to_numpy(), cand["dl"].to_numpy(),
                                                        ~cand["dl"].to_numpy()).astype(np.int8)
    if (fwd_lo < 0).any():
        o = np.lexsort((ts, lflow))
        firsts = o[np.r_[True, lflow[o][1:] != lflow[o][:-1]]] if len(o) else o
        unset = fwd_lo[lflow[firsts]] < 0
        fwd_lo[lflow[firsts][unset]] = dir_lo[firsts][unset].astype(np.int8)
    fwd = dir_lo == (fwd_lo[lflow] == 1)

    # clock offsets from observations at points holding one local flow of their connection
    lf_point = np.zeros(n_lflows, dtype=np.int32)
    lf_point[lflow] = point_code
    lf_conn = np.zeros(n_lflows, dtype=np.int64)
    lf_conn[lflow] = conn
    obs = pd.DataFrame({"key": u_key, "lflow": u_lf, "comp": lf_conn[u_lf], "point": lf_point[u_lf],
                        "ts": ts[urow], "fwd": fwd[urow], "seq": p["tcp_seq"].to_numpy()[urow],
                        "plen": p["payload_len"].to_numpy()[urow]})
    per_cp = pd.Series(1, index=pd.MultiIndex.from_arrays([lf_conn, lf_point])).groupby(level=[0, 1]).size()
    single = per_cp[per_cp == 1]
    ok = pd.MultiIndex.from_arrays([obs["comp"], obs["point"]]).isin(single.index)
    obs_ok = obs[ok & (gsize > 1) & (gsize <= limit)]
    if correct_clocks:
        offsets = solve_offsets(pair_bounds(obs_ok[["key", "comp", "point", "ts", "fwd"]]), point_names)
    else:
        offsets = {name: Offset(name, 0, -1, name, None, False) for name in point_names}
    off_arr = np.array([offsets[n].offset_ns if offsets[n].applied else 0 for n in point_names] or [0],
                       dtype=np.int64)
    ts_corr = ts - off_arr[point_code]
    obs["ts"] = ts_corr[urow]

    # order hops: median delay after the packet was first seen anywhere, forward packets first
    kmin = obs.groupby("key")["ts"].transform("min").to_numpy()
    obs["delay"] = obs["ts"].to_numpy() - kmin
    med = obs.groupby(["lflow", "fwd"])["delay"].median().unstack()
    f_delay = med[True].reindex(range(n_lflows)).to_numpy() if True in med else np.full(n_lflows, np.nan)
    b_delay = med[False].reindex(range(n_lflows)).to_numpy() if False in med else np.full(n_lflows, np.nan)

    # per local flow aggregates
    fl = flags
    pl = p["payload_len"].to_numpy()
    wl = p["wirelen"].to_numpy().astype(np.int64)
    a = pd.DataFrame({
        "lflow": lflow, "ts": ts_corr, "fwd": fwd, "wl": wl, "pl": np.where(pl > 0, pl, 0),
        "syn": syn, "synack": is_synack(fl), "fin": (fl >= 0) & ((fl & TCP_FIN) != 0),
        "rst": (fl >= 0) & ((fl & TCP_RST) != 0), "ack": (fl >= 0) & ((fl & TCP_ACK) != 0) & ~((fl & TCP_SYN) != 0),
        "dup": dup,
    })
    g = a.groupby("lflow")
    lf = pd.DataFrame({
        "first_ts_ns": g["ts"].min(), "last_ts_ns": g["ts"].max(), "packets": g.size(),
        "bytes": g["wl"].sum(), "duplicates": g["dup"].sum(),
    })
    af = a[a["fwd"].to_numpy()]
    ab = a[~a["fwd"].to_numpy()]
    gf, gb = af.groupby("lflow"), ab.groupby("lflow")
    lf["fwd_packets"] = gf.size().reindex(lf.index, fill_value=0)
    lf["bwd_packets"] = gb.size().reindex(lf.index, fill_value=0)
    lf["fwd_payload"] = gf["pl"].sum().reindex(lf.index, fill_value=0)
    lf["bwd_payload"] = gb["pl"].sum().reindex(lf.index, fill_value=0)
    lf["fwd_first_ts_ns"] = gf["ts"].min().reindex(lf.index)
    lf["bwd_first_ts_ns"] = gb["ts"].min().reindex(lf.index)
    for col in ("syn", "synack", "rst"):
        lf[col] = g[col].any()
    lf["fin_fwd"] = gf["fin"].any().reindex(lf.index, fill_value=False)
    lf["fin_bwd"] = gb["fin"].any().reindex(lf.index, fill_value=False)
    lf["ack_fwd"] = gf["ack"].any().reindex(lf.index, fill_value=False)

    # retransmissions: data/SYN/FIN segments with the same seq seen again under another key
    seqs = p["tcp_seq"].to_numpy()
    carries = (proto_arr := v["proto"].to_numpy()) == 6
    carries &= (pl > 0) | ((fl >= 0) & ((fl & (TCP_SYN | TCP_FIN)) != 0))
    carries &= ~dup
    rt = pd.DataFrame({"lflow": lflow[carries], "fwd": fwd[carries], "seq": seqs[carries],
                       "sf": fl[carries] & (TCP_SYN | TCP_FIN)})
    n_all = rt.groupby(["lflow", "fwd"]).size()
    n_uni = rt.drop_duplicates().groupby(["lflow", "fwd"]).size()
    rtx = (n_all - n_uni).unstack(fill_value=0) if len(rt) else pd.DataFrame()
    lf["retrans_fwd"] = rtx[True].reindex(lf.index, fill_value=0) if True in rtx else 0
    lf["retrans_bwd"] = rtx[False].reindex(lf.index, fill_value=0) if False in rtx else 0

    # identity of each local flow (forward orientation), from its first packet
    o = np.lexsort((ts, lflow))
    firsts = o[np.r_[True, lflow[o][1:] != lflow[o][:-1]]] if len(o) else o
    lfi = lflow[firsts]
    flo = fwd_lo[lfi] == 1
    lf.loc[lfi, "point_code"] = point_code[firsts]
    lf.loc[lfi, "proto"] = proto_arr[firsts]
    lf.loc[lfi, "vni"] = vni_key[firsts]
    lf.loc[lfi, "src"] = np.where(flo, lo_ip[firsts], hi_ip[firsts])
    lf.loc[lfi, "sport"] = np.where(flo, lo_port[firsts], hi_port[firsts])
    lf.loc[lfi, "dst"] = np.where(flo, hi_ip[firsts], lo_ip[firsts])
    lf.loc[lfi, "dport"] = np.where(flo, hi_port[firsts], lo_port[firsts])
    # outer endpoints of the forward direction (as the first forward packet shows them)
    osrc, odst = p["outer_src"].to_numpy(), p["outer_dst"].to_numpy()
    fo = o[fwd[o]]
    ffirst = fo[np.r_[True, lflow[fo][1:] != lflow[fo][:-1]]] if len(fo) else fo
    lf["outer_src"] = 0
    lf["outer_dst"] = 0
    lf.loc[lflow[ffirst], "outer_src"] = osrc[ffirst]
    lf.loc[lflow[ffirst], "outer_dst"] = odst[ffirst]
    lf = lf.astype({"point_code": np.int32, "proto": np.int16, "vni": np.int32, "src": np.int64,
                    "sport": np.int32, "dst": np.int64, "dport": np.int32, "outer_src": np.int64,
                    "outer_dst": np.int64})
    lf.loc[lf["vni"] < 0, ["outer_src", "outer_dst"]] = 0
    lf["conn"] = lf_conn[lf.index.to_numpy()]
    lf["point"] = pd.Categorical.from_codes(lf["point_code"].to_numpy(), categories=point_names)
    info = [topology.point(n) for n in point_names]
    lf["node"] = [info[c].node for c in lf["point_code"]]
    lf["role"] = [info[c].role for c in lf["point_code"]]
    lf["f_delay"] = f_delay[lf.index.to_numpy()]
    lf["b_delay"] = b_delay[lf.index.to_numpy()]

    lf["iface"] = [info[c].iface for c in lf["point_code"]]
    lf = order_hops(lf, topology)
    lf.index.name = "lflow"

    assign = pd.DataFrame({"lflow": lflow, "conn": conn, "fwd": fwd, "ts_corr": ts_corr, "dup": dup},
                          index=packets.index[rows])
    obs["conn"] = obs["comp"]
    return Reconstruction(assign=assign, lflows=lf, keys=obs.drop(columns=["comp"]), offsets=offsets)
