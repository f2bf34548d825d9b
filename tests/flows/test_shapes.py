"""The shapes real captures have, on crafted multi-point captures with a generated ground truth:
segmentation offload (super-segments at some taps, MSS segments at others), snaplen cuts, a loss
recovered by retransmission, `-i any` duplicates (SLL2), a capture started mid-connection, port
reuse after TIME_WAIT, and a tap with no packets.

One connection is a 200 KB HTTP answer through node1's ingress path to the local task
(client -> node1 host -> ingress_sbox eth1 (DNAT) -> eth0 (IPVS masq + SNAT) -> overlay br0 ->
task). Every segment is built once and rewritten per hop the way the NAT stages rewrite it.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from meshpkt.capture import write_pcap
from meshpkt.capture.linktypes import LINUX_SLL2
from meshpkt.flows import analyze
from meshpkt.flows.topology import Topology, parse_point

CLIENT, NODE1, SBOX_GW, INGRESS1 = "10.211.55.2", "10.211.55.10", "172.18.0.2", "10.0.0.2"
TASKS = {"10.0.0.5": "node1.web.1.eth0", "10.0.0.9": "node1.web.9.eth0"}
PORT = 9090
MSS = 1448
POINTS = ["client.host.eth0", "node1.host.eth0", "node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0",
          "node1.1-abcdef1234.br0"]
KIND = {"client.host.eth0": "client", "node1.host.eth0": "client", "node1.ingress_sbox.eth1": "dnat"}
T0 = 1_700_000_000_000_000_000


@dataclass
class Seg:
    fwd: bool
    seq: int
    ack: int
    flags: str
    tsval: int
    tsecr: int
    ipid: int
    payload: bytes = b""
    t: int = 0  # ns since the connection's start, at the first hop in its direction


@dataclass
class Conn:
    client_port: int
    snat_port: int
    task: str = "10.0.0.5"
    size: int = 200_000
    start_ns: int = 0
    seed: int = 1
    lose_after: dict[int, str] = field(default_factory=dict)  # reply segment index -> last point it reaches
    reset: bool = False  # the server answers the request with a RST
    tail_uncaptured: int = 0  # the last bytes of the answer and the server's FIN are missing at every tap
    server_no_fin: bool = False  # the server never closes (the client's FIN acknowledges the data only)

    @property
    def path(self) -> list[str]:
        return [*POINTS, TASKS[self.task]]


def segments(c: Conn) -> list[Seg]:
    """Handshake, request, ``size`` bytes of answer in MSS segments (TSval changes every 16
    segments: GRO merges segments with equal options only), ACKs every 2 segments, FINs; lost
    reply segments are sent again at the end (retransmissions, new TSval)."""
    rnd = random.Random(c.seed)
    ic, is_ = rnd.getrandbits(32), rnd.getrandbits(32)
    tc, ts = rnd.getrandbits(30), rnd.getrandbits(30)
    req = f"GET /bytes/{c.size} HTTP/1.1\r\nHost: {NODE1}:{PORT}\r\n\r\n".encode()
    body = f"HTTP/1.1 200 OK\r\n\r\nHost IP is {NODE1}, task web {c.task}\n".encode().ljust(c.size, b"x")
    out = [Seg(True, ic, 0, "S", tc, 0, 1), Seg(False, is_, ic + 1, "SA", ts, tc, 0),
           Seg(True, ic + 1, is_ + 1, "A", tc, ts, 2), Seg(True, ic + 1, is_ + 1, "PA", tc, ts, 3, req)]
    cack = ic + 1 + len(req)
    if c.reset:
        return [*out, Seg(False, is_ + 1, cack, "RA", ts + 1, tc, 0, t=1_000_000)]
    t = 1_000_000
    chunks = [body[i:i + MSS] for i in range(0, len(body), MSS)]
    for k, chunk in enumerate(chunks):
        out.append(Seg(False, is_ + 1 + k * MSS, cack, "A" if k < len(chunks) - 1 else "PA", ts + 1 + k // 16, tc,
                       1 + k, chunk, t))
        t += 20_000
        if k % 2 == 1:
            out.append(Seg(True, ic + 1, is_ + 1 + (k + 1) * MSS, "A", tc + 1 + k // 16, ts + 1 + k // 16, 4 + k,
                           t=t))
    end = is_ + 1 + len(body)
    for r, k in enumerate(sorted(c.lose_after)):
        t += 200_000
        out.append(Seg(False, is_ + 1 + k * MSS, cack, "A", ts + 5000 + r, tc, 5000 + r, chunks[k], t))
    t += 1_000_000
    if c.server_no_fin:
        return [*out, Seg(True, cack, end, "FA", tc + 9000, ts + 9000, 9000, t=t + 50_000),
                Seg(False, end, cack + 1, "A", ts + 9001, tc + 9000, 9001, t=t + 100_000)]
    out += [Seg(False, end, cack, "FA", ts + 9000, tc, 9000, t=t),
            Seg(True, cack, end + 1, "FA", tc + 9000, ts + 9000, 9000, t=t + 50_000),
            Seg(False, end + 1, cack + 1, "A", ts + 9001, tc + 9000, 9001, t=t + 100_000)]
    if c.tail_uncaptured:  # tcpdump dropped them at every tap; the client's ACKs of them were captured
        gone = end - c.tail_uncaptured
        out = [s for s in out if s.fwd or not (s.seq >= gone and (s.payload or "F" in s.flags))]
    return out


def frame(c: Conn, point: str, s: Seg, payload: bytes | None = None) -> bytes:
    kind = KIND.get(point, "lb")
    if kind == "client":
        a, ap, b, bp = CLIENT, c.client_port, NODE1, PORT
    elif kind == "dnat":
        a, ap, b, bp = CLIENT, c.client_port, SBOX_GW, PORT
    else:
        a, ap, b, bp = INGRESS1, c.snat_port, c.task, PORT
    if not s.fwd:
        a, ap, b, bp = b, bp, a, ap
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (s.tsval, s.tsecr))]
    pkt = Ether(src="02:42:00:00:00:01", dst="02:42:00:00:00:02") / IP(src=a, dst=b, id=s.ipid, flags="DF") / TCP(
        sport=ap, dport=bp, seq=s.seq % (1 << 32), ack=s.ack % (1 << 32), flags=s.flags, window=501, options=opts)
    data = s.payload if payload is None else payload
    return bytes(pkt / Raw(data)) if data else bytes(pkt)


def merge_super(segs: list[Seg], limit: int = 65000) -> list[Seg]:
    """GRO/GSO at a tap: consecutive reply data segments with the same ack and TSval become one
    (client ACKs in between do not interrupt them)."""
    out: list[Seg] = []
    last_reply = -1
    for s in segs:
        last = out[last_reply] if last_reply >= 0 else None
        if (last is not None and not s.fwd and s.payload and last.payload
                and s.seq == last.seq + len(last.payload) and (s.ack, s.tsval) == (last.ack, last.tsval)
                and len(last.payload) + len(s.payload) <= limit and "F" not in s.flags):
            out[last_reply] = Seg(False, last.seq, last.ack, last.flags, last.tsval, last.tsecr, last.ipid,
                                  last.payload + s.payload, last.t)
            continue
        out.append(s)
        if not s.fwd:
            last_reply = len(out) - 1
    return out


@dataclass
class Shape:
    super_at: set[str] = field(default_factory=set)
    snaplen: dict[str, int] = field(default_factory=dict)
    any_at: set[str] = field(default_factory=set)  # `tcpdump -i any` (SLL2): every packet twice
    window: tuple[int, int] | None = None  # capture only between these times (ns since T0)
    empty: set[str] = field(default_factory=set)
    missed: dict[str, set[int]] = field(default_factory=dict)  # tap -> reply chunks whose first copy it missed


def _sll2(data: bytes, ifindex: int, pkttype: int) -> bytes:
    ip = data[14:]
    return struct.pack("!HHIHBB8s", 0x0800, 0, ifindex, 1, pkttype, 6, b"\x02\x42\0\0\0\x01\0\0") + ip


def build(conns: list[Conn], out: Path, shape: Shape) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    per_point: dict[str, list[tuple[int, bytes]]] = {}
    for c in conns:
        all_segs = segments(c)
        lost = {all_segs.index(s) for s in all_segs if not s.fwd and s.payload and s.seq in
                {all_segs[1].seq + 1 + k * MSS for k in c.lose_after} and s.ipid < 5000}
        for hop_no, point in enumerate(c.path):
            segs = [s for i, s in enumerate(all_segs) if not (i in lost and _after(c, point, s))
                    and not (s.ipid < 5000 and s.payload and not s.fwd
                             and (s.seq - all_segs[1].seq - 1) // MSS in shape.missed.get(point, ()))]
            if point in shape.super_at:
                segs = merge_super(segs)
            for s in segs:
                pos = hop_no if s.fwd else len(c.path) - 1 - hop_no
                ts = T0 + c.start_ns + s.t + pos * 15_000
                if shape.window and not shape.window[0] <= ts - T0 <= shape.window[1]:
                    continue
                per_point.setdefault(point, []).append((ts, frame(c, point, s)))
    for point in {p for c in conns for p in c.path}:
        recs = sorted(per_point.get(point, []), key=lambda r: r[0]) if point not in shape.empty else []
        if point in shape.any_at:
            twice = [(ts + d, _sll2(f, 2 + d, 0 if d == 0 else 4)) for ts, f in recs for d in (0, 1)]
            write_pcap(out / f"{point}.pcap", twice, linktype=LINUX_SLL2)
        else:
            write_pcap(out / f"{point}.pcap", recs, snaplen=shape.snaplen.get(point, 262144))
    return out


def _after(c: Conn, point: str, s: Seg) -> bool:
    """Whether ``point`` lies beyond where reply segment ``s`` is lost (replies travel backwards)."""
    k = (s.seq - (segments(c)[1].seq + 1)) // MSS
    stop = c.lose_after[k]
    return c.path.index(point) < c.path.index(stop)


def _analyze(d: Path, conns: list[Conn]):
    names = sorted({p for c in conns for p in c.path})
    return analyze([d], topology=Topology(points={n: parse_point(n) for n in names}))


def _check_ok(c: dict, conn: Conn) -> None:
    assert c["client"] == f"{CLIENT}:{conn.client_port}"
    assert c["backend"] == f"{conn.task}:{PORT}"
    assert c["status"] == "closed", c["verdict"]
    assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0 and c["missing_at"] is None, c["verdict"]
    assert [h["point"] for h in c["hops"]] == conn.path


def test_super_segments_and_snaplen_cuts_are_the_same_bytes(tmp_path):
    conn = Conn(51000, 41000)
    d = build([conn], tmp_path / "cap", Shape(super_at={"node1.host.eth0", "node1.ingress_sbox.eth0"},
                                              snaplen={"node1.ingress_sbox.eth1": 128, "node1.1-abcdef1234.br0": 96}))
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    _check_ok(c, conn)
    assert c["verdict"] == "ok" and c["retransmissions"] == 0
    hops = a.hops.set_index("point")
    assert (hops["bytes_bwd"] == conn.size + 2).all()  # every hop carried the whole answer (+ SYN, FIN)
    assert hops.loc["node1.host.eth0", "segments_bwd"] < hops.loc["client.host.eth0", "segments_bwd"] / 8
    assert a.losses.empty


def test_loss_recovered_by_retransmission_is_placed_between_its_two_taps(tmp_path):
    conn = Conn(51001, 41001, lose_after={5: "node1.ingress_sbox.eth0", 40: "node1.ingress_sbox.eth0",
                                          90: "node1.host.eth0"})
    d = build([conn], tmp_path / "cap", Shape(super_at={"node1.1-abcdef1234.br0"}))
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    assert c["status"] == "closed" and c["backend"] == f"10.0.0.5:{PORT}"
    assert c["lost_bwd"] == 3 and c["lost_fwd"] == 0
    assert c["retransmissions"] == 3
    assert c["missing_at"] is None
    row = a.connections.iloc[0]
    assert row["verdict_code"] == "lost-between"
    assert "lost between node1.ingress_sbox.eth0 and node1.ingress_sbox.eth1" in c["verdict"]
    ls = a.losses
    assert len(ls) == 3 and (ls["dir"] == "reply").all() and ls["delivered"].all()
    pairs = sorted(zip(ls["from_point"], ls["to_point"], ls["start"], strict=True))
    assert pairs == sorted([("node1.ingress_sbox.eth0", "node1.ingress_sbox.eth1", 1 + 5 * MSS),
                            ("node1.ingress_sbox.eth0", "node1.ingress_sbox.eth1", 1 + 40 * MSS),
                            ("node1.host.eth0", "client.host.eth0", 1 + 90 * MSS)])
    sender = a.hops.set_index("point").loc["node1.web.1.eth0"]
    assert sender["retrans_bwd"] == 3 and sender["lost_bwd"] == 0


def test_any_interface_duplicates_are_not_retransmissions(tmp_path):
    conn = Conn(51002, 41002)
    d = build([conn], tmp_path / "cap", Shape(any_at={"node1.ingress_sbox.eth1"}))
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    _check_ok(c, conn)
    assert c["retransmissions"] == 0 and c["verdict"] == "ok"
    hop = a.hops.set_index("point").loc["node1.ingress_sbox.eth1"]
    assert hop["duplicates"] == hop["packets"]  # each packet was there twice
    assert a.summary["linktypes"].get("LINUX_SLL2(276)") == 2 * hop["packets"]


def test_capture_started_and_stopped_mid_connection(tmp_path):
    conn = Conn(51003, 41003)
    d = build([conn], tmp_path / "cap", Shape(window=(1_500_000, 3_000_000)))
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    assert c["backend"] == f"10.0.0.5:{PORT}"
    assert [h["point"] for h in c["hops"]] == conn.path
    assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0 and c["missing_at"] is None
    assert a.connections.iloc[0]["verdict_code"] == "incomplete-capture"
    assert "mid-connection" in c["verdict"]


def test_port_reused_after_time_wait_is_two_connections(tmp_path):
    first = Conn(51004, 41004, task="10.0.0.5", seed=3)
    second = Conn(51004, 41004, task="10.0.0.9", seed=4, start_ns=400_000_000)
    d = build([first, second], tmp_path / "cap", Shape())
    a = _analyze(d, [first, second])
    conns = sorted(a.to_json()["connections"], key=lambda c: c["first_ts_ns"])
    assert len(conns) == 2
    _check_ok(conns[0], first)
    _check_ok(conns[1], second)
    assert [c["verdict"] for c in conns] == ["ok", "ok"]


@pytest.mark.parametrize("how", ["empty", "elsewhere"])
def test_tap_with_no_packets_is_no_data_not_a_loss(tmp_path, how):
    conn = Conn(51005, 41005, start_ns=60_000_000_000)
    quiet = "node1.ingress_sbox.eth0"
    conns = [conn]
    if how == "elsewhere":  # the tap only holds a connection a minute earlier
        conns.insert(0, Conn(51006, 41006, seed=9))
    d = build(conns, tmp_path / "cap", Shape())
    if how == "empty":
        write_pcap(d / f"{quiet}.pcap", [])
    else:
        early = build(conns[:1], tmp_path / "early", Shape())
        (early / f"{quiet}.pcap").replace(d / f"{quiet}.pcap")
    a = _analyze(d, [conn])
    c = next(x for x in a.to_json()["connections"] if x["client"] == f"{CLIENT}:{conn.client_port}")
    assert c["status"] == "closed" and c["backend"] == f"10.0.0.5:{PORT}"
    assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0 and c["missing_at"] is None, c["verdict"]
    row = a.connections.set_index("conn_id").loc[c["id"]]
    assert row["verdict_code"] == "incomplete-capture"
    assert row["no_data_at"] == quiet
    assert f"no data from {quiet}" in c["verdict"]


def test_reset_by_the_server_is_named_with_its_side(tmp_path):
    conn = Conn(51007, 41007, reset=True)
    d = build([conn], tmp_path / "cap", Shape())
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    assert c["status"] == "reset" and c["backend"] == f"10.0.0.5:{PORT}"
    assert c["missing_at"] is None and c["lost_fwd"] == 0 and c["lost_bwd"] == 0
    row = a.connections.iloc[0]
    assert row["verdict_code"] == "reset-by" and row["ev_dir"] == "server"
    assert row["ev_from"] == "node1.web.1.eth0"
    assert c["verdict"] == "reset: RST sent by the server side, first seen at node1.web.1.eth0"


def test_fin_no_tap_captured_is_proven_by_the_ack_covering_it(tmp_path):
    """The trial's cap1/cap4 shape: the answer's last ~34 KB and the server's FIN were dropped by
    tcpdump at every tap, the client's FIN acknowledges the server's FIN (end + 1) and the server
    acknowledges the client's FIN: the connection closed, and nothing was lost."""
    conn = Conn(51008, 41008, tail_uncaptured=34_000)
    d = build([conn], tmp_path / "cap", Shape(super_at={"node1.host.eth0"}))
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    _check_ok(c, conn)
    assert c["verdict"] == "ok" and a.losses.empty
    hops = a.hops.set_index("point")
    assert (hops["bytes_bwd"] < conn.size - 30_000).all()  # the tail really is missing everywhere


def test_fin_truly_unacknowledged_stays_open(tmp_path):
    """The server never sent a FIN: the client's FIN acknowledges the data only (``end``), nothing
    covers ``end + 1``: the connection is not closed."""
    conn = Conn(51009, 41009, server_no_fin=True)
    d = build([conn], tmp_path / "cap", Shape())
    a = _analyze(d, [conn])
    (c,) = a.to_json()["connections"]
    assert c["status"] == "established", c["verdict"]
    assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0


def _missing_first_copy(tmp_path: Path, stats: dict[str, int] | None) -> tuple:
    """Reply segment 30 is really lost after node1.host.eth0 (before the client); node1.host.eth0's
    tcpdump missed that first copy and three other segments (seen at sbox.eth1 and the client)."""
    conn = Conn(51010, 41010, lose_after={30: "node1.host.eth0"})
    d = build([conn], tmp_path / "cap", Shape(missed={"node1.host.eth0": {12, 30, 55, 90}}))
    if stats is not None:
        per = {p: {"captured": 100, "received": 100 + n, "dropped_kernel": n} for p, n in stats.items()}
        (d / "capture_stats.json").write_text(json.dumps({"capture_stats": per}))
    a = analyze([d], topology=Topology(points={n: parse_point(n) for n in conn.path}))
    (c,) = a.to_json()["connections"]
    return a, c, a.connections.iloc[0]


def test_missed_tap_inside_a_node_widens_the_loss_placement(tmp_path):
    a, c, row = _missing_first_copy(tmp_path, None)
    assert c["status"] == "closed" and c["lost_bwd"] == 1 and c["retransmissions"] == 1
    assert row["verdict_code"] == "lost-between"
    assert row["ev_from"] == "node1.ingress_sbox.eth1" and row["ev_to"] == "client.host.eth0"
    assert row["ev_missed_at"] == "node1.host.eth0"
    assert c["verdict"].endswith("; node1.host.eth0 missed packets")
    (loss,) = a.losses.itertuples()
    assert (loss.from_point, loss.to_point, loss.missed_at, loss.start) == (
        "node1.ingress_sbox.eth1", "client.host.eth0", "node1.host.eth0", 1 + 30 * MSS)
    # rule (a): the other three segments node1.host.eth0 missed are seen further on: not losses
    assert a.hops.set_index("point").loc["node1.host.eth0", "missed_bytes_bwd"] == 3 * MSS


def test_loss_next_to_a_tap_that_dropped_is_an_incomplete_capture(tmp_path):
    a, c, row = _missing_first_copy(tmp_path, {"node1.host.eth0": 1234, "client.host.eth0": 0})
    assert row["verdict_code"] == "incomplete-capture"
    assert row["ev_capture_drops"] == "node1.host.eth0 (1234 dropped)"
    assert "tcpdump dropped packets at node1.host.eth0 (1234 dropped)" in c["verdict"]
    assert c["missing_at"] is None


def test_drop_counts_elsewhere_leave_a_loss_a_loss(tmp_path):
    a, c, row = _missing_first_copy(tmp_path, {"node1.1-abcdef1234.br0": 50, "node1.host.eth0": 0})
    assert row["verdict_code"] == "lost-between" and pd.isna(row["ev_capture_drops"])


def test_the_table_names_a_recovered_loss(tmp_path):
    """The default table shows the verdict code and the lost segments, not only the status."""
    from meshpkt.cli.render import render_analysis

    conn = Conn(51001, 41001, lose_after={5: "node1.ingress_sbox.eth0", 40: "node1.ingress_sbox.eth0",
                                          90: "node1.host.eth0"})
    a = _analyze(build([conn], tmp_path / "cap", Shape()), [conn])
    out = tmp_path / "table.txt"
    render_analysis(a, out=out)
    text = " ".join(out.read_text().split())
    assert "lost-between (3 lost)" in text, text[-1500:]
