"""Topology pictures from lab status documents: the planned lab, the shipped one, a hand-written one."""

from __future__ import annotations

import copy
import json

import pytest
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch

from meshpkt.errors import UsageError
from meshpkt.plot import topology_diagram
from tests.fixtures import MESHLAB_DUMPS, SHIPPED_STATUS, require


@pytest.fixture(scope="module")
def planned_status() -> dict:
    """The status document of the default lab spec (seed 001's cluster), computed without root."""
    from meshpkt.lab.plan import plan
    from meshpkt.lab.spec import LabSpec
    from meshpkt.lab.status import build_status

    return build_status(plan(LabSpec()))


def _chips_expected(status: dict) -> int:
    """Interfaces drawn as chips: all but bridge ports (veths enslaved to a bridge), underlay bridge excluded."""
    n = 0
    nss = [ns for nd in status["nodes"] for ns in nd["namespaces"]]
    nss += [ns for ns in status.get("underlay_namespaces", []) if ns["role"] == "client"]
    for ns in nss:
        n += sum(1 for i in ns["interfaces"] if not (i.get("bridge") and i.get("kind") == "veth"))
    return n


def _texts(fig, figtools, gid):
    return [t.get_text() for t in figtools.by_gid(fig, gid) if hasattr(t, "get_text")]


def test_planned_lab(planned_status, figtools):
    s = planned_status
    fig = topology_diagram(s)
    chips = figtools.by_gid(fig, "iface", FancyBboxPatch)
    assert len(chips) == _chips_expected(s)
    nss = figtools.by_gid(fig, "namespace", FancyBboxPatch)
    assert len(nss) == sum(len(nd["namespaces"]) for nd in s["nodes"]) + 1  # + the client
    nodes = _texts(fig, figtools, "node")
    assert nodes[0] == "clients" and nodes[1].startswith("node1 · 10.211.55.10 · ingress 10.0.0.2")
    chip_text = _texts(fig, figtools, "iface")
    # addresses, VIPs and VNIs are printed on the interfaces
    assert "eth0\n10.0.0.2/24\nVIP 10.0.0.5" in chip_text
    assert sum(t.startswith("vxlan0\nVNI 4096") for t in chip_text) == 3
    assert sum(t.startswith("vxlan0\nVNI 4097") for t in chip_text) == 3
    # one dashed bus per VXLAN network, labelled with its VNI
    buses = figtools.by_gid(fig, "vxlan-bus", Line2D)
    assert len(buses) == 2
    assert _texts(fig, figtools, "vxlan-bus") == ["VXLAN VNI 4096 (ingress)", "VXLAN VNI 4097 (my-overlay)"]
    assert len(figtools.by_gid(fig, "underlay-bus", Line2D)) == 1
    # links: every veth pair once (bridge ports resolve to their bridge), vxlan0-br0, vxlan0-bus
    veth_pairs = set()
    for nd in s["nodes"]:
        for ns in nd["namespaces"]:
            for i in ns["interfaces"]:
                p = i.get("peer")
                if p and not p["netns"].endswith("underlay"):
                    veth_pairs.add(frozenset({(ns["name"], i["name"]), (p["netns"], p["iface"])}))
    n_vxlan = 6
    links = figtools.by_gid(fig, "link", Line2D)
    underlay_drops = 3 + 1  # node eth0s and the client
    assert len(links) == len(veth_pairs) + 2 * n_vxlan + underlay_drops
    assert figtools.overlapping_texts(fig) == []
    assert figtools.texts_outside(fig) == []


def test_shipped_status(figtools):
    s = json.loads(require(SHIPPED_STATUS).read_text())
    fig = topology_diagram(s)
    assert len(figtools.by_gid(fig, "iface", FancyBboxPatch)) == _chips_expected(s)
    assert figtools.overlapping_texts(fig) == []


def test_small_hand_written_status(figtools, tmp_path):
    s = figtools.synth_status()
    fig = topology_diagram(s)
    assert len(figtools.by_gid(fig, "iface", FancyBboxPatch)) == _chips_expected(s)
    assert _texts(fig, figtools, "vxlan-bus") == ["VXLAN VNI 4096 (ingress)"]
    assert figtools.overlapping_texts(fig) == []
    one = copy.deepcopy(s)
    one["nodes"] = one["nodes"][:1]
    one["underlay_namespaces"] = []
    fig1 = topology_diagram(one)
    assert len(figtools.by_gid(fig1, "node", FancyBboxPatch)) == 1
    assert figtools.overlapping_texts(fig1) == []
    svg = tmp_path / "topo.svg"
    fig1.savefig(svg)
    assert b"<svg" in svg.read_bytes()[:400]


@pytest.mark.parametrize("bad", [[], {"nodes": "x"}, {"name": "x"}, {"nodes": []}, {"nodes": [{"namespaces": 3}]}])
def test_bad_documents(bad):
    with pytest.raises(UsageError):
        topology_diagram(bad)


def test_from_dumps_matches_the_planned_lab(planned_status, figtools):
    """The dumps under tests/rules/data/meshlab were taken from the default lab: the picture drawn from
    them has the same interfaces and links as the one drawn from the lab's own status, less the client."""
    from meshpkt.plot.topology import status_from_model
    from meshpkt.rules.model import load_dumps

    model = load_dumps(require(MESHLAB_DUMPS))
    s = status_from_model(model)
    assert [n["underlay_ip"] for n in s["nodes"]] == ["10.211.55.10", "10.211.55.18", "10.211.55.22"]
    assert [(n["vni"], n["subnet"]) for n in s["networks"] if n["vni"]] == [(4096, "10.0.0.0/24"),
                                                                           (4097, "10.0.1.0/24")]
    fig = topology_diagram(model)
    planned = topology_diagram(planned_status)

    def count(f, gid, kind):
        return len(figtools.by_gid(f, gid, kind))

    assert count(fig, "iface", FancyBboxPatch) == count(planned, "iface", FancyBboxPatch) - 1
    assert count(fig, "link", Line2D) == count(planned, "link", Line2D) - 1
    assert count(fig, "vxlan-bus", Line2D) == 2
    assert figtools.overlapping_texts(fig) == []
