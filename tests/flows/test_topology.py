"""Per-point tcpdump drop counts (`capture_stats`) read into the topology: from the lab status
document, from a capture_stats.json beside it, and tolerated when absent or malformed."""

from __future__ import annotations

import json

from meshpkt.flows.topology import capture_drops, from_lab_status, load_topology, read_capture_stats


def test_capture_stats_in_the_status_document():
    status = {"capture_stats": {"node2.host.eth0": {"captured": 10, "received": 30, "dropped_kernel": 20},
                                "client.host.eth0": {"captured": 5, "received": 5, "dropped_kernel": 0},
                                "node1.host.eth0": {"captured": 5, "received": 5, "dropped_kernel": None}}}
    assert from_lab_status(status).capture_drops == {"node2.host.eth0": 20, "client.host.eth0": 0}


def test_capture_stats_beside_the_status_file(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps({"nodes": []}))
    (tmp_path / "capture_stats.json").write_text(json.dumps([{"point": "underlay.host.br0", "dropped_kernel": 7}]))
    assert load_topology(tmp_path / "status.json").capture_drops == {"underlay.host.br0": 7}


def test_missing_or_malformed_capture_stats_are_ignored(tmp_path):
    assert read_capture_stats(tmp_path) == {}
    (tmp_path / "capture_stats.json").write_text("not json")
    assert read_capture_stats(tmp_path) == {}
    assert capture_drops("text") == {} and capture_drops({"p": 3, "q": {"dropped_kernel": True}}) == {}
