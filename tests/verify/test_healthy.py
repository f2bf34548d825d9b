"""Acceptance on a healthy lab: every rule on every expected path passes, with evidence on both sides of
the rule and counter deltas; the CLI (table/json/--keep/--rule), safety refusals and Ctrl-C cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from meshpkt.verify import PASS
from meshpkt.verify.run import verify

pytestmark = pytest.mark.root

Lab = tuple[Any, dict[str, Any]]


@pytest.fixture(scope="module")
def report(healthy_lab: Lab) -> Any:
    lab, _st = healthy_lab
    return verify(lab.name, seed=3)


def test_every_rule_passes(report: Any, healthy_lab: Lab, record_property: Any) -> None:
    _lab, st = healthy_lab
    record_property("verify_seconds", round(report.seconds, 2))
    bad = [f"{c.verdict} {c.id}: {c.message}" for c in report.checks if c.verdict != PASS]
    assert not bad, "\n".join(bad)
    assert report.exit_code() == 0 and report.ok
    kinds = {c.kind for c in report.checks}
    assert kinds == {"dnat", "unpublished", "mark", "vipmark", "lb", "snat", "fdb", "link", "redirect", "server",
                     "mtu"}
    ids = {c.id for c in report.checks}
    nodes = [n["name"] for n in st["nodes"]]
    # per node: DNAT, MARK, ingress LB, SNAT, unpublished port; links between every ordered pair
    for n in nodes:
        assert {f"dnat:{n}:9090", f"mark:{n}:9090", f"lb:{n}/ingress_sbox:258", f"snat:{n}/ingress_sbox"} <= ids
        assert f"unpublished:{n}:9091" in ids
        assert {f"link:{n}>{m}" for m in nodes if m != n} <= ids
    # every planned fdb entry of every overlay namespace is a row, and each was exercised
    fdb = [c for c in report.checks if c.kind == "fdb"]
    assert len(fdb) == 12 + 16  # ingress: 3 nodes x 4 remote endpoints; my-overlay: 6 + 5 + 5
    # each task: REDIRECT (published) and liveness on each network
    for t in ("my-web.1", "my-web.2", "my-web.3"):
        assert {f"redirect:{t}:9090", f"server:{t}:ingress", f"server:{t}:my-overlay"} <= ids
    assert {"server:backend.1:my-overlay", "server:backend.2:my-overlay"} <= ids
    assert len([c for c in report.checks if c.kind == "mtu"]) == 9
    # the number of probes is bounded and nothing exceeded the rate budget of the plan
    assert report.probes <= 60
    assert report.seconds < 60


def test_evidence_and_counters(report: Any, healthy_lab: Lab) -> None:
    _lab, st = healthy_lab
    rows = {c.id: c for c in report.checks}
    client = st["clients"][0]["ip"]
    n1 = st["nodes"][0]["underlay_ip"]
    d = rows["dnat:node1:9090"]
    assert d.before is not None and d.after is not None
    assert d.before.point == "node1.host.eth0" and d.after.point == "node1.ingress_sbox.eth1"
    sport = d.before.packet.split(" ")[0].split(":")[1]
    assert d.before.packet == f"{client}:{sport} > {n1}:9090 S"
    assert d.after.packet == f"{client}:{sport} > 172.18.0.2:9090 S"
    # the DNAT rule counted at least the 3 probe SYNs (nat sees the first packet of each connection)
    assert d.counter_delta is not None and d.counter_delta >= 3
    s = rows["snat:node1/ingress_sbox"]
    assert s.after is not None and s.after.packet.startswith("10.0.0.2:") and s.counter_delta and s.counter_delta >= 3
    r = rows["redirect:my-web.1:9090"]
    assert r.after is not None and "S." in r.after.packet and "(answered on :80)" in r.after.packet
    assert r.counter_delta is not None and r.counter_delta >= r.passed >= 1
    f = next(c for c in report.checks if c.kind == "fdb")
    assert f.after is not None and "VXLAN vni" in f.after.packet and f.after.point.endswith("host.eth0")
    m = rows["mtu:node1>my-web.2"]
    assert m.after is not None and m.after.point == "node2.my-web.2.eth0" and " len " in m.after.packet
    u = rows["unpublished:node1:9091"]
    assert u.after is not None and u.after.packet.startswith(f"{n1}:9091 > {client}:") and " R" in u.after.packet


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshpkt", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_json_keep_and_rule_filter(healthy_lab: Lab, tmp_path: Path) -> None:
    lab, _st = healthy_lab
    keep = tmp_path / "keep"
    r = _cli("verify", "--lab", lab.name, "--format", "json", "--keep", str(keep), "--rule", "dnat:node2*",
             "--rule", "redirect")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["schema"] == "meshpkt.verify/1"
    assert {c["id"] for c in doc["checks"]} == {"dnat:node2:9090", "redirect:my-web.1:9090",
                                               "redirect:my-web.2:9090", "redirect:my-web.3:9090"}
    c = next(c for c in doc["checks"] if c["id"] == "dnat:node2:9090")
    assert c["counter"]["delta"] >= 3 and c["before"]["point"] == "node2.host.eth0"
    assert (keep / "verify.json").is_file() and (keep / "pcap" / "node2.host.eth0.pcap").stat().st_size > 24
    assert (keep / "dumps" / "node1" / "host" / "iptables-save.txt").is_file()


def test_cli_table(healthy_lab: Lab) -> None:
    lab, _st = healthy_lab
    r = _cli("verify", "--lab", lab.name, "--rule", "unpublished")
    assert r.returncode == 0, r.stderr
    assert "unpublished:node1:9091" in r.stdout and "PASS" in r.stdout and "-A DOCKER-INGRESS -j RETURN" in r.stdout
    assert "3 PASS" in r.stdout


def test_refuses_real_cluster_and_foreign_namespaces(healthy_lab: Lab) -> None:
    lab, _st = healthy_lab
    # a real cluster is probed over SSH (meshpkt.verify.remote) only when named; unreachable nodes: one error line
    r = _cli("verify", "--lab", lab.name, "--target-cluster", "192.0.2.10,192.0.2.11")
    assert r.returncode != 0 and r.stdout == ""
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("meshpkt: error:")]
    assert len(errors) == 1 and "no node reachable" in errors[0] and "Traceback" not in r.stderr
    r = _cli("verify", "--target-cluster", "not-an-ip")  # a host name that does not resolve
    assert r.returncode == 2 and [ln for ln in r.stderr.splitlines() if ln.startswith("meshpkt: error:")] == [
        next(ln for ln in r.stderr.splitlines() if "not-an-ip" in ln and ln.startswith("meshpkt: error:"))]
    # a plan pointing outside the lab's namespaces is refused before anything is sent
    from meshpkt.errors import UsageError
    from meshpkt.verify.plan import VerifyPlan
    from meshpkt.verify.run import check_safety
    from meshpkt.verify.types import Probe

    p = Probe(id="p1", kind="frame", group="ingress", netns="some-other-netns", iface="eth0", src="10.0.0.1",
              sport=1, dst="10.0.0.2", dport=2)
    with pytest.raises(UsageError, match="not a namespace of lab"):
        check_safety(lab.name, VerifyPlan([], [p], []), [p], {"some-other-netns"})


def _stray_processes(lab_name: str) -> list[str]:
    """tcpdump / injector processes still running inside the lab's namespaces."""
    from meshpkt.lab.build import lab_namespaces, pids_in_netns

    out = []
    for pid in pids_in_netns(lab_namespaces(lab_name)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tcpdump" in cmd or b"inject.py" in cmd:
            out.append(cmd.replace(b"\0", b" ").decode())
    return out


def test_ctrl_c_cleans_up(healthy_lab: Lab) -> None:
    lab, _st = healthy_lab
    pr = subprocess.Popen([sys.executable, "-m", "meshpkt", "verify", "--lab", lab.name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert pr.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "probing" not in line:
            line = pr.stderr.readline()
            if not line and pr.poll() is not None:
                break
        assert "probing" in line
        time.sleep(0.3)  # captures are running now
        assert _stray_processes(lab.name)
        os.kill(pr.pid, signal.SIGINT)
        pr.wait(timeout=30)
        err = pr.stderr.read()
    finally:
        if pr.poll() is None:
            pr.kill()
            pr.wait()
    assert pr.returncode == 130, err  # typer turns KeyboardInterrupt into exit status 130
    assert "Traceback" not in err
    deadline = time.monotonic() + 5
    while _stray_processes(lab.name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stray_processes(lab.name) == []


def test_not_root_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from meshpkt.cli.main import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exc:
        main(["verify", "--lab", "whatever"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err
