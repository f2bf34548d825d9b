"""Independent truth from the shipped captures: where a SYN was seen (read with dpkt, not meshpkt)."""

from __future__ import annotations

from pathlib import Path

import dpkt

SHIPPED = Path(__file__).resolve().parents[2] / "captures" / "ingress-3node"


def _tcp_of(frame: bytes) -> tuple[dpkt.tcp.TCP | None, bool]:
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP):
        return None, False
    if isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 4789:
        inner, _ = _tcp_of(bytes(ip.data.data)[8:])
        return inner, True
    return (ip.data, False) if isinstance(ip.data, dpkt.tcp.TCP) else (None, False)


def syn_sightings(client_port: int) -> list[tuple[float, str, bool]]:
    """(time, point, encapsulated) of every copy of the first SYN the client sent from ``client_port``."""
    seq = None
    with (SHIPPED / "client.host.eth0.pcap").open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            tcp, _ = _tcp_of(frame)
            if tcp is not None and tcp.sport == client_port and tcp.flags & 0x12 == 0x02:
                seq = tcp.seq
                break
    assert seq is not None, f"no SYN from port {client_port} in the shipped capture"
    seen = []
    for pcap in sorted(SHIPPED.glob("*.pcap")):
        with pcap.open("rb") as fh:
            for ts, frame in dpkt.pcap.Reader(fh):
                tcp, enc = _tcp_of(frame)
                if tcp is not None and tcp.seq == seq and tcp.flags & 0x12 == 0x02:
                    seen.append((float(ts), pcap.stem, enc))
    return sorted(seen)
