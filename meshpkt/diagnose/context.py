"""What every detector sees: the analysis, the rule model (when dumps were given), raw frames,
and derived tables computed once (failed connections, ARP, per-point VXLAN counts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from meshpkt.decode.addr import ip4_int, ip4_str
from meshpkt.diagnose.frames import Frames, arp_table

if TYPE_CHECKING:
    from meshpkt.flows import Analysis
    from meshpkt.mesh import Mesh
    from meshpkt.rules.model import MeshModel

HEALTHY = ("established", "closed")


def ip_text(ip: int) -> str:
    return str(ip4_str(np.array([ip], dtype=np.uint32))[0])


def host_of(endpoint: str | None) -> str | None:
    """``"10.0.0.7:9090"`` -> ``"10.0.0.7"``."""
    if endpoint is None or (not isinstance(endpoint, str) and pd.isna(endpoint)):
        return None
    return str(endpoint).rsplit(":", 1)[0] if ":" in str(endpoint) else str(endpoint)


def port_of(endpoint: str | None) -> int | None:
    if not endpoint or ":" not in str(endpoint):
        return None
    try:
        return int(str(endpoint).rsplit(":", 1)[1])
    except ValueError:
        return None


def docker_mac(ip: str) -> str:
    """Docker's MAC of an overlay address: 02:42 + the IPv4 bytes."""
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


@dataclass
class Context:
    """Inputs of the detectors (read-only for them)."""

    analysis: Analysis
    model: MeshModel | None = None
    frames: Frames = field(default_factory=Frames)
    encrypted_vnis: set[int] = field(default_factory=set)
    lb_timeout_s: float = 900.0
    mesh: Mesh | None = None  # the typed mesh of the lab status document, when given
    claimed: set[int] = field(default_factory=set)  # connections explained by an earlier detector

    # ------------------------------------------------------------------ tables
    @property
    def topology(self) -> Any:
        return self.analysis.topology

    @property
    def packets(self) -> pd.DataFrame:
        return self.analysis.packets

    @cached_property
    def conns(self) -> pd.DataFrame:
        """Connections indexed by conn_id."""
        return self.analysis.connections.set_index("conn_id", drop=False)

    @cached_property
    def hops(self) -> pd.DataFrame:
        """Non-stray hops, in path order."""
        h = self.analysis.hops
        return h[~h["stray"].to_numpy().astype(bool)] if len(h) else h

    @cached_property
    def failed(self) -> pd.DataFrame:
        """Connections that did not go through (a ``missing_at``, or a bad status), opened by a client
        (the first hop's source is not a task/LB address: not the leaked half of another one)."""
        c = self.conns
        if c.empty:
            return c
        bad = c["missing_at"].notna() | ~c["status"].isin(HEALTHY + ("udp", "icmp"))
        return c[bad.to_numpy() & self._from_client(c)]

    def _from_client(self, c: pd.DataFrame) -> np.ndarray:
        topo = self.topology
        inner = set(topo.tasks) | set(topo.lb_ips)
        if not inner:
            return np.ones(len(c), bool)
        hosts = c["client"].astype(str).str.rsplit(":", n=1).str[0]
        ints = hosts.map(lambda s: _int_or_none(s))
        return ~ints.isin(inner).to_numpy()

    @cached_property
    def arp(self) -> pd.DataFrame:
        """ARP packets (see :func:`meshpkt.diagnose.frames.arp_table`)."""
        return arp_table(self.packets, self.frames)

    def hops_of(self, conn_id: int) -> pd.DataFrame:
        return self.hops[self.hops["conn_id"].to_numpy() == conn_id]

    def role(self, point: str | None) -> str:
        return self.topology.point(point).role if point else ""

    def node_of_point(self, point: str | None) -> str | None:
        return self.topology.point(point).node if point else None

    def captured_points(self) -> set[str]:
        return {str(p) for p in self.packets["point"].unique()}

    def node_of_ip(self, ip: str | None) -> str | None:
        if ip is None:
            return None
        i = _int_or_none(ip)
        node = self.topology.node_of_ip(i) if i is not None else None
        if node is None and self.model is not None:
            n = self.model.node_of_address(IPv4Address(ip))
            node = n.name if n is not None else None
        return node

    def unanswered_arp(self, point: str, target: str, since_ns: int = 0) -> int:
        """ARP requests for ``target`` at ``point`` (after ``since_ns``) that got no reply there."""
        a = self.arp
        if a.empty:
            return 0
        t = _int_or_none(target)
        at = a[(a["point"] == point).to_numpy()]
        req = at[(at["op"] == 1).to_numpy() & (at["target_ip"] == t).to_numpy() & (at["ts_ns"] >= since_ns).to_numpy()]
        rep = at[(at["op"] == 2).to_numpy() & (at["sender_ip"] == t).to_numpy()]
        return 0 if len(rep) else len(req)

    def arp_targets(self, point: str, t0: int, t1: int) -> list[str]:
        """Addresses ARPed for (requests) at ``point`` between t0 and t1 and never answered there."""
        a = self.arp
        if a.empty:
            return []
        at = a[(a["point"] == point).to_numpy()]
        req = at[(at["op"] == 1).to_numpy() & (at["ts_ns"] >= t0).to_numpy() & (at["ts_ns"] <= t1).to_numpy()]
        answered = set(at.loc[at["op"] == 2, "sender_ip"].tolist())
        return [ip_text(int(t)) for t in pd.unique(req["target_ip"]) if int(t) not in answered]


def _int_or_none(s: str) -> int | None:
    try:
        return ip4_int(s)
    except Exception:
        return None
