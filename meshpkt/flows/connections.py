"""Connections, hops and translations from a :class:`Reconstruction` (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.flows.addr import ip4_int
from meshpkt.flows.reconstruct import Reconstruction
from meshpkt.flows.topology import GWBRIDGE_NET, Topology, _in_net


def ip4_strings(values: np.ndarray | pd.Series) -> np.ndarray:
    """Dotted quads for an integer array ("" for 0), vectorised."""
    a = np.asarray(values, dtype=np.int64) & 0xFFFFFFFF
    parts = [pd.Series((a >> s) & 255).astype(str) for s in (24, 16, 8, 0)]
    out = (parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[3]).to_numpy(dtype=object)
    out[a == 0] = ""
    return out


def endpoint_strings(ip: np.ndarray | pd.Series, port: np.ndarray | pd.Series) -> np.ndarray:
    """``"ip:port"`` (``"ip"`` without a port), vectorised."""
    ips = ip4_strings(ip)
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
        "outer_src": np.where(lf["vni"].to_numpy() >= 0, ip4_strings(lf["outer_src"]), np.array(None)),
        "outer_dst": np.where(lf["vni"].to_numpy() >= 0, ip4_strings(lf["outer_dst"]), np.array(None)),
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

    entry_nodes, backends, bnodes, btasks, last_seen, missing, verdicts = [], [], [], [], [], [], []
    node_ips_set = set(topo.node_ips) | set(topo.sbox_ips) | set(topo.lb_ips)
    grouped = {cid: grp for cid, grp in hops.groupby("conn_id", sort=False)}
    for cid in conns.index:
        grp = grouped[cid]
        first = grp.iloc[0]
        entry_ip = int(first["dst_ip"])
        node = topo.node_of_ip(entry_ip)
        if node is None:
            non_client = grp[grp["role"] != "client"]
            node = str(non_client.iloc[0]["node"]) if len(non_client) else None
        entry_nodes.append(node)
        last = grp.iloc[-1]
        b_ip = int(last["dst_ip"])
        backend = None
        before_lb = b_ip in node_ips_set or (topo.inferred and _in_net(b_ip, GWBRIDGE_NET))
        if (b_ip != entry_ip or int(last["dport"]) != int(first["dport"])) and not before_lb:
            backend = str(last["dst"])
        if backend is None and b_ip in topo.tasks:
            backend = str(last["dst"])
        backends.append(backend)
        task = topo.tasks.get(b_ip) if backend else None
        task_point = str(last["point"]) if last["role"] == "task" else None
        if task_point is None and task is not None:
            task_point = _task_point(topo, task.node, task.name)
        bnode = task.node if task else (str(last["node"]) if last["role"] == "task" else None)
        if bnode is None and backend is not None:
            enc_hops = grp[grp["vni"].notna() & (grp["fwd_packets"] > 0)]
            if len(enc_hops):
                bnode = topo.node_of_ip(ip4_int(str(enc_hops.iloc[-1]["outer_dst"])))
        bnodes.append(bnode)
        btasks.append(task.name if task else (topo.point(task_point).namespace if task_point else None))
        fwd_seen = grp[grp["fwd_packets"] > 0]
        last_seen.append(str(fwd_seen.iloc[-1]["point"]) if len(fwd_seen) else str(first["point"]))
        m, why = _missing(grp, topo, node, bnode, task_point, conns.at[cid, "status"])
        missing.append(m)
        verdicts.append(why)
    for name, values in (("entry_node", entry_nodes), ("backend", backends), ("backend_node", bnodes),
                         ("backend_task", btasks), ("last_seen_point", last_seen), ("missing_at", missing),
                         ("verdict", verdicts)):
        conns[name] = pd.Series(values, index=conns.index, dtype=object)
    conns.index.name = "conn_id"
    return conns.reset_index()


def _task_point(topo: Topology, node: str, task: str) -> str | None:
    cands = [p for p in topo.points.values() if p.role == "task" and p.node == node and p.namespace == task]
    cands.sort(key=lambda p: (p.network != "ingress", p.iface))
    return cands[0].point if cands else None


def _missing(grp: pd.DataFrame, topo: Topology, entry_node: str | None, backend_node: str | None,
             task_point: str | None, status: str) -> tuple[str | None, str]:
    seen_fwd = {(str(r.point), not pd.isna(r.vni)) for r in grp.itertuples() if r.fwd_packets > 0}
    seen_bwd = {(str(r.point), not pd.isna(r.vni)) for r in grp.itertuples() if r.bwd_packets > 0}
    template = expected_path(topo, entry_node, backend_node, task_point)
    template = [t for t in template if t[0] in topo.points]
    healthy = status in ("established", "closed") or (status in ("udp", "icmp") and bool(seen_bwd))
    if not template:
        if healthy:
            return None, "ok"
        last = grp[grp["fwd_packets"] > 0]
        where = str(last.iloc[-1]["point"]) if len(last) else str(grp.iloc[0]["point"])
        return None, f"{status}: last seen at {where}; no topology to name the next hop"
    idx = [k for k, t in enumerate(template) if t in seen_fwd]
    if not idx:
        return None, "not on the expected path"
    deepest = max(idx)
    if deepest + 1 < len(template):
        nxt = template[deepest + 1]
        here = template[deepest]
        row = grp[grp["point"] == here[0]].iloc[-1]
        enc_txt = f", VXLAN vni {row['vni']} {row['outer_src']} > {row['outer_dst']}" if here[1] else ""
        return nxt[0], (f"{status}: forward packets ({row['src']} > {row['dst']}{enc_txt}) reached "
                        f"{here[0]} but never arrived at {nxt[0]}")
    if healthy and (template[0] in seen_bwd or not seen_bwd):
        return None, "ok"
    # forward made it all the way: follow the replies back
    back = list(reversed(template))
    idx_b = [k for k, t in enumerate(back) if t in seen_bwd]
    if not idx_b:
        return back[0][0], f"{status}: requests reached {back[0][0]} but no reply was seen there"
    deepest_b = max(idx_b)
    if deepest_b + 1 < len(back):
        return back[deepest_b + 1][0], (f"{status}: replies reached {back[deepest_b][0]} but never arrived at "
                                        f"{back[deepest_b + 1][0]}")
    return None, "ok" if healthy else status
