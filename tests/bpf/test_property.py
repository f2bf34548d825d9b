"""Property tests: random specs x random packets -> libpcap's selection == bpf.match's selection.

Packets: VXLAN on several ports, outer IPv4 (with and without options) and IPv6, outer
802.1Q tags, inner frames with and without an 802.1Q tag, inner IPv4 with and without options,
later inner fragments, TCP/UDP/ICMP/GRE inside, non-IPv4 inner frames, non-VXLAN noise, broken
VXLAN (short payload), and snaplen-truncated packets (cut anywhere inside the tunnel payload).

The packet table comes from two sources:
- ``truth``: built here from what the generator put in each packet (a field is present when
  its bytes were captured), independent of meshpkt's decoder;
- ``decoder``: ``meshpkt.decode.decode_file`` on the written pcap.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from meshpkt.bpf import FilterSpec, build, match, render
from meshpkt.bpf import libpcap as lp
from meshpkt.decode.schema import ABSENT, COLUMNS
from meshpkt.errors import UsageError
from meshpkt.layers import VXLAN

# CI keeps example counts moderate; MESHPKT_EXAMPLES=500 for a deeper local run
EXAMPLES = int(os.environ.get("MESHPKT_EXAMPLES", "40"))
VXLAN_PORTS = [4789, 8472, 7789]
INNER_IPS = ["10.0.0.2", "10.0.0.20", "10.0.0.3", "10.255.0.5", "192.168.1.1"]
INNER_PORTS = [9090, 80, 60559, 53]
MACS = ["02:42:0a:00:00:02", "02:42:0a:00:00:14", "02:42:0a:00:00:14"[:-2] + "15"]
VTEP4 = ["10.211.55.10", "10.211.55.18", "10.211.55.22"]
VTEP6 = ["fd00::10", "fd00::18"]
VNIS = [4096, 4097, 256]


@dataclass
class Built:
    data: bytes
    row: dict[str, Any]
    ends: dict[str, int]  # field -> absolute end offset of the bytes BPF loads for it
    wirelen: int = 0

    def __post_init__(self) -> None:
        self.wirelen = self.wirelen or len(self.data)


def _mac_int(m: str) -> int:
    return int(m.replace(":", ""), 16)


# --- packet generation ---------------------------------------------------------------------
@st.composite
def vxlan_packets(draw: st.DrawFn) -> Built:
    outer6 = draw(st.booleans())
    outer_tag = draw(st.sampled_from([None, None, None, 10]))
    port = draw(st.sampled_from(VXLAN_PORTS))
    vni = draw(st.sampled_from(VNIS))
    idst, isrc = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS))
    inner_tag = draw(st.sampled_from([None, None, 5, 100]))
    kind = draw(st.sampled_from(["ip", "ip", "ip", "ip", "arp", "ip6"]))
    row: dict[str, Any] = {}
    ends: dict[str, int] = {}

    l2: Any = Ether(src="00:1c:42:ae:b6:41", dst="00:1c:42:60:87:b2")
    l3off = 14
    if outer_tag is not None:
        l2 = l2 / Dot1Q(vlan=outer_tag)
        l3off = 18
    if outer6:
        s, d = draw(st.sampled_from(VTEP6)), draw(st.sampled_from(VTEP6))
        outer = IPv6(src=s, dst=d, hlim=64)
        u = l3off + 40
        row.update(outer_ipver=6, outer_src6=ipaddress.IPv6Address(s).packed,
                   outer_dst6=ipaddress.IPv6Address(d).packed)
    else:
        s, d = draw(st.sampled_from(VTEP4)), draw(st.sampled_from(VTEP4))
        nopts = draw(st.sampled_from([0, 0, 4, 8]))
        outer = IP(src=s, dst=d, ttl=64, id=draw(st.integers(0, 65535)), options=[IPOption_NOP()] * nopts)
        u = l3off + 20 + nopts
        row.update(outer_ipver=4, outer_src=int(ipaddress.IPv4Address(s)), outer_dst=int(ipaddress.IPv4Address(d)))
    sport = draw(st.integers(32768, 60999))
    row.update(outer_proto=17, outer_sport=sport, outer_dport=port, vlan=-1 if outer_tag is None else outer_tag)

    inner: Any = Ether(dst=idst, src=isrc)
    ip = u + 30
    if inner_tag is not None:
        inner = inner / Dot1Q(vlan=inner_tag)
        ip = u + 34
        row["inner_vlan"] = inner_tag
        ends["inner_vlan"] = u + 32
    row.update(vni=vni, inner_eth_dst=_mac_int(idst), inner_eth_src=_mac_int(isrc))
    ends.update(vni=u + 16, inner_eth_dst=u + 22, inner_eth_src=u + 28)
    if kind == "arp":
        inner = inner / ARP(psrc="10.0.0.2", pdst="10.0.0.20")
        row["inner_ethertype"] = 0x0806
    elif kind == "ip6":
        inner = inner / IPv6(src="fd01::2", dst="fd01::3") / UDP(sport=1, dport=2)
        row["inner_ethertype"] = 0x86DD
    else:
        row["inner_ethertype"] = 0x0800
        isrc_ip, idst_ip = draw(st.sampled_from(INNER_IPS)), draw(st.sampled_from(INNER_IPS))
        proto = draw(st.sampled_from([6, 6, 17, 1, 47]))
        iopts = draw(st.sampled_from([0, 0, 0, 4, 12, 40]))
        later_frag = draw(st.sampled_from([False, False, False, False, True]))
        ipl = IP(src=isrc_ip, dst=idst_ip, ttl=63, id=draw(st.integers(0, 65535)), proto=proto,
                 flags="DF" if not later_frag else 0, frag=185 if later_frag else 0,
                 options=[IPOption_NOP()] * iopts)
        l4 = ip + 20 + iopts
        row.update(inner_proto=proto, inner_src=int(ipaddress.IPv4Address(isrc_ip)),
                   inner_dst=int(ipaddress.IPv4Address(idst_ip)))
        ends.update(inner_proto=ip + 10, inner_src=ip + 16, inner_dst=ip + 20)
        payload = draw(st.binary(min_size=0, max_size=24))
        if later_frag:
            l4pkt: Any = Raw(draw(st.binary(min_size=8, max_size=40)))
        elif proto == 6:
            sp, dp = draw(st.sampled_from(INNER_PORTS)), draw(st.sampled_from(INNER_PORTS))
            flags = draw(st.integers(0, 255))
            l4pkt = TCP(sport=sp, dport=dp, flags=flags, seq=draw(st.integers(0, 2**32 - 1))) / Raw(payload)
            row.update(inner_sport=sp, inner_dport=dp, tcp_flags=flags)
            ends.update(inner_sport=l4 + 2, inner_dport=l4 + 4, tcp_flags=l4 + 14)
        elif proto == 17:
            sp, dp = draw(st.sampled_from(INNER_PORTS)), draw(st.sampled_from(INNER_PORTS))
            l4pkt = UDP(sport=sp, dport=dp) / Raw(payload)
            row.update(inner_sport=sp, inner_dport=dp)
            ends.update(inner_sport=l4 + 2, inner_dport=l4 + 4)
        elif proto == 1:
            l4pkt = ICMP(type=8, code=0) / Raw(payload)
        else:
            l4pkt = Raw(b"\x00\x00\x08\x00" + payload)
        inner = inner / ipl / l4pkt
    ends["inner_ethertype"] = (u + 34) if inner_tag is not None else (u + 30)
    pkt = l2 / outer / UDP(sport=sport, dport=port, chksum=0) / VXLAN(vni=vni) / inner
    data = bytes(pkt)
    if draw(st.integers(0, 4)) == 0:  # snaplen truncation inside the tunnel
        cut = draw(st.integers(u + 4, len(data) - 1))
        return Built(data[:cut], row, ends, len(data))
    return Built(data, row, ends)


@st.composite
def noise_packets(draw: st.DrawFn) -> Built:
    kind = draw(st.sampled_from(["tcp4", "udp53", "udp6", "arp", "short_vxlan"]))
    eth = Ether(src="00:1c:42:00:00:18", dst="00:1c:42:ae:b6:41")
    pad = draw(st.binary(min_size=40, max_size=60))
    if kind == "tcp4":
        p = eth / IP(src="10.211.55.2", dst="10.211.55.10") / TCP(sport=51883, dport=9090, flags="S") / Raw(pad)
        row = dict(outer_ipver=4, outer_proto=6, outer_src=0x0AD33702, outer_dst=0x0AD3370A, outer_sport=51883,
                   outer_dport=9090, tcp_flags=0x02, inner_sport=-1)
    elif kind == "udp53":
        p = eth / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=4789, dport=53) / Raw(pad)
        row = dict(outer_ipver=4, outer_proto=17, outer_src=0x0AD3370A, outer_dst=0x0AD33712, outer_sport=4789,
                   outer_dport=53)
    elif kind == "udp6":
        p = eth / IPv6(src="fd00::10", dst="fd00::18") / UDP(sport=4000, dport=9999) / Raw(pad)
        row = dict(outer_ipver=6, outer_proto=17, outer_src6=ipaddress.IPv6Address("fd00::10").packed,
                   outer_dst6=ipaddress.IPv6Address("fd00::18").packed, outer_sport=4000, outer_dport=9999)
    elif kind == "arp":
        p = eth / ARP(psrc="10.211.55.2", pdst="10.211.55.10") / Raw(pad)
        row = {}
    else:  # datagram to a VXLAN port too short to hold a VXLAN header
        port = draw(st.sampled_from(VXLAN_PORTS))
        p = eth / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=40000, dport=port) / Raw(b"\x08\x00\x00")
        row = dict(outer_ipver=4, outer_proto=17, outer_src=0x0AD3370A, outer_dst=0x0AD33712, outer_sport=40000,
                   outer_dport=port)
    return Built(bytes(p), row, {})


packets = st.lists(st.one_of(vxlan_packets(), vxlan_packets(), vxlan_packets(), noise_packets()),
                   min_size=8, max_size=30)


def _some(pool: list[Any], max_size: int = 2) -> st.SearchStrategy[list[Any]]:
    return st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(pool), min_size=1, max_size=max_size,
                                                        unique=True))


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    kw: dict[str, Any] = {"ports": draw(st.lists(st.sampled_from(VXLAN_PORTS), min_size=1, max_size=2, unique=True))}
    kw["vni"] = draw(_some(VNIS))
    kw["inner_proto"] = draw(_some(["tcp", "udp", "icmp", "47"]))
    for k in ("inner_src", "inner_dst", "inner_host"):
        kw[k] = draw(_some(INNER_IPS))
    kw["inner_net"] = draw(_some(["10.0.0.0/24", "10.0.0.16/28", "10.255.0.0/16"], 1))
    for k in ("inner_sport", "inner_dport", "inner_port"):
        kw[k] = draw(_some(INNER_PORTS))
    kw["inner_tcp_flags"] = draw(_some(["syn", "syn,!ack", "ack", "rst", "fin,ack", "!syn"]))
    kw["inner_mac"] = draw(_some(MACS))
    kw["inner_vlan_id"] = draw(_some([5, 100], 1))
    kw["inner_vlan"] = draw(st.booleans()) if not kw["inner_vlan_id"] else True
    for k in ("outer_src", "outer_dst", "outer_host"):
        kw[k] = draw(_some(VTEP4 + VTEP6, 1))
    kw["outer_ip"] = draw(st.sampled_from(["any", "any", "4", "6"]))
    kw["outer_vlan"] = draw(st.sampled_from([False, False, False, True]))
    kw["conversation"] = draw(_some(["10.0.0.2:60559,10.0.0.20:9090", "10.0.0.2,10.0.0.3",
                                     "10.0.0.20:80,10.0.0.3:53"], 1))
    # keep specs small enough to select something now and then
    names = [k for k, v in kw.items() if k not in ("ports", "outer_ip", "inner_vlan", "outer_vlan") and v]
    keep = set(draw(st.lists(st.sampled_from(names), max_size=3, unique=True))) if names else set()
    return {k: v for k, v in kw.items() if k in keep or k in ("ports", "outer_ip", "inner_vlan", "outer_vlan")}


# --- tables ----------------------------------------------------------------------------------
def truth_table(built: list[Built]) -> pd.DataFrame:
    rows = []
    for i, b in enumerate(built):
        r = {k: ABSENT[k] for k in COLUMNS if COLUMNS[k][0] != "category"}
        r.update(record=i, caplen=len(b.data), outer_frag=False, vlan2=-1)
        r.update(b.row)
        for field, end in b.ends.items():
            if end > len(b.data) and field in r:
                r[field] = ABSENT[field]
        rows.append(r)
    df = pd.DataFrame(rows)
    for k, (dtype, _, _) in COLUMNS.items():
        if k in df.columns and dtype not in ("category", "object"):
            df[k] = df[k].astype(dtype)
    return df


def write_pcap(path: Path, built: list[Built]) -> None:
    """Classic little-endian microsecond pcap, Ethernet; wire length = the untruncated length."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, b in enumerate(built):
        out.append(struct.pack("<IIII", 1700000000 + i, 0, len(b.data), b.wirelen) + b.data)
    path.write_bytes(b"".join(out))


def decoder_table(path: Path, ports: list[int]) -> pd.DataFrame:
    from meshpkt.decode import decode_file

    return decode_file(path, vxlan_ports=ports)


def _spec_or_none(kw: dict[str, Any]) -> FilterSpec | None:
    try:
        spec = FilterSpec(**kw)
        render(build(spec))
        return spec
    except UsageError:
        return None


def check(tmp: Path, built: list[Built], spec_kws: list[dict[str, Any]], use_decoder: bool) -> None:
    path = tmp / "p.pcap"
    write_pcap(path, built)
    df = decoder_table(path, VXLAN_PORTS) if use_decoder else truth_table(built)
    for kw in spec_kws:
        spec = _spec_or_none(kw)
        if spec is None:
            continue
        expr = render(build(spec))
        want = match(spec, df)
        try:
            got = np.array(lp.filter_file(path, expr), dtype=bool)
        except UsageError as exc:
            assert "rejects all packets" in str(exc), exc
            got = np.zeros(len(built), dtype=bool)
        assert len(got) == len(want)
        diff = np.flatnonzero(got != want)
        assert not len(diff), (f"spec {kw}\nfilter {expr}\nrecords {diff.tolist()} libpcap {got[diff].tolist()} "
                               f"match {want[diff].tolist()}\n" + "\n".join(
                                   f"  #{i} {built[i].data.hex()} {built[i].row}" for i in diff[:3]))


@pytest.mark.parametrize("source", ["truth", "decoder"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(built=packets, spec_kws=st.lists(specs(), min_size=3, max_size=6))
def test_libpcap_selects_what_match_selects(tmp_path: Path, source: str, built: list[Built],
                                            spec_kws: list[dict[str, Any]]) -> None:
    check(tmp_path, built, spec_kws, use_decoder=source == "decoder")


@settings(max_examples=max(5, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(built=st.lists(vxlan_packets(), min_size=6, max_size=20), spec_kw=specs())
def test_wireshark_dialect_selects_the_same(tmp_path: Path, built: list[Built], spec_kw: dict[str, Any]) -> None:
    """tshark -Y with the Wireshark rendering selects what libpcap selects (whole packets, no
    outer tag, no later inner fragments: Wireshark reassembles those)."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required (installed by sh .ci/setup test)")
    built = [b for b in built if len(b.data) >= max([0, *b.ends.values()]) and b.row.get("vlan", -1) == -1]
    built = [b for b in built if not (b.row.get("inner_proto", -1) in (6, 17) and "inner_sport" not in b.row)]
    assume(built)
    spec_kw = dict(spec_kw, outer_vlan=False)
    spec = _spec_or_none(spec_kw)
    assume(spec is not None)
    assert spec is not None
    path = tmp_path / "w.pcap"
    write_pcap(path, built)
    try:
        got = set(np.flatnonzero(lp.filter_file(path, render(build(spec)))).tolist())
    except UsageError:
        got = set()
    ws = render(build(spec), "wireshark")
    cmd = ["tshark", "-n", "-r", str(path), "-Y", ws, "-T", "fields", "-e", "frame.number"]
    for p in spec.ports:
        if p != 4789:
            cmd[1:1] = ["-d", f"udp.port=={p},vxlan"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{ws}\n{r.stderr}"
    shark = {int(x) - 1 for x in r.stdout.split()}
    assert shark == got, f"spec {spec_kw}\nwireshark {ws}\npcap {render(build(spec))}\n{shark} vs {got}"


def test_truth_table_matches_schema() -> None:
    b = [vxlan_packets().example() for _ in range(3)]
    df = truth_table(b)
    assert set(df.columns) <= set(COLUMNS)
    assert struct.calcsize("!H") == 2
