"""Detectors of the underlay/overlay: VXLAN loss, MTU black holes, VTEP source, encrypted overlays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int
from meshpkt.diagnose.context import Context
from meshpkt.diagnose.detectors._util import conn_lines, group
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
        hop = ctx.last_seen_hop.reindex(f.index)
        enc = hop["vni"].notna().to_numpy() & f["missing_at"].notna().to_numpy()
        enc &= f["lost_fwd"].fillna(0).astype(int).to_numpy() == 0
        enc &= np.isin(ctx.roles(f["missing_at"]), ("host", "underlay"))  # else it arrived: dropped inside
        sel, hop = f[enc], hop[enc]
        if sel.empty:
            return []
        # the VXLAN never reached B's interface
        b_nodes = pd.Series(hop["outer_dst"].astype(str).unique()).map(lambda ip: ctx.node_of_ip(ip))
        b_of = dict(zip(hop["outer_dst"].astype(str).unique(), b_nodes, strict=True))
        away = ctx.nodes(sel["last_seen_point"].astype(str)) != hop["outer_dst"].astype(str).map(b_of).to_numpy()
        sel, hop = sel[away], hop[away]
        keys = list(zip(hop["outer_src"].astype(str), hop["outer_dst"].astype(str), hop["vni"].astype(int),
                        strict=True))
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


_KEY = ["conn_id", "ip_id", "tcp_seq", "tcp_flags", "payload_len"]


def _too_big(ctx: Context, at: str, miss: str, cids: list[int]) -> bool:
    """The packets lost between ``at`` and ``miss`` are all larger than every packet that got through."""
    pk = ctx.packets
    mine = pk[pk["conn_id"].isin(cids).fillna(False).to_numpy(dtype=bool)]
    here = mine[(mine["point"] == at).to_numpy()]
    there = mine[(mine["point"] == miss).to_numpy()]
    passed = here.set_index(_KEY).index.isin(there.set_index(_KEY).index)
    lost = here.loc[~passed, "payload_len"]
    got = there["payload_len"]
    return bool(len(lost)) and int(lost.min()) > (int(got.max()) if len(got) else 0)


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
    elif ctx.mesh is not None:
        nd = ctx.mesh.node(node) if node else None
        for mns in nd.namespaces if nd is not None else ():
            if mns.role.value in ("host", "overlay"):
                out += [f"{node}/{mns.short} {i.name} mtu {i.mtu}" for i in mns.interfaces
                        if i.mtu and i.name.startswith(("eth", "vxlan"))]
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
        groups = group(sel, zip(sel["lost_at"], sel["missing_at"], strict=True))
        return [self._finding(ctx, at, miss, cids) for (at, miss), cids in groups.items()
                if _too_big(ctx, at, miss, cids)]

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


def _expected_vteps(ctx: Context) -> dict[tuple[str, int], str]:
    """(receiving node, inner source MAC as int) -> the VTEP address its fdb sends that MAC to."""
    out: dict[tuple[str, int], str] = {}
    if ctx.model is None:
        return out
    for o in ctx.model.overlays():
        for e in o.peers:
            if e.dst is not None:
                out[(o.node, int.from_bytes(e.mac, "big"))] = str(e.dst)
    return out


def _vxlan_sources(ctx: Context) -> pd.DataFrame:
    """Distinct (outer src, outer dst, inner source MAC, inner source IP, vni) of VXLAN seen at host points."""
    pk = ctx.packets
    vx = pk[pk["vni"].to_numpy() >= 0]
    vx = vx[ctx.roles(vx["point"]) == "host"]
    cols = ["outer_src", "outer_dst", "inner_eth_src", "inner_src", "vni"]
    return vx.groupby(cols, observed=True).size().reset_index(name="packets")


@register
class WrongVtepSource(Detector):
    kind = "wrong-vtep-source"
    severity = "warning"
    detects = ("A node sends VXLAN from another address than the one its peers know it by (several interfaces, "
               "a secondary address, --advertise-addr / --data-path-addr not matching the route's source): "
               "peers' fdb entries point at the advertised address, firewalls allowing only the peers' "
               "addresses drop it, and replies may take another path.")
    evidence = ("VXLAN frames whose inner source MAC the receiving node's fdb maps to address D arrive with an "
                "outer source S != D (dumps); without dumps, an outer source that is no node's underlay address "
                "while the inner source belongs to a known node.")
    check = ("ip route get <peer> on the sending node (the src it picks); docker swarm join/init "
             "--advertise-addr and --data-path-addr; docker node inspect <node> --format '{{.Status.Addr}}'.")

    def run(self, ctx: Context) -> list[Finding]:
        src = _vxlan_sources(ctx)
        if src.empty:
            return []
        want = _expected_vteps(ctx)
        hits: dict[tuple[str, str], list[str]] = {}
        for row in src.itertuples(index=False):
            s_ip, d_ip = _ip(row.outer_src), _ip(row.outer_dst)
            recv = ctx.node_of_ip(d_ip)
            expected = want.get((recv or "", int(row.inner_eth_src))) if want else self._from_topology(ctx, row)
            if expected is None or expected == s_ip:
                continue
            hits.setdefault((s_ip, expected), []).append(
                f"{int(row.packets)} VXLAN packet(s) vni {int(row.vni)} from inner {_mac(int(row.inner_eth_src))} "
                f"({_ip(row.inner_src)}) arrive at {recv or d_ip} from {s_ip}; "
                + (f"{recv}'s fdb sends that MAC to {expected}" if want else f"that endpoint's node is {expected}"))
        return [self._finding(ctx, s, e, lines) for (s, e), lines in hits.items()]

    def _from_topology(self, ctx: Context, row: Any) -> str | None:
        s_ip = _ip(row.outer_src)
        if ctx.node_of_ip(s_ip) is not None or not ctx.topology.node_ips:
            return None
        node = ctx.node_of_ip(_ip(row.inner_src))
        ip = _node_ip(ctx, node) if node else None
        return _ip(ip) if ip is not None else None

    def _finding(self, ctx: Context, s_ip: str, expected: str, lines: list[str]) -> Finding:
        node = ctx.node_of_ip(expected)
        pk = ctx.packets
        vx = pk["vni"].to_numpy() >= 0
        cids = pk.loc[vx & (pk["outer_src"].to_numpy() == ip4_int(s_ip)), "conn_id"].dropna().astype(int).unique()
        failed = sorted(set(int(c) for c in cids) & {int(c) for c in ctx.failed.index})
        f = Finding(self.kind, "error" if failed else self.severity,
                    f"{node or expected} sends VXLAN from {s_ip}, but its peers know it as {expected}", node=node,
                    points=[], addresses=[s_ip, expected], connections=failed, evidence=lines[:4],
                    check=self.check)
        if failed:
            f.evidence.append(f"{len(failed)} failed connection(s) crossed it: the receiving kernel drops VXLAN "
                              "whose inner source MAC has a static fdb entry for another VTEP")
        return f


def _ip(v: object) -> str:
    from meshpkt.diagnose.context import ip_text

    return ip_text(int(v))  # type: ignore[call-overload]


def _mac(v: int) -> str:
    return ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def _esp_pairs(ctx: Context) -> pd.DataFrame:
    """ESP packets per (outer src, outer dst, point)."""
    pk = ctx.packets
    esp = pk[pk["outer_proto"].to_numpy() == 50]
    return esp.groupby(["outer_src", "outer_dst", esp["point"].astype(str)], observed=True).size().reset_index(
        name="packets")


def _esp_state(ctx: Context) -> list[tuple[str, str, str | None, str | None, int, int]]:
    """(A ip, B ip, A's host point, B's host point, ESP sent at A, ESP received at B) per direction seen."""
    pairs = _esp_pairs(ctx)
    out = []
    for (s, d), grp in pairs.groupby(["outer_src", "outer_dst"]):
        a, b = ctx.node_of_ip(_ip(s)), ctx.node_of_ip(_ip(d))
        apt, bpt = _host_point(ctx, a), _host_point(ctx, b)
        per = dict(zip(grp["point"], grp["packets"], strict=True))
        out.append((_ip(s), _ip(d), apt, bpt, int(per.get(apt, 0)), int(per.get(bpt, 0))))
    return out


@register
class EspBlocked(Detector):
    kind = "esp-blocked"
    reproduced = "crafted"
    detects = ("Encrypted overlay: ESP (IP protocol 50) leaves node A and never reaches node B: a firewall or "
               "cloud security group allows udp/4789 but not protocol 50.")
    evidence = "ESP packets A > B counted at A's interface (sent) and at B's interface (0 received)."
    check = ("Allow IP protocol 50 between the nodes (iptables -A INPUT -p esp -j ACCEPT; security groups: "
             "'ESP (50)'); ip xfrm state / ip xfrm policy on both nodes.")

    def run(self, ctx: Context) -> list[Finding]:
        out = []
        for a_ip, b_ip, apt, bpt, sent, got in _esp_state(ctx):
            if sent and bpt is not None and not got:
                a, b = ctx.node_of_ip(a_ip) or a_ip, ctx.node_of_ip(b_ip) or b_ip
                out.append(Finding(self.kind, self.severity,
                                   f"ESP from {a} ({a_ip}) to {b} ({b_ip}) never arrives: IP protocol 50 blocked",
                                   node=b, points=[str(apt), bpt], addresses=[a_ip, b_ip, "ip proto 50"],
                                   evidence=[f"{sent} ESP packet(s) {a_ip} > {b_ip} left {apt}; {got} arrived at "
                                             f"{bpt}"], check=self.check))
        return out


@register
class EspOneWay(Detector):
    kind = "esp-one-way"
    reproduced = "crafted"
    detects = ("Encrypted overlay: ESP flows from A to B but never from B to A: B has no outbound SA/policy "
               "for A (key rotation or gossip lost), so B's replies are not sent (or sent in clear and dropped).")
    evidence = "ESP A > B arrives at B; no ESP B > A anywhere; cleartext VXLAN B > A, if any, is counted."
    check = ("ip xfrm state and ip xfrm policy on B (an 'out' policy and SA towards A for the overlay's "
             "VXLAN); docker network inspect on both nodes; dockerd logs about key rotation.")

    def run(self, ctx: Context) -> list[Finding]:
        st = _esp_state(ctx)
        seen = {(a, b) for a, b, *_ in st}
        out = []
        pk = ctx.packets
        for a_ip, b_ip, apt, bpt, _sent, got in st:
            if not got or (b_ip, a_ip) in seen:
                continue
            a, b = ctx.node_of_ip(a_ip) or a_ip, ctx.node_of_ip(b_ip) or b_ip
            clear = int(((pk["vni"].to_numpy() >= 0) & (pk["outer_src"].to_numpy() == ip4_int(b_ip))
                         & (pk["outer_dst"].to_numpy() == ip4_int(a_ip))).sum())
            out.append(Finding(self.kind, self.severity,
                               f"ESP only one way: {a} > {b} encrypted, nothing encrypted from {b} back to {a}",
                               node=b, points=[p for p in (apt, bpt) if p], addresses=[a_ip, b_ip],
                               evidence=[f"{got} ESP packet(s) {a_ip} > {b_ip} arrived at {bpt}",
                                         f"0 ESP packets {b_ip} > {a_ip} at any point; {clear} cleartext VXLAN "
                                         f"packet(s) {b_ip} > {a_ip}"], check=self.check))
        return out


@register
class EspLeak(Detector):
    kind = "esp-leak"
    reproduced = "crafted"
    detects = ("Encrypted overlay: VXLAN of an encrypted network travels in clear (the xfrm policy does not "
               "match it): a confidentiality leak, and Docker's u32 rules drop such frames on the receiver.")
    evidence = ("Cleartext VXLAN with a VNI of an encrypted network (--encrypted-vni, dumps' docker network "
                "options, lab status), or between two nodes that otherwise talk ESP.")
    check = ("ip xfrm policy on the sender (a policy for udp/4789 towards the peer); iptables -S INPUT for "
             "Docker's '-m u32' drop rule; docker network inspect (encrypted option).")

    def run(self, ctx: Context) -> list[Finding]:
        pk = ctx.packets
        vx = pk[pk["vni"].to_numpy() >= 0]
        if vx.empty:
            return []
        esp_pairs = {(a, b) for a, b, *_ in _esp_state(ctx)}
        esp_nodes = {x for p in esp_pairs for x in p}
        out = []
        for (s, d, vni), n in vx.groupby(["outer_src", "outer_dst", "vni"]).size().items():
            s_ip, d_ip = _ip(s), _ip(d)
            known = int(vni) in ctx.encrypted_vnis
            if not known and not (s_ip in esp_nodes and d_ip in esp_nodes):
                continue
            why = (f"VNI {int(vni)} is an encrypted network" if known
                   else f"{s_ip} and {d_ip} exchange ESP, so their overlays are encrypted")
            rows = vx[(vx["outer_src"].to_numpy() == s) & (vx["outer_dst"].to_numpy() == d)
                      & (vx["vni"].to_numpy() == vni)]
            cids = sorted(int(c) for c in rows["conn_id"].dropna().unique()) if "conn_id" in rows else []
            pts = sorted(set(rows["point"].astype(str)))
            out.append(Finding(self.kind, "error" if known else "warning",
                               f"VXLAN vni {int(vni)} from {ctx.node_of_ip(s_ip) or s_ip} to "
                               f"{ctx.node_of_ip(d_ip) or d_ip} travels unencrypted",
                               node=ctx.node_of_ip(s_ip), points=pts, addresses=[s_ip, d_ip], connections=cids,
                               evidence=[f"{int(n)} cleartext VXLAN frame(s) vni {int(vni)} {s_ip} > {d_ip} seen at "
                                         f"{len(pts)} point(s): {', '.join(pts)}", why], check=self.check))
        return out
