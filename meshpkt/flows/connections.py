"""Connections, hops and translations from a :class:`Reconstruction` (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int, ip4_str
from meshpkt.flows.reconstruct import Reconstruction
from meshpkt.flows.topology import GWBRIDGE_NET, Topology


def endpoint_strings(ip: np.ndarray | pd.Series, port: np.ndarray | pd.Series) -> np.ndarray:
    """``"ip:port"`` (``"ip"`` without a port), vectorised."""
    ips = ip4_str(ip)
    ports = np.asarray(port, dtype=np.int64)
    with_port = pd.Series(ips) + ":" + pd.Series(ports).astype(str)
    return np.where(ports >= 0, with_port.to_numpy(dtype=object), ips)


def build_hops(rec: Reconstruction) -> pd.DataFrame:
    """One row per (connection, hop), in path order."""
    lf = rec.lflows
    conn_first = lf.groupby("conn")["first_ts_ns"].transform("min")
    fwd_first = lf["fwd_first_ts_ns"]
    base = lf.groupby("conn")["fwd_first_ts_ns"].transform("min")
    hops = pd.DataFrame({
        "conn_id": lf["conn"].to_numpy() + 1,
        "hop": lf["hop"].to_numpy(),
        "point": lf["point"].astype(str).to_numpy(),
        "node": lf["node"].to_numpy(),
        "role": lf["role"].to_numpy(),
        "proto": lf["proto"].to_numpy(),
        "src": endpoint_strings(lf["src"], lf["sport"]),
        "dst": endpoint_strings(lf["dst"], lf["dport"]),
        "vni": pd.array(lf["vni"].where(lf["vni"] >= 0), dtype="Int64"),
        "outer_src": np.where(lf["vni"].to_numpy() >= 0, ip4_str(lf["outer_src"]), np.array(None)),
        "outer_dst": np.where(lf["vni"].to_numpy() >= 0, ip4_str(lf["outer_dst"]), np.array(None)),
        "first_ts_ns": lf["first_ts_ns"].to_numpy(),
        "latency_ns": (fwd_first - base).astype("Int64").to_numpy(),
        "since_start_ns": (lf["first_ts_ns"] - conn_first).to_numpy(),
        "packets": lf["packets"].to_numpy(),
        "bytes": lf["bytes"].to_numpy(),
        "fwd_packets": lf["fwd_packets"].to_numpy(),
        "bwd_packets": lf["bwd_packets"].to_numpy(),
        "retrans_fwd": lf["retrans_fwd"].to_numpy(),
        "retrans_bwd": lf["retrans_bwd"].to_numpy(),
        "duplicates": lf["duplicates"].to_numpy(),
        "stray": lf["stray"].to_numpy() if "stray" in lf else False,
        "src_ip": lf["src"].to_numpy(), "sport": lf["sport"].to_numpy(),
        "dst_ip": lf["dst"].to_numpy(), "dport": lf["dport"].to_numpy(),
    })
    return hops.reset_index(drop=True)


def build_translations(hops: pd.DataFrame, topo: Topology) -> pd.DataFrame:
    """What changed between consecutive hops: DNAT, IPVS masq + SNAT, SNAT, VXLAN encap/decap,
    and REDIRECT at the task when the topology names the target port."""
    h = hops
    same = h["conn_id"].to_numpy()[1:] == h["conn_id"].to_numpy()[:-1]
    i = np.flatnonzero(same)  # pair (i, i+1)
    j = i + 1
    enc = h["vni"].notna().to_numpy()
    src_ch = (h["src_ip"].to_numpy()[i] != h["src_ip"].to_numpy()[j]) | (
        h["sport"].to_numpy()[i] != h["sport"].to_numpy()[j])
    dst_ch = (h["dst_ip"].to_numpy()[i] != h["dst_ip"].to_numpy()[j]) | (
        h["dport"].to_numpy()[i] != h["dport"].to_numpy()[j])
    lb_roles = np.isin(h["role"].to_numpy()[i], ("ingress_sbox", "lb")) | np.isin(
        h["role"].to_numpy()[j], ("ingress_sbox", "lb"))
    kinds = np.full(len(i), "", dtype=object)
    kinds[dst_ch & ~src_ch] = "dnat"
    kinds[src_ch & ~dst_ch] = "snat"
    kinds[src_ch & dst_ch] = np.where(lb_roles[src_ch & dst_ch], "ipvs-masq+snat", "dnat+snat")
    tup = pd.DataFrame({
        "conn_id": h["conn_id"].to_numpy()[i], "hop": h["hop"].to_numpy()[i], "kind": kinds,
        "from_point": h["point"].to_numpy()[i], "to_point": h["point"].to_numpy()[j],
        "before": (pd.Series(h["src"].to_numpy()[i]) + " > " + pd.Series(h["dst"].to_numpy()[i])).to_numpy(),
        "after": (pd.Series(h["src"].to_numpy()[j]) + " > " + pd.Series(h["dst"].to_numpy()[j])).to_numpy(),
    })
    tup = tup[tup["kind"] != ""]
    enc_on = ~enc[i] & enc[j]
    enc_off = enc[i] & ~enc[j]
    vxl = []
    for mask, kind, k in ((enc_on, "vxlan-encap", j), (enc_off, "vxlan-decap", i)):
        sel = np.flatnonzero(mask)
        kk = k[sel]
        desc = ("vni " + pd.Series(h["vni"].to_numpy()[kk]).astype("Int64").astype(str) + " " +
                pd.Series(h["outer_src"].to_numpy()[kk]).astype(str) + " > " +
                pd.Series(h["outer_dst"].to_numpy()[kk]).astype(str) + " udp").to_numpy()
        inner = (pd.Series(h["src"].to_numpy()[kk]) + " > " + pd.Series(h["dst"].to_numpy()[kk])).to_numpy()
        vxl.append(pd.DataFrame({
            "conn_id": h["conn_id"].to_numpy()[i[sel]], "hop": h["hop"].to_numpy()[i[sel]], "kind": kind,
            "from_point": h["point"].to_numpy()[i[sel]], "to_point": h["point"].to_numpy()[j[sel]],
            "before": inner if kind == "vxlan-encap" else desc,
            "after": desc if kind == "vxlan-encap" else inner,
        }))
    parts = [tup, *vxl]
    if topo.published:
        last = h[~h["stray"].to_numpy()].groupby("conn_id").tail(1)
        last = last[(last["role"] == "task") & last["dport"].isin(list(topo.published))]
        target = last["dport"].map(topo.published).to_numpy()
        keep = target != last["dport"].to_numpy()
        last, target = last[keep], target[keep]
        if len(last):
            parts.append(pd.DataFrame({
                "conn_id": last["conn_id"].to_numpy(), "hop": last["hop"].to_numpy(), "kind": "redirect",
                "from_point": last["point"].to_numpy(), "to_point": last["point"].to_numpy(),
                "before": (last["src"] + " > " + last["dst"]).to_numpy(),
                "after": (last["src"] + " > " + endpoint_strings(last["dst_ip"], target)).to_numpy(),
            }))
    out = pd.concat(parts, ignore_index=True)
    order = {"vxlan-decap": 0, "dnat": 1, "dnat+snat": 1, "ipvs-masq+snat": 1, "snat": 1, "vxlan-encap": 2,
             "redirect": 3}
    out["_o"] = out["kind"].map(order)
    return out.sort_values(["conn_id", "hop", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


_IFACE_RANK = {"eth0": 0, "docker_gwbridge": 1, "eth1": 0, "br0": 0, "vxlan0": 2}


def _points_of(topo: Topology, node: str, role: str) -> list[str]:
    pts = [p for p in topo.points.values() if p.node == node and p.role == role]
    if role == "ingress_sbox":
        pts.sort(key=lambda p: (0 if p.iface == "eth1" else 1, p.iface))
    else:
        pts.sort(key=lambda p: (_IFACE_RANK.get(p.iface, 1), p.iface))
    return [p.point for p in pts]


def expected_path(topo: Topology, entry_node: str | None, backend_node: str | None,
                  task_point: str | None) -> list[tuple[str, bool]]:
    """Capture points an ingress connection should cross, as (point, encapsulated) in order,
    limited to the points that were captured."""
    if not entry_node:
        return []
    path: list[tuple[str, bool]] = [(p.point, False) for p in topo.points.values() if p.role == "client"]
    path += [(p, False) for p in _points_of(topo, entry_node, "host")]
    path += [(p, False) for p in _points_of(topo, entry_node, "ingress_sbox")]
    overlay = _points_of(topo, entry_node, "overlay")
    if backend_node is None:
        return path
    if backend_node == entry_node:
        path += [(p, False) for p in overlay if not p.endswith(".vxlan0")]
    else:
        path += [(p, False) for p in overlay]
        path += [(p, True) for p in _points_of(topo, entry_node, "host") if p.endswith(".eth0")]
        path += [(p.point, True) for p in topo.points.values() if p.role == "underlay"]
        path += [(p, True) for p in _points_of(topo, backend_node, "host") if p.endswith(".eth0")]
        path += [(p, False) for p in reversed(_points_of(topo, backend_node, "overlay"))]
    if task_point:
        path.append((task_point, False))
    return path


def build_connections(rec: Reconstruction, hops: pd.DataFrame, topo: Topology) -> pd.DataFrame:
    """One row per connection: who, where it entered, which backend, state, where it died."""
    lf = rec.lflows
    g = lf.groupby("conn")
    flags = pd.DataFrame({c: g[c].any() for c in ("syn", "synack", "rst", "fin_fwd", "fin_bwd", "ack_fwd")})
    all_hops = hops
    hops = hops[~hops["stray"].to_numpy()]
    h0 = hops.groupby("conn_id").head(1).set_index("conn_id")
    conns = pd.DataFrame(index=h0.index)
    conns["proto"] = h0["proto"]
    conns["client"] = h0["src"]
    conns["entry"] = h0["dst"]
    lf0 = lf[lf["hop"] == 0].set_index("conn")
    lf0.index = lf0.index + 1
    conns["bytes_fwd"] = lf0["fwd_payload"].reindex(conns.index).to_numpy()
    conns["bytes_bwd"] = lf0["bwd_payload"].reindex(conns.index).to_numpy()
    flags.index = flags.index + 1
    f = flags.reindex(conns.index)
    status = np.where(f["rst"], "reset",
             np.where(f["fin_fwd"] & f["fin_bwd"], "closed",
             np.where(f["synack"] & f["ack_fwd"], "established",
             np.where(f["synack"], "syn-acked",
             np.where(f["syn"], "syn-unanswered", "open")))))
    status = np.where(conns["proto"] == 6, status, np.where(conns["proto"] == 17, "udp", "icmp"))
    conns["status"] = status
    conns["hops_seen"] = hops.groupby("conn_id").size()
    conns["flooded_to"] = all_hops[all_hops["stray"].to_numpy()].groupby("conn_id")["point"].agg(list).reindex(
        conns.index)
    conns["path"] = hops.groupby("conn_id")["point"].agg(" > ".join)
    conns["first_ts_ns"] = hops.groupby("conn_id")["first_ts_ns"].min()
    conns["duration_ns"] = lf.groupby("conn")["last_ts_ns"].max().to_numpy() - conns["first_ts_ns"].to_numpy()
    conns["retrans"] = hops.groupby("conn_id")["retrans_fwd"].max() + hops.groupby("conn_id")["retrans_bwd"].max()
    conns["packets"] = hops.groupby("conn_id")["packets"].max()

    for name, values in _per_connection(conns, hops, topo).items():
        conns[name] = pd.Series(values, index=conns.index, dtype=object)
    _lost_packets(rec, hops, conns)
    conns.index.name = "conn_id"
    return conns.reset_index()


def _lost_packets(rec: Reconstruction, hops: pd.DataFrame, conns: pd.DataFrame) -> None:
    """Packets that stopped short of where the connection's other packets went (e.g. big segments
    and an MTU black hole): ``lost_fwd``/``lost_bwd`` counts and ``lost_at`` (the last point most of
    them reached). A connection that did not end well, or whose lost data never got through even
    retransmitted, and has no ``missing_at`` yet gets the hop after ``lost_at`` as ``missing_at``."""
    conns["lost_fwd"] = 0
    conns["lost_bwd"] = 0
    conns["lost_at"] = pd.Series(None, index=conns.index, dtype=object)
    lf = rec.lflows
    keys = rec.keys
    if keys.empty or lf.empty:
        return
    hop_of = lf["hop"].reindex(keys["lflow"]).to_numpy()
    stray = lf["stray"].reindex(keys["lflow"]).to_numpy().astype(bool)
    k = pd.DataFrame({"conn": keys["conn"].to_numpy() + 1, "key": keys["key"].to_numpy(),
                      "fwd": keys["fwd"].to_numpy(), "hop": hop_of, "seq": keys["seq"].to_numpy(),
                      "plen": keys["plen"].to_numpy()})[~stray]
    out: dict[bool, pd.DataFrame] = {}
    undelivered = pd.Series(0, index=conns.index)
    for fwd in (True, False):
        d = k[k["fwd"].to_numpy() == fwd]
        if d.empty:
            continue
        per_key = d.groupby(["conn", "key"]).agg(hop=("hop", "max" if fwd else "min"), seq=("seq", "first"),
                                                 plen=("plen", "first")).reset_index()
        edge = per_key.groupby("conn")["hop"].transform("max" if fwd else "min").to_numpy()
        at_edge = per_key["hop"].to_numpy() == edge
        short = per_key[~at_edge]
        if short.empty:
            continue
        # data that never got through, not even retransmitted
        got = pd.MultiIndex.from_frame(per_key.loc[at_edge, ["conn", "seq"]])
        data = short[short["plen"].to_numpy() > 0]
        never = data[~pd.MultiIndex.from_frame(data[["conn", "seq"]]).isin(got)]
        undelivered = undelivered.add(never.groupby("conn").size(), fill_value=0)
        counts = short.groupby("conn").size()
        where = short.groupby(["conn", "hop"]).size().reset_index(name="n").sort_values(
            ["conn", "n"], ascending=[True, False]).drop_duplicates("conn").set_index("conn")["hop"]
        out[fwd] = pd.DataFrame({"n": counts, "hop": where})
    hop_point = hops.set_index(["conn_id", "hop"])["point"]
    for fwd, d in out.items():
        conns.loc[d.index, "lost_fwd" if fwd else "lost_bwd"] = d["n"].to_numpy()
    if True in out or False in out:
        d = out.get(True, out.get(False))
        assert d is not None
        fwd = True in out
        at = hop_point.reindex(pd.MultiIndex.from_arrays([d.index, d["hop"]])).to_numpy()
        nxt = hop_point.reindex(pd.MultiIndex.from_arrays([d.index, d["hop"] + (1 if fwd else -1)])).to_numpy()
        conns.loc[d.index, "lost_at"] = at
        bad = ~conns.loc[d.index, "status"].isin(["closed", "established"]).to_numpy()
        bad |= undelivered.reindex(d.index, fill_value=0).to_numpy() > 0
        bad &= conns.loc[d.index, "missing_at"].isna().to_numpy()
        idx = d.index[bad]
        if len(idx):
            n = d.loc[idx, "n"].astype(str).to_numpy()
            way = "forward" if fwd else "reply"
            at_s, nxt_s = at[bad].astype(str), nxt[bad].astype(str)
            conns.loc[idx, "missing_at"] = nxt[bad]
            conns.loc[idx, "verdict"] = (conns.loc[idx, "status"].astype(str).to_numpy() + ": " + n + " " + way
                                         + " packets reached " + at_s + " but never arrived at " + nxt_s
                                         + " while others of the connection did (too big for the path?)")


def _task_point(topo: Topology, node: str, task: str) -> str | None:
    cands = [p for p in topo.points.values() if p.role == "task" and p.node == node and p.namespace == task]
    cands.sort(key=lambda p: (p.network != "ingress", p.iface))
    return cands[0].point if cands else None


_NONE = np.array(None, dtype=object)


def _map(values: np.ndarray, table: dict) -> np.ndarray:
    """dict lookup over an array (None where absent), one Python call per distinct value."""
    uniq, inv = np.unique(values, return_inverse=True)
    looked = np.array([table.get(u.item() if hasattr(u, "item") else u) for u in uniq] + [None],
                      dtype=object)[:-1]
    return looked[inv.reshape(-1)]


def _per_connection(conns: pd.DataFrame, hops: pd.DataFrame, topo: Topology) -> dict[str, np.ndarray]:
    """entry_node, backend, backend_node, backend_task, last_seen_point, missing_at, verdict for
    every connection of ``conns`` (index = conn_id); ``hops`` sorted by (conn_id, hop)."""
    cid = hops["conn_id"].to_numpy()
    n = len(conns)
    pos_of = pd.Index(conns.index)
    ci = pos_of.get_indexer(cid)  # connection position of every hop row
    first_row = np.full(n, -1, np.int64)
    last_row = np.full(n, -1, np.int64)
    r = np.arange(len(hops))
    first_row[ci[::-1]] = r[::-1]
    last_row[ci] = r
    col = {c: hops[c].to_numpy() for c in ("dst_ip", "dport", "dst", "src", "point", "role", "node",
                                             "fwd_packets", "bwd_packets")}
    point = hops["point"].astype(str).to_numpy(dtype=object)
    enc = hops["vni"].notna().to_numpy()
    fwd = col["fwd_packets"] > 0
    bwd = col["bwd_packets"] > 0

    # entry node: topology lookup of the dialled address, else the first non-client hop's node
    ip_node = {**topo.lb_ips, **{ip: t.node for ip, t in topo.tasks.items()}, **topo.node_ips}
    entry_ip = col["dst_ip"][first_row].astype(np.int64)
    node = _map(entry_ip, ip_node)
    nc = np.flatnonzero(col["role"] != "client")
    first_nc = np.full(n, -1, np.int64)
    first_nc[ci[nc][::-1]] = nc[::-1]
    fill = (node == None) & (first_nc >= 0)  # noqa: E711
    node[fill] = col["node"][first_nc[fill]].astype(str)

    # backend: the last hop's destination unless it is still in front of the load balancer
    b_ip = col["dst_ip"][last_row].astype(np.int64)
    lb_set = np.array(sorted(set(topo.node_ips) | set(topo.sbox_ips) | set(topo.lb_ips)), dtype=np.int64)
    base, plen = GWBRIDGE_NET
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    before_lb = np.isin(b_ip, lb_set) | (topo.inferred & ((b_ip & mask) == base))
    is_task_ip = np.isin(b_ip, np.array(list(topo.tasks), dtype=np.int64))
    changed = (b_ip != entry_ip) | (col["dport"][last_row] != col["dport"][first_row])
    has_backend = (changed & ~before_lb) | is_task_ip
    backend = np.where(has_backend, col["dst"][last_row].astype(object), _NONE)
    task_known = has_backend & is_task_ip
    t_node = np.where(task_known, _map(b_ip, {ip: t.node for ip, t in topo.tasks.items()}), _NONE)
    t_name = np.where(task_known, _map(b_ip, {ip: t.name for ip, t in topo.tasks.items()}), _NONE)
    last_is_task = col["role"][last_row] == "task"
    task_point = np.where(last_is_task, point[last_row], _NONE)
    need = (task_point == None) & task_known  # noqa: E711
    if need.any():
        tp = {nk: _task_point(topo, nk[0], nk[1]) for nk in set(zip(t_node[need], t_name[need], strict=True))}
        task_point[need] = [tp[nk] for nk in zip(t_node[need], t_name[need], strict=True)]
    bnode = np.where(task_known, t_node, np.where(last_is_task, col["node"][last_row].astype(object), _NONE))
    # else: the VTEP the forward packets were sent to
    efw = np.flatnonzero(enc & fwd)
    last_enc = np.full(n, -1, np.int64)
    last_enc[ci[efw]] = efw
    fill = (bnode == None) & (backend != None) & (last_enc >= 0)  # noqa: E711
    if fill.any():
        odst = hops["outer_dst"].to_numpy()[last_enc[fill]]
        ips = {s: ip4_int(str(s)) for s in set(odst)}
        bnode[fill] = [topo.node_of_ip(ips[s]) for s in odst]
    tp_ns = {p: topo.point(p).namespace for p in set(task_point[task_point != None])}  # noqa: E711
    btask = np.where(task_known, t_name,
                     np.array([tp_ns.get(p) for p in task_point] + [None], dtype=object)[:-1])

    # last point forward packets reached (else the first hop)
    fr = np.flatnonzero(fwd)
    last_fwd = first_row.copy()
    last_fwd[ci[fr]] = fr
    last_seen = point[last_fwd]

    # where it died: compare the hops seen with the expected path of its (entry, backend node, task)
    status = conns["status"].to_numpy(dtype=object)
    combo_keys = pd.Series(list(zip(node, bnode, task_point, strict=True)), dtype=object)
    combo, combos = pd.factorize(combo_keys)
    t_rows = []
    t_len = np.zeros(len(combos), np.int64)
    for c_no, (e, b, tpt) in enumerate(combos):
        path = [t for t in expected_path(topo, e, b, tpt) if t[0] in topo.points]
        t_len[c_no] = len(path)
        t_rows += [(c_no, j, p, bool(en)) for j, (p, en) in enumerate(path)]
    tmpl = pd.DataFrame(t_rows, columns=["combo", "pos", "point", "enc"])
    t_off = np.r_[0, np.cumsum(t_len)[:-1]]
    t_point = tmpl["point"].to_numpy(dtype=object)
    t_enc = tmpl["enc"].to_numpy(dtype=bool)
    L = t_len[combo]
    hk = pd.DataFrame({"ci": ci, "combo": combo[ci], "point": point, "enc": enc, "fwd": fwd, "bwd": bwd})
    m = hk.merge(tmpl, on=["combo", "point", "enc"], how="inner")
    fwd_max = np.full(n, -1, np.int64)
    mf = m[m["fwd"].to_numpy()]
    if len(mf):
        s = mf.groupby("ci")["pos"].max()
        fwd_max[s.index.to_numpy()] = s.to_numpy()
    bwd_min = np.full(n, -1, np.int64)
    mb = m[m["bwd"].to_numpy()]
    if len(mb):
        s = mb.groupby("ci")["pos"].min()
        bwd_min[s.index.to_numpy()] = s.to_numpy()
    any_bwd = np.zeros(n, bool)
    any_bwd[ci[bwd]] = True
    healthy = np.isin(status, ["established", "closed"]) | (np.isin(status, ["udp", "icmp"]) & any_bwd)

    missing = np.full(n, None, dtype=object)
    verdict = np.full(n, "ok", dtype=object)
    S = pd.Series(status.astype(str))
    a_ = (L == 0) & ~healthy
    verdict[a_] = (S[a_] + ": last seen at " + pd.Series(last_seen[a_].astype(str), index=S[a_].index)
                   + "; no topology to name the next hop").to_numpy()
    todo = L > 0
    b_ = todo & (fwd_max < 0)
    verdict[b_] = "not on the expected path"
    c_ = todo & (fwd_max >= 0) & (fwd_max + 1 < L)
    if c_.any():
        k = np.flatnonzero(c_)
        here = t_off[combo[k]] + fwd_max[k]
        here_p, nxt_p, here_enc = t_point[here], t_point[here + 1], t_enc[here]
        # the last hop row of the connection at the "here" point
        idx = pd.MultiIndex.from_arrays([ci, point])
        lastrow = pd.Series(np.arange(len(hops)), index=idx)
        lastrow = lastrow[~idx.duplicated(keep="last")]
        rows = lastrow.reindex(pd.MultiIndex.from_arrays([k, here_p])).to_numpy()
        src, dst = col["src"][rows].astype(str), col["dst"][rows].astype(str)
        vni = hops["vni"].astype(str).to_numpy()[rows]
        osrc = hops["outer_src"].astype(str).to_numpy()[rows]
        odst = hops["outer_dst"].astype(str).to_numpy()[rows]
        P = pd.Series
        enc_txt = np.where(here_enc, (", VXLAN vni " + P(vni) + " " + P(osrc) + " > " + P(odst)).to_numpy(), "")
        missing[k] = nxt_p
        verdict[k] = (P(status[k].astype(str)) + ": forward packets (" + P(src) + " > " + P(dst) + P(enc_txt)
                      + ") reached " + P(here_p.astype(str)) + " but never arrived at "
                      + P(nxt_p.astype(str))).to_numpy()
    rest = todo & (fwd_max >= 0) & ~c_
    ok = rest & healthy & ((bwd_min == 0) | ~any_bwd)
    e_ = rest & ~ok & (bwd_min < 0)
    if e_.any():
        k = np.flatnonzero(e_)
        lastp = t_point[t_off[combo[k]] + L[k] - 1]
        missing[k] = lastp
        verdict[k] = (pd.Series(status[k].astype(str)) + ": requests reached " + pd.Series(lastp.astype(str))
                      + " but no reply was seen there").to_numpy()
    f_ = rest & ~ok & (bwd_min > 0)
    if f_.any():
        k = np.flatnonzero(f_)
        reached = t_point[t_off[combo[k]] + bwd_min[k]]
        nxt = t_point[t_off[combo[k]] + bwd_min[k] - 1]
        missing[k] = nxt
        verdict[k] = (pd.Series(status[k].astype(str)) + ": replies reached " + pd.Series(reached.astype(str))
                      + " but never arrived at " + pd.Series(nxt.astype(str))).to_numpy()
    g_ = rest & ~ok & (bwd_min == 0)
    verdict[g_ & ~healthy] = status[g_ & ~healthy]
    return {"entry_node": node, "backend": backend, "backend_node": bnode, "backend_task": btask,
            "last_seen_point": last_seen, "missing_at": missing, "verdict": verdict}
