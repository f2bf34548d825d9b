"""``meshpkt lab up --ssh``: an sshd per node showing Docker's view, removed by ``lab down``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from meshpkt.lab import sshd
from tests.remote.conftest import SshLab, start_ssh_lab

pytestmark = pytest.mark.root


def test_config_is_pure() -> None:
    nodes = sshd.docker_names({"nodes": [{"name": "node1", "underlay_ip": "10.0.0.9", "namespaces": [
        {"name": "x-node1", "role": "host"}, {"name": "x-node1-ingress_sbox", "role": "ingress_sbox"},
        {"name": "x-node1-1-abcdefghij", "role": "overlay"}, {"name": "x-node1-0123456789ab", "role": "task"}]}]})
    assert nodes[0].namespaces == (("ingress_sbox", "x-node1-ingress_sbox"), ("1-abcdefghij", "x-node1-1-abcdefghij"),
                                   ("0123456789ab", "x-node1-0123456789ab"))
    cfg = sshd.client_config(Path("/k"), nodes)
    assert "Host node1\n  HostName 10.0.0.9" in cfg and "IdentityFile /k/id_ed25519" in cfg
    assert "UsePAM no" in sshd.sshd_config()


def test_each_node_looks_like_a_docker_host(ssh_lab: SshLab) -> None:
    status = ssh_lab.lab.status()  # type: ignore[attr-defined]
    for nd in status["nodes"]:
        host = f"{ssh_lab.name}-{nd['name']}"
        want = sorted(ns["name"][len(host) + 1:] for ns in nd["namespaces"] if ns["role"] != "host")
        r = ssh_lab.ssh(nd["name"], "hostname; ls /var/run/docker/netns; echo --; ls /run; "
                                    "ip -4 -o addr show eth0")
        assert r.returncode == 0, r.stderr
        name, rest = r.stdout.split("\n", 1)
        netns, tail = rest.split("--\n", 1)
        assert name == nd["name"]
        assert sorted(netns.split()) == want
        assert "netns" not in tail.split() and "meshpkt" not in tail.split()  # no lab bookkeeping
        assert nd["underlay_ip"] in tail
        # the Docker-named file is that namespace: same interfaces as the lab's view of it
        r = ssh_lab.ssh(nd["name"], "nsenter --net=/var/run/docker/netns/ingress_sbox ip -4 -o addr show eth1")
        assert "172.18.0.2/16" in r.stdout, r.stderr


def test_down_leaves_no_sshd_process_or_mount() -> None:
    gen = start_ssh_lab()
    lab = next(gen)
    state = lab.lab._load_state()  # type: ignore[attr-defined]
    pids = list(state["sshd"].values())
    ssh_dir = sshd.ssh_dir_of(lab.lab.state_dir)  # type: ignore[attr-defined]
    assert all(_alive(p) for p in pids)
    mnt_ns = {os.stat(f"/proc/{p}/ns/mnt").st_ino for p in pids}
    assert os.stat("/proc/self/ns/mnt").st_ino not in mnt_ns  # each sshd has a mount namespace of its own
    assert lab.ssh("node1", "true").returncode == 0
    gen.close()  # lab down
    assert not any(_alive(p) for p in pids)
    assert not ssh_dir.exists()
    deadline = time.monotonic() + 5  # SIGKILLed processes finish exiting just after down() returns
    while _left_in(mnt_ns, ssh_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _left_in(mnt_ns, ssh_dir) == []  # no process left in those mount namespaces, none sees the mounts


def _left_in(mnt_ns: set[int], ssh_dir: Path) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ino = os.stat(f"/proc/{entry}/ns/mnt").st_ino
                text = Path(f"/proc/{entry}/mountinfo").read_text()
            except OSError:
                continue
            if (ino in mnt_ns and _alive(int(entry))) or str(ssh_dir) in text:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_hide_tool_and_stop_node(fresh_ssh_lab: SshLab) -> None:
    state = fresh_ssh_lab.lab._load_state()  # type: ignore[attr-defined]
    assert "tcpdump" in sshd.hide_tool(state, "node2", "tcpdump")
    assert fresh_ssh_lab.ssh("node2", "tcpdump --version").returncode != 0
    assert fresh_ssh_lab.ssh("node1", "tcpdump --version").returncode == 0  # only node2's view changed
    sshd.stop_node(state, "node3")
    r = fresh_ssh_lab.ssh("node3", "true")
    assert r.returncode == 255 and "refused" in r.stderr
