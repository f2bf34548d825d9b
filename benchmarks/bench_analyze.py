#!/usr/bin/env python3
"""Benchmark ``meshpkt analyze`` end to end against tcpdump and tshark, in every output format.

Builds an N-packet (default 3,000,000) VXLAN capture of Swarm-style overlay TCP traffic (the
generator of ``bench_decode.py``: outer Ethernet/IPv4/UDP 4789/VXLAN, inner TCP over thousands
of flows), then runs, in the same run and on the same file (in the page cache for everyone):

- ``tcpdump -nn -r FILE > /dev/null``;
- ``tshark -q -z conv,tcp -r FILE > /dev/null`` (what a person would type for "the connections");
- ``meshpkt analyze FILE`` in each format: the default table (stdout, not a terminal), ``-f json``,
  ``-f csv`` and ``-f parquet`` (``-o`` a file), and ``--engine partitioned -f csv`` (bounded memory);

each as a fresh process, printing wall time and the child's peak RSS (``wait4`` rusage), the RSS as
a multiple of the file size, and the speed relative to tcpdump (goal: >= 3x, RSS <= 1.5x the file).
Then it times ``meshpkt.report.write_json`` on 10,000 and 100,000 connections (rows replicated
from the shipped capture's analysis) to show it grows linearly.

Usage: ``python3 benchmarks/bench_analyze.py [--packets N] [--keep DIR] [--no-tshark]``. Not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import bench_decode  # noqa: E402

FORMATS = ("table", "json", "csv", "parquet")


def run(cmd: list[str], stdout_path: Path | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process."""
    with open(stdout_path or os.devnull, "wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}: {err[-500:]}")
    return wall, usage.ru_maxrss * 1024


def meshpkt_cmd(path: Path, fmt: str, out_dir: Path) -> tuple[list[str], Path | None]:
    base = [sys.executable, "-m", "meshpkt", "analyze", str(path)]
    if fmt == "table":
        return base, out_dir / "table.txt"
    return [*base, "-f", fmt, "-o", str(out_dir / f"out.{fmt}")], None


def measure(path: Path, out_dir: Path, tshark: bool) -> list[tuple[str, float, int]]:
    rows = [("tcpdump -nn -r", *run(["tcpdump", "-nn", "-r", str(path)]))]
    if tshark:
        rows.append(("tshark -q -z conv,tcp", *run(["tshark", "-q", "-z", "conv,tcp", "-r", str(path)])))
    for fmt in FORMATS:
        cmd, stdout = meshpkt_cmd(path, fmt, out_dir)
        rows.append((f"meshpkt analyze -f {fmt}", *run(cmd, stdout)))
    cmd, stdout = meshpkt_cmd(path, "csv", out_dir)
    rows.append(("  --engine partitioned -f csv", *run([*cmd, "--engine", "partitioned"], stdout)))
    return rows


def report(rows: list[tuple[str, float, int]], size: int, packets: int) -> None:
    base = rows[0][1]
    print(f"\n{packets:,} packets, {size / 1e6:.0f} MB file; machine: {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'command':<28} {'wall s':>8} {'vs tcpdump':>11} {'peak RSS MB':>12} {'RSS/file':>9}")
    for name, wall, rss in rows:
        print(f"{name:<28} {wall:8.2f} {base / wall:10.2f}x {rss / 1e6:12.0f} {rss / size:8.2f}x")


def json_scaling() -> None:
    """write_json on 10k and 100k connections: time per connection must stay flat."""
    import numpy as np
    import pandas as pd

    from meshpkt.flows import analyze
    from meshpkt.report import write_json

    a = analyze([REPO / "captures" / "ingress-3node"])
    per = []
    for n in (10_000, 100_000):
        reps = -(-n // len(a.connections))
        ids = np.arange(1, reps * len(a.connections) + 1)[:n]

        def grow(frame: pd.DataFrame, ids: np.ndarray = ids, reps: int = reps) -> pd.DataFrame:
            big = pd.concat([frame] * reps, ignore_index=True)
            k = np.repeat(np.arange(reps), len(frame)) * len(a.connections)
            big["conn_id"] = big["conn_id"].to_numpy() + k
            return big[big["conn_id"].isin(ids)].reset_index(drop=True)

        big = type(a)(a.packets, grow(a.hops), grow(a.connections), grow(a.translations), a.summary,
                      a.offsets, a.balance, a.topology)
        t = time.perf_counter()
        buf = io.StringIO()
        write_json(big, buf)
        sec = time.perf_counter() - t
        per.append(sec / n)
        print(f"write_json: {n:>7,} connections ({len(big.hops):,} hops) {sec:6.2f} s, "
              f"{sec / n * 1e6:5.1f} us/connection, {len(buf.getvalue()) / 1e6:.0f} MB")
    print(f"write_json: per-connection time 100k / 10k = {per[1] / per[0]:.2f} (1.0 = linear)")


def build(path: Path, packets: int) -> None:
    """Build the capture in a child process: this process stays small, and the children it starts
    later do not inherit a big peak RSS through fork."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_decode; " \
           f"bench_decode.build_capture(__import__('pathlib').Path({str(path)!r}), {packets})"
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=3_000_000)
    ap.add_argument("--keep", type=Path, help="build/keep the capture in this directory")
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark (slow on big files)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"vxlan-{args.packets}.pcap"
    try:
        if not path.exists():
            t = time.perf_counter()
            build(path, args.packets)
            print(f"built {path} in {time.perf_counter() - t:.1f} s")
        small = work / "warm.pcap"
        build(small, 2000)
        run([sys.executable, "-m", "meshpkt", "analyze", str(small)])  # numba cache, outside the numbers
        bench_decode.warm_cache(path)
        rows = measure(path, work, not args.no_tshark)
        report(rows, path.stat().st_size, args.packets)
        json_scaling()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
