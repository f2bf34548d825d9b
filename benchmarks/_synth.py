"""Vectorised generator of multi-point captures of Swarm's ingress path (benchmark data).

Builds, with numpy only (no Python loop per packet), the pcaps that six capture points would
record for N TCP connections entering the routing mesh on node1's published port
(seed 001 section 7)::

    client.host.eth0          C:cport      > 10.211.55.10:9090
    node1.host.eth0           C:cport      > 10.211.55.10:9090          (same packet, as it arrives)
    node1.ingress_sbox.eth1   C:cport      > 172.18.0.2:9090            (after DNAT in the host)
    node1.ingress_sbox.eth0   10.0.0.2:snat > task:9090                 (after IPVS masq + SNAT)
    node1.host.eth0           VXLAN vni 4096 10.211.55.10 > 10.211.55.18/.22 udp 4789 | inner as above
    node2.host.eth0           VXLAN vni 4096 10.211.55.10 > 10.211.55.18 udp 4789 | inner as above
    node2.web.2.eth0          10.0.0.2:snat > 10.0.0.6:9090

IPVS picks the backends round-robin among web.1 (10.0.0.5 on node1: the packet never leaves
node1, 4 hops captured), web.2 (10.0.0.6 on node2: 7 hops captured) and web.3 (10.0.0.7 on
node3, whose points are not captured: 5 hops). Every connection is 8 segments (SYN, SYN-ACK,
ACK, request, response, server FIN, client FIN, last ACK) with random ISNs, TCP timestamps,
IP ids and HTTP payloads carrying the request number; NAT rewrites only addresses and ports
(and checksums), exactly as the kernel does, so matching must use the invariant fields.

Frames are fixed-size templates per (segment kind, view) patched column-wise for all rows
of a group at once, then scattered with their pcap record headers into one flat buffer per
file at offsets given by the time order. IPv4 and TCP checksums are computed (vectorised).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PORT = 9090
VNI = 4096
VXLAN_PORT = 4789
HOP_NS = 20_000  # hop i of a packet is seen at t + i * 20 us
SEG_NS = 1_000_000  # packets of a connection are 1 ms apart
T0_NS = 1_718_000_000_000_000_000
ENTRY = "node1"


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def ip4(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


NODES = {"node1": ip("10.211.55.10"), "node2": ip("10.211.55.18"), "node3": ip("10.211.55.22")}
INGRESS_IP = ip("10.0.0.2")  # ingress_sbox's address on the ingress overlay (the SNAT source)
SBOX_GW_IP = ip("172.18.0.2")  # ingress_sbox's docker_gwbridge address (the DNAT target)


@dataclass(frozen=True)
class Task:
    name: str
    ip: int
    node: str


TASKS = (Task("web.1", ip("10.0.0.5"), "node1"), Task("web.2", ip("10.0.0.6"), "node2"),
         Task("web.3", ip("10.0.0.7"), "node3"))

POINTS = ("client.host.eth0", "node1.host.eth0", "node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0",
          "node2.host.eth0", "node2.web.2.eth0")

# MACs
MAC_CLIENT = 0x001C42AABB02
MAC_NODE = {"node1": 0x001C42000010, "node2": 0x001C42000018, "node3": 0x001C42000022}
MAC_GWBRIDGE = 0x0242F3A1B2C4  # docker_gwbridge (random 02:42 MAC)
MAC_SBOX_ETH1 = 0x0242AC120002  # 02:42 + 172.18.0.2


def task_mac(addr: np.ndarray) -> np.ndarray:
    return np.uint64(0x024200000000) | addr.astype(np.uint64)


# views: how a packet looks at a point
CLIENT, DNAT, LB, ENC = 0, 1, 2, 3
VIEW_NAMES = ("client", "dnat", "lb", "enc")


def task_path(task: Task) -> list[tuple[str, int]]:
    """Captured (point, view) pairs of a connection to ``task``, in forward order."""
    path = [("client.host.eth0", CLIENT), ("node1.host.eth0", CLIENT), ("node1.ingress_sbox.eth1", DNAT),
            ("node1.ingress_sbox.eth0", LB)]
    if task.node != ENTRY:
        path.append(("node1.host.eth0", ENC))
        if task.node == "node2":
            path.append(("node2.host.eth0", ENC))
    if task.node == "node2" and task.name == "web.2":
        path.append(("node2.web.2.eth0", LB))
    return [p for p in path if p[0] in POINTS]


# ---------------------------------------------------------------------------------------- segments
# (forward?, TCP flags, SYN options?)
SEGMENTS = ((True, 0x02, True), (False, 0x12, True), (True, 0x10, False), (True, 0x18, False),
            (False, 0x18, False), (False, 0x11, False), (True, 0x11, False), (False, 0x10, False))
WINDOWS = (64240, 65160, 502, 502, 509, 509, 502, 509)
REQ_SEG, RESP_SEG = 3, 4

REQUEST = (b"GET /?req=00000000 HTTP/1.1\r\nHost: 10.211.55.10:9090\r\nUser-Agent: curl/8.5.0\r\n"
           b"Accept: */*\r\n\r\n")
REQ_ID_AT = REQUEST.index(b"00000000")
BODY = b"Host IP is 10.211.55.00, task web.0 (10.0.0.0), request 00000000\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + BODY)
RESP_NODE_AT = RESPONSE.index(b"55.00, ") + 3
RESP_TASK_AT = RESPONSE.index(b"web.0") + 4
RESP_TIP_AT = RESPONSE.index(b"10.0.0.0)") + 7
RESP_ID_AT = RESPONSE.index(b"request 00000000") + 8
LQ, LR = len(REQUEST), len(RESPONSE)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)

SYN_OPTS = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7])  # MSS SAckOK TS NOP WS
ACK_OPTS = bytes([1, 1, 8, 10]) + bytes(8)  # NOP NOP TS


def _payload(seg: int) -> bytes:
    return REQUEST if seg == REQ_SEG else RESPONSE if seg == RESP_SEG else b""


def inner_template(seg: int) -> bytes:
    """Ethernet/IPv4/TCP frame of segment ``seg`` with the per-row fields zeroed."""
    _, flags, syn = SEGMENTS[seg]
    opts = SYN_OPTS if syn else ACK_OPTS
    if flags & 0x10 and syn:  # the task's SYN-ACK: MSS of the 1450-byte overlay MTU
        opts = opts[:2] + (1410).to_bytes(2, "big") + opts[4:]
    pl = _payload(seg)
    tcp_len = 20 + len(opts)
    tot = 20 + tcp_len + len(pl)
    eth = bytes(12) + b"\x08\x00"
    iph = bytes([0x45, 0]) + tot.to_bytes(2, "big") + bytes(2) + b"\x40\x00" + bytes([64, 6]) + bytes(10)
    tcph = bytes(12) + bytes([(tcp_len // 4) << 4, flags]) + WINDOWS[seg].to_bytes(2, "big") + bytes(4)
    return eth + iph + tcph + opts + pl


# ---------------------------------------------------------------------------------------- connections
@dataclass
class Connections:
    """Per-connection ground truth and the random fields of its packets (all numpy arrays)."""

    start_ns: np.ndarray
    client_ip: np.ndarray
    client_port: np.ndarray
    task: np.ndarray  # index into TASKS
    snat_port: np.ndarray
    isn_c: np.ndarray
    isn_s: np.ndarray
    tsv_c: np.ndarray
    tsv_s: np.ndarray
    ipid_c: np.ndarray
    ipid_s: np.ndarray
    vx_sport: np.ndarray  # (n, 2): forward, backward
    outer_id: np.ndarray  # (n, 2)

    def __len__(self) -> int:
        return len(self.start_ns)


def make_connections(n: int, seed: int = 1, spacing_ns: int = 100_000) -> Connections:
    """``n`` connections started at random times over ``n * spacing_ns`` (they overlap), with
    unique client endpoints and unique SNAT ports per task."""
    rng = np.random.default_rng(seed)
    per_task = -(-n // len(TASKS))
    if per_task > 65536 - 1024:
        raise ValueError(f"{n} connections need more than 64512 SNAT ports per task")
    start = T0_NS + np.sort(rng.integers(0, max(n * spacing_ns, 1), size=n, dtype=np.int64))
    # clients: 10.211.56.0/21 x ports 32768..60999, unique pairs
    n_ips, n_ports = 2048, 61000 - 32768
    pick = rng.choice(n_ips * n_ports, size=n, replace=False)
    client_ip = (ip("10.211.56.0") + 1 + pick // n_ports).astype(np.uint32)
    client_port = (32768 + pick % n_ports).astype(np.int64)
    task = np.arange(n) % len(TASKS)  # IPVS rr, in connection order
    snat = np.empty(n, dtype=np.int64)
    for t in range(len(TASKS)):
        sel = np.flatnonzero(task == t)
        snat[sel] = 1024 + rng.permutation(65536 - 1024)[: len(sel)]
    u32 = lambda: rng.integers(0, 2**32, size=n, dtype=np.int64)  # noqa: E731
    return Connections(
        start_ns=start, client_ip=client_ip, client_port=client_port, task=task, snat_port=snat,
        isn_c=u32(), isn_s=u32(), tsv_c=rng.integers(0, 2**31, size=n, dtype=np.int64),
        tsv_s=rng.integers(0, 2**31, size=n, dtype=np.int64), ipid_c=rng.integers(0, 65536, size=n),
        ipid_s=rng.integers(0, 65536, size=n), vx_sport=rng.integers(32768, 61000, size=(n, 2)),
        outer_id=rng.integers(0, 65536, size=(n, 2)),
    )


def segment_fields(c: Connections, rows: np.ndarray, seg: int) -> dict[str, np.ndarray]:
    """seq, ack, tsval, tsecr, ip id of segment ``seg`` for connections ``rows``."""
    ic, is_ = c.isn_c[rows], c.isn_s[rows]
    tc, ts = c.tsv_c[rows], c.tsv_s[rows]
    idc, ids = c.ipid_c[rows], c.ipid_s[rows]
    z = np.zeros(len(rows), dtype=np.int64)
    table = {  # seg: (seq, ack, tsval, tsecr, ipid)
        0: (ic, z, tc, z, idc),
        1: (is_, ic + 1, ts + 1, tc, z),  # Linux sends the DF SYN-ACK with IP id 0
        2: (ic + 1, is_ + 1, tc + 2, ts + 1, idc + 1),
        3: (ic + 1, is_ + 1, tc + 3, ts + 1, idc + 2),
        4: (is_ + 1, ic + 1 + LQ, ts + 4, tc + 3, ids),
        5: (is_ + 1 + LR, ic + 1 + LQ, ts + 5, tc + 3, ids + 1),
        6: (ic + 1 + LQ, is_ + 2 + LR, tc + 6, ts + 5, idc + 3),
        7: (is_ + 2 + LR, ic + 2 + LQ, ts + 7, tc + 6, ids + 2),
    }
    seq, ack, tsv, tse, ipid = table[seg]
    return {"seq": seq & 0xFFFFFFFF, "ack": ack & 0xFFFFFFFF, "tsval": tsv & 0xFFFFFFFF,
            "tsecr": tse & 0xFFFFFFFF, "ipid": ipid & 0xFFFF}


# ---------------------------------------------------------------------------------------- frames
def _put(m: np.ndarray, off: int, vals: np.ndarray | int, nbytes: int) -> None:
    """Write big-endian ``vals`` into columns ``off:off+nbytes`` of every row."""
    v = np.broadcast_to(np.asarray(vals, dtype=np.uint64), (m.shape[0],)).astype(">u8")
    m[:, off:off + nbytes] = v.view(np.uint8).reshape(-1, 8)[:, 8 - nbytes:]


def _put_le(m: np.ndarray, off: int, vals: np.ndarray | int, nbytes: int) -> None:
    v = np.broadcast_to(np.asarray(vals, dtype=np.uint64), (m.shape[0],)).astype("<u8")
    m[:, off:off + nbytes] = v.view(np.uint8).reshape(-1, 8)[:, :nbytes]


def _csum(m: np.ndarray, a: int, b: int, extra: np.ndarray | None = None) -> np.ndarray:
    """Internet checksum of columns ``a:b`` of each row (plus ``extra`` pre-summed words)."""
    hi = m[:, a:b:2].astype(np.uint64)
    lo = m[:, a + 1:b:2].astype(np.uint64)
    s = (hi.sum(axis=1) << np.uint64(8)) + lo.sum(axis=1)
    if extra is not None:
        s = s + extra.astype(np.uint64)
    while True:
        carry = s >> np.uint64(16)
        if not carry.any():
            break
        s = (s & np.uint64(0xFFFF)) + carry
    return (~s) & np.uint64(0xFFFF)


def _hex_digits(vals: np.ndarray, width: int) -> np.ndarray:
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64) * 4
    return HEX[(vals[:, None] >> shifts) & 15]


def _endpoints(c: Connections, rows: np.ndarray, view: int,
               fwd: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(src ip, sport, dst ip, dport, src mac, dst mac, ttl) of the inner packet."""
    n = len(rows)
    task_ip = np.array([t.ip for t in TASKS], dtype=np.int64)[c.task[rows]]
    ap: np.ndarray | int
    bp: np.ndarray | int
    if view == CLIENT:
        a, ap, b, bp = c.client_ip[rows].astype(np.int64), c.client_port[rows], np.full(n, NODES[ENTRY]), PORT
        am, bm = np.full(n, MAC_CLIENT, np.uint64), np.full(n, MAC_NODE[ENTRY], np.uint64)
        ttl = 64 if fwd else 62
    elif view == DNAT:
        a, ap, b, bp = c.client_ip[rows].astype(np.int64), c.client_port[rows], np.full(n, SBOX_GW_IP), PORT
        am, bm = np.full(n, MAC_GWBRIDGE, np.uint64), np.full(n, MAC_SBOX_ETH1, np.uint64)
        ttl = 63
    else:
        a, ap, b, bp = np.full(n, INGRESS_IP), c.snat_port[rows], task_ip, PORT
        am, bm = task_mac(np.full(n, INGRESS_IP)), task_mac(task_ip)
        ttl = 62 if fwd else 64
    if not fwd:
        a, ap, b, bp, am, bm = b, bp, a, ap, bm, am
    return a, np.broadcast_to(ap, (n,)), b, np.broadcast_to(bp, (n,)), am, bm, ttl


def build_frames(c: Connections, rows: np.ndarray, seg: int, view: int) -> np.ndarray:
    """(len(rows), 16 + frame length) uint8: pcap record header (timestamp left 0) + frame."""
    fwd = SEGMENTS[seg][0]
    tpl = np.frombuffer(inner_template(seg), dtype=np.uint8)
    enc = view == ENC
    o = 16 + (50 if enc else 0)  # inner Ethernet offset within the row
    width = o + len(tpl)
    n = len(rows)
    m = np.zeros((n, width), dtype=np.uint8)
    m[:, o:] = tpl
    _put_le(m, 8, width - 16, 4)
    _put_le(m, 12, width - 16, 4)
    a, ap, b, bp, am, bm, ttl = _endpoints(c, rows, LB if enc else view, fwd)
    f = segment_fields(c, rows, seg)
    _put(m, o, bm, 6)
    _put(m, o + 6, am, 6)
    ipo, tco = o + 14, o + 34
    _put(m, ipo + 4, f["ipid"], 2)
    m[:, ipo + 8] = ttl
    _put(m, ipo + 12, a, 4)
    _put(m, ipo + 16, b, 4)
    _put(m, ipo + 10, _csum(m, ipo, ipo + 20), 2)
    _put(m, tco, ap, 2)
    _put(m, tco + 2, bp, 2)
    _put(m, tco + 4, f["seq"], 4)
    _put(m, tco + 8, f["ack"], 4)
    tso = tco + (28 if SEGMENTS[seg][2] else 24)  # TSval after MSS+SAckOK+kind/len, or NOP NOP kind/len
    _put(m, tso, f["tsval"], 4)
    _put(m, tso + 4, f["tsecr"], 4)
    pl = o + len(tpl) - len(_payload(seg))
    idx = rows.astype(np.int64)
    if seg == REQ_SEG:
        m[:, pl + REQ_ID_AT:pl + REQ_ID_AT + 8] = _hex_digits(idx, 8)
    elif seg == RESP_SEG:
        t = c.task[rows]
        node_ip = np.array([NODES[x.node] & 255 for x in TASKS])[t]
        m[:, pl + RESP_NODE_AT] = DIGITS[node_ip // 10]
        m[:, pl + RESP_NODE_AT + 1] = DIGITS[node_ip % 10]
        m[:, pl + RESP_TASK_AT] = np.frombuffer(b"".join(x.name[-1:].encode() for x in TASKS), np.uint8)[t]
        m[:, pl + RESP_TIP_AT] = DIGITS[np.array([x.ip & 255 for x in TASKS])[t] % 10]
        m[:, pl + RESP_ID_AT:pl + RESP_ID_AT + 8] = _hex_digits(idx, 8)
    tcp_len = len(tpl) - 34
    pseudo = (a >> 16) + (a & 0xFFFF) + (b >> 16) + (b & 0xFFFF) + 6 + tcp_len
    _put(m, tco + 16, _csum(m, tco, width, pseudo), 2)
    if enc:
        tnode = [TASKS[k].node for k in range(len(TASKS))]
        remote = np.array([NODES[x] for x in tnode], dtype=np.int64)[c.task[rows]]
        rmac = np.array([MAC_NODE[x] for x in tnode], dtype=np.uint64)[c.task[rows]]
        vs, vd = (np.full(n, NODES[ENTRY]), remote) if fwd else (remote, np.full(n, NODES[ENTRY]))
        ms, md = (np.full(n, MAC_NODE[ENTRY], np.uint64), rmac) if fwd else (rmac, np.full(n, MAC_NODE[ENTRY],
                                                                                              np.uint64))
        _put(m, 16, md, 6)
        _put(m, 22, ms, 6)
        _put(m, 28, 0x0800, 2)
        oi = 30
        m[:, oi] = 0x45
        _put(m, oi + 2, 36 + len(tpl), 2)
        _put(m, oi + 4, (c.outer_id[rows, 0 if fwd else 1] + seg) & 0xFFFF, 2)
        m[:, oi + 8] = 64
        m[:, oi + 9] = 17
        _put(m, oi + 12, vs, 4)
        _put(m, oi + 16, vd, 4)
        _put(m, oi + 10, _csum(m, oi, oi + 20), 2)
        u = oi + 20
        _put(m, u, c.vx_sport[rows, 0 if fwd else 1], 2)
        _put(m, u + 2, VXLAN_PORT, 2)
        _put(m, u + 4, 16 + len(tpl), 2)  # UDP checksum 0, as Linux VXLAN sends it
        m[:, u + 8] = 0x08
        _put(m, u + 12, VNI, 3)
    return m


# ---------------------------------------------------------------------------------------- files
def _groups(c: Connections, point: str) -> list[tuple[np.ndarray, int, int, np.ndarray]]:
    """(rows, seg, view, ts_ns) of every packet group ``point`` sees."""
    out = []
    for t, task in enumerate(TASKS):
        path = task_path(task)
        rows = np.flatnonzero(c.task == t)
        if not len(rows):
            continue
        for i, (p, view) in enumerate(path):
            if p != point:
                continue
            for seg, (fwd, _, _) in enumerate(SEGMENTS):
                hop = i if fwd else len(path) - 1 - i
                ts = c.start_ns[rows] + seg * SEG_NS + hop * HOP_NS
                out.append((rows, seg, view, ts))
    return out


def _width(seg: int, view: int) -> int:
    return 16 + (50 if view == ENC else 0) + len(inner_template(seg))


PCAP_HEADER = (np.array([0xA1B23C4D], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
               + np.array([0, 0, 262144, 1], "<u4").tobytes())


def write_point(c: Connections, point: str, path: Path, chunk: int = 32768) -> tuple[int, int]:
    """Write ``point``'s pcap (nanosecond, Ethernet); returns (records, bytes)."""
    groups = _groups(c, point)
    ts = np.concatenate([g[3] for g in groups]) if groups else np.zeros(0, np.int64)
    widths = np.concatenate([np.full(len(g[0]), _width(g[1], g[2]), np.int64) for g in groups]) \
        if groups else np.zeros(0, np.int64)
    order = np.argsort(ts, kind="stable")
    starts_sorted = np.empty(len(order), dtype=np.int64)
    if len(order):
        starts_sorted[0] = 24
        np.cumsum(widths[order][:-1], out=starts_sorted[1:])
        starts_sorted[1:] += 24
    starts = np.empty_like(starts_sorted)
    starts[order] = starts_sorted
    total = 24 + int(widths.sum())
    buf = np.empty(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(PCAP_HEADER, np.uint8)
    base = 0
    for rows, seg, view, gts in groups:
        w = _width(seg, view)
        for k in range(0, len(rows), chunk):
            r = rows[k:k + chunk]
            m = build_frames(c, r, seg, view)
            t = gts[k:k + chunk]
            _put_le(m, 0, t // 1_000_000_000, 4)
            _put_le(m, 4, t % 1_000_000_000, 4)
            pos = starts[base + k:base + k + len(r)]
            buf[pos[:, None] + np.arange(w)] = m
        base += len(rows)
    buf.tofile(path)
    return len(ts), total


def expected_hops() -> np.ndarray:
    """Number of capture points (local flows) each task's connections cross."""
    return np.array([len(task_path(t)) for t in TASKS])


def write_captures(c: Connections, out: Path) -> dict[str, tuple[int, int]]:
    """Write one pcap per capture point into ``out``; returns point -> (records, bytes)."""
    out.mkdir(parents=True, exist_ok=True)
    return {p: write_point(c, p, out / f"{p}.pcap") for p in POINTS}
