"""Lab lifecycle (down restores `ip netns list`, failed/crashed up is cleaned, root is required) and the
fault hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpkt.errors import LabError
from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.build import ETC_NETNS, lab_namespaces, list_netns


def test_needs_root_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from meshpkt.cli.main import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for argv in (["lab", "up", "--name", "nroot"], ["lab", "down", "--name", "nroot"]):
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "root" in err[0]


def test_bad_spec_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from meshpkt.cli.main import main

    bad = tmp_path / "s.yaml"
    bad.write_text("services:\n  - name: web\n    publish: ['9090']\n")
    with pytest.raises(SystemExit) as ex:
        main(["lab", "up", str(bad)])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "published port" in err[0]


@pytest.mark.root
def test_up_down_restores_netns_list(unique_name: str) -> None:
    before = list_netns()
    etc_before = ETC_NETNS.exists()
    lab = Lab(unique_name)
    try:
        status = lab.up(LabSpec(name=unique_name, nodes=2))
        assert ETC_NETNS.exists()
        assert set(lab_namespaces(unique_name)) > {f"{unique_name}-underlay", f"{unique_name}-node2"}
        pids = [ns["task"]["pid"] for nd in status["nodes"] for ns in nd["namespaces"] if ns["task"]]
        assert pids and all(Path(f"/proc/{p}").exists() for p in pids)
    finally:
        r = lab.down()
    assert r["namespaces"] == len(status["nodes"][0]["namespaces"]) + len(status["nodes"][1]["namespaces"]) + 2
    assert not lab_namespaces(unique_name) and set(list_netns()) - set(before) <= _others(unique_name)
    assert not lab.state_dir.exists()
    # /etc/netns is removed again unless it existed before or another lab (other helpers) uses it now
    assert ETC_NETNS.exists() == etc_before or any(ETC_NETNS.iterdir())
    assert not any((ETC_NETNS / n).exists() for n in lab_namespaces(unique_name))
    for p in pids:
        assert not Path(f"/proc/{p}").exists() or b"agent.py" not in Path(f"/proc/{p}/cmdline").read_bytes()
    assert lab.down() == {"namespaces": 0, "processes": 0}  # idempotent


@pytest.mark.root
def test_failed_up_cleans_up(unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = list_netns()

    def boom(self: Lab, *a: Any, **k: Any) -> None:
        raise LabError("injected failure")

    monkeypatch.setattr(Lab, "_start_agents", boom)
    with pytest.raises(LabError, match="lab up failed .cleaned up.: injected failure"):
        Lab(unique_name).up(LabSpec(name=unique_name, nodes=1))
    assert not lab_namespaces(unique_name) and set(list_netns()) - set(before) <= _others(unique_name)
    assert not Lab(unique_name).state_dir.exists()


@pytest.mark.root
def test_down_after_crash_uses_prefix_scan(unique_name: str) -> None:
    """A crashed up leaves namespaces and a process but no state: down still finds them, and leaves a
    namespace that is not the lab's alone."""
    mine = [f"{unique_name}-underlay", f"{unique_name}-node1", f"{unique_name}-node1-ingress_sbox"]
    others = [f"{unique_name}-user", f"{unique_name}x-node1"]
    subprocess.run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in mine + others),
                   text=True, check=True)
    proc = subprocess.Popen(["ip", "netns", "exec", mine[2], "sleep", "60"])
    ino = os.stat(f"/run/netns/{mine[2]}").st_ino
    for _ in range(200):  # until `ip netns exec` has entered the namespace
        if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == ino:
            break
        time.sleep(0.01)
    try:
        r = Lab(unique_name).down()
        assert r["namespaces"] == 3 and r["processes"] == 1
        proc.wait(timeout=5)  # killed (raises TimeoutExpired otherwise)
        left = set(list_netns())
        assert not left & set(mine) and set(others) <= left
    finally:
        proc.kill()
        for n in mine + others:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


# ---------------------------------------------------------------------------- fault hooks
FETCH = r"""
import json, sys, urllib.request
out = []
for _ in range(int(sys.argv[2])):
    try:
        out.append(urllib.request.urlopen(f"http://{sys.argv[1]}:9090/", timeout=3).read().decode().split()[5])
    except Exception as exc:
        out.append("ERR")
print(json.dumps(out))
"""


@pytest.fixture
def flab(unique_name: str) -> Iterator[Lab]:
    lab = Lab(unique_name)
    try:
        lab.up(LabSpec(name=unique_name, nodes=2, data_path_port=7789))
        yield lab
    finally:
        lab.down()


def fetch(lab: Lab, host: str, n: int = 3) -> list[str]:
    return json.loads(lab.exec("client", [sys.executable, "-c", FETCH, host, str(n)],
                               capture_output=True, check=True).stdout)


@pytest.mark.root
def test_fault_hooks(flab: Lab) -> None:
    n1, n2 = "10.211.55.10", "10.211.55.18"
    vx = flab.exec("node1/overlay", ["ip", "-d", "link", "show", "vxlan0"], capture_output=True).stdout
    assert "dstport 7789" in vx
    # placement with 2 nodes: my-web.1 node1, my-web.2 node2, my-web.3 node1; each step breaks one more thing
    assert sorted(fetch(flab, n1)) == ["my-web.1", "my-web.2", "my-web.3"]
    flab.remove_redirect("my-web.1")  # SYN to :9090 reaches the task, nothing listens there: RST
    assert sorted(fetch(flab, n1)) == ["ERR", "my-web.2", "my-web.3"]
    assert sorted(fetch(flab, n2)) == ["ERR", "my-web.2", "my-web.3"]
    flab.kill_task("my-web.3")  # stale backend: the LB still sends every 3rd SYN to it
    assert sorted(fetch(flab, n2)) == ["ERR", "ERR", "my-web.2"]
    st = flab.status()
    dead = [b["task"] for s in st["services"] for b in s["backends"] if not b["alive"]]
    assert dead == ["my-web.3"] and st["alive"]
    flab.drop_vxlan("node2", "node1")  # replies of my-web.2 to node1's ingress_sbox vanish on the switch
    assert fetch(flab, n1) == ["ERR"] * 3
    flab.remove_snat("node2")  # my-web.2 answers the client directly via docker_gwbridge: broken
    assert fetch(flab, n2) == ["ERR"] * 3
    assert flab.remove_fdb("node2", "node1") == 3  # ingress_sbox, my-web.1 and the dead my-web.3
    fdb = flab.exec("node2/overlay", ["bridge", "fdb", "show", "dev", "vxlan0"], capture_output=True).stdout
    assert "10.211.55.10" not in fdb
    flab.set_mtu("node2/my-web.2", "eth0", 1400)
    mtu = json.loads(flab.exec("node2/my-web.2", ["ip", "-j", "link", "show", "eth0"], capture_output=True).stdout)
    assert mtu[0]["mtu"] == 1400
    kinds = [f["kind"] for f in flab.status()["faults"]]
    assert kinds == ["remove_redirect", "kill_task", "drop_vxlan", "remove_snat", "remove_fdb", "set_mtu"]


@pytest.mark.root
def test_kill_task_with_lb_update_then_dnat_and_mark(flab: Lab) -> None:
    n1, n2 = "10.211.55.10", "10.211.55.18"
    flab.kill_task("my-web.2", update_lb=True)  # Swarm reconciled: the LB forgets the task
    got = fetch(flab, n1, 4)
    assert sorted(set(got)) == ["my-web.1", "my-web.3"] and "ERR" not in got
    flab.remove_dnat("node2")
    assert fetch(flab, n2, 2) == ["ERR"] * 2 and "ERR" not in fetch(flab, n1, 2)
    flab.remove_mark("node1")  # no fwmark: the LB never sees the packets, ingress_sbox itself answers RST
    assert fetch(flab, n1, 2) == ["ERR"] * 2
    mangle = flab.exec("node1/ingress_sbox", ["iptables", "-S", "-t", "mangle"], capture_output=True).stdout
    assert "MARK" not in mangle


def _others(name: str) -> set[str]:
    """Namespaces that appeared meanwhile but are not this lab's (other labs run on the same machine)."""
    return {n for n in list_netns() if not n.startswith(f"{name}-")}
