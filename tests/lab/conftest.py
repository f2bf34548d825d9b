"""Helpers for the lab tests: a dpkt-based pcap reader that also opens VXLAN."""

from __future__ import annotations

import ipaddress
import types
from pathlib import Path
from typing import Any

import pytest


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _frame(buf: bytes, vxlan_ports: set[int]) -> dict[str, Any]:
    import dpkt

    eth = dpkt.ethernet.Ethernet(buf)
    rec: dict[str, Any] = {"src_mac": _mac(eth.src), "dst_mac": _mac(eth.dst), "ip": False}
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP):
        return rec
    rec.update(ip=True, src=str(ipaddress.IPv4Address(ip.src)), dst=str(ipaddress.IPv4Address(ip.dst)),
               proto=ip.p, ttl=ip.ttl)
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        rec.update(sport=l4.sport, dport=l4.dport, flags=l4.flags, payload=bytes(l4.data))
    elif isinstance(l4, dpkt.udp.UDP):
        rec.update(sport=l4.sport, dport=l4.dport, payload=bytes(l4.data))
        data = bytes(l4.data)
        if l4.dport in vxlan_ports and len(data) >= 22 and data[0] & 0x08:
            rec["vni"] = int.from_bytes(data[4:7], "big")
            rec["inner"] = _frame(data[8:], set())
    return rec


def read_frames(path: str | Path, vxlan_ports: set[int] | None = None) -> list[dict[str, Any]]:
    """Every frame of a pcap as a dict (macs, ips, ports, tcp flags, payload; ``inner`` for VXLAN)."""
    import dpkt

    with open(path, "rb") as fh:
        return [_frame(buf, vxlan_ports or {4789}) for _ts, buf in dpkt.pcap.Reader(fh)]


SYN, ACK = 0x02, 0x10


def is_syn(f: dict[str, Any]) -> bool:
    return f.get("proto") == 6 and bool(f["flags"] & SYN) and not f["flags"] & ACK


def is_synack(f: dict[str, Any]) -> bool:
    return f.get("proto") == 6 and bool(f["flags"] & SYN) and bool(f["flags"] & ACK)


@pytest.fixture(scope="session")
def pcap() -> types.SimpleNamespace:
    """``pcap.read(path, vxlan_ports={4789})`` -> decoded frames; ``pcap.is_syn(f)``, ``pcap.is_synack(f)``."""
    return types.SimpleNamespace(read=read_frames, is_syn=is_syn, is_synack=is_synack)
