"""Detectors of the ingress path: host DNAT, ingress_sbox mark/IPVS/SNAT, backends, task REDIRECT."""

from __future__ import annotations

from ipaddress import IPv4Address

import numpy as np
import pandas as pd

from meshpkt.diagnose.context import Context, host_of, port_of
from meshpkt.diagnose.detectors._util import alive, conn_lines, group, last_hop
from meshpkt.diagnose.finding import Finding
from meshpkt.diagnose.registry import Detector, register
from meshpkt.flows.topology import GWBRIDGE_NET

SWARM_CONTROL_PORTS = frozenset({2377, 7946})
"""Docker's own node-to-node ports (raft, memberlist gossip): never a published service port."""


@register
class PublishedPortNotForwarded(Detector):
    kind = "published-port-not-forwarded"
    detects = ("SYNs reach a node's published port and are not DNATed to the ingress sandbox: the host's "
               "nat DOCKER-INGRESS rule (or the PREROUTING jump to it) is missing or was flushed.")
    evidence = ("The connection's last capture point is the entry node's host interface and the next expected "
                "point (ingress_sbox eth1) never sees it; the node answers itself (RST) or not at all; the "
                "dumps' host nat table has no DNAT for the port.")
    check = ("iptables -t nat -S DOCKER-INGRESS and -S PREROUTING on the node: the DNAT --dport P "
             "--to-destination 172.18.0.2:P rule and the jump; a firewall reload (firewalld, ufw) that "
             "flushed them; restart docker or re-publish the service.")

    def run(self, ctx: Context) -> list[Finding]:
        f = ctx.failed
        if f.empty:
            return []
        roles_last = ctx.roles(f["last_seen_point"])
        roles_miss = ctx.roles(f["missing_at"])
        published = set(ctx.topology.published) | ({p.port for p in ctx.model.published_ports()}
                                                    if ctx.model is not None else set())
        # without a capture inside the sandbox: a published port the node itself answered (or ignored)
        uncaptured = f["missing_at"].isna().to_numpy() & f["entry"].map(port_of).isin(published).to_numpy() \
            & f["status"].isin(["reset", "syn-unanswered"]).to_numpy()
        ports = f["entry"].map(port_of)
        service_port = ports.isin(published) if published else ~ports.isin(SWARM_CONTROL_PORTS)
        sel = f[(roles_last == "host") & ((roles_miss == "ingress_sbox") | uncaptured)
                & f["backend"].isna().to_numpy() & service_port.to_numpy()]
        out = []
        for (node, entry), cids in group(sel, zip(sel["entry_node"], sel["entry"], strict=True)).items():
            out.append(self._finding(ctx, node, entry, cids))
        return out

    def _finding(self, ctx: Context, node: str, entry: str, cids: list[int]) -> Finding:
        c = ctx.conns.loc[cids[0]]
        port = port_of(entry)
        nxt = c["missing_at"] if isinstance(c["missing_at"], str) else f"{node}'s ingress sandbox (not captured)"
        ev = [f"{len(cids)} connection(s) to {entry} reached {c['last_seen_point']} and never arrived at "
              f"{nxt}: not DNATed to the ingress sandbox", *conn_lines(ctx, cids)]
        resets = int((ctx.conns.loc[cids, "status"] == "reset").sum())
        if resets:
            ev.append(f"{resets} of them answered with RST by {host_of(entry)} itself (nothing listens on "
                      f"port {port} in the host)")
        if port in ctx.topology.published:
            ev.append(f"topology: port {port} is published (target {ctx.topology.published[port]})")
        if ctx.model is not None:
            pubs = [p for p in ctx.model.published_ports() if p.node == node]
            mine = [p for p in pubs if p.port == port]
            if mine:
                ev.append(f"dumps: {node}/host has {mine[0].rule.text!r}: check the nat PREROUTING jump to "
                          "DOCKER-INGRESS and its counters")
            else:
                ev.append(f"dumps: {node}/host nat has no DNAT for dport {port} (DNATs there: "
                          + (", ".join(str(p.port) for p in pubs) or "none") + ")")
        return Finding(self.kind, self.severity,
                       f"{node} does not forward its published port {port}: no DNAT to the ingress sandbox",
                       node=node, points=[str(p) for p in (c["last_seen_point"], c["missing_at"]) if isinstance(p, str)],
                       addresses=[entry], connections=cids, evidence=ev, check=self.check)


def _sbox_stuck(ctx: Context) -> tuple[list[int], list[int]]:
    """Failed connections stuck inside the LB namespace before any backend was chosen:
    (without an unanswered ARP, with one)."""
    f = ctx.failed
    if f.empty:
        return [], []
    lb = ("ingress_sbox", "lb")
    last_ok = np.isin(ctx.roles(f["last_seen_point"]), lb)
    miss_ok = np.isin(ctx.roles(f["missing_at"]), (*lb, "overlay"))
    sel = f[last_ok & miss_ok & f["backend"].isna().to_numpy()]
    with_arp = sel.index.isin(ctx.picked.index)
    return [int(c) for c in sel.index[~with_arp]], [int(c) for c in sel.index[with_arp]]


@register
class LbMarkMissing(Detector):
    kind = "lb-mark-missing"
    detects = ("DNATed traffic reaches the ingress sandbox but is not load balanced: the mangle MARK rule "
               "that gives the published port its firewall mark (the IPVS service key) is missing.")
    evidence = ("The connection reaches ingress_sbox eth1 (to 172.18.0.2:P) and never leaves through eth0; no "
                "backend was ARPed for; the sandbox answers RST (no local listener); the dumps' ingress_sbox "
                "mangle table has no MARK for the port.")
    check = ("ip netns exec ingress_sbox iptables -t mangle -S PREROUTING (MARK --set-mark for --dport P) "
             "and ipvsadm -Ln (an FWM service with that mark and backends).")

    def run(self, ctx: Context) -> list[Finding]:
        plain, _ = _sbox_stuck(ctx)
        rows = ctx.conns.loc[plain] if plain else ctx.conns.iloc[:0]
        out = []
        for (node, entry), cids in group(rows, zip(rows["entry_node"], rows["entry"], strict=True)).items():
            port = port_of(entry)
            ev = [f"{len(cids)} connection(s) to {entry} reached {rows.loc[cids[0], 'last_seen_point']} and "
                  f"never left the sandbox (nothing at {rows.loc[cids[0], 'missing_at']}); no backend was ARPed for",
                  *conn_lines(ctx, cids)]
            resets = int((rows.loc[cids, "status"] == "reset").sum())
            if resets:
                ev.append(f"{resets} answered with RST by the sandbox itself (the packet was delivered locally)")
            if ctx.model is not None:
                marks = [m for m in ctx.model.marks() if m.node == node and m.port == port]
                if marks:
                    continue  # the mark exists: another failure (see lb-stale-backend / the LB service)
                ev.append(f"dumps: {node}/ingress_sbox has no MARK rule for dport {port} (marks there: "
                          + (", ".join(dict.fromkeys(f"{m.port or m.vip}->{m.fwmark:#x}" for m in ctx.model.marks()
                                                     if m.node == node)) or "none") + ")")
            out.append(Finding(self.kind, self.severity,
                               f"{node}'s ingress sandbox does not mark port {port} for the load balancer",
                               node=node, points=[str(rows.loc[cids[0], "last_seen_point"])], addresses=[entry],
                               connections=cids, evidence=ev, check=self.check))
        return out


def _unanswered_to_backend(ctx: Context) -> pd.DataFrame:
    """Failed connections whose requests went to a backend that never answered (not a task that got
    them and stayed silent): index conn_id, columns ip, via (see ``Context.picked``), node (entry)."""
    f = ctx.failed
    f = f[f["missing_at"].notna().to_numpy()]
    silent_task = (ctx.roles(f["last_seen_point"]) == "task") & (f["missing_at"] == f["last_seen_point"]).to_numpy()
    keep = f.index[~silent_task]
    p = ctx.picked
    p = p[p.index.isin(keep)]
    return p.assign(node=ctx.conns.loc[p.index, "entry_node"].astype(str))


@register
class LbStaleBackend(Detector):
    kind = "lb-stale-backend"
    detects = ("The load balancer keeps picking a backend that no longer exists (its task died and the "
               "IPVS service / fdb were not updated), so every Nth connection hangs.")
    evidence = ("Requests go to backend X (the hop after the sandbox, or an unanswered ARP for X from the "
                "sandbox) and nothing ever answers; no namespace holds X (dumps), or its capture point is gone "
                "(topology); the dumps' LB service still lists X.")
    check = ("ipvsadm -Ln in the ingress_sbox / lb_ namespaces of the entry nodes: remove X (docker service "
             "update --force, or restart the node's dockerd); check gossip between the nodes (7946) so the "
             "task's removal reaches every node.")

    def run(self, ctx: Context) -> list[Finding]:
        sent = _unanswered_to_backend(ctx)
        out = []
        for ip, grp in sent.groupby("ip"):
            ip = str(ip)
            ok, why = alive(ctx, ip)
            if ok is not False:
                continue
            cids = [int(c) for c in grp.index]
            nodes = sorted(set(grp["node"]))
            ev = [f"{len(cids)} connection(s) were sent to {ip} and never answered", *conn_lines(ctx, cids), why]
            arp = sorted({h.split(":", 1)[1] for h in grp["via"] if h.startswith("arp:")})
            if arp:
                ev.append(f"ARP requests for {ip} unanswered at {', '.join(arp)}")
            if ctx.model is not None:
                for s in ctx.model.lb_services():
                    if any(str(b.addr) == ip for b in s.backends):
                        ev.append(f"dumps: {s.node}/{s.namespace} {s.kind} {s.label()} still lists {ip}")
            pts = sorted({str(ctx.conns.loc[c, "last_seen_point"]) for c in cids})
            out.append(Finding(self.kind, self.severity,
                               f"the load balancer on {', '.join(nodes)} still sends to {ip}, which no longer exists",
                               node=nodes[0], points=pts, addresses=[ip], connections=cids, evidence=ev,
                               check=self.check))
        return out


@register
class FdbMissing(Detector):
    kind = "fdb-missing"
    detects = ("Frames for a remote endpoint are never encapsulated: the overlay on the sending node has no "
               "ARP (neighbour) and/or fdb entry for the remote task (gossip lost or diverged), so ARP for "
               "it goes unanswered and nothing reaches VXLAN.")
    evidence = ("Requests for backend X (alive on node B) stop on node A before any VXLAN hop; A ARPs for X "
                "and gets no answer; the dumps of A's overlay namespace have no fdb entry for X's MAC "
                "(02:42 + IP) pointing at B, or no neighbour entry for X.")
    check = ("On node A: ip netns exec 1-<netid> bridge fdb show dev vxlan0 | grep <MAC> and ip neigh show "
             "<X>; docker network inspect -v on both nodes (peers); the gossip port 7946 tcp/udp between the "
             "nodes.")

    def run(self, ctx: Context) -> list[Finding]:
        sent = _unanswered_to_backend(ctx)
        sent = sent[sent["via"].str.startswith("arp:").to_numpy()
                    & ~ctx.encapsulated.reindex(sent.index, fill_value=False).to_numpy(dtype=bool)]
        out = []
        for (node, ip), grp in sent.groupby(["node", "ip"]):
            owner = ctx.node_of_ip(str(ip))
            if owner is None or owner == node or alive(ctx, str(ip))[0] is False:
                continue
            pts = sorted({v.split(":", 1)[1] for v in grp["via"]})
            out.append(self._finding(ctx, str(node), str(ip), [int(c) for c in grp.index], pts))
        return out

    def _finding(self, ctx: Context, node: str, ip: str, cids: list[int], pts: list[str]) -> Finding:
        from meshpkt.diagnose.context import docker_mac

        mac = docker_mac(ip)
        owner = ctx.node_of_ip(ip)
        _, why = alive(ctx, ip)
        ev = [f"{len(cids)} connection(s) entering {node} were balanced to {ip} (on {owner}) and never "
              f"encapsulated towards {owner}", *conn_lines(ctx, cids),
              f"ARP requests for {ip} unanswered at {', '.join(pts)}", why]
        if ctx.model is not None:
            for o in ctx.model.overlays():
                if o.node != node or (o.subnet is not None and IPv4Address(ip) not in o.subnet):
                    continue
                macs = {":".join(f"{b:02x}" for b in e.mac): e for e in o.peers}
                has_neigh = any(str(n.addr) == ip for n in o.neighbours)
                ev.append(f"dumps: {node}/{o.namespace} {o.device} fdb: "
                          + (f"{mac} dst {macs[mac].dst}" if mac in macs else f"no entry for {mac}")
                          + f"; neighbour {ip}: " + ("present" if has_neigh else "missing")
                          + f" ({len(o.peers)} remote fdb entries)")
        return Finding(self.kind, self.severity,
                       f"{node} has no forwarding entry for {ip} ({mac}) on {owner}: ARP unanswered, nothing "
                       "encapsulated", node=node, points=pts, addresses=[ip, mac], connections=cids, evidence=ev,
                       check=self.check)


@register
class SnatMissing(Detector):
    kind = "snat-missing"
    detects = ("The ingress sandbox balances to a backend without SNATing the client address to its own "
               "overlay address: the task replies to the client directly through its default gateway "
               "(docker_gwbridge), bypassing IPVS/conntrack, and the client drops the stray answer.")
    evidence = ("At the LB namespace's overlay side the request has the client's address as source; the "
                "task's reply shows up as a separate flow from the task to the client; the dumps' ingress_sbox "
                "nat POSTROUTING has no '-m ipvs --ipvs -d <ingress subnet> -j SNAT'.")
    check = ("ip netns exec ingress_sbox iptables -t nat -S POSTROUTING: the SNAT --to-source <sandbox "
             "ingress IP> rule (Docker recreates it when the ingress network is re-created).")

    def run(self, ctx: Context) -> list[Finding]:
        h = ctx.hops
        if h.empty:
            return []
        first_src = h.groupby("conn_id")["src_ip"].transform("first").to_numpy()
        role = h["role"].to_numpy()
        tasks = np.array(sorted(ctx.topology.tasks), dtype=np.int64)
        after_lb = np.isin(role, ("ingress_sbox", "lb")) & (h["dst_ip"].to_numpy() != h.groupby("conn_id")[
            "dst_ip"].transform("first").to_numpy())
        if len(tasks):
            after_lb &= np.isin(h["dst_ip"].to_numpy().astype(np.int64), tasks)
        else:  # not the DNATed hop to the sandbox's docker_gwbridge address: the balanced one
            gw_base, gw_len = GWBRIDGE_NET
            after_lb &= (h["dst_ip"].to_numpy().astype(np.int64) >> (32 - gw_len)) != (gw_base >> (32 - gw_len))
        bad = h[after_lb & (h["src_ip"].to_numpy() == first_src)]
        bad = bad[bad["conn_id"].isin(ctx.failed.index)]
        out = []
        for node, cids in group(bad.drop_duplicates("conn_id"), bad.drop_duplicates("conn_id")["node"]).items():
            out.append(self._finding(ctx, str(node), cids, bad))
        return out

    def _finding(self, ctx: Context, node: str, cids: list[int], bad: object) -> Finding:
        rows = bad[bad["conn_id"].isin(cids)]  # type: ignore[index]
        hop = rows.iloc[0]
        ev = [f"at {hop['point']} the balanced request is {hop['src']} > {hop['dst']}: the client address was "
              "not replaced by the sandbox's", *conn_lines(ctx, cids)]
        backends = {str(host_of(str(d))) for d in rows["dst"]}
        clients = {str(host_of(str(ctx.conns.loc[c, "client"]))) for c in cids}
        c = ctx.conns
        leaked = c[c["client"].map(host_of).isin(backends).to_numpy() & c["entry"].map(host_of).isin(clients).to_numpy()]
        extra = [int(x) for x in leaked["conn_id"]]
        if extra:
            ev.append(f"{len(extra)} reply flow(s) went from the task straight to the client, bypassing the "
                      f"load balancer: " + "; ".join(f"#{x} {c.loc[x, 'client']} > {c.loc[x, 'entry']} seen at "
                                                      f"{c.loc[x, 'path']}" for x in extra[:2]))
        if ctx.model is not None:
            ns = ctx.topology.point(str(hop["point"])).namespace
            sn = [s for s in ctx.model.snat_rules() if s.node == node and s.namespace == ns]
            ev.append(f"dumps: {node}/{ns} nat SNAT rules: " + ("; ".join(s.rule.text for s in sn) or "none"))
        return Finding(self.kind, self.severity, f"{node}'s ingress sandbox does not SNAT balanced traffic",
                       node=node, points=sorted(set(rows["point"].astype(str))),
                       addresses=sorted(clients | backends), connections=cids + extra, evidence=ev,
                       check=self.check)


@register
class RedirectMissing(Detector):
    kind = "redirect-missing"
    detects = ("Requests reach the task on the published port but nothing listens there: the task's nat "
               "PREROUTING REDIRECT from the published port to the target port is missing.")
    evidence = ("The connection reaches the task's interface with the published port as destination and the "
                "task never answers (or answers RST); no redirect translation; the dumps of the task namespace "
                "have no REDIRECT for the port.")
    check = ("ip netns exec <task> iptables -t nat -S PREROUTING: -d <task IP> --dport P -j REDIRECT "
             "--to-ports T; recreate the task (docker service update --force).")

    def run(self, ctx: Context) -> list[Finding]:
        f = ctx.failed
        if f.empty:
            return []
        at_task = ctx.roles(f["last_seen_point"]) == "task"
        sel = f[at_task & (f["missing_at"] == f["last_seen_point"]).to_numpy()]
        hop = ctx.last_seen_hop.reindex(sel.index)
        first_src = ctx.hops.groupby("conn_id")["src_ip"].first().reindex(sel.index)
        # the client's own address at the task: not SNATed, the task answered it directly (snat-missing)
        sel = sel[(hop["src_ip"].to_numpy() != first_src.to_numpy())]
        out = []
        for point, cids in group(sel, sel["last_seen_point"]).items():
            hop = last_hop(ctx, cids[0], point)
            if hop is None:
                continue
            port = int(hop["dport"])
            target = ctx.topology.published.get(port)
            ev = [f"{len(cids)} connection(s) reached {point} as {hop['src']} > {hop['dst']} and were never "
                  "answered", *conn_lines(ctx, cids)]
            if target is not None and target != port:
                ev.append(f"topology: published port {port} targets port {target} in the task")
            node = ctx.node_of_point(point)
            if ctx.model is not None:
                task_ip = host_of(str(hop["dst"]))
                red = [r for r in ctx.model.redirects() if r.node == node and str(r.addr) == task_ip]
                if red:
                    continue
                ev.append(f"dumps: no REDIRECT for {task_ip}:{port} in {node}'s task namespaces "
                          f"({len(ctx.model.redirects())} REDIRECT rules elsewhere)")
            elif target is None or target == port:
                continue
            out.append(Finding(self.kind, self.severity,
                               f"task at {hop['dst']} ({point}) does not redirect port {port} to its server",
                               node=node, points=[point], addresses=[str(hop["dst"])], connections=cids,
                               evidence=ev, check=self.check))
        return out
