#!/usr/bin/env python3
"""Benchmark connection reconstruction (``meshpkt.flows.analyze_packets``) at scale.

Generates, vectorised with numpy (``benchmarks/_synth.py``), the pcaps six capture points
record for N (default 100,000) TCP connections entering Swarm's routing mesh on node1's
published port 9090 (client.host.eth0, node1.host.eth0 with the plain and the VXLAN copies,
node1.ingress_sbox.eth1 after DNAT, node1.ingress_sbox.eth0 after IPVS masq + SNAT,
node2.host.eth0 with VXLAN vni 4096, node2.web.2.eth0), round-robin over three tasks on
three nodes; 8 segments per connection (several million packet rows). Then, in fresh
subprocesses, it measures:

- decode: ``meshpkt.decode.read(dir)`` (numba kernels warmed on a tiny capture first);
- reconstruct: ``meshpkt.flows.analyze_packets(packets)`` on that table, with a per-stage
  breakdown (reconstruct / build_hops / build_translations / build_connections / rest);

with the peak RSS of each phase (the kernel's high-water mark, reset through
``/proc/self/clear_refs`` right before the phase; growth over the RSS at its start is shown
too), and checks the result against the generated truth: number of connections, each
connection's backend (task address), hop count, status ``closed``, bytes each way, no
``missing_at``. Any mismatch prints FAIL and exits 1.

Usage: ``python3 benchmarks/bench_flows.py [--connections 100000] [--keep DIR] [--profile]``.
Not a test.
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

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _synth  # noqa: E402

CHILD_COMMON = r"""
import gc, json, re, resource, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, pandas as pd, numba  # noqa: F401  (baseline: imports done)

def mem():
    s = open("/proc/self/status").read()
    return {{k: int(re.search(k + r":\s+(\d+)", s).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}}

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

from meshpkt.decode import read
read({warm!r})  # numba compile / cache load, outside the measurement
gc.collect()
"""

DECODE = CHILD_COMMON + r"""
base = mem()["VmRSS"]
exact = reset_peak()
t = time.perf_counter()
packets = read({caps!r})
sec = time.perf_counter() - t
m = mem()
print(json.dumps(dict(seconds=sec, rows=len(packets), base=base, start=base, peak=m["VmHWM"], exact=exact,
                      table_bytes=int(packets.memory_usage(deep=False, index=False).sum()),
                      slow=int((packets["decoded"] != 0).sum()),
                      maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""

RECONSTRUCT = CHILD_COMMON + r"""
import meshpkt.flows as F
base = mem()["VmRSS"]
packets = read({caps!r})
gc.collect()
stages = {{}}
def timed(name, fn):
    def wrap(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
    return wrap
for name in ("reconstruct", "build_hops", "build_translations", "build_connections", "summarize", "balance"):
    setattr(F, name, timed(name, getattr(F, name)))
start = mem()["VmRSS"]
exact = reset_peak()
t = time.perf_counter()
an = F.analyze_packets(packets)
sec = time.perf_counter() - t
m = mem()
stages["rest"] = sec - sum(stages.values())

# --- correctness against the generated truth
truth = np.load({truth!r})
tasks = [str(x) for x in truth["task_names"]]
conns, hops = an.connections, an.hops
first = hops[hops["hop"] == 0][["conn_id", "src_ip", "sport"]]
c = conns.merge(first, on="conn_id", how="left")
tr = pd.DataFrame({{"src_ip": truth["client_ip"].astype(np.int64), "sport": truth["client_port"].astype(np.int64),
                    "want_backend": np.array(tasks, dtype=object)[truth["task"]],
                    "want_hops": truth["expected_hops"][truth["task"]], "t": 1}})
c["src_ip"] = c["src_ip"].astype(np.int64)
c["sport"] = c["sport"].astype(np.int64)
j = c.merge(tr, on=["src_ip", "sport"], how="outer", indicator=True)
both = j[j["_merge"] == "both"]
checks = {{
    "connections found - generated": int(len(conns)) - int(len(tr)),
    "generated connections not found": int((j["_merge"] == "right_only").sum()),
    "connections not generated": int((j["_merge"] == "left_only").sum()),
    "wrong backend": int((both["backend"].astype(object) != both["want_backend"]).sum()),
    "wrong hop count": int((both["hops_seen"].astype(np.int64) != both["want_hops"]).sum()),
    "status not closed": int((both["status"] != "closed").sum()),
    "wrong bytes": int(((both["bytes_fwd"] != {lq}) | (both["bytes_bwd"] != {lr})).sum()),
    "missing_at set": int(both["missing_at"].notna().sum()),
}}
examples = j[(j["_merge"] != "both") | (j["backend"].astype(object) != j["want_backend"])
             | (j["hops_seen"] != j["want_hops"])].head(5)
examples = examples.reindex(columns=["client", "backend", "want_backend", "hops_seen", "want_hops", "status",
                                     "path", "verdict", "_merge"])
offsets = {{k: [o.offset_ns, o.uncertainty_ns, bool(o.applied)] for k, o in an.offsets.items()}}
out = dict(seconds=sec, rows=len(packets), base=base, start=start, peak=m["VmHWM"], exact=exact, stages=stages,
           checks=checks, examples=examples.astype(str).to_dict("records"), offsets=offsets,
           hops=int(len(hops)), translations=int(len(an.translations)),
           maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
if {profile!r}:
    import cProfile, io, pstats
    del an
    gc.collect()
    pr = cProfile.Profile()
    pr.enable()
    F.analyze_packets(packets)
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(25)
    st.sort_stats("cumulative").print_stats(40)
    out["profile"] = s.getvalue()
print(json.dumps(out))
"""


def _child(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"benchmark child failed (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def generate(n: int, out: Path, seed: int, spacing_ns: int) -> dict:
    t = time.perf_counter()
    conns = _synth.make_connections(n, seed=seed, spacing_ns=spacing_ns)
    files = _synth.write_captures(conns, out / "caps")
    sec = time.perf_counter() - t
    np.savez(out / "truth.npz", client_ip=conns.client_ip, client_port=conns.client_port, task=conns.task,
             task_names=np.array([f"{_synth.ip4(t.ip)}:{_synth.PORT}" for t in _synth.TASKS]),
             expected_hops=_synth.expected_hops())
    return {"seconds": sec, "files": files, "rows": sum(r for r, _ in files.values()),
            "bytes": sum(b for _, b in files.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, default=None, help="write the captures here and keep them")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spacing-us", type=float, default=100.0,
                    help="mean gap between connection starts (connections last ~7 ms, so they overlap)")
    ap.add_argument("--profile", action="store_true", help="also run analyze_packets under cProfile")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: reuse the captures already there (same --connections and --seed)")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="meshpkt-bench-flows-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ok = run(a, work)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(0 if ok else 1)


def run(a: argparse.Namespace, work: Path) -> bool:
    n = a.connections
    print(f"cpu: {os.cpu_count()} cores; python {sys.version.split()[0]}; numpy {np.__version__}")
    warm = work / "warm"
    _synth.write_captures(_synth.make_connections(30, seed=a.seed + 1), warm)
    meta = {"connections": n, "seed": a.seed, "spacing_us": a.spacing_us}
    meta_file = work / "meta.json"
    if a.reuse and meta_file.is_file() and json.loads(meta_file.read_text()).get("params") == meta:
        g = json.loads(meta_file.read_text())["generated"]
        print(f"reusing the captures in {work / 'caps'}")
    else:
        meta_file.unlink(missing_ok=True)
        g = generate(n, work, a.seed, int(a.spacing_us * 1000))
        meta_file.write_text(json.dumps({"params": meta, "generated": g}))
    print(f"generated {n:,} connections at {len(g['files'])} points: {g['rows']:,} packet rows, "
          f"{g['bytes'] / 1e6:.1f} MB of pcap in {g['seconds']:.1f} s ({g['rows'] / g['seconds']:,.0f} rows/s)")
    for p, (rows, size) in g["files"].items():
        print(f"  {p + '.pcap':<30} {rows:>10,} records {size / 1e6:>8.1f} MB")
    caps = str(work / "caps")
    fmt = {"repo": str(REPO), "warm": str(warm), "caps": caps}
    d = _child(DECODE.format(**fmt))
    r = _child(RECONSTRUCT.format(**fmt, truth=str(work / "truth.npz"), lq=_synth.LQ, lr=_synth.LR,
                                  profile=bool(a.profile)))
    assert d["rows"] == g["rows"] == r["rows"], (d["rows"], g["rows"], r["rows"])

    print()
    print(f"{'phase':<34} {'rows':>10} {'seconds':>9} {'rows/s':>12} {'peak RSS MB':>12} {'growth MB':>10}")
    for name, m in (("decode  meshpkt.decode.read(dir)", d), ("reconstruct  analyze_packets(table)", r)):
        print(f"{name:<34} {m['rows']:>10,} {m['seconds']:>9.2f} {m['rows'] / m['seconds']:>12,.0f} "
              f"{m['peak'] / 1e6:>12.0f} {(m['peak'] - m['start']) / 1e6:>10.0f}")
    for st, sec in r["stages"].items():
        print(f"  {st:<32} {'':>10} {sec:>9.2f} {r['rows'] / sec if sec > 0 else 0:>12,.0f}")
    print()
    print(f"reconstruction / decode time: {r['seconds'] / d['seconds']:.1f}x; "
          f"pcap {g['bytes'] / 1e6:.0f} MB, packet table {d['table_bytes'] / 1e6:.0f} MB "
          f"({d['table_bytes'] / max(d['rows'], 1):.0f} B/row); decode peak growth {(d['peak'] - d['start']) / g['bytes']:.2f}x pcap; "
          f"reconstruction peak growth {(r['peak'] - r['start']) / d['table_bytes']:.2f}x table")
    print(f"process baseline (python + numpy/pandas/numba + meshpkt): {d['base'] / 1e6:.0f} MB; "
          f"peaks are {'exact per phase' if d['exact'] and r['exact'] else 'process-wide (clear_refs failed)'}")
    print(f"hops {r['hops']:,}, translations {r['translations']:,}; clock offsets applied: "
          f"{[k for k, v in r['offsets'].items() if v[2]] or 'none'}")
    print()
    bad = sum(v for v in r["checks"].values() if v)
    for k, v in r["checks"].items():
        print(f"  check {k:<34} {v:>8}")
    if a.profile:
        (work / "profile.txt").write_text(r["profile"])
        print()
        print(r["profile"])
    if bad:
        for ex in r["examples"]:
            print("  e.g.", ex)
        print(f"FAIL: {bad} mismatches")
        return False
    print(f"OK: {n:,} connections reconstructed with the right backend and hop count")
    return True


if __name__ == "__main__":
    main()
