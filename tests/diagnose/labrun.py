"""Live-lab helpers for the diagnose tests: a fresh lab per fault, traffic from the lab client,
captures at every point (``lab capture``) and dumps of every namespace (``collect --lab``)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NODE_IPS = {"node1": "10.211.55.10", "node2": "10.211.55.18", "node3": "10.211.55.22"}

BIG_REQUESTS = r"""
import socket, sys, time
for k in range(int(sys.argv[2])):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: DF, ignore learned PMTU
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(1.5)
    try:
        s.connect((sys.argv[1], 9090))
        mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        req = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 4000 + b"\r\nConnection: close\r\n\r\n"
        for i in range(0, len(req), mss):  # one full-size segment per write (no GSO super-packets)
            s.sendall(req[i:i + mss])
            time.sleep(0.002)
        s.recv(65536)
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.2)
"""


@contextmanager
def fresh_lab() -> Iterator[Any]:
    """A default 3-node lab with a unique name, always removed."""
    from meshpkt.lab import Lab

    lab = Lab(f"dg{uuid.uuid4().hex[:6]}")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def curl_cmd(urls: list[str], timeout: float = 2) -> list[str]:
    script = "; ".join(f"curl -s -m {timeout} http://{u}/ ; sleep 0.2" for u in urls)
    return ["sh", "-c", script]


def big_cmd(node_ip: str, n: int = 3) -> list[str]:
    return [sys.executable, "-c", BIG_REQUESTS, node_ip, str(n)]


def record(lab: Any, out: Path, cmd: list[str]) -> tuple[Path, Path]:
    """Capture at every point while ``cmd`` runs in the client, then dump every namespace."""
    from meshpkt.rules.collect import collect

    caps = out / "cap"
    lab.capture(None, caps, cmd, all_points=True, run_in="client", grace=0.5, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    dumps = out / "dumps"
    collect(dumps, lab=lab.name)
    return caps, dumps


def scenario(out: Path, fault: Callable[[Any], None] | None, cmd: list[str],
             before: Callable[[Any], None] | None = None) -> tuple[Path, Path]:
    """Fresh lab, ``fault(lab)``, ``cmd`` from the client under capture, dumps."""
    with fresh_lab() as lab:
        if fault is not None:
            fault(lab)
        if before is not None:
            before(lab)
        return record(lab, out, cmd)
