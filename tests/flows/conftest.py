"""A crafted multi-point capture of Swarm's ingress path (seed 001 section 7), with known
answers: which backend each connection reached, and where packets were dropped.

Every TCP segment is built once (seq/ack/TS/IP id/payload fixed) and rewritten per hop the way
DNAT, IPVS masq + SNAT and VXLAN encapsulation rewrite it, so the reconstruction must rely on
the NAT-invariant fields exactly as on a real cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from meshpkt.layers.vxlan import VXLAN

CLIENT = "10.211.55.2"
NODES = {"node1": "10.211.55.10", "node2": "10.211.55.18", "node3": "10.211.55.22"}
INGRESS_IP = {"node1": "10.0.0.2", "node2": "10.0.0.3", "node3": "10.0.0.4"}
TASKS = {"10.0.0.5": "node1", "10.0.0.6": "node2", "10.0.0.7": "node3"}
TASK_NAME = {"10.0.0.5": "web.1", "10.0.0.6": "web.2", "10.0.0.7": "web.3"}
SBOX_GW = "172.18.0.2"
PORT = 9090
HOP_US = 20


def mac(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


@dataclass
class Conn:
    entry: str
    task: str
    client_port: int
    snat_port: int
    drop_after: str | None = None  # drop forward packets after this point (it still sees them)
    drop_data_after: str | None = None  # only segments with payload vanish after this point (MTU)


@dataclass
class Scenario:
    conns: list[Conn]
    out: Path
    shift_ns: dict[str, int] = field(default_factory=dict)
    points: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)

    def add(self, point: str, ts_ns: int, frame: bytes) -> None:
        self.points.setdefault(point, []).append((ts_ns + self.shift_ns.get(point, 0), frame))

    def write(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        for point, pkts in self.points.items():
            from scapy.utils import PcapWriter

            w = PcapWriter(str(self.out / f"{point}.pcap"), linktype=1, nano=True, sync=True)
            for ts, frame in sorted(pkts):
                pkt = Ether(frame)
                pkt.time = ts / 1e9
                w.write(pkt)
            w.close()
        return self.out


def _path(c: Conn) -> list[tuple[str, str]]:
    """(point, kind) in forward order. kind: client|dnat|lb|overlay|enc|task."""
    e, tnode = c.entry, TASKS[c.task]
    tns = f"{tnode}.{TASK_NAME[c.task]}.eth0"
    path = [("client.host.eth0", "client"), (f"{e}.host.eth0", "client"),
            (f"{e}.ingress_sbox.eth1", "dnat"), (f"{e}.ingress_sbox.eth0", "lb"), (f"{e}.1-abcdef1234.br0", "lb")]
    if tnode != e:
        path += [(f"{e}.host.eth0", "enc"), (f"{tnode}.host.eth0", "enc"), (f"{tnode}.1-abcdef1234.br0", "lb")]
    path.append((tns, "lb"))
    return path


def _frame(c: Conn, kind: str, fwd: bool, seg: dict) -> bytes:
    e = c.entry
    if kind == "client":
        a, ap, b, bp = CLIENT, c.client_port, NODES[e], PORT
    elif kind == "dnat":
        a, ap, b, bp = CLIENT, c.client_port, SBOX_GW, PORT
    else:
        a, ap, b, bp = INGRESS_IP[e], c.snat_port, c.task, PORT
    if not fwd:
        a, ap, b, bp = b, bp, a, ap
    tcp = TCP(sport=ap, dport=bp, seq=seg["seq"], ack=seg["ack"], flags=seg["flags"], window=64240,
              options=[("MSS", 1410), ("Timestamp", (seg["tsval"], seg["tsecr"]))] if "S" in seg["flags"]
              else [("NOP", None), ("NOP", None), ("Timestamp", (seg["tsval"], seg["tsecr"]))])
    ip = IP(src=a, dst=b, id=seg["ipid"], ttl=64, flags="DF") / tcp
    if seg["payload"]:
        ip = ip / Raw(seg["payload"])
    inner = Ether(src=mac(a), dst=mac(b)) / ip
    if kind != "enc":
        return bytes(inner)
    tnode = TASKS[c.task]
    vs, vd = (NODES[e], NODES[tnode]) if fwd else (NODES[tnode], NODES[e])
    outer = (Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02") / IP(src=vs, dst=vd, ttl=64)
             / UDP(sport=40000 + c.snat_port % 20000, dport=4789) / VXLAN(vni=4096) / inner)
    return bytes(outer)


def build(conns: list[Conn], out: Path, shift_ns: dict[str, int] | None = None, seed: int = 7) -> Path:
    rnd = random.Random(seed)
    sc = Scenario(conns, out, shift_ns or {})
    t0 = 1_700_000_000_000_000_000
    for k, c in enumerate(conns):
        isn_c, isn_s = rnd.getrandbits(32), rnd.getrandbits(32)
        ipid_c, ipid_s = rnd.getrandbits(16), 0
        tsc, tss = rnd.getrandbits(31), rnd.getrandbits(31)
        req = f"GET / HTTP/1.1\r\nHost: {NODES[c.entry]}:{PORT}\r\n\r\n".encode()
        resp = f"HTTP/1.0 200 OK\r\n\r\nHost IP is {NODES[TASKS[c.task]]}, task {c.task}\n".encode()
        segs = [  # (forward?, segment)
            (True, dict(seq=isn_c, ack=0, flags="S", tsval=tsc, tsecr=0, ipid=ipid_c, payload=b"")),
            (False, dict(seq=isn_s, ack=isn_c + 1, flags="SA", tsval=tss, tsecr=tsc, ipid=ipid_s, payload=b"")),
            (True, dict(seq=isn_c + 1, ack=isn_s + 1, flags="A", tsval=tsc + 1, tsecr=tss, ipid=ipid_c + 1,
                        payload=b"")),
            (True, dict(seq=isn_c + 1, ack=isn_s + 1, flags="PA", tsval=tsc + 1, tsecr=tss, ipid=ipid_c + 2,
                        payload=req)),
            (False, dict(seq=isn_s + 1, ack=isn_c + 1 + len(req), flags="PA", tsval=tss + 1, tsecr=tsc + 1,
                         ipid=ipid_s + 1, payload=resp)),
            (False, dict(seq=isn_s + 1 + len(resp), ack=isn_c + 1 + len(req), flags="FA", tsval=tss + 1,
                         tsecr=tsc + 1, ipid=ipid_s + 2, payload=b"")),
            (True, dict(seq=isn_c + 1 + len(req), ack=isn_s + 2 + len(resp), flags="FA", tsval=tsc + 2,
                        tsecr=tss + 1, ipid=ipid_c + 3, payload=b"")),
            (False, dict(seq=isn_s + 2 + len(resp), ack=isn_c + 2 + len(req), flags="A", tsval=tss + 2,
                         tsecr=tsc + 2, ipid=ipid_s + 3, payload=b"")),
        ]
        path = _path(c)
        t = t0 + k * 50_000_000
        if c.drop_after is not None:  # the client retransmits its SYN twice; nothing comes back
            segs = [segs[0], (True, {**segs[0][1], "ipid": ipid_c + 7, "tsval": tsc + 1000}),
                    (True, {**segs[0][1], "ipid": ipid_c + 8, "tsval": tsc + 3000})]
        if c.drop_data_after is not None:  # the request is lost twice more, then the client gives up (RST)
            req_seg = segs[3][1]
            segs = segs[:4] + [(True, {**req_seg, "ipid": ipid_c + 5 + r, "tsval": tsc + 300 * (r + 1)})
                               for r in range(2)]
            segs.append((True, dict(seq=isn_c + 1 + len(req), ack=isn_s + 1, flags="R", tsval=tsc + 999,
                                    tsecr=tss, ipid=ipid_c + 9, payload=b"")))
        for fwd, seg in segs:
            hops = path if fwd else list(reversed(path))
            stop = c.drop_after if c.drop_after is not None else (c.drop_data_after if seg["payload"] else None)
            for i, (point, kind) in enumerate(hops):
                sc.add(point, t + i * HOP_US * 1000, _frame(c, kind, fwd, seg))
                if fwd and stop is not None and point == stop and (
                        kind == "enc" or not any(p == stop and kk == "enc" for p, kk in path)):
                    break
            t += 1_000_000
    return sc.write()


@pytest.fixture
def ingress_captures(tmp_path: Path) -> Callable[..., Path]:
    """Build a crafted capture directory: ``ingress_captures(conns, shift_ns=None)``."""

    def make(conns: list[Conn] | None = None, shift_ns: dict[str, int] | None = None, name: str = "cap") -> Path:
        conns = conns if conns is not None else default_conns()
        return build(conns, tmp_path / name, shift_ns)

    return make


def default_conns() -> list[Conn]:
    """Two requests to each node's published port, round-robin over the three tasks per node."""
    out = []
    port = 51000
    for e in ("node1", "node2", "node3"):
        for k, task in enumerate(("10.0.0.5", "10.0.0.6", "10.0.0.7")):
            out.append(Conn(e, task, port, 40000 + port % 1000))
            port += 1
            if k == 1:
                pass
    return out
