"""The probe injector: a stdlib-only script run inside one lab namespace
(``ip netns exec NS python3 -I inject.py``), reading one JSON job on stdin and printing one JSON
result on stdout.

Job::

    {"start": <time.monotonic() deadline shared by every injector: offsets count from it>,
     "frames": [{"id": "p3", "at": 0.06, "iface": "eth0", "hex": "<Ethernet frame>"}, ...],
     "conns": [{"id": "m1", "at": 0.0, "src": "10.211.55.2", "sport": 23001, "dst": "10.211.55.10",
                "port": 9090, "size": 4000, "timeout": 1.5}, ...]}

``frames`` are written as they are on an ``AF_PACKET`` socket bound to ``iface`` (crafted L2 frames:
the kernel of this namespace does not see them as its own traffic); ``conns`` are real TCP
connections (the kernel's handshake, MSS and DF) sending an HTTP GET padded to ``size`` bytes in
MSS-sized writes (``TCP_NODELAY``), so that full-size segments (not GSO super-packets) must cross the
path. The ``at`` offsets implement the caller's global rate
limit. Result::

    {"sent": ["p3", ...], "errors": {"p4": "..."}, "conns": [{"id", "ok", "status", "body", "error"}]}
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from typing import Any


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _conn(c: dict[str, Any], start: float, out: dict[str, Any]) -> None:
    out.update(id=c["id"], ok=False, status=None, body="", error=None)
    _sleep_until(start + float(c.get("at", 0.0)))
    timeout = float(c.get("timeout", 1.5))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # abort (RST) on close: no retransmission storm after a lost segment
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # DF on every segment, and ignore any path MTU the namespace learned before: always full-size
        s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10), getattr(socket, "IP_PMTUDISC_PROBE", 3))
        s.bind((c.get("src", ""), int(c["sport"])))
        s.settimeout(timeout)
        s.connect((c["dst"], int(c["port"])))
        pad = "a" * max(0, int(c.get("size", 0)))
        req = (f"GET / HTTP/1.1\r\nHost: {c['dst']}:{c['port']}\r\nX-Meshpkt-Pad: {pad}\r\n"
               "Connection: close\r\n\r\n").encode()
        # one full-size segment per write: with segmentation offload a single big write would cross
        # the lab's veths as one GSO super-packet, which no MTU check ever sees (a real NIC segments it)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mss = max(536, s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
        for i in range(0, len(req), mss):
            s.sendall(req[i:i + mss])
            time.sleep(0.002)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        text = data.decode("latin-1")
        head, _, body = text.partition("\r\n\r\n")
        first = head.split("\r\n", 1)[0]
        out["status"] = first or None
        out["body"] = body.strip()[:200]
        out["ok"] = first.startswith("HTTP/1.") and " 200 " in first + " " and bool(body)
        if not data:
            out["error"] = "no response"
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        s.close()


def main() -> int:
    """Run the job read from stdin; print the result as JSON."""
    job = json.load(sys.stdin)
    start = float(job.get("start", time.monotonic()))
    sent: list[str] = []
    errors: dict[str, str] = {}
    conns: list[dict[str, Any]] = [{} for _ in job.get("conns", [])]
    threads = [threading.Thread(target=_conn, args=(c, start, conns[i]), daemon=True)
               for i, c in enumerate(job.get("conns", []))]
    for t in threads:
        t.start()
    socks: dict[str, socket.socket] = {}
    try:
        for f in sorted(job.get("frames", []), key=lambda x: float(x.get("at", 0.0))):
            _sleep_until(start + float(f.get("at", 0.0)))
            try:
                s = socks.get(f["iface"])
                if s is None:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                    s.bind((f["iface"], 0))
                    socks[f["iface"]] = s
                s.send(bytes.fromhex(f["hex"]))
                sent.append(f["id"])
            except OSError as exc:
                errors[f["id"]] = f"{type(exc).__name__}: {exc}"
        for t in threads:
            t.join()
    finally:
        for s in socks.values():
            s.close()
    json.dump({"sent": sent, "errors": errors, "conns": conns}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
