#!/usr/bin/env python3
"""Benchmark the exact path: IPv6 extension-header chains and IPv4 options, next to tshark and tcpdump.

Builds an N-packet (default 1,000,000) capture of the shapes that used to leave the columnar
fast path for the per-packet exact decoder -- MLD reports behind a hop-by-hop header with a
router alert, IPv6 TCP behind hop-by-hop + destination options + a routing header, IPv6 UDP
behind a fragment header, IPv4 TCP with a record-route option, IPv4 UDP with a router alert,
and VXLAN carrying IPv6 with extension headers -- then measures in the same run:

- meshpkt ``decode_file`` warm (best of 3 in a fresh process; every packet walks its chain);
- the per-packet reference decoder (``slow.decode_packet``, the old exact path) on a subset;
- ``tcpdump -nn -r file > /dev/null`` on the whole file;
- ``tshark -T fields`` on a subset (scaled).

Usage: ``python3 benchmarks/bench_exact.py [--packets N]``. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_decode import _subset, _time, measure_meshpkt, warm_cache  # noqa: E402

T0_NS = 1_718_000_000_000_000_000


def templates() -> list[tuple[bytes, int, float]]:
    """(frame, offset of a 4-byte field to vary per packet or -1, weight)."""
    from scapy.layers.inet import IP, TCP, UDP, IPOption_Router_Alert, IPOption_RR
    from scapy.layers.inet6 import (
        ICMPv6MLReport2,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        RouterAlert,
    )
    from scapy.layers.l2 import Ether

    e = Ether(src="52:54:00:00:00:0a", dst="52:54:00:00:00:12")
    v6 = IPv6(src="fd00::a", dst="fd00::12")
    ts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 1))]
    shapes = [
        (e / IPv6(src="fe80::1", dst="ff02::16") / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2(),
         0.2),
        (e / v6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=["fd00::99"])
         / TCP(sport=40000, dport=443, flags="PA", options=ts) / (b"q" * 200), 0.25),
        (e / v6 / IPv6ExtHdrFragment(m=1, id=7) / UDP(sport=5000, dport=53) / (b"d" * 120), 0.1),
        (e / IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])])
         / TCP(sport=40000, dport=80, flags="A", options=ts) / (b"h" * 300), 0.25),
        (e / IP(src="10.0.0.1", dst="224.0.0.22", options=[IPOption_Router_Alert()]) / UDP(sport=1, dport=2)
         / (b"u" * 40), 0.1),
        (e / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=45803, dport=4789)
         / (b"\x08\0\0\0\0\x10\0\0") / e / v6 / IPv6ExtHdrHopByHop()
         / TCP(sport=40001, dport=9090, flags="A", options=ts) / (b"v" * 100), 0.1),
    ]
    out = []
    for pkt, w in shapes:
        raw = bytes(pkt)
        seq_at = -1
        if TCP in pkt:
            seq_at = len(raw) - len(bytes(pkt[TCP])) + 4
        out.append((raw, seq_at, w))
    return out


def build_capture(path: Path, n: int, seed: int = 3) -> int:
    """An n-packet nanosecond pcap of ``templates()`` written with numpy in bulk; its size."""
    rng = np.random.default_rng(seed)
    tpls = templates()
    weights = np.array([w for _, _, w in tpls])
    kind = rng.choice(len(tpls), size=n, p=weights / weights.sum())
    lens = np.array([len(b) for b, _, _ in tpls], dtype=np.int64)
    rec_len = 16 + lens[kind]
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=starts[1:])
    starts += 24
    total = int(starts[-1] + rec_len[-1])
    buf = np.zeros(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(np.array([0xA1B23C4D], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
                             + np.array([0, 0, 262144, 1], "<u4").tobytes(), dtype=np.uint8)
    ts = T0_NS + np.cumsum(rng.integers(200, 20_000, size=n))
    hdr = np.zeros((n, 4), "<u4")
    hdr[:, 0] = ts // 1_000_000_000
    hdr[:, 1] = ts % 1_000_000_000
    hdr[:, 2] = hdr[:, 3] = lens[kind]
    hbytes = hdr.view(np.uint8).reshape(n, 16)
    buf[starts[:, None] + np.arange(16)] = hbytes
    for t, (frame, seq_at, _) in enumerate(tpls):
        rows = np.nonzero(kind == t)[0]
        rec = np.frombuffer(frame, dtype=np.uint8)
        for c in range(0, rows.size, 50_000):
            p = starts[rows[c:c + 50_000]] + 16
            buf[p[:, None] + np.arange(rec.size)] = rec
        if seq_at >= 0:
            seq = rng.integers(0, 2**32, rows.size, dtype=np.uint64).astype(">u4").view(np.uint8).reshape(-1, 4)
            buf[(starts[rows] + 16 + seq_at)[:, None] + np.arange(4)] = seq
    buf.tofile(path)
    return total


def reference_pps(path: Path, n: int) -> float:
    """Packets/s of the per-packet reference decoder (the pre-issue-17 exact path)."""
    from meshpkt.capture import open_capture
    from meshpkt.decode.slow import decode_packet

    cap = open_capture(path)
    t = time.perf_counter()
    for i in range(min(n, len(cap))):
        decode_packet(cap.packet(i), int(cap.wirelen[i]), 1)
    return min(n, len(cap)) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--tshark-packets", type=int, default=100_000)
    ap.add_argument("--reference-packets", type=int, default=20_000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshpkt-bench-exact-"))
    try:
        run(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(a: argparse.Namespace, work: Path) -> None:
    n = a.packets
    big = work / "exact.pcap"
    size = build_capture(big, n)
    print(f"built {big.name}: {n:,} packets (IPv6 extension headers, IPv4 options), {size / 1e6:.1f} MB")
    rows: list[tuple[str, int, float]] = []
    m = measure_meshpkt(big, reps=3)
    assert m["rows"] == n and m["slow"] == n, m  # every packet walked an option/extension chain
    rows.append(("meshpkt decode_file (warm: best of 3; every packet walks its chain)", n, m["warm"]))
    ref = reference_pps(big, a.reference_packets)
    rows.append((f"meshpkt per-packet reference decoder ({a.reference_packets:,} packets)", n, n / ref))
    warm_cache(big)
    t_tcpdump = min(_time(["tcpdump", "-nn", "-r", str(big)]) for _ in range(2))
    rows.append(("tcpdump -nn -r file > /dev/null (best of 2)", n, t_tcpdump))
    ts_n = min(a.tshark_packets, n)
    sub = work / "tshark_subset.pcap"
    _subset(big, sub, ts_n)
    cmd = ["tshark", "-n", "-r", str(sub), "-T", "fields", "-E", "occurrence=a"]
    for f in ("frame.time_epoch", "ip.src", "ipv6.src", "ipv6.dst", "ipv6.nxt", "tcp.srcport", "tcp.seq_raw",
              "udp.srcport", "icmpv6.type", "tcp.len"):
        cmd += ["-e", f]
    warm_cache(sub)
    t_tshark = _time(cmd)
    rows.append((f"tshark -T fields (10 fields; {ts_n:,}-packet subset)", ts_n, t_tshark))
    print(f"\n{'tool':<70} {'packets':>10} {'seconds':>9} {'packets/s':>12} {'vs tcpdump':>11}")
    for name, cnt, sec in rows:
        pps = cnt / sec
        print(f"{name:<70} {cnt:>10,} {sec:>9.3f} {pps:>12,.0f} {pps / (n / t_tcpdump):>10.2f}x")
    pps = n / m["warm"]
    print(f"\ntarget: >= 1,000,000 packets/s on the exact path -> {pps:,.0f} ({'met' if pps >= 1e6 else 'NOT met'}); "
          f"{pps / ref:.0f}x the per-packet reference, {pps / (ts_n / t_tshark):.0f}x tshark")


if __name__ == "__main__":
    main()
