"""Crafted multi-point captures for the failures the lab cannot produce (no ip_vs in this kernel, no
faulty NIC, no encrypted overlay yet), built with the project's hop builders
(:func:`meshpkt.layers.swarm.ingress_path`): each TCP segment is rewritten hop by hop exactly as DNAT,
IPVS + SNAT and VXLAN rewrite it, and written to one pcap per capture point."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import PcapWriter

from meshpkt.layers.swarm import IngressTopology, TcpSegment, ingress_path, vxlan_underlay
from meshpkt.layers.vxlan import VXLAN

N1, N2 = "10.211.55.10", "10.211.55.18"
TOPO = IngressTopology(client="10.211.55.2", node=N1, task_node=N2, task="10.0.0.7", sbox_ip="10.0.0.2",
                       client_port=50000)
TASK_POINT = "node2.web.1.eth0"
REQUEST_POINTS = {"node_eth0": ["client.host.eth0", "node1.host.eth0"], "gwbridge": ["node1.ingress_sbox.eth1"],
                  "sbox_eth0": ["node1.ingress_sbox.eth0"],
                  "underlay": ["node1.host.eth0", "underlay.host.br0", "node2.host.eth0"],
                  "task_eth0": [TASK_POINT]}
HOP_NS = 20_000
T0 = 1_700_000_000_000_000_000


@dataclass
class Capture:
    """Frames per capture point; ``write`` makes one pcap per point."""

    frames: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)

    def add(self, point: str, ts_ns: int, pkt: Packet | bytes) -> None:
        self.frames.setdefault(point, []).append((ts_ns, bytes(pkt)))

    def write(self, out: Path, status: bool = True) -> Path:
        """One pcap per point, and (``status``) a minimal lab status naming the nodes and points."""
        out.mkdir(parents=True, exist_ok=True)
        if status:
            (out / "status.json").write_text(json.dumps(minimal_status(list(self.frames))))
        for point, pkts in self.frames.items():
            w = PcapWriter(str(out / f"{point}.pcap"), linktype=1, nano=True, sync=True)
            for ts, frame in sorted(pkts, key=lambda x: x[0]):
                p = Ether(frame)
                p.time = ts / 1e9
                w.write(p)
            w.close()
        return out


def minimal_status(points: list[str]) -> dict[str, object]:
    """What ``lab status --json`` would say about these nodes and points (addresses of the seed)."""
    from meshpkt.flows.topology import parse_point

    cps = []
    for p in points:
        info = parse_point(p)
        cps.append({"point": p, "node": info.node, "namespace": info.namespace, "iface": info.iface,
                    "role": info.role})
    return {"nodes": [{"name": "node1", "underlay_ip": N1}, {"name": "node2", "underlay_ip": N2}],
            "clients": [{"ip": TOPO.client}], "capture_points": cps,
            "services": [{"name": "web", "published": [{"published": 9090, "target": 80}],
                          "backends": [{"task": "web.1", "node": "node2", "ip": TOPO.task}]}]}


def _points(direction: str) -> list[tuple[str, str]]:
    """(hop name, point) in path order for a direction."""
    order = ["node_eth0", "gwbridge", "sbox_eth0", "underlay", "task_eth0"]
    pairs = [(h, p) for h in order for p in REQUEST_POINTS[h]]
    return pairs if direction == "request" else list(reversed(pairs))


Mutate = Callable[[str, Packet], Packet]


def segment(cap: Capture, seg: TcpSegment, t: int, direction: str = "request", *, topo: IngressTopology = TOPO,
            stop_after: str | None = None, start_at: str | None = None, mutate: Mutate | None = None) -> None:
    """Write one segment at every point of its path (from ``start_at``, a point or a hop name such as
    ``node_eth0``, up to the point ``stop_after``)."""
    hops = {h.point: h.packet for h in ingress_path(seg, topo, direction)}  # type: ignore[arg-type]
    started = start_at is None
    for k, (hop, point) in enumerate(_points(direction)):
        if not started:
            started = start_at in (point, hop)
            if not started:
                continue
        pkt = hops[hop].copy()
        if mutate is not None:
            pkt = mutate(point, pkt)
        cap.add(point, t + k * HOP_NS, pkt)
        if point == stop_after:
            break


def handshake(isn_c: int = 1000, isn_s: int = 5000) -> list[tuple[str, TcpSegment]]:
    """SYN, SYN-ACK, ACK, request, response (what a short HTTP exchange starts with)."""
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    resp = b"HTTP/1.0 200 OK\r\n\r\nhello\n"
    return [("request", TcpSegment(flags="S", seq=isn_c, ip_id=1)),
            ("reply", TcpSegment(flags="SA", seq=isn_s, ack=isn_c + 1, ip_id=0)),
            ("request", TcpSegment(flags="A", seq=isn_c + 1, ack=isn_s + 1, ip_id=2, options=[])),
            ("request", TcpSegment(flags="PA", seq=isn_c + 1, ack=isn_s + 1, ip_id=3, options=[], payload=req)),
            ("reply", TcpSegment(flags="PA", seq=isn_s + 1, ack=isn_c + 1 + len(req), ip_id=1, options=[],
                                 payload=resp))]


def esp(cap: Capture, src: str, dst: str, t: int, points: list[str], spi: int, n: int = 5) -> None:
    """``n`` ESP packets src > dst seen at ``points`` (encrypted overlay traffic between two nodes)."""
    rnd = random.Random(spi)
    for k in range(n):
        pkt = (Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02") / IP(src=src, dst=dst, proto=50)
               / ESP(spi=spi, seq=k + 1, data=bytes(rnd.getrandbits(8) for _ in range(120))))
        for j, p in enumerate(points):
            cap.add(p, t + k * 1_000_000 + j * HOP_NS, pkt)


def cleartext_vxlan(cap: Capture, src: str, dst: str, vni: int, t: int, points: list[str], n: int = 3) -> None:
    """``n`` VXLAN frames src > dst (vni) carrying an overlay TCP segment, seen at ``points``."""
    for k in range(n):
        inner = (Ether(src="02:42:0a:00:01:05", dst="02:42:0a:00:01:06") / IP(src="10.0.1.5", dst="10.0.1.6")
                 / TcpSegment(flags="PA", seq=100 + k, ack=1, payload=b"x" * 20, options=[]).tcp(40000, 80))
        pkt = vxlan_underlay(inner, src, dst, vni=vni)
        for j, p in enumerate(points):
            cap.add(p, t + k * 1_000_000 + j * HOP_NS, pkt)


__all__ = ["Capture", "ESP", "N1", "N2", "T0", "TASK_POINT", "UDP", "VXLAN", "cleartext_vxlan", "esp", "handshake",
           "segment"]
