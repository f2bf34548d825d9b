"""Capture at lab capture points: one ``tcpdump -U --immediate-mode -B 16384 -s 262144 -w`` per point
(inside its namespace), started and confirmed ("listening on") before the command runs, stopped with SIGINT
after it ends.

Files: ``<out>/<node>.<namespace>.<iface>.pcap`` (the capture point name) and ``<out>/status.json``, whose
``capture_stats`` key holds tcpdump's final counters per point (``captured``, ``received``,
``dropped_kernel``): a tap that dropped packets makes an incomplete capture, and the analysis would then
report losses (or states) that did not happen.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from meshpkt.errors import LabError, ToolMissingError
from meshpkt.lab.status import select_points

_STATS = re.compile(rb"(\d+) packets? (captured|received by filter|dropped by kernel)")
_STAT_KEYS = {"captured": "captured", "received by filter": "received", "dropped by kernel": "dropped_kernel"}
BUFFER_KIB = 16384
"""Default capture buffer per tap (tcpdump ``-B``, KiB): the 2 MiB default drops 10-45% under load.

``--immediate-mode`` stays: without it, the packets of a partly filled ring block when tcpdump is stopped
are counted as received but never written (lost silently, not counted as dropped)."""


def tap_stats(stderr: bytes) -> dict[str, int | None]:
    """tcpdump's final counters from its stderr: ``captured``, ``received``, ``dropped_kernel`` (None if absent)."""
    found = {_STAT_KEYS[m.group(2).decode()]: int(m.group(1)) for m in _STATS.finditer(stderr)}
    return {k: found.get(k) for k in _STAT_KEYS.values()}


def drop_summary(points: list[dict[str, Any]]) -> str | None:
    """One warning line when any tap dropped packets (``dropped`` of each point), else None."""
    lossy = sorted((p for p in points if p.get("dropped")), key=lambda p: -int(p["dropped"]))
    if not lossy:
        return None
    total = sum(int(p["dropped"]) for p in lossy)
    each = ", ".join(f"{p['point']} {int(p['dropped']):,}" for p in lossy[:5])
    each += f", {len(lossy) - 5} more" if len(lossy) > 5 else ""
    return (f"{len(lossy)} tap{'s' if len(lossy) > 1 else ''} dropped {total:,} packets ({each}): the analysis "
            "may report losses that did not happen; capture fewer points or less traffic")


def _argv(pt: dict[str, Any], path: Path, snaplen: int, bpf: str | None, buffer_kib: int | None,
          immediate: bool) -> list[str]:
    argv = ["ip", "netns", "exec", pt["netns"], "tcpdump", "-i", pt["iface"], "-U", "-n",
            "-s", str(snaplen), "-Z", "root", "-w", str(path)]
    if immediate:
        argv.insert(7, "--immediate-mode")
    if buffer_kib:
        argv[7:7] = ["-B", str(buffer_kib)]
    if bpf:
        argv.append(bpf)
    return argv


def _start(points: list[dict[str, Any]], out: Path, snaplen: int, bpf: str | None, timeout: float,
           buffer_kib: int | None = BUFFER_KIB, immediate: bool = True
           ) -> list[tuple[dict[str, Any], subprocess.Popen[bytes], bytearray]]:
    procs: list[tuple[dict[str, Any], subprocess.Popen[bytes], bytearray]] = []
    for pt in points:
        argv = _argv(pt, out / f"{pt['point']}.pcap", snaplen, bpf, buffer_kib, immediate)
        try:
            pr = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise ToolMissingError("ip is not installed") from None
        procs.append((pt, pr, bytearray()))
    sel = selectors.DefaultSelector()
    waiting = {}
    for pt, pr, buf in procs:
        assert pr.stderr is not None
        os.set_blocking(pr.stderr.fileno(), False)
        sel.register(pr.stderr, selectors.EVENT_READ, (pt, pr, buf))
        waiting[pr.pid] = pt
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"tcpdump did not start listening at {next(iter(waiting.values()))['point']}")
            for key, _ in sel.select(timeout=min(left, 0.5)):
                pt, pr, buf = key.data
                chunk = os.read(key.fd, 65536)
                buf += chunk
                if b"listening on" in buf:
                    waiting.pop(pr.pid, None)
                    sel.unregister(key.fileobj)
                elif not chunk:
                    sel.unregister(key.fileobj)
                    pr.wait()
                    msg = buf.decode(errors="replace").strip().splitlines()
                    if msg and "tcpdump" in msg[-1] and "No such file" in msg[-1]:
                        raise ToolMissingError("tcpdump is not installed")
                    raise LabError(f"tcpdump at {pt['point']} failed: {msg[-1] if msg else pr.returncode}")
    finally:
        sel.close()
    return procs


def _stop(procs: list[tuple[dict[str, Any], subprocess.Popen[bytes], bytearray]]) -> None:
    for _pt, pr, _buf in procs:
        if pr.poll() is None:
            try:
                pr.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for _pt, pr, buf in procs:
        try:
            pr.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait()
        if pr.stderr is not None:
            os.set_blocking(pr.stderr.fileno(), True)
            try:
                buf += pr.stderr.read() or b""
            except (OSError, ValueError):
                pass
            pr.stderr.close()


def run_capture(status: dict[str, Any], points: list[str] | None, out: Path, cmd: list[str], *,
                all_points: bool = False, run_netns: str | None = None, grace: float = 0.5,
                snaplen: int = 262144, bpf: str | None = None, listen_timeout: float = 15.0,
                buffer_kib: int | None = BUFFER_KIB, immediate: bool = True,
                stdout: Any = None, stderr: Any = None) -> dict[str, Any]:
    """Capture at the selected points of the lab described by ``status`` while ``cmd`` runs.

    ``buffer_kib`` is each tap's capture buffer (tcpdump ``-B``; None: tcpdump's default), ``immediate``
    keeps ``--immediate-mode`` (without it the last ring block is lost at stop). Returns ``{"out", "rc",
    "status", "points": [{"point", "file", "packets", "received", "dropped", ...}], "capture_stats":
    {point: {"captured", "received", "dropped_kernel"}}, "warning": str | None}``; ``capture_stats`` is
    also written into status.json.
    """
    chosen = select_points(status, points, all_points)
    gone = [pt for pt in chosen if not Path("/run/netns", pt["netns"]).exists()]
    if gone and (all_points or not points):
        # a killed task's namespace no longer exists: nothing can be captured there
        chosen = [pt for pt in chosen if pt not in gone]
    elif gone:
        raise LabError(f"capture point {gone[0]['point']}: namespace {gone[0]['netns']} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    procs = _start(chosen, out, snaplen, bpf, listen_timeout, buffer_kib, immediate)
    rc = 0
    try:
        if cmd:
            argv = (["ip", "netns", "exec", run_netns, *cmd] if run_netns else cmd)
            try:
                rc = subprocess.run(argv, stdout=stdout, stderr=stderr).returncode
            except FileNotFoundError:
                raise LabError(f"command not found: {cmd[0]}") from None
        time.sleep(grace)
    finally:
        _stop(procs)
    results, stats = _results(procs, out)
    spath = out / "status.json"
    spath.write_text(json.dumps({**status, "capture_stats": stats}, indent=1) + "\n")
    return {"out": str(out), "rc": rc, "status": str(spath), "points": results, "capture_stats": stats,
            "warning": drop_summary(results), "skipped": [pt["point"] for pt in gone]}


def _results(procs: list[tuple[dict[str, Any], subprocess.Popen[bytes], bytearray]], out: Path
             ) -> tuple[list[dict[str, Any]], dict[str, dict[str, int | None]]]:
    results, stats = [], {}
    for pt, _pr, buf in procs:
        st = stats[pt["point"]] = tap_stats(bytes(buf))
        f = out / f"{pt['point']}.pcap"
        results.append({**pt, "file": str(f), "bytes": f.stat().st_size if f.exists() else 0,
                        "packets": st["captured"], "received": st["received"], "dropped": st["dropped_kernel"]})
    return results, stats
