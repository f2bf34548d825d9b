"""Detectors of the underlay/overlay: VXLAN loss, MTU black holes, VTEP source, encrypted overlays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int
from meshpkt.diagnose.context import Context
from meshpkt.diagnose.detectors._util import conn_lines, group, last_hop
from meshpkt.diagnose.finding import Finding
from meshpkt.diagnose.registry import Detector, register


def _host_point(ctx: Context, node: str | None) -> str | None:
    pts = sorted(p for p in ctx.captured_points() if ctx.node_of_point(p) == node and ctx.role(p) == "host")
    return next((p for p in pts if p.endswith(".eth0")), pts[0] if pts else None)


def _pair_counts(ctx: Context, proto_mask: np.ndarray, src: int, dst: int) -> dict[str, int]:
    """point -> packets from ``src`` to ``dst`` (outer addresses) among ``proto_mask`` rows."""
    pk = ctx.packets
    m = proto_mask & (pk["outer_src"].to_numpy() == src) & (pk["outer_dst"].to_numpy() == dst)
    return {str(k): int(v) for k, v in pk.loc[m, "point"].astype(str).value_counts().items()}


def _node_ip(ctx: Context, node: str) -> int | None:
    return next((ip for ip, n in ctx.topology.node_ips.items() if n == node), None)


@register
class VxlanDropped(Detector):
    kind = "vxlan-dropped"
    detects = ("VXLAN leaves node A and never reaches node B: UDP to the data-path port (4789) is blocked "
               "between them (host firewall, cloud security group, hypervisor, another product such as NSX "
               "owning the port).")
    evidence = ("Connections balanced to a task on B are last seen encapsulated (vni, A > B) at A's interface "
                "or on the underlay and never at B's; counts of VXLAN packets A > B at each capture point "
                "(left A, arrived at B: 0); the reverse direction, when it works.")
    check = ("On B and everything in between: firewall rules for udp/4789 from A (iptables -S INPUT, nft list "
             "ruleset, security groups, hypervisor port groups); that nothing else listens on 4789 (ss -lun); "
             "the swarm's --data-path-port.")

    def run(self, ctx: Context) -> list[Finding]:
        f = ctx.failed
        if f.empty:
            return []
        keys, rows = [], []
        for cid, last, miss, lost in zip(f["conn_id"], f["last_seen_point"], f["missing_at"], f["lost_fwd"],
                                         strict=True):
            hop = last_hop(ctx, int(cid), str(last))
            if hop is None or pd.isna(hop["vni"]) or not isinstance(miss, str) or int(lost or 0) > 0:
                continue
            keys.append((str(hop["outer_src"]), str(hop["outer_dst"]), int(hop["vni"])))
            rows.append(int(cid))
        sel = ctx.conns.loc[rows] if rows else ctx.conns.iloc[:0]
        return [self._finding(ctx, k[0], k[1], k[2], cids) for k, cids in group(sel, keys).items()]

    def _finding(self, ctx: Context, a_ip: str, b_ip: str, vni: int, cids: list[int]) -> Finding:
        a, b = ctx.node_of_ip(a_ip) or a_ip, ctx.node_of_ip(b_ip) or b_ip
        pk = ctx.packets
        vx = pk["vni"].to_numpy() >= 0
        port_s = pk.loc[vx & (pk["outer_src"].to_numpy() == ip4_int(a_ip)), "outer_dport"]
        port = int(port_s.mode().iloc[0]) if len(port_s) else 4789
        fwd = _pair_counts(ctx, vx, ip4_int(a_ip), ip4_int(b_ip))
        back = _pair_counts(ctx, vx, ip4_int(b_ip), ip4_int(a_ip))
        bpt = _host_point(ctx, b)
        ev = [f"{len(cids)} connection(s) were last seen encapsulated (vni {vni}, {a_ip} > {b_ip} udp/{port}) and "
              f"never arrived at {b}", *conn_lines(ctx, cids),
              "VXLAN packets " + f"{a_ip} > {b_ip} per capture point: "
              + (", ".join(f"{p} {n}" for p, n in sorted(fwd.items())) or "none")
              + (f"; {bpt} 0" if bpt and bpt not in fwd else "")]
        ev.append(f"reverse direction {b_ip} > {a_ip}: " + (", ".join(f"{p} {n}" for p, n in sorted(back.items()))
                                                           or "no VXLAN seen"))
        pts = sorted(fwd) + ([bpt] if bpt and bpt not in fwd else [])
        return Finding(self.kind, self.severity,
                       f"VXLAN from {a} ({a_ip}) to {b} ({b_ip}) udp/{port} never arrives at {b}",
                       node=b, points=pts, addresses=[a_ip, b_ip, f"udp/{port}"], connections=cids, evidence=ev,
                       check=self.check)


def _mtus(ctx: Context, node: str | None) -> list[str]:
    """``node/namespace iface mtu N`` from the dumps, else from the lab status."""
    out: list[str] = []
    if ctx.model is not None:
        n = ctx.model.node(node) if node else None
        for ns in (n.namespaces.values() if n else []):
            for lk in ns.links:
                if lk.mtu and (ns.role.value == "host" and lk.name.startswith(("eth", "en", "bond"))
                               or ns.role.value == "overlay" and lk.vxlan is not None):
                    out.append(f"{node}/{ns.name} {lk.name} mtu {lk.mtu}")
    elif ctx.status:
        for nd in ctx.status.get("nodes", []):
            if nd.get("name") != node:
                continue
            for ns in nd.get("namespaces", []):
                if ns.get("role") in ("host", "overlay"):
                    out += [f"{node}/{ns.get('name')} {i.get('name')} mtu {i.get('mtu')}"
                            for i in ns.get("interfaces", []) if i.get("mtu")
                            and str(i.get("name")).startswith(("eth", "vxlan"))]
    return out


@register
class MtuBlackhole(Detector):
    kind = "mtu-blackhole"
    detects = ("The handshake goes through but full-size segments vanish at one hop: a link on the path has a "
               "smaller MTU than the overlay assumes (VXLAN adds 50 bytes) and the ICMP 'fragmentation "
               "needed' does not come back or is ignored.")
    evidence = ("Packets of the connection (the large ones) reach point X and never arrive at the next point Y "
                "while its small packets do (lost_fwd/lost_bwd, lost_at); the largest frame that got past and the "
                "smallest that did not; the MTUs of the interfaces involved (dumps or lab status).")
    check = ("ip link show on every host interface of the path (and the hypervisor / VPN in between); the "
             "overlay's MTU (docker network create --opt com.docker.network.driver.mtu=...) must be the "
             "smallest underlay MTU minus 50.")

    def run(self, ctx: Context) -> list[Finding]:
        f = ctx.failed
        if f.empty:
            return []
        lost = (f["lost_fwd"].fillna(0).astype(int) + f["lost_bwd"].fillna(0).astype(int)) > 0
        sel = f[lost.to_numpy() & f["lost_at"].notna().to_numpy() & f["missing_at"].notna().to_numpy()]
        return [self._finding(ctx, at, miss, cids)
                for (at, miss), cids in group(sel, zip(sel["lost_at"], sel["missing_at"], strict=True)).items()]

    def _finding(self, ctx: Context, at: str, miss: str, cids: list[int]) -> Finding:
        pk = ctx.packets
        mine = pk["conn_id"].isin(cids).to_numpy()
        big_at = pk.loc[mine & (pk["point"] == at).to_numpy(), "wirelen"]
        got = pk.loc[mine & (pk["point"] == miss).to_numpy(), "wirelen"]
        lost = int(ctx.conns.loc[cids, "lost_fwd"].sum() + ctx.conns.loc[cids, "lost_bwd"].sum())
        ev = [f"{lost} packet(s) of {len(cids)} connection(s) reached {at} and never arrived at {miss}, while "
              "their smaller packets did", *conn_lines(ctx, cids),
              f"largest frame at {at}: {int(big_at.max()) if len(big_at) else 0} bytes; largest that arrived at "
              f"{miss}: {int(got.max()) if len(got) else 0} bytes"]
        node = ctx.node_of_point(miss)
        mt = _mtus(ctx, node) + _mtus(ctx, ctx.node_of_point(at))
        if mt:
            ev.append("MTUs: " + "; ".join(dict.fromkeys(mt)))
        return Finding(self.kind, self.severity,
                       f"MTU black hole between {at} and {miss}: full-size packets vanish"
                       + (f" (largest that passed: {int(got.max())} bytes)" if len(got) else ""),
                       node=node, points=[at, miss], addresses=[], connections=cids, evidence=ev, check=self.check)
