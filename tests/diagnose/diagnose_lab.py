"""Live-lab helpers for the diagnose tests: a fresh lab per fault, traffic from the lab client,
captures at every point (``lab capture``) and dumps of every namespace (``collect --lab``)."""

from __future__ import annotations

import re
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


def record(lab: Any, out: Path, cmd: list[str], snaplen: int = 262144) -> tuple[Path, Path]:
    """Capture at every point while ``cmd`` runs in the client, then dump every namespace."""
    from meshpkt.rules.collect import collect

    caps = out / "cap"
    lab.capture(None, caps, cmd, all_points=True, run_in="client", grace=0.5, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, snaplen=snaplen)
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


ANSWER = re.compile(rb"Host IP is ([\d.]+), task (\S+) ([\d.]+)")


def answered_ports(client_pcap: Path) -> set[int]:
    """Client ports that received an HTTP answer (read with dpkt, independently of meshpkt)."""
    import dpkt

    out: set[int] = set()
    with open(client_pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ANSWER.search(bytes(ip.data.data)):
                out.add(ip.data.dport)
    return out


def syn_ports(client_pcap: Path) -> set[int]:
    """Client ports that opened a connection (SYN sent by the client)."""
    import dpkt

    out: set[int] = set()
    with open(client_pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                t = ip.data
                if t.flags & dpkt.tcp.TH_SYN and not t.flags & dpkt.tcp.TH_ACK and ip.src == bytes([10, 211, 55, 2]):
                    out.add(t.sport)
    return out


OUT_OF_WINDOW = r"""
import random, socket, sys, time
from scapy.all import IP, TCP, conf, send
conf.verb = 0
node = sys.argv[1]
for k in range(int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(2)
    s.connect((node, 9090))
    sport = s.getsockname()[1]
    time.sleep(0.05)
    # one segment of this connection far outside its window (what a middlebox or a retransmission
    # storm produces): conntrack calls it INVALID, so it is not DNATed
    send(IP(dst=node) / TCP(sport=sport, dport=9090, flags="A", seq=random.getrandbits(32),
                            ack=random.getrandbits(32)) / b"x")
    time.sleep(0.1)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.recv(65536)
    except OSError:
        pass
    s.close()
    time.sleep(0.2)
"""


def out_of_window_cmd(node_ip: str, n: int = 3) -> list[str]:
    return [sys.executable, "-c", OUT_OF_WINDOW, node_ip, str(n)]


def rst_ports(client_pcap: Path, src: str) -> set[int]:
    """Client ports that received a RST from ``src``."""
    import ipaddress

    import dpkt

    want = ipaddress.IPv4Address(src).packed
    out: set[int] = set()
    with open(client_pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.src == want \
                    and ip.data.flags & dpkt.tcp.TH_RST:
                out.add(ip.data.dport)
    return out
