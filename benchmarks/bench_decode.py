#!/usr/bin/env python3
"""Benchmark meshpkt's columnar decoder against tcpdump, tshark, dpkt and scapy.

Builds an N-packet (default 1,000,000) VXLAN capture of Swarm-style overlay TCP traffic
(outer Ethernet/IPv4/UDP 4789/VXLAN, inner Ethernet/IPv4/TCP with timestamps; a mix of
handshakes, ACKs, requests and 100..1398-byte responses over many flows), then measures in
the same run:

- meshpkt ``decode_file``: first call with an empty numba cache (compiles), first call in a fresh
  process (cache loaded), warm (best of 3 more calls), and peak memory (VmHWM after resetting it);
- the same warm measurement for the decoder of ``--baseline`` (a git revision, checked out in a
  temporary worktree): before/after in one run;
- ``tcpdump -nn -r file > /dev/null`` on the whole file;
- ``tshark -T fields`` with outer and inner fields on a 100k-packet subset (scaled);
- a dpkt loop (pcap.Reader -> Ethernet -> IP -> UDP -> VXLAN -> Ethernet -> IP -> TCP)
  on a subset;
- scapy ``rdpcap`` + layer access on a 10k subset.

Usage: ``python3 benchmarks/bench_decode.py [--packets N] [--keep DIR]``. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

T0_NS = 1_718_000_000_000_000_000
#: the decoder before issue 17 (numpy layer passes + the per-packet exact path)
BASELINE = "674a8ab"


def _templates() -> list[tuple[bytes, dict[str, int], float]]:
    """(frame bytes, offsets of fields to vary, weight) per packet shape."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    def frame(flags: str, payload: int, syn_opts: bool) -> bytes:
        opts: list[tuple[str, object]]
        if syn_opts:
            opts = [("MSS", 1410), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
        else:
            opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 1))]
        inner = (Ether(src="02:42:0a:00:00:02", dst="02:42:0a:00:00:14")
                 / IP(src="10.0.0.2", dst="10.0.0.20", ttl=64, flags="DF")
                 / TCP(sport=40000, dport=9090, flags=flags, seq=1, ack=1, window=502, options=opts)
                 / (b"\x5a" * payload))
        outer = (Ether(src="52:54:00:00:00:0a", dst="52:54:00:00:00:12")
                 / IP(src="10.211.55.10", dst="10.211.55.18", ttl=64)
                 / UDP(sport=45803, dport=4789) / VXLAN(flags=0x08, vni=4096) / inner)
        return bytes(outer)

    shapes = [("S", 0, True, 0.06), ("SA", 0, True, 0.06), ("A", 0, False, 0.38), ("PA", 120, False, 0.08),
              ("A", 1398, False, 0.18), ("PA", 512, False, 0.06), ("PA", 100, False, 0.06),
              ("FA", 0, False, 0.12)]
    out = []
    for flags, pl, so, wgt in shapes:
        b = frame(flags, pl, so)
        # offsets (inside the frame) of fields we vary per packet
        o_ip = 14
        o_udp = 34
        o_vx = 42
        o_iip = 50 + 14
        o_tcp = o_iip + 20
        topt = 40 if so else 32
        offs = {"outer_id": o_ip + 4, "udp_sport": o_udp, "vni": o_vx + 4, "inner_id": o_iip + 4,
                "tcp_sport": o_tcp, "seq": o_tcp + 4, "ack": o_tcp + 8, "tsval": o_tcp + (28 if so else 24),
                "payload": o_tcp + topt}
        out.append((b, offs, wgt))
    return out


def build_capture(path: Path, n: int, seed: int = 1) -> int:
    """Write an n-packet VXLAN pcap (nanosecond) with numpy in bulk; returns its size."""
    rng = np.random.default_rng(seed)
    tpls = _templates()
    weights = np.array([w for _, _, w in tpls])
    kind = rng.choice(len(tpls), size=n, p=weights / weights.sum())
    lens = np.array([len(b) for b, _, _ in tpls], dtype=np.int64)
    rec_len = 16 + lens[kind]
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=starts[1:])
    starts += 24
    total = int(starts[-1] + rec_len[-1]) if n else 24
    buf = np.zeros(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(
        np.array([0xA1B23C4D], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 262144, 1], "<u4").tobytes(), dtype=np.uint8)
    ts = T0_NS + np.cumsum(rng.integers(200, 20_000, size=n))
    flow = rng.integers(0, 5000, size=n)

    def put_be(pos: np.ndarray, vals: np.ndarray, nbytes: int) -> None:
        v = vals.astype(np.uint64)
        for k in range(nbytes):
            buf[pos + k] = ((v >> np.uint64(8 * (nbytes - 1 - k))) & np.uint64(0xFF)).astype(np.uint8)

    def put_le(pos: np.ndarray, vals: np.ndarray, nbytes: int) -> None:
        v = vals.astype(np.uint64)
        for k in range(nbytes):
            buf[pos + k] = ((v >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8)

    chunk = 50_000
    for t, (frame, offs, _) in enumerate(tpls):
        rows = np.nonzero(kind == t)[0]
        rec = np.frombuffer(frame, dtype=np.uint8)
        for c in range(0, rows.size, chunk):
            r = rows[c:c + chunk]
            p = starts[r]
            buf[(p[:, None] + 16 + np.arange(rec.size))] = rec
        p = starts[rows]
        put_le(p, ts[rows] // 1_000_000_000, 4)
        put_le(p + 4, ts[rows] % 1_000_000_000, 4)
        put_le(p + 8, np.full(rows.size, rec.size), 4)
        put_le(p + 12, np.full(rows.size, rec.size), 4)
        d = p + 16
        f = flow[rows]
        put_be(d + offs["outer_id"], rng.integers(0, 65536, rows.size), 2)
        put_be(d + offs["udp_sport"], 32768 + (f * 7919) % 28000, 2)
        put_be(d + offs["vni"], 4096 + f % 4, 3)
        put_be(d + offs["inner_id"], rng.integers(0, 65536, rows.size), 2)
        put_be(d + offs["tcp_sport"], 32768 + f, 2)
        put_be(d + offs["seq"], rng.integers(0, 2**32, rows.size), 4)
        put_be(d + offs["ack"], rng.integers(0, 2**32, rows.size), 4)
        put_be(d + offs["tsval"], (ts[rows] // 1_000_000) & 0xFFFFFFFF, 4)
        if len(frame) > offs["payload"] + 8:
            put_be(d + offs["payload"], rng.integers(0, 2**62, rows.size), 8)
    buf.tofile(path)
    return total


def _subset(src: Path, dst: Path, n: int) -> None:
    subprocess.run(["editcap", "-F", "nsecpcap", "-r", str(src), str(dst), f"1-{n}"], check=True,
                   capture_output=True)


def _time(cmd: list[str], stdout: int | None = subprocess.DEVNULL) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


MEASURE = r"""
import json, re, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
import numpy, pandas, numba  # noqa: F401  (baseline: imports done)
from meshpkt.decode import decode_file

def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024

try:  # reset the RSS high-water mark (it survives fork+exec from the big parent)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = status("VmRSS")
t = time.perf_counter()
df = decode_file({path!r})
cold = time.perf_counter() - t
peak = status("VmHWM")
rows, table = len(df), int(df.memory_usage(deep=False).sum())
slow = int((df["decoded"] == 1).sum())
warm = []
for _ in range({reps}):
    del df
    t = time.perf_counter()
    df = decode_file({path!r})
    warm.append(time.perf_counter() - t)
del df
traced = 0
if {traced}:
    tracemalloc.start()
    df = decode_file({path!r})
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(json.dumps(dict(rows=rows, cold=cold, warm=min(warm) if warm else cold, base=base, peak=peak,
                      traced=traced, table_bytes=table, slow=slow)))
"""


def warm_cache(path: Path) -> None:
    """Read the file once so every tool starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def measure_meshpkt(path: Path, reps: int = 3, clear_cache: bool = False, traced: bool = False,
                    repo: Path = REPO) -> dict[str, float]:
    env = dict(os.environ)
    if clear_cache:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cache-")
    code = MEASURE.format(repo=str(repo), path=str(path), reps=reps, traced=traced)
    warm_cache(path)
    r = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    if clear_cache:
        shutil.rmtree(env["NUMBA_CACHE_DIR"], ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def baseline_tree(rev: str, work: Path) -> Iterator[Path]:
    """A detached git worktree of ``rev`` (removed afterwards)."""
    tree = work / f"baseline-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                       capture_output=True)


def dpkt_loop(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            udp = ip.data
            if udp.dport != 4789:
                continue
            vx = udp.data
            vni = int.from_bytes(vx[4:7], "big")
            ieth = dpkt.ethernet.Ethernet(vx[8:])
            iip = ieth.data
            tcp = iip.data
            opts = dpkt.tcp.parse_opts(tcp.opts)
            n += (vni + tcp.seq + iip.id + len(opts)) > 0
    return n


def scapy_loop(path: Path) -> int:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import rdpcap

    n = 0
    for p in rdpcap(str(path)):
        if VXLAN in p:
            v = p[VXLAN]
            n += (v.vni + v[IP].id + v[TCP].seq) > 0
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--tshark-packets", type=int, default=100_000)
    ap.add_argument("--dpkt-packets", type=int, default=200_000)
    ap.add_argument("--scapy-packets", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, default=None, help="write the captures here and keep them")
    ap.add_argument("--baseline", default=BASELINE,
                    help="also measure the decoder of this git revision (before/after in one run; '' = skip)")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="meshpkt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(a, work)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(a: argparse.Namespace, work: Path) -> None:
    n = a.packets
    big = work / "vxlan.pcap"
    t = time.perf_counter()
    size = build_capture(big, n)
    print(f"built {big.name}: {n:,} packets, {size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s")
    print(f"cpu: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    rows: list[tuple[str, int, float, str]] = []

    m0 = measure_meshpkt(big, reps=0, clear_cache=True)
    rows.append(("meshpkt decode_file (1st call, numba compiles: empty cache)", n, m0["cold"], ""))
    m = measure_meshpkt(big, reps=3, traced=True)
    rows.append(("meshpkt decode_file (1st call in a process, numba cache)", n, m["cold"], ""))
    rows.append(("meshpkt decode_file (warm: best of 3 more calls)", n, m["warm"], ""))
    assert m["rows"] == n, m
    if a.baseline:
        with baseline_tree(a.baseline, work) as tree:
            mb = measure_meshpkt(big, reps=3, repo=tree)
        rows.append((f"  before: meshpkt {a.baseline} decode_file (warm: best of 3)", n, mb["warm"], ""))

    warm_cache(big)
    t_tcpdump = min(_time(["tcpdump", "-nn", "-r", str(big)]) for _ in range(2))
    rows.append(("tcpdump -nn -r file > /dev/null (best of 2)", n, t_tcpdump, ""))

    ts_n = min(a.tshark_packets, n)
    sub_t = work / "tshark_subset.pcap"
    _subset(big, sub_t, ts_n)
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "udp.srcport", "vxlan.vni", "ip.id", "tcp.srcport",
              "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.options.timestamp.tsval", "tcp.len"]
    cmd = ["tshark", "-n", "-r", str(sub_t), "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    warm_cache(sub_t)
    t_tshark = _time(cmd)
    rows.append((f"tshark -T fields ({len(fields)} fields; {ts_n:,}-packet subset)", ts_n, t_tshark, ""))

    dp_n = min(a.dpkt_packets, n)
    sub_d = work / "dpkt_subset.pcap"
    _subset(big, sub_d, dp_n)
    t = time.perf_counter()
    dpkt_loop(sub_d)
    rows.append((f"dpkt loop to inner TCP ({dp_n:,}-packet subset)", dp_n, time.perf_counter() - t, ""))

    sc_n = min(a.scapy_packets, n)
    sub_s = work / "scapy_subset.pcap"
    _subset(big, sub_s, sc_n)
    t = time.perf_counter()
    scapy_loop(sub_s)
    rows.append((f"scapy rdpcap + layer access ({sc_n:,}-packet subset)", sc_n, time.perf_counter() - t, ""))

    pps_tcpdump = n / t_tcpdump
    print()
    print(f"{'tool':<62} {'packets':>10} {'seconds':>9} {'packets/s':>12} {'vs tcpdump':>11}")
    for name, cnt, sec, _ in rows:
        pps = cnt / sec
        print(f"{name:<62} {cnt:>10,} {sec:>9.3f} {pps:>12,.0f} {pps / pps_tcpdump:>10.2f}x")
    print()
    rss = m["peak"] - m["base"]
    print(f"file size {size / 1e6:.1f} MB; table {m['table_bytes'] / 1e6:.1f} MB "
          f"({m['table_bytes'] / n:.0f} bytes/row); rows with an option/extension chain: {m['slow']}")
    print(f"peak memory of the first decode_file in a fresh process: RSS growth {rss / 1e6:.1f} MB = "
          f"{rss / size:.2f}x file (includes the memory-mapped file's pages); tracemalloc peak "
          f"{m['traced'] / 1e6:.1f} MB = {m['traced'] / size:.2f}x file (anonymous allocations only)")
    print(f"target: >= 10x tcpdump -> meshpkt warm is {n / m['warm'] / pps_tcpdump:.1f}x, first call "
          f"{n / m['cold'] / pps_tcpdump:.1f}x; memory < 2x file -> {rss / size:.2f}x")


if __name__ == "__main__":
    main()
