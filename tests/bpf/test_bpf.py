"""meshpkt.bpf: rendering, offsets, libpcap compilation, semantics on crafted captures."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.utils import wrpcap

from meshpkt.bpf import FilterSpec, build, explain, filter_string, filters_for_hops, match, render
from meshpkt.bpf import libpcap as lp
from meshpkt.bpf.check import check_capture
from meshpkt.bpf.match import evaluate
from meshpkt.decode.schema import ABSENT, COLUMNS
from meshpkt.errors import UsageError
from meshpkt.layers import VXLAN, TcpSegment, ingress_path, sbox_to_task, vxlan_underlay

E = {"src": "00:1c:42:ae:b6:41", "dst": "00:1c:42:60:87:b2"}
SEED_FILTER = "udp[39]=6 and (udp[42:4]=0x0a000002 or udp[42:4]=0x0a000014)"


def _seed_capture(tmp: Path) -> Path:
    """The seed's underlay conversation (request + reply) plus look-alikes that must not match."""
    pkts = [h.packet for d in ("request", "reply") for h in ingress_path(direction=d) if h.point == "underlay"]
    other = sbox_to_task(sbox_ip="10.0.0.3", task="10.0.0.21", sport=40000)
    pkts.append(vxlan_underlay(other, "10.211.55.18", "10.211.55.22"))  # other inner addresses
    pkts.append(Ether(**E) / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=1, dport=53) / (b"\x00" * 60))
    path = tmp / "seed.pcap"
    wrpcap(str(path), pkts)
    return path


# --- the seed ------------------------------------------------------------------------------
def test_seed_filter_reproduced() -> None:
    spec = FilterSpec(outer_ip="4", inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"])
    text = render(build(spec))
    assert text == f"udp dst port 4789 and udp[28:2]=0x0800 and {SEED_FILTER}"
    # default (outer IPv4 or IPv6): the seed's tests form the IPv4 branch
    assert f"(ip and udp[28:2]=0x0800 and {SEED_FILTER})" in filter_string(
        inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"])


def test_seed_explanation() -> None:
    lines = explain(build(FilterSpec(inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"])))
    text = "\n".join(lines)
    assert "udp[39]=6: 8 UDP + 8 VXLAN + 14 inner Ethernet + 9 = protocol byte of the inner IPv4 header; 6 = TCP" \
        in text
    assert ("udp[42:4]=0x0a000002: 8 UDP + 8 VXLAN + 14 inner Ethernet + 12 = inner IPv4 source address; "
            "0x0a000002 = 10.0.0.2") in text
    assert "0x0a000014 = 10.0.0.20" in text
    assert "ip6[40 + N]" in text


def test_seed_capture_same_selection_as_seed_filter(tmp_path: Path) -> None:
    path = _seed_capture(tmp_path)
    ours = lp.filter_file(path, filter_string(inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"]))
    seed = lp.filter_file(path, SEED_FILTER)
    assert ours == seed == [True, True, False, False]
    res = check_capture(FilterSpec(inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"]), path)
    assert (res.packets, res.libpcap, res.decoder, res.equal) == (4, 2, 2, True)


# --- offsets that the seed's hand-written filter gets wrong ------------------------------------
def _vx(inner_ip: IP, l4: object, outer6: bool = False, port: int = 4789) -> object:
    outer = IPv6(src="fd00::10", dst="fd00::18") if outer6 else IP(src="10.211.55.10", dst="10.211.55.18")
    return Ether(**E) / outer / UDP(sport=40000, dport=port) / VXLAN(vni=4096) / Ether(**E) / inner_ip / l4


def test_ihl_aware_ports_and_outer_ipv6(tmp_path: Path) -> None:
    pkts = [
        _vx(IP(src="10.0.0.2", dst="10.0.0.20"), TCP(sport=60559, dport=9090)),
        _vx(IP(src="10.0.0.2", dst="10.0.0.20", options=[IPOption_NOP()] * 8), TCP(sport=60559, dport=9090)),
        _vx(IP(src="10.0.0.2", dst="10.0.0.20"), TCP(sport=60559, dport=9090), outer6=True),
        _vx(IP(src="10.0.0.2", dst="10.0.0.20", options=[IPOption_NOP()] * 4), TCP(sport=9090, dport=60559)),
    ]
    path = tmp_path / "ihl.pcap"
    wrpcap(str(path), pkts)
    assert lp.filter_file(path, filter_string(inner_dport=9090)) == [True, True, True, False]
    # a fixed 20-byte inner header (udp[52:2]) misses the packet with IP options; udp[] misses IPv6
    assert lp.filter_file(path, "udp[52:2]=9090") == [True, False, False, False]
    assert lp.filter_file(path, filter_string(inner_dport=9090, outer_ip="6")) == [False, False, True, False]
    res = check_capture(FilterSpec(inner_port=9090), path)
    assert res.equal and res.libpcap == 4


def test_vlan_tagged_inner_and_outer(tmp_path: Path) -> None:
    inner = Ether(**E) / Dot1Q(vlan=5) / IP(src="10.0.0.2", dst="10.0.0.20") / TCP(dport=9090)
    plain = Ether(**E) / IP(src="10.0.0.2", dst="10.0.0.20") / TCP(dport=9090)
    u = UDP(sport=40000, dport=4789)
    pkts = [Ether(**E) / IP() / u / VXLAN(vni=1) / inner,
            Ether(**E) / IP() / u / VXLAN(vni=1) / plain,
            Ether(**E) / Dot1Q(vlan=30) / IP() / u / VXLAN(vni=1) / plain]
    path = tmp_path / "vlan.pcap"
    wrpcap(str(path), pkts)
    assert lp.filter_file(path, filter_string(inner_dport=9090)) == [False, True, False]
    assert lp.filter_file(path, filter_string(inner_dport=9090, inner_vlan=True)) == [True, False, False]
    assert lp.filter_file(path, filter_string(inner_vlan_id=5, inner_src="10.0.0.2")) == [True, False, False]
    assert lp.filter_file(path, filter_string(inner_dport=9090, outer_vlan=True)) == [False, False, True]
    for spec in (FilterSpec(inner_dport=9090), FilterSpec(inner_vlan_id=5), FilterSpec(outer_vlan=True, vni=1)):
        assert check_capture(spec, path).equal


def test_other_link_types(tmp_path: Path) -> None:
    """libpcap compiles udp[] for the file's link type: Linux cooked (tcpdump -i any) works too."""
    inner = sbox_to_task()
    pkt = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x00\x1c\x42\xae\xb6\x41\x00\x00", proto=0x0800) \
        / IP(src="10.211.55.10", dst="10.211.55.18") / UDP(sport=40000, dport=4789) / VXLAN(vni=4096) / inner
    path = tmp_path / "sll.pcap"
    wrpcap(str(path), [pkt], linktype=113)
    spec = FilterSpec(inner_dport=9090, vni=4096, inner_src="10.0.0.2")
    assert lp.filter_file(path, render(build(spec))) == [True]
    assert check_capture(spec, path).equal


# --- every expression compiles ----------------------------------------------------------------
_OPTIONS: list[dict[str, object]] = [
    {}, {"ports": [4789, 8472]}, {"vni": [4096, 4097]}, {"inner_proto": "icmp"}, {"inner_proto": ["tcp", "udp"]},
    {"inner_src": "10.0.0.2"}, {"inner_dst": "10.0.0.0/24"}, {"inner_host": ["10.0.0.20", "10.0.0.21"]},
    {"inner_net": "10.255.0.0/16"}, {"inner_sport": 60559}, {"inner_dport": [9090, 80]}, {"inner_port": 53},
    {"inner_tcp_flags": ["syn,!ack", "rst"]}, {"inner_mac": "02:42:0a:00:00:14"}, {"inner_vlan": True},
    {"inner_vlan_id": 100}, {"outer_src": "10.211.55.10"}, {"outer_dst": "fd00::18"},
    {"outer_host": ["10.211.55.0/24", "fd00::/64"]}, {"outer_ip": "4"}, {"outer_ip": "6"}, {"outer_vlan": True},
    {"conversation": "10.0.0.2:60559,10.0.0.20:9090"}, {"conversation": ["10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5"]},
]


def _combos() -> list[dict[str, object]]:
    out = []
    for a, b in itertools.combinations(range(len(_OPTIONS)), 2):
        kw = {**_OPTIONS[a], **_OPTIONS[b]}
        out.append(kw)
    out.append({k: v for o in _OPTIONS[1:16] for k, v in o.items() if k not in ("inner_proto", "inner_net")})
    return out


@pytest.mark.parametrize("linktype", [1, 113, 276, 101, 228])
def test_every_combination_compiles(linktype: int) -> None:
    compiled = 0
    for kw in _combos():
        try:
            spec = FilterSpec(**kw)  # type: ignore[arg-type]
            text = render(build(spec))
        except UsageError:
            continue  # contradictions (e.g. icmp + ports) are refused with one line before libpcap
        if kw.get("outer_vlan") and linktype != 1:
            with pytest.raises(UsageError, match="no VLAN support"):
                lp.compile_filter(text, linktype)
            continue
        try:
            assert lp.compile_filter(text, linktype) > 0
        except UsageError as exc:
            # the only acceptable compile failure: libpcap proving a contradiction itself
            assert "rejects all packets" in str(exc), f"{kw}: {text}: {exc}"
            continue
        compiled += 1
    assert compiled > {1: 260, 228: 200}.get(linktype, 235)


def test_tcpdump_compiles_a_sample() -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is required (installed by sh .ci/setup test)")
    for kw in _combos()[::25]:
        try:
            text = render(build(FilterSpec(**kw)))  # type: ignore[arg-type]
        except UsageError:
            continue
        r = subprocess.run(["tcpdump", "-d", "-y", "EN10MB", text], capture_output=True, text=True)
        assert r.returncode == 0 or "rejects all packets" in r.stderr, f"{text}\n{r.stderr}"


def test_wireshark_dialect_is_accepted_by_tshark(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required (installed by sh .ci/setup test)")
    path = _seed_capture(tmp_path)
    texts = []
    for kw in _combos()[::7]:
        try:
            texts.append(render(build(FilterSpec(**kw)), "wireshark"))  # type: ignore[arg-type]
        except UsageError:
            continue
    # one tshark run: OR every filter together (each parenthesised); a syntax error fails all
    r = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", " || ".join(f"({t})" for t in texts)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ws = render(build(FilterSpec(inner_proto="tcp", inner_src=["10.0.0.2", "10.0.0.20"])), "wireshark")
    r = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", ws, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["1", "2"]


# --- spec validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw, words", [
    ({"inner_proto": "icmp", "inner_dport": 80}, "inner ports need"),
    ({"inner_proto": "udp", "inner_tcp_flags": "syn"}, "needs --inner-proto tcp"),
    ({"inner_tcp_flags": "syn,!syn"}, "both set and clear"),
    ({"inner_tcp_flags": "sin"}, "unknown TCP flag"),
    ({"inner_src": "fd00::1"}, "IPv4"),
    ({"inner_mac": "02:42"}, "not a MAC"),
    ({"vni": 1 << 24}, "VNI"),
    ({"ports": 70000}, "port"),
    ({"outer_ip": "5"}, "outer IP version"),
    ({"outer_ip": "6", "outer_src": "10.0.0.1"}, "contradicts"),
    ({"conversation": "10.0.0.2"}, "conversation"),
])
def test_bad_specs_are_one_line_errors(kw: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words) as exc:
        render(build(FilterSpec(**kw)))  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)


def test_contradiction_found_while_rendering() -> None:
    with pytest.raises(UsageError, match="contradict"):
        render(build(FilterSpec(outer_src="10.0.0.1", outer_dst="fd00::1")))


def test_spec_normalises_and_ors_repeats() -> None:
    s = FilterSpec(ports=[4789, 4789, 8472], inner_proto=["TCP", "17"], inner_tcp_flags="syn,!ack")
    assert s.ports == (4789, 8472) and s.inner_proto == (6, 17) and s.inner_tcp_flags == ((0x02, 0x10),)
    assert filter_string(ports=[4789, 8472]).startswith("(udp dst port 4789 or udp dst port 8472)")
    assert "udp[30 + ((udp[30] & 0xf) << 2) + 13]&0x12=0x02" in filter_string(inner_tcp_flags="syn,!ack")
    assert "udp[42:4]&0xffffff00=0x0a000000" in filter_string(inner_net="10.0.0.7/24")


# --- match(): BPF semantics on the packet table ----------------------------------------------
def _table(rows: list[dict[str, object]]) -> pd.DataFrame:
    full = []
    for r in rows:
        base = {k: ABSENT[k] for k, (dt, _, _) in COLUMNS.items() if dt != "category"}
        base.update(outer_ipver=4, outer_proto=17, outer_dport=4789, inner_ethertype=0x0800, vni=4096)
        base.update(r)
        full.append(base)
    return pd.DataFrame(full)


def test_out_of_bounds_load_rejects_the_whole_packet_even_inside_or() -> None:
    """inner_host = src or dst: with the destination not captured, BPF stops at the load."""
    expr = build(FilterSpec(inner_host="10.0.0.20", outer_ip="4"))
    df = _table([
        {"inner_src": 0x0A000014, "inner_dst": 0x0A000002},  # src matches: accepted before the dst load
        {"inner_src": 0x0A000002, "inner_dst": 0},  # src no, dst not captured: BPF aborts
        {"inner_src": 0x0A000002, "inner_dst": 0x0A000014},
    ])
    assert evaluate(expr, df).tolist() == [1, -1, 1]
    assert match(expr, df).tolist() == [True, False, True]


def test_match_respects_guards_and_link_layer() -> None:
    spec = FilterSpec(inner_dport=9090)
    df = _table([
        {"inner_proto": 6, "inner_sport": 1, "inner_dport": 9090},
        {"inner_proto": 1, "inner_sport": -1, "inner_dport": -1},  # ICMP: guarded, never loads
        {"inner_proto": 17, "inner_sport": 1, "inner_dport": 9090, "vlan": 7},  # tagged: libpcap needs 'vlan'
        {"inner_proto": 17, "inner_sport": 1, "inner_dport": 9090, "outer_dport": 8472},
    ])
    assert match(spec, df).tolist() == [True, False, False, False]
    assert evaluate(build(spec), df)[1] == 0


def test_property_check_can_fail(tmp_path: Path) -> None:
    """The libpcap-vs-match comparison notices a wrong offset (guards the property test)."""
    pkts = [_vx(IP(src="10.0.0.2", dst="10.0.0.20", options=[IPOption_NOP()] * 8), TCP(dport=9090))]
    path = tmp_path / "x.pcap"
    wrpcap(str(path), pkts)
    from meshpkt.decode import decode_file

    df = decode_file(str(path))
    assert match(FilterSpec(inner_dport=9090), df).tolist() == [True]
    assert lp.filter_file(path, "udp dst port 4789 and udp[52:2]=9090") == [False]


# --- per-hop filters ---------------------------------------------------------------------------
def test_filters_for_hops_select_exactly_the_connection(tmp_path: Path) -> None:
    seg = TcpSegment(flags="PA", seq=5, ack=6, payload=b"x")
    mine = [h for d in ("request", "reply") for h in ingress_path(seg, direction=d)]
    from meshpkt.layers import IngressTopology

    other_topo = IngressTopology(client_port=51999, underlay_sport=41000, underlay_reply_sport=42000)
    other = [h for d in ("request", "reply") for h in ingress_path(seg, other_topo, direction=d)]
    hops = [
        {"point": "node_eth0", "src": "10.211.55.2:51883", "dst": "10.211.55.10:9090", "vni": None},
        {"point": "gwbridge", "src": "10.211.55.2:51883", "dst": "172.18.0.2:9090", "vni": None},
        {"point": "sbox_eth0", "src": "10.0.0.2:51883", "dst": "10.0.0.20:9090", "vni": None},
        {"point": "underlay", "src": "10.0.0.2:51883", "dst": "10.0.0.20:9090", "vni": 4096,
         "outer_src": "10.211.55.10", "outer_dst": "10.211.55.18"},
        {"point": "task_eth0", "src": "10.0.0.2:51883", "dst": "10.0.0.20:9090", "vni": -1},
    ]
    filters = filters_for_hops(hops)
    assert set(filters) == {h["point"] for h in hops}
    for point, text in filters.items():
        pkts = [h.packet for h in mine if h.point == point] + [h.packet for h in other if h.point == point]
        path = tmp_path / f"{point}.pcap"
        wrpcap(str(path), pkts)
        assert lp.filter_file(path, text) == [True, True, False, False], (point, text)
    ws = filters_for_hops(hops, "wireshark")
    assert "vxlan.vni == 4096" in ws["underlay"] and "ip.src#1 == 10.211.55.10" in ws["underlay"]
    with pytest.raises(UsageError):
        filters_for_hops([{"point": "x", "src": "nonsense", "dst": "10.0.0.1:1"}])


def test_libpcap_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="syntax error"):
        lp.compile_filter("udp[39=6")
    bad = tmp_path / "text.pcap"
    bad.write_text("not a capture\n")
    from meshpkt.errors import CaptureError

    with pytest.raises(CaptureError, match="text.pcap"):
        lp.filter_file(bad, "udp")
    with pytest.raises(CaptureError, match="no such"):
        lp.filter_file(tmp_path / "missing.pcap", "udp")
    assert np.asarray(lp.bpf_program("udp dst port 4789")).shape[1] == 4
