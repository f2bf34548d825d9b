"""``meshpkt verify --target-cluster`` over real SSH against the ``--ssh`` lab, from its client namespace."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.remote.conftest import SshLab, meshpkt_in_client

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _verify(lab: SshLab, *extra: str) -> tuple[int, dict, str]:
    r = subprocess.run(meshpkt_in_client(lab, "verify", "--target-cluster", "node1,node2,node3", "--ssh-config",
                                         str(lab.config), "--format", "json", *extra),
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}), r.stderr


def _verdicts(doc: dict) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in doc["checks"]}


def test_healthy_cluster_passes(ssh_lab: SshLab) -> None:
    rc, doc, err = _verify(ssh_lab)
    assert rc == 0, (err, [c for c in doc.get("checks", []) if c["verdict"] != "PASS"])
    v = _verdicts(doc)
    kinds = {i.split(":", 1)[0] for i in v}
    assert kinds == {"dnat", "mark", "lb", "snat", "fdb", "redirect"}
    assert sum(k.startswith("dnat:") for k in v) == 3 and sum(k.startswith("redirect:") for k in v) == 3
    # one fdb row per (node, network, task of that network on another node), counted from the lab's status
    st = ssh_lab.lab.status()  # type: ignore[attr-defined]
    tasks = {(b["task"], b["node"], net) for s in st["services"] for b in s["backends"] for net in b["ips"]}
    want = sum(1 for nd in st["nodes"] for (_t, node, _net) in tasks if node != nd["name"])
    assert sum(k.startswith("fdb:") for k in v) == want == 16


def _ingress_overlay(lab: SshLab, node: str) -> str:
    st = lab.lab.status()  # type: ignore[attr-defined]
    nd = next(n for n in st["nodes"] if n["name"] == node)
    return next(ns["short"] for ns in nd["namespaces"] if ns["role"] == "overlay" and ns["network"] == "ingress")


@pytest.mark.parametrize("fault", ["dnat", "mark", "fdb"])
def test_one_broken_rule_fails_by_name(fresh_ssh_lab: SshLab, fault: str) -> None:
    lab = fresh_ssh_lab
    if fault == "dnat":
        lab.lab.remove_dnat("node1")  # type: ignore[attr-defined]
        want = "dnat:node1:9090"
    elif fault == "mark":
        lab.lab.remove_mark("node2")  # type: ignore[attr-defined]
        want = "mark:node2:9090"
    else:
        lab.lab.remove_fdb("node3", "node1")  # type: ignore[attr-defined]
        want = f"fdb:node3/{_ingress_overlay(lab, 'node3')}:02:42:0a:00:00:06"
    rc, doc, err = _verify(lab)
    assert rc == 1, err
    failed = [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    assert [c["id"] for c in failed] == [want], failed
    assert "missing" in failed[0]["reason"]
    # what depends on it is UNTESTED, never a second false FAIL; the other nodes still pass
    v = _verdicts(doc)
    assert all(v[k] == "PASS" for k in v if k.split(":")[1].split("/")[0] != want.split(":")[1].split("/")[0])


def test_dry_run_sends_nothing(ssh_lab: SshLab, tmp_path: Path) -> None:
    pcap = tmp_path / "tap.pcap"
    tap = subprocess.Popen(["ip", "netns", "exec", f"{ssh_lab.name}-underlay", "tcpdump", "-i", "br0", "-U", "-n",
                            "-w", str(pcap), "tcp portrange 61000-61999 or udp port 4789"],
                           stderr=subprocess.PIPE, text=True)
    try:
        assert tap.stderr is not None and "listening on" in tap.stderr.readline()
        rc, _doc, err = _verify(ssh_lab, "--dry-run")
        time.sleep(0.5)
    finally:
        tap.terminate()
        tap.wait(10)
    assert rc == 0, err
    would = [ln for ln in err.splitlines() if ln.startswith("would send")]
    assert len(would) >= 9 + 15 and any("connect" in ln for ln in would) and any("written on" in ln for ln in would)
    n = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True).stdout
    assert n == ""  # the underlay switch saw no probe at all


def test_node_without_python3_leaves_its_frame_probes_untested(fresh_ssh_lab: SshLab) -> None:
    from meshpkt.lab import sshd

    sshd.hide_tool(fresh_ssh_lab.lab._load_state(), "node2", "python3")  # type: ignore[attr-defined]
    rc, doc, err = _verify(fresh_ssh_lab)
    assert rc == 1, err
    untested = [c for c in doc["checks"] if c["verdict"] == "UNTESTED"]
    assert untested and all(c["id"].startswith("fdb:node2/") for c in untested)
    assert all("node2 has no python3" in c["reason"] for c in untested)
    assert not [c for c in doc["checks"] if c["verdict"] == "FAIL"]
