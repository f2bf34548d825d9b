"""Reconstruction on real MB transfers through the lab (root): segmentation offload on and off,
captures cut to small snaplens, a shifted clock, and a lossy VXLAN link.

The truth is what curl received (client port, the identity line of the body, the byte count),
never the analysis' own view. Captures are taken with a small snaplen: tcpdump copies less and
drops less on a loaded machine, and nothing in the analysis may depend on payload bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshpkt.flows import analyze

NODE_IPS = {"node1": "10.211.55.10", "node2": "10.211.55.18", "node3": "10.211.55.22"}
SIZE = 1_200_000
VERDICT_COLUMNS = ["client", "backend", "backend_node", "status", "verdict_code", "verdict", "missing_at",
                   "lost_fwd", "lost_bwd", "lost_at", "hops_seen"]


@pytest.fixture(scope="module")
def lab():
    from meshpkt.lab import Lab

    lab = Lab(f"fo{uuid.uuid4().hex[:5]}")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def set_offload(lab: Any, on: bool) -> int:
    """``ethtool -K <veth> tso/gso/gro on|off`` on every veth of the lab; returns how many."""
    from meshpkt.lab.build import lab_namespaces

    state = "on" if on else "off"
    n = 0
    for ns in lab_namespaces(lab.name):
        out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            dev = line.split(":")[1].strip().split("@")[0]
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", state, "gso", state, "gro",
                            state], check=True, capture_output=True)
            n += 1
    return n


def big_transfers(lab: Any, out: Path, entries: list[str], size: int = SIZE) -> dict[int, tuple[str, int]]:
    """GET /bytes/<size> through each entry node; returns client port -> (task IP, bytes received)."""
    res = out.parent / (out.name + "-curl")
    res.mkdir(parents=True, exist_ok=True)
    script = "; ".join(
        f"curl -s -m 20 --limit-rate 3M -o {res}/{k}.body -w '%{{local_port}} %{{size_download}}\\n' "
        f"http://{NODE_IPS[e]}:9090/bytes/{size} >> {res}/ports; sleep 0.3" for k, e in enumerate(entries))
    lab.capture(None, out, ["sh", "-c", script], all_points=True, run_in="client", grace=1.0, snaplen=200,
                stdout=subprocess.DEVNULL)
    ports = [line.split() for line in (res / "ports").read_text().splitlines()]
    truth = {}
    for k, (port, got) in enumerate(ports):
        first = (res / f"{k}.body").read_bytes().split(b"\n", 1)[0].decode()
        truth[int(port)] = (first.rsplit(" ", 1)[1], int(got))  # "Host IP is N, task T <task IP>"
    return truth


def client_connections(a: Any, truth: dict[int, tuple[str, int]]) -> list[dict]:
    conns = [c for c in a.to_json()["connections"] if c["client"].startswith("10.211.55.2:")
             and int(c["client"].rsplit(":", 1)[1]) in truth]
    assert len(conns) == len(truth), [c["client"] for c in a.to_json()["connections"]]
    return conns


def check_clean(a: Any, truth: dict[int, tuple[str, int]]) -> None:
    rows = a.connections.set_index("conn_id")
    for c in client_connections(a, truth):
        task_ip, got = truth[int(c["client"].rsplit(":", 1)[1])]
        assert got >= SIZE, got
        assert c["backend"] == f"{task_ip}:9090", c["backend"]
        assert c["status"] == "closed", (c["client"], c["status"], c["verdict"])
        assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0, (c["client"], c["verdict"], c["lost_at"])
        assert c["missing_at"] is None, c["verdict"]
        assert rows.loc[c["id"], "verdict_code"] == "ok", c["verdict"]
    assert a.losses.empty, a.losses


@pytest.fixture(scope="module")
def offload_on(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("on") / "cap"
    set_offload(lab, True)
    truth = big_transfers(lab, out, ["node1", "node2", "node3"] * 2)
    return out, truth


@pytest.mark.root
@pytest.mark.slow
def test_mb_transfers_with_offload_on_are_clean(offload_on):
    d, truth = offload_on
    a = analyze([d])
    check_clean(a, truth)
    # segmentation offload is on: some tap saw segments larger than the MTU (super-segments)
    assert (a.packets["wirelen"].astype(int) > 1600).any()


@pytest.mark.root
@pytest.mark.slow
def test_mb_transfers_with_offload_off_are_clean(lab, tmp_path):
    assert set_offload(lab, False) > 10
    try:
        truth = big_transfers(lab, tmp_path / "cap", ["node1", "node2", "node3"] * 2)
    finally:
        set_offload(lab, True)
    a = analyze([tmp_path / "cap"])
    check_clean(a, truth)
    # offload off on the veths: MTU-size frames (VXLAN adds 50 bytes) at every host, load balancer and
    # task tap; the vxlan devices still GRO-merge what they receive, so br0/vxlan0 taps hold super-
    # segments whose bytes the next tap sees as MSS segments: the ranges must still line up
    veth_taps = ~a.packets["point"].astype(str).str.contains(r"\.1-", regex=True).to_numpy()
    assert (a.packets["wirelen"].to_numpy()[veth_taps].astype(int) <= 1514 + 50).all()


def _editcap(f: Path, *args: str) -> None:
    tmp = f.with_suffix(".tmp")
    subprocess.run(["editcap", "-F", "nsecpcap", *args, str(f), str(tmp)], check=True, capture_output=True)
    tmp.replace(f)


@pytest.mark.root
@pytest.mark.slow
def test_snaplen_cuts_and_a_shifted_clock_change_no_verdict(offload_on, tmp_path):
    d, truth = offload_on
    before = analyze([d]).connections[VERDICT_COLUMNS].sort_values("client").reset_index(drop=True)
    cut = tmp_path / "cut"
    shutil.copytree(d, cut)
    files = sorted(cut.glob("*.pcap"))
    for k, f in enumerate(files):
        if k % 3 == 0:
            _editcap(f, "-s", "128")
        elif k % 3 == 1:
            _editcap(f, "-s", "200")
    for f in cut.glob("node2.*.pcap"):  # node2's clock runs 40 ms ahead
        if f.stat().st_size > 24:  # (editcap -t refuses a capture without packets)
            _editcap(f, "-t", "0.040")
    a = analyze([cut])
    after = a.connections[VERDICT_COLUMNS].sort_values("client").reset_index(drop=True)
    assert before.equals(after), (before, after)
    assert a.offsets["node2.host.eth0"].applied
    rel = a.offsets["node2.host.eth0"].offset_ns - a.offsets["node1.host.eth0"].offset_ns
    assert abs(rel - 40_000_000) < 2_000_000, rel


@pytest.mark.root
@pytest.mark.slow
def test_lossy_vxlan_link_is_found_and_placed(lab, tmp_path):
    # offload off: one VXLAN frame per MSS segment (with it on, a drop takes a whole 64 KB
    # super-segment, and a transfer of 1.2 MB is a few dozen frames: it may see no drop at all)
    set_offload(lab, False)
    lab.lossy_vxlan("node1", 4)
    try:
        # entering node2/node3: node1's task answers 1.2 MB across the lossy link (node1 -> peer)
        truth = big_transfers(lab, tmp_path / "cap", ["node2", "node3"] * 3 + ["node1"] * 3)
    finally:
        set_offload(lab, True)
        from meshpkt.lab import plan as _plan
        from meshpkt.lab.build import nsexec, run

        run(nsexec(f"{lab.name}-underlay", ["nft", "delete", "table", "bridge", _plan.FAULT_NFT_TABLE]), check=False)
    a = analyze([tmp_path / "cap"])
    conns = client_connections(a, truth)
    node1_tasks = {ip for ip, t in a.topology.tasks.items() if t.node == "node1"}
    from meshpkt.decode.addr import ip4_int

    crossing = [c for c in conns if c["entry_node"] != "node1" and ip4_int(c["backend"].split(":")[0]) in node1_tasks]
    clean = [c for c in conns if "node1" not in (c["entry_node"], c["backend_node"])]
    assert crossing, [(c["entry_node"], c["backend"]) for c in conns]
    for c in conns:
        assert c["backend"] == f"{truth[int(c['client'].rsplit(':', 1)[1])][0]}:9090"
    losses = a.losses
    for c in crossing:
        assert c["status"] == "closed", c["verdict"]
        mine = losses[losses["conn_id"] == c["id"]]
        assert c["lost_bwd"] > 0 and len(mine), c["verdict"]
        assert (mine["dir"] == "reply").all()
        around = set(zip(mine["from_point"], mine["to_point"], strict=True))
        peer = c["entry_node"]
        assert around <= {("node1.host.eth0", "underlay.host.br0"), ("underlay.host.br0", f"{peer}.host.eth0")}, around
        assert c["retransmissions"] > 0
        sender = next(h for h in c["hops"] if h["point"].startswith("node1.my-web."))
        assert sender["retransmissions"] > 0  # counted at the sender's own tap
        assert "lost between" in c["verdict"] and "recovered by retransmission" in c["verdict"]
        assert c["missing_at"] is None
    assert clean
    for c in clean:  # never crosses node1's uplink
        assert c["lost_fwd"] == 0 and c["lost_bwd"] == 0, c["verdict"]
        assert losses[losses["conn_id"] == c["id"]].empty
