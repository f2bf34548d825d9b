"""Sequence diagrams drawn from crafted and shipped captures: lanes, arrows, labels, translations, losses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from meshpkt.errors import UsageError
from meshpkt.plot import first_connection, sequence_diagram, sequence_model

CROSS_NODE_POINTS = ["client.host.eth0", "node1.host.eth0", "node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0",
                     "node1.1-abcdef1234.br0", "node1.host.eth0", "node2.host.eth0", "node2.1-abcdef1234.br0",
                     "node2.web.2.eth0"]
HANDSHAKE_LABELS = ["SYN", "SYN+ACK", "ACK", "PSH+ACK · 43 B", "PSH+ACK · 58 B", "FIN+ACK", "FIN+ACK", "ACK"]


def _texts(fig: Figure, figtools, gid: str) -> list[str]:
    return [t.get_text() for t in figtools.by_gid(fig, gid) if hasattr(t, "get_text")]


def _lost_crosses(fig: Figure, figtools) -> list[Line2D]:
    return figtools.by_gid(fig, "lost", Line2D)


def test_cross_node_connection(make_analysis, figtools):
    c = figtools.Conn("node1", "10.0.0.6", 51883, 57786)
    a = make_analysis([c])
    fig = sequence_diagram(a, 1)
    assert isinstance(fig, Figure)
    # one lane per hop, in path order: the node1 eth0 lane appears twice (plain, then VXLAN)
    lanes = figtools.by_gid(fig, "lane", Line2D)
    assert len(lanes) == 9
    headers = _texts(fig, figtools, "lane-header")
    assert headers.count("node1") == 5 and headers.count("node2") == 3 and headers.count("client") == 2
    assert "host · VXLAN" in headers and "ingress_sbox · eth1" in headers and "web.2.eth0" in headers
    # the 5-tuple at each hop, the outer header on the VXLAN lanes
    tuples = _texts(fig, figtools, "lane-tuple")
    assert tuples[0].splitlines() == ["src 10.211.55.2:51883", "dst 10.211.55.10:9090"]
    assert tuples[2].splitlines()[1] == "dst 172.18.0.2:9090"
    assert tuples[3].splitlines() == ["src 10.0.0.2:57786", "dst 10.0.0.6:9090"]
    assert "outer 10.211.55.10" in tuples[5] and "10.211.55.18" in tuples[5]
    # 8 logical packets, each an arrow chain across the 9 lanes: 8 arrows each
    arrows = figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)
    assert len(arrows) == 8 * 8
    assert _texts(fig, figtools, "packet-label") == HANDSHAKE_LABELS
    assert len(_texts(fig, figtools, "time-label")) == 8
    # requests run left to right, replies right to left
    xs = [ln.get_xdata()[0] for ln in lanes]
    m = sequence_model(a, 1)
    assert [c.forward for c in m.packets] == [True, False, True, True, False, False, True, False]
    assert all(c.lanes == (list(range(9)) if c.forward else list(range(8, -1, -1))) for c in m.packets)
    assert xs == sorted(xs)
    # translations where they happen
    badges = _texts(fig, figtools, "translation")
    assert badges == ["DNAT\ndst → 172.18.0.2:9090", "IPVS masq + SNAT\nsrc → 10.0.0.2:57786\ndst → 10.0.0.6:9090",
                      "VXLAN encap VNI 4096\nto 10.211.55.18", "VXLAN decap VNI 4096\nfrom 10.211.55.10"]
    assert [(mk.kind, mk.lane_from, mk.lane_to) for mk in m.markers] == [
        ("dnat", 1, 2), ("ipvs-masq+snat", 2, 3), ("vxlan-encap", 4, 5), ("vxlan-decap", 6, 7)]
    assert not _lost_crosses(fig, figtools)
    assert figtools.overlapping_texts(fig) == []
    assert figtools.texts_outside(fig) == []


def test_one_node_connection(make_analysis, figtools):
    a = make_analysis([figtools.Conn("node2", "10.0.0.6", 51900, 57900)])
    fig = sequence_diagram(a, first_connection(a))
    assert len(figtools.by_gid(fig, "lane", Line2D)) == 6
    assert len(figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)) == 8 * 5
    badges = _texts(fig, figtools, "translation")
    assert [b.splitlines()[0] for b in badges] == ["DNAT", "IPVS masq + SNAT"]
    assert not any("VXLAN" in t for t in _texts(fig, figtools, "lane-header"))
    assert figtools.overlapping_texts(fig) == []


def test_dropped_packets_end_in_a_cross(make_analysis, figtools):
    conns = [figtools.Conn("node1", "10.0.0.6", 51883, 57786, drop_after="node1.host.eth0"),
             figtools.Conn("node1", "10.0.0.5", 51884, 57787)]
    a = make_analysis(conns)
    fig = sequence_diagram(a, 1)
    labels = _texts(fig, figtools, "packet-label")
    assert labels == ["SYN", "SYN (retrans.)", "SYN (retrans.)"]
    crosses = _lost_crosses(fig, figtools)
    assert len(crosses) == 3
    lanes = figtools.by_gid(fig, "lane", Line2D)
    last_seen = lanes[-1].get_xdata()[0]  # node1.host.eth0, VXLAN: the last point the SYNs reached
    assert all(c.get_xdata()[0] == pytest.approx(last_seen) for c in crosses)
    assert "lost: last seen here" in _texts(fig, figtools, "legend")
    # the healthy connection next to it has no cross
    assert not _lost_crosses(sequence_diagram(a, 2), figtools)
    assert figtools.overlapping_texts(fig) == []


def test_drop_with_topology_ends_at_the_point_flows_names(make_analysis, figtools):
    # dropped inside the entry node's ingress_sbox: the requests end in a cross where flows says they died
    conns = [figtools.Conn("node1", "10.0.0.6", 51883, 57786, drop_after="node1.ingress_sbox.eth1")]
    a = make_analysis(conns, status=True)
    missing = a.connections.iloc[0]["missing_at"]
    assert missing == "node1.ingress_sbox.eth1"
    fig = sequence_diagram(a, 1)
    m = sequence_model(a, 1)
    assert not any(ln.ghost for ln in m.lanes) and m.lanes[-1].point == missing
    crosses = _lost_crosses(fig, figtools)
    lanes = figtools.by_gid(fig, "lane", Line2D)
    assert len(crosses) == 3
    assert all(c.get_xdata()[0] == pytest.approx(lanes[-1].get_xdata()[0]) for c in crosses)
    assert figtools.overlapping_texts(fig) == []


def test_a_missing_point_never_seen_becomes_a_ghost_lane():
    from types import SimpleNamespace

    from meshpkt.plot.sequence import Lane, _ghost_lane

    lanes = [Lane("client.host.eth0", "client", "client", False), Lane("node1.host.eth0", "node1", "host", False)]
    conn = {"missing_at": "node1.ingress_sbox.eth1"}
    _ghost_lane(SimpleNamespace(topology=None), conn, lanes)  # type: ignore[arg-type]
    assert [(ln.point, ln.node, ln.role, ln.ghost) for ln in lanes[2:]] == [
        ("node1.ingress_sbox.eth1", "node1", "ingress_sbox", True)]
    _ghost_lane(SimpleNamespace(topology=None), {"missing_at": "node1.host.eth0"}, lanes)  # type: ignore[arg-type]
    assert len(lanes) == 3  # a point already drawn is not added twice


def test_long_connection_is_summarised(long_analysis, figtools):
    a = long_analysis(30)  # 3 + 2*30 = 63 logical packets over 9 lanes (cross-node)
    m = sequence_model(a, 1)
    assert len(m.packets) == 40 and len(m.omitted) == 23
    fig = sequence_diagram(a, 1)
    assert len(_texts(fig, figtools, "packet-label")) == 40
    assert len(figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)) == 40 * 8
    (note,) = _texts(fig, figtools, "note")
    assert "first 40 of 63 packets" in note and "23 more" in note
    assert figtools.overlapping_texts(fig) == []
    assert figtools.texts_outside(fig) == []
    small = sequence_diagram(a, 1, max_packets=5)
    assert len(_texts(small, figtools, "packet-label")) == 5
    assert figtools.overlapping_texts(small) == []


def test_eight_lanes_forty_packets_no_overlap(figtools, tmp_path):
    """A made-up model at the readability limit: 8 lanes with long names, 40 packets, every marker kind."""
    from meshpkt.plot.sequence import Lane, Marker, PacketChain, SequenceModel, draw_sequence

    lanes = [Lane(f"node{k % 3 + 1}.a-very-long-namespace-name-{k}.eth{k}", f"node{k % 3 + 1}", "overlay",
                  k in (4, 5), src=f"10.255.255.{250 + k % 5}:65535", dst="10.255.255.254:65535",
                  vni=4096 if k in (4, 5) else None, outer_src="192.168.200.200", outer_dst="192.168.200.201")
             for k in range(8)]
    chains = [PacketChain(k % 3 != 1, "SYN+ACK+URG+ECE+CWR · 65535 B" if k % 7 == 0 else "ACK",
                          list(range(8)) if k % 3 != 1 else list(range(7, -1, -1)),
                          [k * 10**9 + j for j in range(8)], lost=(k % 11 == 0)) for k in range(40)]
    markers = [Marker("dnat", 0, 1, "DNAT", "dst → 255.255.255.255:65535"),
               Marker("ipvs-masq+snat", 1, 2, "IPVS masq + SNAT", "src → 255.255.255.255:65535\n"
                      "dst → 255.255.255.254:65535"),
               Marker("vxlan-encap", 3, 4, "VXLAN encap VNI 16777215", "to 192.168.200.201"),
               Marker("vxlan-decap", 5, 6, "VXLAN decap VNI 16777215", "from 192.168.200.200"),
               Marker("redirect", 7, 7, "REDIRECT", "port 65535 → 8080"),
               Marker("snat", 6, 7, "SNAT", "src → 255.255.255.255:65535")]
    model = SequenceModel(1, "Connection 1 · TCP · established", "client x → entry y → backend z",
                          "syn-acked: " + "a long verdict that must wrap " * 12, lanes, chains, markers,
                          omitted=chains[:3], t0_ns=0)
    fig = draw_sequence(model)
    assert len(figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)) == 40 * 7
    assert len(_lost_crosses(fig, figtools)) == sum(c.lost for c in chains)
    assert len(_texts(fig, figtools, "translation")) == 6
    for dpi in (72, 100, 150):  # hinted raster text is wider at low resolutions
        fig.set_dpi(dpi)
        assert figtools.overlapping_texts(fig) == [], dpi
        assert figtools.texts_outside(fig) == [], dpi


def test_packets_seen_at_one_end_only(figtools):
    """A reply seen only at the client and a request seen only at the task keep their labels inside."""
    from meshpkt.plot.sequence import Lane, PacketChain, SequenceModel, draw_sequence

    lanes = [Lane(f"node1.ns{k}.eth0", "node1", "overlay", False, src="10.0.0.2:1", dst="10.0.0.3:2")
             for k in range(3)]
    chains = [PacketChain(False, "RST+ACK", [0], [0], lost=False),
              PacketChain(True, "PSH+ACK · 1448 B (a long label)", [2], [5], lost=False),
              PacketChain(True, "SYN", [0], [9], lost=True)]
    fig = draw_sequence(SequenceModel(1, "t", "s", "", lanes, chains, []))
    assert len(_lost_crosses(fig, figtools)) == 1
    assert not figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)
    assert figtools.overlapping_texts(fig) == []
    assert figtools.texts_outside(fig) == []


def test_png_and_svg_files(make_analysis, figtools, tmp_path):
    from PIL import Image

    a = make_analysis([figtools.Conn("node1", "10.0.0.6", 51883, 57786)])
    fig = sequence_diagram(a, 1)
    png, svg = tmp_path / "flow.png", tmp_path / "flow.svg"
    fig.savefig(png, dpi=120)
    fig.savefig(svg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
    fw, fh = fig.get_size_inches()
    assert (w, h) == (round(fw * 120), round(fh * 120))
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "10.211.55.2:51883" in svg.read_text()  # text stays text (searchable)
    assert Path(svg).stat().st_size > 10_000


def test_errors(make_analysis, figtools):
    a = make_analysis([figtools.Conn("node1", "10.0.0.5", 51000, 41000)])
    with pytest.raises(UsageError, match="no connection 7"):
        sequence_diagram(a, 7)
    empty = a.__class__(a.packets.iloc[:0], a.hops.iloc[:0], a.connections.iloc[:0], a.translations.iloc[:0],
                        {}, {}, {}, a.topology)
    with pytest.raises(UsageError, match="nothing to draw"):
        sequence_diagram(empty, 1)
    with pytest.raises(UsageError, match="nothing to draw"):
        first_connection(empty)


def test_shipped_captures(shipped_analysis, figtools):
    a = shipped_analysis
    c = a.connections
    assert len(c) >= 2
    cross = c[c["entry_node"] != c["backend_node"]]
    local = c[c["entry_node"] == c["backend_node"]]
    assert len(cross) and len(local)
    for cid in (int(cross.iloc[0]["conn_id"]), int(local.iloc[0]["conn_id"])):
        fig = sequence_diagram(a, cid)
        hops = a.hops[a.hops["conn_id"] == cid]
        assert len(figtools.by_gid(fig, "lane", Line2D)) == len(hops)
        m = sequence_model(a, cid)
        assert m.unmatched == 0
        assert sum(len(ch.lanes) for ch in m.packets + m.omitted) == len(
            a.packets[(a.packets["conn_id"] == cid).fillna(False)])
        assert len(figtools.by_gid(fig, "packet-arrow", FancyArrowPatch)) == sum(len(ch.lanes) - 1
                                                                                 for ch in m.packets)
        kinds = {mk.kind for mk in m.markers}
        assert {"dnat", "ipvs-masq+snat"} <= kinds
        if cid == int(cross.iloc[0]["conn_id"]):
            assert {"vxlan-encap", "vxlan-decap"} <= kinds
            assert any(t.startswith("VXLAN encap VNI 4096") for t in _texts(fig, figtools, "translation"))
        assert not _lost_crosses(fig, figtools)  # the shipped run lost nothing
        assert figtools.overlapping_texts(fig) == []
