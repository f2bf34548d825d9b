#!/usr/bin/env python3
"""Benchmark ``meshpkt diagnose`` at scale, against the reconstruction it runs on.

Generates (``benchmarks/_synth.py``, vectorised) the pcaps of N TCP connections (default 100,000)
crossing six capture points of Swarm's ingress path, decodes them once, then measures in this one
process:

- healthy: ``flows.analyze_packets`` (A) and ``diagnose_analysis`` (D) on the full table. Every
  generated connection succeeded, so any error-level finding is a false verdict: FAIL.
- broken: a fraction (default 10 %) of the connections balanced to node2 lose everything after their
  SYN left node1 (VXLAN dropped between node1 and node2: only the SYN rows before node2 are kept).
  ``diagnose`` must name ``vxlan-dropped`` at node2 with exactly those connections: FAIL otherwise.

Prints seconds, the ratio D/A and the peak RSS (kernel high-water mark, reset before each phase).
Usage: ``python3 benchmarks/bench_diagnose.py [--connections 100000] [--broken 0.1]``. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _synth  # noqa: E402


def _peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(label: str, fn):  # type: ignore[no-untyped-def]
    _peak_reset()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    print(f"{label:<34} {dt:8.2f} s   peak RSS {_peak_mb():8.0f} MB", flush=True)
    return out, dt


def _break(analysis, frac: float, seed: int = 5):  # type: ignore[no-untyped-def]
    """Packets with ``frac`` of node2's connections reduced to their SYN before node2; the truth."""
    c = analysis.connections
    to2 = c.loc[c["backend_node"] == "node2", "conn_id"].to_numpy()
    rng = np.random.default_rng(seed)
    victims = np.sort(rng.choice(to2, size=max(1, int(len(to2) * frac)), replace=False))
    pk = analysis.packets
    cid = pk["conn_id"].to_numpy(dtype=np.float64, na_value=np.nan)
    hit = np.isin(cid, victims)
    keep = ~hit | ((pk["tcp_flags"].to_numpy() == 0x02) & ~pk["point"].astype(str).str.startswith("node2").to_numpy())
    truth = set(c.set_index("conn_id").loc[victims, "client"])
    return pk.loc[keep].drop(columns=["conn_id", "ts_corr_ns"]), truth


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--broken", type=float, default=0.1)
    args = ap.parse_args()
    from meshpkt.decode import read
    from meshpkt.diagnose import diagnose_analysis
    from meshpkt.diagnose.frames import Frames
    from meshpkt.flows import analyze_packets

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        _synth.write_captures(_synth.make_connections(args.connections), out)
        print(f"generated {args.connections} connections in {time.perf_counter() - t:.1f} s", flush=True)
        files = {p.stem: p for p in out.glob("*.pcap")}
        packets, _ = _timed("decode", lambda: read([out]))
        print(f"{len(packets)} packets")
        a, ta = _timed("analyze (reconstruction)", lambda: analyze_packets(packets))
        d, td = _timed("diagnose (catalogue)", lambda: diagnose_analysis(a, frames=Frames(files)))
        print(f"healthy: diagnose / analyze = {td / ta:.3f}; findings: {[f.kind for f in d.findings]}")
        bad = [f for f in d.findings if f.severity == "error"] + d.analysis["detector_errors"]
        broken, truth = _break(a, args.broken)
        a2, ta2 = _timed("analyze, broken", lambda: analyze_packets(broken))
        d2, td2 = _timed("diagnose, broken", lambda: diagnose_analysis(a2, frames=Frames(files)))
        print(f"broken: diagnose / analyze = {td2 / ta2:.3f}; {len(truth)} connections broken; findings: "
              + ", ".join(f"{f.kind}@{f.node} x{len(f.connections)}" for f in d2.findings))
    named = [f for f in d2.findings if f.kind == "vxlan-dropped" and f.node == "node2"]
    got = set(a2.connections.set_index("conn_id").loc[named[0].connections, "client"]) if named else set()
    ok = not bad and len(d2.errors) == 1 and got == truth and not d2.analysis["detector_errors"]
    print("OK" if ok else f"FAIL: healthy errors {bad}; broken named {len(got)} of {len(truth)}, "
          f"errors {[f.kind for f in d2.errors]}, detector errors {d2.analysis['detector_errors']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
