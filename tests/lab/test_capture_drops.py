"""Drop accounting of ``lab capture``: tcpdump's final counters per tap, in the result, in status.json, and a
warning in the CLI when a tap dropped packets (a real 3-node lab, real curls of MB responses)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.build import lab_namespaces
from meshpkt.lab.capture import drop_summary, tap_stats
from meshpkt.mesh.status import load_status

pytestmark = pytest.mark.root

CURLS = 6
SIZE = 2_000_000


def _pcap_count(path: str) -> int:
    """Frames in a pcap file, counted by dpkt (independent of tcpdump's counters)."""
    import dpkt

    with open(path, "rb") as fh:
        return sum(1 for _ in dpkt.pcap.Reader(fh))


def _curl_cmd(node_ip: str) -> list[str]:
    """``sh -c`` running CURLS curls of /bytes/SIZE at the published port, printing each size downloaded."""
    url = f"http://{node_ip}:9090/bytes/{SIZE}"
    loop = f"for i in $(seq {CURLS}); do curl -s -o /dev/null -w '%{{size_download}}\\n' {url}; done"
    return ["sh", "-c", loop]


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, dict[str, Any]]]:
    name = f"cd{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        status = lab.up(LabSpec(name=name))
        yield lab, status
    finally:
        lab.down()
        assert not lab_namespaces(name)


def _node_ip(status: dict[str, Any]) -> str:
    return str(status["nodes"][0]["underlay_ip"]).split("/")[0]


def test_stats_per_point_match_pcap(lab: tuple[Lab, dict[str, Any]], tmp_path: Path) -> None:
    lb, status = lab
    out = tmp_path / "cap"
    with open(tmp_path / "curl.out", "w") as fh:
        r = lb.capture(None, out, _curl_cmd(_node_ip(status)), all_points=True, run_in="client", stdout=fh)
    sizes = (tmp_path / "curl.out").read_text().split()
    assert r["rc"] == 0 and len(sizes) == CURLS and all(int(s) > SIZE for s in sizes), sizes
    points = {p["point"] for p in r["points"]}
    assert points and set(r["capture_stats"]) == points
    on_disk = json.loads((out / "status.json").read_text())["capture_stats"]
    assert on_disk == r["capture_stats"]
    assert load_status(out / "status.json").extra["capture_stats"] == on_disk
    for p in r["points"]:
        st = r["capture_stats"][p["point"]]
        assert st["captured"] is not None and st["received"] is not None and st["dropped_kernel"] is not None
        assert st["captured"] == _pcap_count(p["file"]), p["point"]
        assert st["received"] >= st["captured"]
    busiest = max(r["points"], key=lambda p: p["packets"])
    assert busiest["packets"] > CURLS * SIZE // 65536  # the MB responses were captured somewhere
    print(f"\ndefault buffer: {sum(p['packets'] for p in r['points'])} packets, "
          f"{sum(p['dropped'] for p in r['points'])} dropped by kernel", file=sys.stderr)


def test_cli_warns_on_drops(lab: tuple[Lab, dict[str, Any]], tmp_path: Path) -> None:
    lb, status = lab
    out = tmp_path / "cap"
    cli = [sys.executable, "-m", "meshpkt", "lab", "capture", "--name", lb.name, "--out", str(out), "--all",
           "--in", "client", "--buffer", "1", "--", *_curl_cmd(_node_ip(status))]
    res = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    stats = json.loads((out / "status.json").read_text())["capture_stats"]
    dropped = {k: v["dropped_kernel"] for k, v in stats.items() if v["dropped_kernel"]}
    assert dropped, "a 1 KiB buffer under MB transfers should drop packets"
    text = " ".join(res.stderr.split())
    total = sum(dropped.values())
    assert f"dropped {total:,} packets" in text and "the analysis may report losses" in text
    worst = max(dropped, key=lambda k: dropped[k])
    assert f"{worst} {dropped[worst]:,}" in text
    for point, st in stats.items():
        assert st["captured"] == _pcap_count(str(out / f"{point}.pcap")), point


def test_tap_stats_and_summary() -> None:
    err = (b"listening on eth0, link-type EN10MB\n1,437 packets captured\n"
           b"1437 packets captured\n2358 packets received by filter\n344 packets dropped by kernel\n")
    assert tap_stats(err) == {"captured": 1437, "received": 2358, "dropped_kernel": 344}
    assert tap_stats(b"tcpdump: killed\n") == {"captured": None, "received": None, "dropped_kernel": None}
    assert drop_summary([{"point": "a", "dropped": 0}, {"point": "b", "dropped": None}]) is None
    line = drop_summary([{"point": "a.host.eth0", "dropped": 344}, {"point": "u.host.br0", "dropped": 1719}])
    assert line is not None and line.startswith("2 taps dropped 2,063 packets (u.host.br0 1,719, a.host.eth0 344)")
    many = drop_summary([{"point": f"p{i}", "dropped": 10 + i} for i in range(7)])
    assert many is not None and "7 taps dropped 91 packets (p6 16, p5 15, p4 14, p3 13, p2 12, 2 more)" in many
