"""Small helpers shared by the detectors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from meshpkt.diagnose.context import Context, host_of


def group(rows: pd.DataFrame, keys: Iterable[Any]) -> dict[Any, list[int]]:
    """key -> connection ids (``keys`` aligned with ``rows``)."""
    out: dict[Any, list[int]] = {}
    for cid, k in zip(rows["conn_id"].tolist(), keys, strict=True):
        out.setdefault(k, []).append(int(cid))
    return out


def conn_line(ctx: Context, cid: int) -> str:
    """``#3 10.211.55.2:59044 > 10.211.55.10:9090 (syn-unanswered, 1 retransmission)``."""
    c = ctx.conns.loc[cid]
    retr = int(c["retrans"]) if pd.notna(c["retrans"]) else 0
    return (f"#{cid} {c['client']} > {c['entry']} ({c['status']}"
            + (f", {retr} retransmission{'s' if retr != 1 else ''}" if retr else "") + ")")


def conn_lines(ctx: Context, cids: list[int], limit: int = 3) -> list[str]:
    lines = [conn_line(ctx, c) for c in cids[:limit]]
    if len(cids) > limit:
        lines.append(f"... and {len(cids) - limit} more connection(s)")
    return lines


def backend_ip(ctx: Context, cid: int) -> str | None:
    return host_of(ctx.conns.loc[cid, "backend"])


def last_hop(ctx: Context, cid: int, point: str) -> pd.Series | None:
    """The connection's last hop row at ``point`` (for one example connection of a finding)."""
    h = ctx.hops_of(cid)
    h = h[h["point"].to_numpy() == point]
    return None if h.empty else h.iloc[-1]


def window(ctx: Context, cid: int, slack_ns: int = 2_000_000_000) -> tuple[int, int]:
    c = ctx.conns.loc[cid]
    t0 = int(c["first_ts_ns"])
    return t0 - slack_ns, t0 + int(c["duration_ns"]) + slack_ns


def alive(ctx: Context, ip: str) -> tuple[bool | None, str]:
    """Whether a task holds ``ip`` (dumps first, then the topology and the capture points)."""
    from ipaddress import IPv4Address

    m = ctx.model
    if m is not None:
        holders = [f"{ns.node}/{ns.name}" for ns in m.namespaces() if ns.role.value in ("task", "unknown")
                   and ns.has_address(IPv4Address(ip))]
        if holders:
            return True, f"dumps: {ip} is configured in {', '.join(holders)}"
        if any(ns.role.value == "task" for ns in m.namespaces()):
            return False, f"dumps: no task namespace of {', '.join(sorted(m.nodes))} holds {ip}"
    if ctx.mesh is not None:
        for svc in ctx.mesh.services:
            for b in svc.backends:
                if str(b.ip) == ip or ip in {str(x) for x in b.ips.values()}:
                    return b.alive, f"lab status: {ip} is task {b.task} on {b.node}, " + (
                        "alive" if b.alive else "no longer alive")
    from meshpkt.decode.addr import ip4_int

    t = ctx.topology.tasks.get(ip4_int(ip))
    if t is None:
        return None, ""
    pts = [p.point for p in ctx.topology.points.values() if p.role == "task" and p.node == t.node
           and p.namespace == t.name]
    got = ctx.captured_points() | set(ctx.frames.files)  # a capture file, even empty: the namespace existed
    if any(p in got for p in pts):
        return True, f"topology: {ip} is task {t.name} on {t.node}, captured at {pts[0]}"
    if pts:
        return False, (f"topology: {ip} is task {t.name} on {t.node}, but its namespace could not be captured "
                       f"({pts[0]}: no capture)")
    return None, ""
