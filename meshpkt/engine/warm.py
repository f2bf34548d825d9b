"""Fill numba's on-disk cache at install time: ``python -m meshpkt.engine.warm``.

The decoder's kernels are ``@njit(cache=True)``: the first run on a machine compiles them (tens of
seconds under load) and later runs only load them. ``.ci/setup`` runs this module right after
``pip install``, so that no user (and no test) pays the compilation: it writes small pcap,
pcapng and gzip captures covering every kernel's path (plain and VXLAN TCP with options, UDP,
ICMP, a frame cut by the snaplen, a damaged tail) and decodes them. AOT compilation
(``numba.pycc``) is deprecated, and shipping cache files would tie them to one numba/CPU; a cache
written on the machine that runs meshpkt is both exact and cheap.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _frames() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    opts = [("MSS", 1410), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    inner = (Ether() / IP(src="10.0.0.2", dst="10.0.0.5") / TCP(sport=40000, dport=80, flags="PA", options=opts)
             / (b"x" * 100))
    return [bytes(f) for f in (
        Ether() / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=40000, dport=4789) / VXLAN(vni=4096)
        / inner,
        Ether() / IP(src="10.211.55.2", dst="10.211.55.10") / TCP(sport=5000, dport=9090, flags="S", options=opts),
        Ether() / IP(src="10.211.55.2", dst="10.211.55.10") / UDP(sport=5353, dport=53) / (b"q" * 40),
        Ether() / IP(src="10.211.55.2", dst="10.211.55.10") / ICMP() / (b"p" * 56),
    )]


def warm(directory: Path) -> int:
    """Write the warm-up captures into ``directory`` and decode them; returns the packets read."""
    from meshpkt.capture.writer import write_pcap, write_pcapng
    from meshpkt.decode import read

    frames = _frames()
    records = [(1_700_000_000_000_000_000 + i * 1000, f) for i, f in enumerate(frames * 4)]
    write_pcap(directory / "a.pcap", records)
    write_pcap(directory / "b.pcap", records, nanosecond=False, snaplen=60, byteorder="big")
    write_pcap(directory / "c.pcap.gz", records, compress=True)
    write_pcapng(directory / "d.pcapng", [("eth0", 1), ("eth1", 1)],
                 [(i % 2, ts, f, None) for i, (ts, f) in enumerate(records)])
    damaged = directory / "e.pcap"
    damaged.write_bytes((directory / "a.pcap").read_bytes()[:-9])
    problems: list[Any] = []
    return len(read([directory], problems=problems))


def main() -> None:
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meshpkt-warm-") as tmp:
        n = warm(Path(tmp))
    print(f"meshpkt: numba cache warm ({n} packets decoded in {time.perf_counter() - t:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
