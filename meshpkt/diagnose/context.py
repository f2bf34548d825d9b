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
FINE = ("ok", "lost-between", "incomplete-capture")  # verdict codes that are not a failure


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
        if "verdict_code" in c:  # the reconstruction's own judgement: recovered losses, partial captures
            bad &= ~c["verdict_code"].isin(FINE)
        return c[bad.to_numpy() & self._from_client(c)]

    def _from_client(self, c: pd.DataFrame) -> np.ndarray:
        topo = self.topology
        inner = set(topo.tasks) | set(topo.lb_ips)
        if not inner:
            return np.ones(len(c), bool)
        ints = self.ip_ints(c["client"].astype(str).str.rsplit(":", n=1).str[0])
        return ~np.isin(ints, np.array(sorted(inner), dtype=np.int64))

    @staticmethod
    def ip_ints(texts: pd.Series) -> np.ndarray:
        """Dotted quads -> ints (-1 where not an address), one parse per distinct value."""
        uniq, inv = np.unique(texts.astype(str).to_numpy(), return_inverse=True)
        vals = np.array([v if (v := _int_or_none(u)) is not None else -1 for u in uniq] + [0], dtype=np.int64)[:-1]
        return vals[inv.reshape(-1)]

    # ------------------------------------------------------------------ per-point and per-connection lookups
    @cached_property
    def _point_info(self) -> pd.DataFrame:
        pts = sorted(self.captured_points() | set(self.frames.files) | set(self.topology.points))
        info = [self.topology.point(p) for p in pts]
        return pd.DataFrame({"role": [i.role for i in info], "node": [i.node for i in info]}, index=pts)

    def roles(self, points: pd.Series) -> np.ndarray:
        """Role of every point of ``points`` ("" for None), vectorised (per category when categorical)."""
        return self._per_point(points, "role", "")

    def nodes(self, points: pd.Series) -> np.ndarray:
        return self._per_point(points, "node", None)

    def _per_point(self, points: pd.Series, col: str, absent: object) -> np.ndarray:
        info = self._point_info[col]
        if isinstance(points.dtype, pd.CategoricalDtype):
            cats = pd.Series(points.cat.categories.astype(str)).map(info).to_numpy(dtype=object)
            table = np.empty(len(cats) + 1, dtype=object)
            table[:-1] = cats
            table[-1] = absent
            return table[points.cat.codes.to_numpy()]  # code -1 (missing) picks ``absent``
        out = points.map(info).to_numpy(dtype=object)
        out[pd.isna(out)] = absent
        return out

    @cached_property
    def last_seen_hop(self) -> pd.DataFrame:
        """Per connection (index conn_id): its last hop row at its ``last_seen_point``."""
        h, c = self.hops, self.conns
        if h.empty or c.empty:
            return h.iloc[:0].set_index("conn_id") if "conn_id" in h else h
        key = pd.MultiIndex.from_arrays([c["conn_id"].to_numpy(), c["last_seen_point"].astype(str).to_numpy()])
        hk = pd.MultiIndex.from_arrays([h["conn_id"].to_numpy(), h["point"].astype(str).to_numpy()])
        rows = h[hk.isin(key)]
        return rows.groupby("conn_id").tail(1).set_index("conn_id")

    @cached_property
    def encapsulated(self) -> pd.Series:
        """Per connection: whether any of its hops was VXLAN-encapsulated."""
        h = self.hops
        return h["vni"].notna().groupby(h["conn_id"].to_numpy()).any() if len(h) else pd.Series(dtype=bool)

    @cached_property
    def arp(self) -> pd.DataFrame:
        """ARP packets (see :func:`meshpkt.diagnose.frames.arp_table`)."""
        return arp_table(self.packets, self.frames)

    @cached_property
    def unanswered_arp(self) -> pd.DataFrame:
        """ARP requests, at LB/overlay points, for targets whose reply was seen at no point of that node:
        point, node, ts_ns, target (dotted quad)."""
        a = self.arp
        cols = ["point", "node", "ts_ns", "target"]
        if a.empty:
            return pd.DataFrame(columns=cols)
        req = a[(a["op"] == 1).to_numpy()]
        rep = a[(a["op"] == 2).to_numpy()]
        answered = pd.MultiIndex.from_arrays([self.nodes(rep["point"]), rep["sender_ip"].to_numpy()])
        req = req[~pd.MultiIndex.from_arrays([self.nodes(req["point"]), req["target_ip"].to_numpy()]).isin(answered)]
        req = req[np.isin(self.roles(req["point"]), ("ingress_sbox", "lb", "overlay"))]
        return pd.DataFrame({"point": req["point"].to_numpy(), "node": self.nodes(req["point"]),
                             "ts_ns": req["ts_ns"].to_numpy(dtype=np.int64),
                             "target": ip4_str(req["target_ip"].to_numpy(dtype=np.uint32))})

    @cached_property
    def picked(self) -> pd.DataFrame:
        """Per failed connection with a ``missing_at``: the backend the load balancer chose (index conn_id):
        ``ip``, ``via`` ("backend": the hop after the LB; else the point of an unanswered ARP for it on the
        node where the connection stopped, within its time window)."""
        f = self.failed
        f = f[f["missing_at"].notna().to_numpy()]
        out = pd.DataFrame({"ip": f["backend"].map(host_of), "via": "backend"}, index=f.index)
        todo = f[out["ip"].isna().to_numpy()]
        arp = self.unanswered_arp
        if todo.empty or arp.empty:
            return out.dropna(subset=["ip"])
        before, after = 100_000_000, 2_000_000_000  # the SYN stuck in the LB triggers the ARP
        left = pd.DataFrame({"conn_id": todo.index.to_numpy(), "node": self.nodes(todo["missing_at"].astype(str)),
                             "t0": todo["first_ts_ns"].to_numpy(dtype=np.int64) - before,
                             "t1": (todo["first_ts_ns"] + todo["duration_ns"]).to_numpy(dtype=np.int64) + after})
        left = left.dropna(subset=["node"]).sort_values("t0")
        m = pd.merge_asof(left, arp.sort_values("ts_ns"), left_on="t0", right_on="ts_ns", by="node",
                          direction="forward")
        m = m[m["ts_ns"].notna().to_numpy() & (m["ts_ns"].to_numpy() <= m["t1"].to_numpy())].set_index("conn_id")
        out.loc[m.index, "ip"] = m["target"]
        out.loc[m.index, "via"] = "arp:" + m["point"].astype(str)
        return out.dropna(subset=["ip"])

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


def _int_or_none(s: str) -> int | None:
    try:
        return ip4_int(s)
    except Exception:
        return None
