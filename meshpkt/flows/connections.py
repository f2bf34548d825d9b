"""Connections, hops and translations from a :class:`Reconstruction` (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int, ip4_str
from meshpkt.flows.reconstruct import Reconstruction
from meshpkt.flows.topology import GWBRIDGE_NET, Topology
from meshpkt.flows.verdict import empty_evidence, render_verdicts


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
        **{f"{c}_{d}": lf[f"{c}_{d}"].to_numpy() for d in ("fwd", "bwd") for c in (
            "segments", "bytes", "retrans_bytes", "reordered", "lost", "lost_bytes", "missed_bytes", "rst")},
        "duplicates": lf["duplicates"].to_numpy(),
        "stray": lf["stray"].to_numpy() if "stray" in lf else False,
        "detour": lf["detour"].to_numpy() if "detour" in lf else False,
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


def expected_path(topo: Topology, entry_node: str | None, backend_node: str | None,
                  task_point: str | None) -> list[tuple[str, bool]]:
    """Capture points an ingress connection should cross, as (point, encapsulated) in order,
    limited to the points that were captured (the stages of :mod:`meshpkt.mesh.path`)."""
    from meshpkt.mesh.path import PathKind, expected_points

    pts = expected_points(topo.points.values(), PathKind.INGRESS, entry=entry_node, backend=backend_node,
                          task_point=task_point)
    return [(p.point, p.encapsulated) for p in pts]


def build_connections(rec: Reconstruction, hops: pd.DataFrame, topo: Topology) -> pd.DataFrame:
    """One row per connection: who, where it entered, which backend, state, losses, verdict."""
    conns = _basics(rec, hops)
    path_hops = hops[~hops["stray"].to_numpy()]
    ends = _endpoints(conns, path_hops, topo)
    for name, values in ends.items():
        conns[name] = pd.Series(values, index=conns.index, dtype=object)
    windows = rec.windows
    ev = empty_evidence(len(conns))
    progress = _path_progress(conns, path_hops, topo, windows)
    _losses_into(conns, rec, path_hops)
    conns["lost_near_drops"] = pd.Series(_drops_near(conns, topo), index=conns.index, dtype=object)
    _judge(conns, path_hops, progress, ev)
    for name, values in ev.items():
        conns[name] = values
    conns["missing_at"] = pd.Series(_missing_at(conns), index=conns.index, dtype=object)
    conns["verdict"] = render_verdicts(conns)
    conns = conns.drop(columns=["task_point"])
    conns.index.name = "conn_id"
    return conns.reset_index()


def _basics(rec: Reconstruction, hops: pd.DataFrame) -> pd.DataFrame:
    lf = rec.lflows
    g = lf.groupby("conn")
    flags = pd.DataFrame({c: g[c].any() for c in ("syn", "synack", "rst", "fin_fwd", "fin_bwd", "ack_fwd")})
    for tag in ("fwd", "bwd"):  # a FIN no tap captured is proven by the other side's ACK covering it
        if f"fin_acked_{tag}" in lf:
            flags[f"fin_{tag}"] |= g[f"fin_acked_{tag}"].any()
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
    conns["syn_seen"] = f["syn"].to_numpy() | f["synack"].to_numpy()
    conns["hops_seen"] = hops.groupby("conn_id").size()
    conns["flooded_to"] = all_hops[all_hops["stray"].to_numpy()].groupby("conn_id")["point"].agg(list).reindex(
        conns.index)
    conns["path"] = _join_groups(hops["point"].astype(str).to_numpy(dtype=object), hops["conn_id"].to_numpy(),
                                 conns.index.to_numpy())
    conns["first_ts_ns"] = hops.groupby("conn_id")["first_ts_ns"].min()
    conns["duration_ns"] = g["last_ts_ns"].max().to_numpy() - conns["first_ts_ns"].to_numpy()
    conns["retrans"] = hops.groupby("conn_id")["retrans_fwd"].max() + hops.groupby("conn_id")["retrans_bwd"].max()
    conns["packets"] = hops.groupby("conn_id")["packets"].max()
    return conns


#: a point with packets is taken to have been capturing this long before its first and after its last
#: packet (taps are idle between connections); an empty capture was capturing (and saw nothing); a
#: point the topology names but that was not captured, or whose packets are all far from a
#: connection, is "no data from this point" for it, not a loss
CAPTURE_SLACK_NS = 10_000_000_000


def _join_groups(values: np.ndarray, group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``" > ".join`` of ``values`` per run of equal ``group`` (sorted), one string per ``order`` entry."""
    if not len(values):
        return np.full(len(order), None, dtype=object)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    joined = np.add.reduceat(values + " > ", starts)
    out = pd.Series([v[:-3] for v in joined], index=group[starts], dtype=object)
    return out.reindex(order).to_numpy(dtype=object)


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


class _Rows:
    """First/last hop row of every connection of ``conns`` in ``hops`` (sorted by conn_id, hop)."""

    def __init__(self, conns: pd.DataFrame, hops: pd.DataFrame) -> None:
        self.n = len(conns)
        self.ci = pd.Index(conns.index).get_indexer(hops["conn_id"].to_numpy())
        r = np.arange(len(hops))
        self.first = np.full(self.n, -1, np.int64)
        self.last = np.full(self.n, -1, np.int64)
        self.first[self.ci[::-1]] = r[::-1]
        self.last[self.ci] = r

    def last_where(self, mask: np.ndarray, default: np.ndarray) -> np.ndarray:
        out = default.copy()
        rows = np.flatnonzero(mask)
        out[self.ci[rows]] = rows
        return out


def _entry_nodes(hops: pd.DataFrame, rows: _Rows, topo: Topology) -> np.ndarray:
    """Topology lookup of the dialled address, else the first non-client hop's node."""
    ip_node = {**topo.lb_ips, **{ip: t.node for ip, t in topo.tasks.items()}, **topo.node_ips}
    node = _map(hops["dst_ip"].to_numpy()[rows.first].astype(np.int64), ip_node)
    nc = np.flatnonzero(hops["role"].to_numpy() != "client")
    first_nc = np.full(rows.n, -1, np.int64)
    first_nc[rows.ci[nc][::-1]] = nc[::-1]
    fill = (node == None) & (first_nc >= 0)  # noqa: E711
    node[fill] = hops["node"].to_numpy()[first_nc[fill]].astype(str)
    return node


def _endpoints(conns: pd.DataFrame, hops: pd.DataFrame, topo: Topology) -> dict[str, np.ndarray]:
    """entry_node, backend, backend_node, backend_task, task_point, last_seen_point per connection."""
    rows = _Rows(conns, hops)
    first = rows.first
    last = rows.last_where(hops["fwd_packets"].to_numpy() > 0, rows.last)  # where requests got to
    point = hops["point"].astype(str).to_numpy(dtype=object)
    role = hops["role"].to_numpy()
    entry_ip = hops["dst_ip"].to_numpy()[first].astype(np.int64)
    b_ip = hops["dst_ip"].to_numpy()[last].astype(np.int64)
    lb_set = np.array(sorted(set(topo.node_ips) | set(topo.sbox_ips) | set(topo.lb_ips)), dtype=np.int64)
    base, plen = GWBRIDGE_NET
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    before_lb = np.isin(b_ip, lb_set) | (topo.inferred & ((b_ip & mask) == base))
    is_task_ip = np.isin(b_ip, np.array(list(topo.tasks), dtype=np.int64))
    changed = (b_ip != entry_ip) | (hops["dport"].to_numpy()[last] != hops["dport"].to_numpy()[first])
    has_backend = (changed & ~before_lb) | is_task_ip
    backend = np.where(has_backend, hops["dst"].to_numpy()[last].astype(object), _NONE)
    task_known = has_backend & is_task_ip
    t_node = np.where(task_known, _map(b_ip, {ip: t.node for ip, t in topo.tasks.items()}), _NONE)
    t_name = np.where(task_known, _map(b_ip, {ip: t.name for ip, t in topo.tasks.items()}), _NONE)
    task_point = np.where(role[last] == "task", point[last], _NONE)
    need = (task_point == None) & task_known  # noqa: E711
    if need.any():
        tp = {nk: _task_point(topo, nk[0], nk[1]) for nk in set(zip(t_node[need], t_name[need], strict=True))}
        task_point[need] = [tp[nk] for nk in zip(t_node[need], t_name[need], strict=True)]
    bnode = np.where(task_known, t_node, np.where(role[last] == "task", hops["node"].to_numpy()[last].astype(object),
                                                  _NONE))
    _vtep_backend_nodes(bnode, backend, hops, rows, topo)
    tp_ns = {p: topo.point(p).namespace for p in set(task_point[task_point != None])}  # noqa: E711
    btask = np.where(task_known, t_name, np.array([tp_ns.get(p) for p in task_point] + [None], dtype=object)[:-1])
    last_fwd = rows.last_where(hops["fwd_packets"].to_numpy() > 0, first)
    return {"entry_node": _entry_nodes(hops, rows, topo), "backend": backend, "backend_node": bnode,
            "backend_task": btask, "task_point": task_point, "last_seen_point": point[last_fwd]}


def _vtep_backend_nodes(bnode: np.ndarray, backend: np.ndarray, hops: pd.DataFrame, rows: _Rows,
                        topo: Topology) -> None:
    """Backend node still unknown: the VTEP the forward packets were sent to (in place)."""
    enc_fwd = hops["vni"].notna().to_numpy() & (hops["fwd_packets"].to_numpy() > 0)
    last_enc = rows.last_where(enc_fwd, np.full(rows.n, -1, np.int64))
    fill = (bnode == None) & (backend != None) & (last_enc >= 0)  # noqa: E711
    if fill.any():
        odst = hops["outer_dst"].to_numpy()[last_enc[fill]]
        ips = {s: ip4_int(str(s)) for s in set(odst)}
        bnode[fill] = [topo.node_of_ip(ips[s]) for s in odst]


def _combos(conns: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Connections grouped by (entry node, backend node, task point): one expected path each."""
    cols = [pd.Series(conns[c].to_numpy(dtype=object)).fillna("").astype(str).to_numpy()
            for c in ("entry_node", "backend_node", "task_point")]
    codes, uniq = pd.MultiIndex.from_arrays(cols).factorize()
    return codes, [tuple(u) for u in uniq]


def _template(topo: Topology, combos: list[tuple[str, str, str]]) -> tuple[pd.DataFrame, np.ndarray]:
    rows: list[tuple[int, int, str, bool]] = []
    length = np.zeros(len(combos), np.int64)
    for c_no, (e, b, tpt) in enumerate(combos):
        path = [t for t in expected_path(topo, e or None, b or None, tpt or None) if t[0] in topo.points]
        length[c_no] = len(path)
        rows += [(c_no, j, p, bool(en)) for j, (p, en) in enumerate(path)]
    return pd.DataFrame(rows, columns=["combo", "pos", "point", "enc"]), length


def _path_progress(conns: pd.DataFrame, hops: pd.DataFrame, topo: Topology, windows: pd.DataFrame
                   ) -> pd.DataFrame:
    """Per connection, along its expected path (template positions): how far forward packets got
    (``fwd_max``), the next point with data after that (``next_pos``), the first position replies
    reached (``bwd_min``) and the point with data before it (``prev_pos``), the last and first
    points with data, and the points with no data while the connection ran (``no_data_at``)."""
    n = len(conns)
    combo, combos = _combos(conns)
    tmpl, length = _template(topo, combos)
    t_off = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)
    reps = length[combo]
    ci = np.repeat(np.arange(n), reps)
    pos = np.arange(len(ci)) - np.repeat(np.cumsum(reps) - reps, reps)
    trow = t_off[combo[ci]] + pos
    x = pd.DataFrame({"ci": ci, "pos": pos, "point": tmpl["point"].to_numpy(dtype=object)[trow],
                      "enc": tmpl["enc"].to_numpy(dtype=bool)[trow]})
    first = conns["first_ts_ns"].to_numpy().astype(np.int64)
    last = first + conns["duration_ns"].to_numpy().astype(np.int64)
    w = windows.reindex(x["point"].to_numpy())
    wmin, wmax = w["min"].to_numpy(), w["max"].to_numpy()
    captured = x["point"].isin(windows.index).to_numpy()
    empty = captured & np.isnan(wmin)
    x["covered"] = empty | ((wmin - CAPTURE_SLACK_NS <= last[ci]) & (wmax + CAPTURE_SLACK_NS >= first[ci]))
    x["during"] = (wmin <= last[ci]) & (wmax >= first[ci])
    hk = pd.DataFrame({"ci": pd.Index(conns.index).get_indexer(hops["conn_id"].to_numpy()),
                       "point": hops["point"].astype(str).to_numpy(dtype=object), "enc": hops["vni"].notna().to_numpy(),
                       "f": hops["fwd_packets"].to_numpy() > 0, "b": hops["bwd_packets"].to_numpy() > 0})
    seen = hk.groupby(["ci", "point", "enc"])[["f", "b"]].any()
    got = seen.reindex(pd.MultiIndex.from_frame(x[["ci", "point", "enc"]]), fill_value=False)
    x["f"], x["b"] = got["f"].to_numpy(), got["b"].to_numpy()
    return _progress_columns(x, n, length[combo])


def _group_reduce(x: pd.DataFrame, mask: np.ndarray, how: str, n: int) -> np.ndarray:
    out = np.full(n, -1, np.int64)
    s = x.loc[mask, ["ci", "pos"]].groupby("ci")["pos"].agg(how)
    out[s.index.to_numpy()] = s.to_numpy()
    return out


def _progress_columns(x: pd.DataFrame, n: int, length: np.ndarray) -> pd.DataFrame:
    ci, pos, cov = x["ci"].to_numpy(), x["pos"].to_numpy(), x["covered"].to_numpy()
    fwd_max = _group_reduce(x, x["f"].to_numpy(), "max", n)
    bwd_min = _group_reduce(x, x["b"].to_numpy(), "min", n)
    reply_at_end = np.zeros(n, dtype=bool)
    reply_at_end[ci[x["b"].to_numpy() & (pos == fwd_max[ci])]] = True
    passed = ~x["f"].to_numpy() & ~x["b"].to_numpy() & (pos < fwd_max[ci]) & ~x["during"].to_numpy()
    out = pd.DataFrame({"length": length, "fwd_max": fwd_max, "bwd_min": bwd_min, "reply_at_end": reply_at_end,
                        "next_pos": _group_reduce(x, cov & (pos > fwd_max[ci]), "min", n),
                        "prev_pos": _group_reduce(x, cov & (pos < np.where(bwd_min[ci] < 0, 0, bwd_min[ci])),
                                                  "max", n),
                        "last_pos": _group_reduce(x, cov, "max", n)})
    point = x["point"].to_numpy(dtype=object)
    base = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)

    def at(p: np.ndarray) -> np.ndarray:
        if not len(point):
            return np.full(len(p), None, dtype=object)
        found = point[np.clip(base + p, 0, len(point) - 1)].copy()
        found[p < 0] = None
        return found

    for name in ("fwd_max", "next_pos", "bwd_min", "prev_pos", "last_pos"):
        out[name + "_point"] = at(out[name].to_numpy())
    gaps = x[~cov | passed]  # not captured then; or captured, silent, and the connection went past it
    nodata = gaps.groupby("ci")["point"].agg(lambda s: ", ".join(dict.fromkeys(s)))
    out["no_data_at"] = nodata.reindex(range(n)).to_numpy(dtype=object)
    return out


def build_losses(rec: Reconstruction, hops: pd.DataFrame) -> pd.DataFrame:
    """Lost byte ranges: ``conn_id, dir, from_point, to_point, start, end`` (relative to the first
    sequence number of that direction), ``copies`` lost there and ``delivered`` (a retransmission
    got through)."""
    ls = rec.losses
    cols = ["conn_id", "dir", "from_point", "to_point", "start", "end", "copies", "delivered", "missed_at"]
    if ls.empty:
        return pd.DataFrame(columns=cols)
    path = hops[~hops["stray"].to_numpy()].set_index(["conn_id", "hop"])["point"]
    conn_id = ls["conn"].to_numpy() + 1
    fwd = ls["fwd"].to_numpy().astype(bool)
    hop = ls["hop"].to_numpy()
    frm = path.reindex(pd.MultiIndex.from_arrays([conn_id, hop])).to_numpy()
    to, missed = _trusted_next(hops[~hops["stray"].to_numpy()], conn_id, hop, fwd)
    return pd.DataFrame({"conn_id": conn_id, "dir": np.where(fwd, "forward", "reply"), "from_point": frm,
                         "to_point": to, "start": ls["start"].to_numpy(), "end": ls["end"].to_numpy(),
                         "copies": ls["copies"].to_numpy(), "delivered": ls["delivered"].to_numpy(),
                         "missed_at": missed}
                        ).sort_values(["conn_id", "dir", "start"]).reset_index(drop=True)


def _next_point(path: pd.Series, conn_id: np.ndarray, hop: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """The next path point after ``hop`` in the direction of travel."""
    return path.reindex(pd.MultiIndex.from_arrays([conn_id, hop + np.where(fwd, 1, -1)])).to_numpy()


def _trusted_next(hops: pd.DataFrame, conn_id: np.ndarray, hop: np.ndarray, fwd: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The point a loss after ``hop`` is placed before: the next hop; but when that is a tap of the
    same node (veth, bridge: real loss there is very rare) that missed packets of this connection
    and direction elsewhere (``missed_bytes``), the first point after it that is not such a tap.
    Returns it and the taps skipped (``", "``-joined, None when none)."""
    idx = hops.set_index(["conn_id", "hop"])
    node, point = idx["node"], idx["point"].astype(str)
    step = np.where(fwd, 1, -1)
    own = node.reindex(pd.MultiIndex.from_arrays([conn_id, hop])).to_numpy()
    nxt = hop + step
    skipped = np.full(len(hop), "", dtype=object)
    for _ in range(4):  # a few taps of one node in a row at most; vectorised over all losses
        key = pd.MultiIndex.from_arrays([conn_id, nxt])
        missed = np.where(fwd, idx["missed_bytes_fwd"].reindex(key).to_numpy(),
                          idx["missed_bytes_bwd"].reindex(key).to_numpy())
        beyond = point.reindex(pd.MultiIndex.from_arrays([conn_id, nxt + step])).notna().to_numpy()
        skip = (node.reindex(key).to_numpy() == own) & (np.nan_to_num(missed) > 0) & beyond
        if not skip.any():
            break
        here = point.reindex(key).to_numpy(dtype=object)
        skipped[skip] = skipped[skip] + np.where(skipped[skip] == "", "", ", ") + here[skip]
        nxt = np.where(skip, nxt + step, nxt)
    to = point.reindex(pd.MultiIndex.from_arrays([conn_id, nxt])).to_numpy(dtype=object)
    skipped[skipped == ""] = None
    return to, skipped


def _drops_near(conns: pd.DataFrame, topo: Topology) -> np.ndarray:
    """``"point (N dropped)"`` for the taps around each connection's main loss (``lost_at``,
    ``lost_missed_at``, ``lost_to``) whose tcpdump reported kernel drops; None elsewhere."""
    out = np.full(len(conns), None, dtype=object)
    drops = {p: n for p, n in topo.capture_drops.items() if n > 0}
    if not drops:
        return out
    near = pd.Series(conns["lost_at"].fillna("").astype(str) + ", " + conns["lost_missed_at"].fillna("").astype(str)
                     + ", " + conns["lost_to"].fillna("").astype(str), index=conns.index)
    each = near.str.split(", ").explode()
    each = each[each.isin(list(drops))]
    if each.empty:
        return out
    text = (each + " (" + each.map(drops).astype(str) + " dropped)").groupby(level=0).agg(
        lambda s: ", ".join(dict.fromkeys(s)))
    out[pd.Index(conns.index).get_indexer(text.index)] = text.to_numpy(dtype=object)
    return out


def _losses_into(conns: pd.DataFrame, rec: Reconstruction, hops: pd.DataFrame) -> None:
    """``lost_fwd``/``lost_bwd`` (segments lost between two points), ``lost_bytes_*``, ``lost_at`` (the
    point before the main loss), ``lost_to`` (the one after it), ``undelivered`` (lost data that no
    retransmission got through)."""
    path = hops.set_index(["conn_id", "hop"])["point"]
    for tag in ("fwd", "bwd"):
        conns[f"lost_{tag}"] = hops.groupby("conn_id")[f"lost_{tag}"].sum().reindex(conns.index, fill_value=0)
        conns[f"lost_bytes_{tag}"] = hops.groupby("conn_id")[f"lost_bytes_{tag}"].sum().reindex(
            conns.index, fill_value=0)
    main_fwd = conns["lost_fwd"].to_numpy() > 0
    lost_at = np.full(len(conns), None, dtype=object)
    lost_to = np.full(len(conns), None, dtype=object)
    missed_at = np.full(len(conns), None, dtype=object)
    for fwd, tag in ((False, "bwd"), (True, "fwd")):  # forward losses take precedence
        col = f"lost_{tag}"
        worst = hops[hops[col].to_numpy() > 0].sort_values(["conn_id", col], ascending=[True, False])
        worst = worst.drop_duplicates("conn_id").set_index("conn_id")["hop"]
        idx = pd.Index(conns.index).get_indexer(worst.index)
        take = main_fwd[idx] if fwd else ~main_fwd[idx]
        ids, hop = worst.index.to_numpy()[take], worst.to_numpy()[take]
        lost_at[idx[take]] = path.reindex(pd.MultiIndex.from_arrays([ids, hop])).to_numpy()
        lost_to[idx[take]], missed_at[idx[take]] = _trusted_next(hops, ids, hop, np.full(len(ids), fwd))
    conns["lost_at"] = pd.Series(lost_at, index=conns.index, dtype=object)
    conns["lost_missed_at"] = pd.Series(missed_at, index=conns.index, dtype=object)
    conns["lost_to"] = pd.Series(lost_to, index=conns.index, dtype=object)
    ls = rec.losses
    never = ls[~ls["delivered"].to_numpy().astype(bool)]["conn"].to_numpy() + 1 if len(ls) else np.array([], int)
    conns["undelivered"] = np.isin(conns.index.to_numpy(), never)


class _Judge:
    """Assigns verdict codes and evidence in priority order: a connection keeps the first that applies."""

    def __init__(self, ev: dict[str, np.ndarray]) -> None:
        self.ev = ev
        self.free = np.ones(len(ev["verdict_code"]), dtype=bool)

    def set(self, mask: np.ndarray, code: str, **fields: np.ndarray | str | int) -> None:
        m = mask & self.free
        self.ev["verdict_code"][m] = code
        for k, v in fields.items():
            self.ev[k][m] = v[m] if isinstance(v, np.ndarray) else v
        self.free &= ~m


def _judge(conns: pd.DataFrame, hops: pd.DataFrame, pr: pd.DataFrame, ev: dict[str, np.ndarray]) -> None:
    status = conns["status"].to_numpy(dtype=object)
    any_bwd = conns.index.isin(hops.loc[hops["bwd_packets"].to_numpy() > 0, "conn_id"].unique())
    healthy = np.isin(status, ["established", "closed"]) | (np.isin(status, ["udp", "icmp"]) & any_bwd)
    j = _Judge(ev)
    todo = pr["length"].to_numpy() > 0
    fwd_max, next_pos, bwd_min = pr["fwd_max"].to_numpy(), pr["next_pos"].to_numpy(), pr["bwd_min"].to_numpy()
    j.set(~todo & ~healthy, "unknown-path", ev_from=conns["last_seen_point"].to_numpy(dtype=object))
    j.set(todo & (fwd_max < 0), "off-path")
    stopped = todo & (fwd_max >= 0) & (next_pos >= 0)
    j.set(stopped, "never-reached", ev_from=pr["fwd_max_point"].to_numpy(), ev_to=pr["next_pos_point"].to_numpy(),
          ev_dir="forward", ev_packets=_packet_text(conns, hops, pr["fwd_max_point"].to_numpy(), stopped))
    lost_fwd, lost_bwd = conns["lost_fwd"].to_numpy(), conns["lost_bwd"].to_numpy()
    lost = (lost_fwd + lost_bwd) > 0
    way = np.where(lost_fwd > 0, "forward", "reply")
    count = np.where(lost_fwd > 0, lost_fwd, lost_bwd)
    nbytes = np.where(lost_fwd > 0, conns["lost_bytes_fwd"].to_numpy(), conns["lost_bytes_bwd"].to_numpy())
    loss_ev = {"ev_from": conns["lost_at"].to_numpy(dtype=object), "ev_to": conns["lost_to"].to_numpy(dtype=object),
               "ev_dir": way, "ev_count": count, "ev_bytes": nbytes,
               "ev_missed_at": conns["lost_missed_at"].to_numpy(dtype=object)}
    j.set(lost & (~healthy | conns["undelivered"].to_numpy()), "never-reached", **loss_ev)
    rest = todo & (fwd_max >= 0)
    reply_ok = healthy & ((pr["prev_pos"].to_numpy() < 0) | ~any_bwd)
    at_end = pr["reply_at_end"].to_numpy()
    j.set(rest & ~reply_ok & ~at_end, "no-reply", ev_from=pr["fwd_max_point"].to_numpy())
    j.set(rest & ~reply_ok & (bwd_min > 0) & (pr["prev_pos"].to_numpy() >= 0), "reply-lost",
          ev_from=pr["bwd_min_point"].to_numpy(), ev_to=pr["prev_pos_point"].to_numpy(), ev_dir="reply")
    near_drops = conns["lost_near_drops"].to_numpy(dtype=object)
    j.set(lost & pd.notna(near_drops), "incomplete-capture", **loss_ev, ev_capture_drops=near_drops)
    j.set(lost, "lost-between", **loss_ev)
    j.set(status == "reset", "reset-by", **_reset_evidence(conns, hops))
    tcp = conns["proto"].to_numpy() == 6
    j.set(tcp & ~conns["syn_seen"].to_numpy(dtype=bool), "incomplete-capture")
    j.set(~healthy, "unfinished")
    nodata = pr["no_data_at"].to_numpy(dtype=object)
    j.set(pd.notna(nodata), "incomplete-capture")
    ev["no_data_at"] = nodata


def _reset_evidence(conns: pd.DataFrame, hops: pd.DataFrame) -> dict[str, np.ndarray]:
    """Which side sent the first RST (client: forward) and the first point it was seen at."""
    out = {"ev_dir": np.full(len(conns), None, dtype=object), "ev_from": np.full(len(conns), None, dtype=object)}
    for tag, side, first in (("bwd", "server", False), ("fwd", "client", True)):
        r = hops[hops[f"rst_{tag}"].to_numpy().astype(bool)].sort_values(["conn_id", "hop"], ascending=[True, first])
        r = r.drop_duplicates("conn_id")
        idx = pd.Index(conns.index).get_indexer(r["conn_id"].to_numpy())
        out["ev_dir"][idx] = side
        out["ev_from"][idx] = r["point"].astype(str).to_numpy(dtype=object)
    return out


def _packet_text(conns: pd.DataFrame, hops: pd.DataFrame, at_point: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``src > dst[, VXLAN vni N a > b]`` of each connection's last hop row at ``at_point``."""
    out = np.full(len(conns), None, dtype=object)
    k = np.flatnonzero(mask)
    if not len(k):
        return out
    ci = pd.Index(conns.index).get_indexer(hops["conn_id"].to_numpy())
    idx = pd.MultiIndex.from_arrays([ci, hops["point"].astype(str).to_numpy(dtype=object)])
    lastrow = pd.Series(np.arange(len(hops)), index=idx)
    lastrow = lastrow[~idx.duplicated(keep="last")]
    rows = lastrow.reindex(pd.MultiIndex.from_arrays([k, at_point[k]])).to_numpy().astype(np.int64)
    h = hops.iloc[rows]
    enc = h["vni"].notna().to_numpy()
    vx = (", VXLAN vni " + h["vni"].astype(str) + " " + h["outer_src"].astype(str) + " > "
          + h["outer_dst"].astype(str)).to_numpy(dtype=object)
    out[k] = (h["src"].astype(str) + " > " + h["dst"].astype(str)).to_numpy(dtype=object) + np.where(enc, vx, "")
    return out


def _missing_at(conns: pd.DataFrame) -> np.ndarray:
    """The JSON ``missing_at``: where packets went missing for good (None for recovered losses)."""
    code = conns["verdict_code"].to_numpy(dtype=object)
    return np.where(np.isin(code, ["never-reached", "reply-lost"]), conns["ev_to"].to_numpy(dtype=object),
                    np.where(code == "no-reply", conns["ev_from"].to_numpy(dtype=object), None))
