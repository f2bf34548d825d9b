#!/usr/bin/env python3
"""Benchmark the Dask engine against the default one on the multi-point set of ``bench_flows.py``.

Generates (``benchmarks/_synth.py``) the six capture points of N connections (default 100,000)
entering Swarm's routing mesh, then measures, each in a fresh process:

- the default engine (``meshpkt.engine.analyze``, in memory): wall time and peak RSS;
- the Dask engine on a local cluster of 2 worker processes: wall time, the peak RSS of the
  client process and of each worker (``ru_maxrss`` asked of every worker with ``client.run``);

on two input sizes (N/2 and N), to show that a worker's memory stays bounded as the input grows
(partitions are sized in packets, so more input means more partitions, not bigger ones). Both
engines' connection tables are compared (ids aside): any difference prints FAIL.

Usage: ``python3 benchmarks/bench_dask.py [--connections 100000] [--keep DIR]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from meshpkt.engine import analyze

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

if __name__ == "__main__":
    engine = {engine!r}
    t = time.perf_counter()
    workers = {{}}
    if engine == "dask":
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as c:
            t = time.perf_counter()
            a = analyze([{caps!r}], engine="dask", client=c)
            sec = time.perf_counter() - t
            workers = c.run(peak)
    else:
        a = analyze([{caps!r}])
        sec = time.perf_counter() - t
    rows = sorted(zip(a.connections["client"], a.connections["backend"].astype(str), a.connections["status"],
                      a.connections["hops_seen"].astype(int)))
    print(json.dumps(dict(seconds=sec, client_peak=peak(), workers=list(workers.values()),
                          connections=len(a.connections), digest=hash(tuple(rows)))))
"""


def child(engine: str, caps: Path) -> dict:
    code = CHILD.format(repo=str(REPO), engine=engine, caps=str(caps))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        raise SystemExit(f"FAIL: {engine} child exited {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def generate(n: int, out: Path) -> int:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import _synth, pathlib; "
            f"r = _synth.write_captures(_synth.make_connections({n}), pathlib.Path({str(out)!r})); "
            f"print(sum(v[0] for v in r.values()))")
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    failed = False
    try:
        print(f"{'connections':>11} {'packets':>10} {'engine':<8} {'wall s':>8} {'client MB':>10} {'workers MB':>16}")
        for n in (args.connections // 2, args.connections):
            caps = work / f"caps-{n}"
            if not caps.exists():
                (work / f"packets-{n}").write_text(str(generate(n, caps)))
            packets = int((work / f"packets-{n}").read_text())
            res = {e: child(e, caps) for e in ("default", "dask")}
            for e, r in res.items():
                w = " ".join(f"{x / 1e6:.0f}" for x in r["workers"]) or "-"
                print(f"{n:>11,} {packets:>10,} {e:<8} {r['seconds']:8.1f} {r['client_peak'] / 1e6:10.0f} {w:>16}")
            same = res["default"]["digest"] == res["dask"]["digest"] and \
                res["default"]["connections"] == res["dask"]["connections"] == n
            print(f"{'':>11} {'':>10} {'same connections' if same else 'FAIL: connection tables differ'}")
            failed |= not same
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
