"""Detectors that look at individual packets: checksums, idle gaps, resets from a middle hop."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.diagnose.context import Context, ip_text
from meshpkt.diagnose.detectors._util import conn_lines
from meshpkt.diagnose.finding import Finding
from meshpkt.diagnose.frames import checksums
from meshpkt.diagnose.registry import Detector, register

TCP_RST = 0x04
_KEY = ["conn_id", "ip_id", "tcp_seq", "tcp_flags", "payload_len"]


def _conn_packets(ctx: Context, cids: list[int] | pd.Index) -> pd.DataFrame:
    pk = ctx.packets
    if "conn_id" not in pk or not len(cids):
        return pk.iloc[:0]
    sel = pk[pk["conn_id"].isin(list(cids)).fillna(False).to_numpy(dtype=bool)]
    return sel.sort_values("ts_corr_ns", kind="stable")


@register
class ChecksumOffload(Detector):
    kind = "checksum-offload"
    reproduced = "crafted"
    detects = ("Packets leave the sender with a valid (or offload-pending) TCP/UDP checksum and arrive at the "
               "receiver with a wrong one, so the receiver drops them: a NIC/hypervisor TX checksum offload bug "
               "(vmxnet3/ESXi with VXLAN is the classic).")
    evidence = ("For packets of failed connections: the checksum of the innermost TCP/UDP header computed from "
                "the captured bytes at every point; 'ok' or 'partial' (pseudo-header only: offload pending, "
                "normal where the packet was sent) at the sender's capture and 'bad' at a later point.")
    check = ("On the sending node: ethtool -k <nic> (tx-checksumming, tx-udp_tnl-segmentation); as a workaround "
             "ethtool -K <nic> tx off (or tx-checksum-ip-generic off); update the NIC driver / hypervisor tools.")

    def run(self, ctx: Context) -> list[Finding]:
        pk = _conn_packets(ctx, ctx.failed.index)
        innermost = np.where(pk["vni"].to_numpy() >= 0, pk["inner_proto"].to_numpy(), pk["outer_proto"].to_numpy())
        pk = pk[np.isin(innermost, (6, 17))]
        if pk.empty:
            return []
        st = checksums(pk, ctx.frames)
        pk = pk.assign(cs=st["state"].to_numpy(), cs_field=st["field"].to_numpy())
        bad = pk[pk["cs"].to_numpy() == "bad"]
        if bad.empty:
            return []
        good = pk[np.isin(pk["cs"].to_numpy(), ("ok", "partial"))]
        first_bad = bad.groupby(_KEY, dropna=False).head(1)
        both = first_bad.merge(good[[*_KEY, "point", "ts_corr_ns", "cs"]], on=_KEY, suffixes=("", "_ok"))
        both = both[both["ts_corr_ns_ok"].to_numpy() <= both["ts_corr_ns"].to_numpy()]
        if both.empty:
            return []
        both = both.sort_values("ts_corr_ns_ok", kind="stable").groupby(_KEY, dropna=False).tail(1)
        # broken on the wire, not by the node that captured it bad (then the sender sent it bad itself)
        wire = both["point"].astype(str).map(ctx.node_of_point) != both["point_ok"].astype(str).map(ctx.node_of_point)
        both = both[wire.to_numpy()]
        out = []
        for (src_pt, bad_pt), grp in both.groupby(["point_ok", "point"], observed=True):
            out.append(self._finding(ctx, str(src_pt), str(bad_pt), grp))
        return out

    def _finding(self, ctx: Context, src_pt: str, bad_pt: str, grp: pd.DataFrame) -> Finding:
        cids = sorted(int(c) for c in grp["conn_id"].unique())
        ex = grp.iloc[0]
        sender = ctx.node_of_point(src_pt)
        receiver = (ctx.node_of_ip(ip_text(int(ex["outer_dst"]))) if int(ex["vni"]) >= 0 else None) \
            or ctx.node_of_point(bad_pt)
        ev = [f"{len(grp)} packet(s) of {len(cids)} failed connection(s) had a {ex['cs_ok']} checksum at {src_pt} "
              f"and a wrong one at {bad_pt} (e.g. field {int(ex['cs_field']):#06x})", *conn_lines(ctx, cids),
              f"{receiver} drops segments with a bad checksum: the connection was last seen at "
              f"{ctx.conns.loc[cids[0], 'last_seen_point']}"]
        return Finding(self.kind, self.severity,
                       f"checksums broken between {sender} and {receiver}: {sender}'s NIC TX checksum offload",
                       node=sender, points=[src_pt, bad_pt], addresses=[], connections=cids, evidence=ev,
                       check=self.check)


def idle_gaps(ctx: Context) -> pd.DataFrame:
    """Per connection: the longest gap between two consecutive packets (any point), and when it ended."""
    pk = ctx.packets
    if "conn_id" not in pk:
        return pd.DataFrame(columns=["conn_id", "gap_ns", "end_ns"])
    sel = pk.loc[pk["conn_id"].notna().to_numpy(dtype=bool), ["conn_id", "ts_corr_ns"]].sort_values(
        ["conn_id", "ts_corr_ns"], kind="stable")
    cid = sel["conn_id"].to_numpy(dtype=np.int64)
    ts = sel["ts_corr_ns"].to_numpy(dtype=np.int64)
    gap = np.diff(ts, prepend=ts[:1])
    gap[np.r_[True, cid[1:] != cid[:-1]][: len(gap)]] = 0
    df = pd.DataFrame({"conn_id": cid, "gap_ns": gap, "end_ns": ts})
    return df.loc[df.groupby("conn_id")["gap_ns"].idxmax()].reset_index(drop=True)


@register
class IpvsIdleTimeout(Detector):
    kind = "ipvs-idle-timeout"
    reproduced = "crafted"
    detects = ("A long-lived connection stays idle longer than the IPVS TCP timeout (900 s by default, far "
               "shorter than the client's keepalive); IPVS forgets it, and the next segment is not forwarded "
               "to the backend (dropped, or answered with RST by the sandbox).")
    evidence = ("The connection's longest silence exceeds the LB timeout; the first segment after it reaches "
                "the load balancer's input side and never its output side; a RST or retransmissions follow.")
    check = ("ipvsadm -l --timeout in the ingress_sbox / lb_ namespaces; lower the client's TCP keepalive "
             "(net.ipv4.tcp_keepalive_time < 900 in the client or the task) or raise the IPVS timeout "
             "(ipvsadm --set 7200 120 300, reapplied after Docker recreates the sandbox).")

    def run(self, ctx: Context) -> list[Finding]:
        g = idle_gaps(ctx)
        limit = int(ctx.lb_timeout_s * 1e9)
        g = g[g["gap_ns"].to_numpy() > limit]
        c = ctx.conns
        g = g[g["conn_id"].isin(c.index[c["status"].isin(["reset"]) | c["missing_at"].notna()
                                        | c["lost_at"].notna()])]
        out = []
        for node, grp in g.groupby(g["conn_id"].map(c["entry_node"]).astype(str)):
            cids = [int(x) for x in grp["conn_id"]]
            ev = [f"{len(cids)} connection(s) idle for {grp['gap_ns'].max() / 1e9:.0f} s (LB timeout "
                  f"{ctx.lb_timeout_s:g} s) and broken right after", *conn_lines(ctx, cids)]
            after = _after_gap(ctx, cids[0], int(grp["end_ns"].iloc[0]))
            if after:
                ev.append(after)
            out.append(Finding(self.kind, self.severity,
                               f"connections through {node} outlived the load balancer's idle timeout "
                               f"({ctx.lb_timeout_s:g} s)", node=node,
                               points=sorted({str(c.loc[x, "last_seen_point"]) for x in cids}),
                               addresses=[str(c.loc[cids[0], "entry"])], connections=cids, evidence=ev,
                               check=self.check))
        return out


def _after_gap(ctx: Context, cid: int, end_ns: int) -> str:
    pk = _conn_packets(ctx, [cid])
    later = pk[pk["ts_corr_ns"].to_numpy() >= end_ns]
    if later.empty:
        return ""
    first = later.iloc[0]
    same = later[(later["tcp_seq"] == first["tcp_seq"]).to_numpy() & (later["tcp_flags"] == first["tcp_flags"]).to_numpy()
                 & (later["ip_id"] == first["ip_id"]).to_numpy()]
    pts = list(dict.fromkeys(same["point"].astype(str)))
    rst = later[(later["tcp_flags"].to_numpy() & TCP_RST) > 0]
    text = f"after the silence, segment seq {int(first['tcp_seq'])} was seen at {', '.join(pts)} only"
    if len(rst):
        text += f"; RST seen first at {rst.iloc[0]['point']}"
    return text


@register
class ConntrackInvalidReset(Detector):
    kind = "conntrack-invalid-reset"
    reproduced = "lab"
    detects = ("A packet of an established connection is classified INVALID by conntrack (out of window, "
               "after a retransmission storm or a window-scaling mismatch) and therefore not NATed; the node "
               "(or sandbox) receives it un-translated, has no socket for it and answers RST, killing the "
               "client's connection.")
    evidence = ("A RST first appears at a middle hop (the entry host or the sandbox) of a connection that was "
                "established end to end and not idle; the forward packet just before it reached that hop and "
                "was not translated to the next hop.")
    check = ("iptables -I INPUT/FORWARD -m conntrack --ctstate INVALID -j DROP on the nodes (and in "
             "ingress_sbox), or sysctl net.netfilter.nf_conntrack_tcp_be_liberal=1; look for retransmissions "
             "and middleboxes rewriting sequence numbers.")

    def run(self, ctx: Context) -> list[Finding]:
        pk = ctx.packets
        if "conn_id" not in pk:
            return []
        rst = pk[((pk["tcp_flags"].to_numpy() & TCP_RST) > 0) & (pk["tcp_flags"].to_numpy() >= 0)
                 & pk["conn_id"].notna().to_numpy(dtype=bool)]
        if rst.empty:
            return []
        origin = rst.sort_values("ts_corr_ns", kind="stable").groupby("conn_id").head(1)
        origin = origin[np.isin(ctx.roles(origin["point"].astype(str)), ("host", "ingress_sbox", "lb"))]
        gaps = idle_gaps(ctx)
        long_idle = gaps.loc[gaps["gap_ns"].to_numpy() > ctx.lb_timeout_s * 1e9, "conn_id"]
        h = ctx.hops
        served = h.loc[(h["role"] == "task").to_numpy() & (h["bwd_packets"] > 0).to_numpy(), "conn_id"]
        cid = origin["conn_id"].astype(int)
        origin = origin[cid.isin(served).to_numpy() & ~cid.isin(long_idle).to_numpy()]
        out = []
        for point, grp in origin.groupby(origin["point"].astype(str)):
            items = [(int(c), str(point), self._trigger(ctx, int(c), str(point), int(t)) if k < 2 else "")
                     for k, (c, t) in enumerate(zip(grp["conn_id"], grp["ts_corr_ns"], strict=True))]
            out.append(self._finding(ctx, str(point), items))
        return out

    def _trigger(self, ctx: Context, cid: int, point: str, ts: int) -> str:
        pk = _conn_packets(ctx, [cid])
        before = pk[(pk["point"].astype(str) == point).to_numpy() & (pk["ts_corr_ns"].to_numpy() < ts)
                    & ((pk["tcp_flags"].to_numpy() & TCP_RST) == 0)]
        if before.empty:
            return ""
        trig = before.iloc[-1]
        seen = pk[(pk["tcp_seq"] == trig["tcp_seq"]).to_numpy() & (pk["ip_id"] == trig["ip_id"]).to_numpy()
                  & (pk["tcp_flags"] == trig["tcp_flags"]).to_numpy()]
        pts = list(dict.fromkeys(seen["point"].astype(str)))
        return (f"the segment just before it (seq {int(trig['tcp_seq'])}, flags {int(trig['tcp_flags']):#04x}) was "
                f"seen at {', '.join(pts)} and never translated past {point}")

    def _finding(self, ctx: Context, point: str, items: list[tuple[int, str, str]]) -> Finding:
        cids = [i[0] for i in items]
        node = ctx.node_of_point(point)
        c = ctx.conns.loc[cids[0]]
        ev = [f"{len(cids)} established connection(s) were reset by {point} itself (the RST never came from the "
              f"task)", *conn_lines(ctx, cids)]
        ev += [t for _, _, t in items[:2] if t]
        return Finding(self.kind, self.severity,
                       f"{node} answers un-NATed (conntrack INVALID) packets of established connections with RST",
                       node=node, points=[point], addresses=[str(c["client"]), str(c["entry"])], connections=cids,
                       evidence=ev, check=self.check)
