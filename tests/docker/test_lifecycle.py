"""A Docker lab leaves nothing behind: not after a clean run, not after its dockerd crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from meshpkt.lab.docker import MESH_COMPLETED, MESH_DOCKER, NETNS_DIR, DockerLab
from meshpkt.lab.dockerd import leftover_cgroups

from .conftest import docker_skip_reason

pytestmark = [pytest.mark.root, pytest.mark.docker]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _pids_in(netns_files: list[Path]) -> set[int]:
    inodes = {f.stat().st_ino for f in netns_files if f.exists()}
    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino in inodes:
                    out.add(int(p))
            except OSError:
                pass
    return out


def test_status_of_a_missing_docker_lab_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "meshpkt", "lab", "status", "--docker", "--name", "nosuchlab"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nosuchlab" in r.stderr


def test_up_complete_and_down_after_a_dockerd_crash_leave_nothing(tmp_path: Path) -> None:
    reason = docker_skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"dl{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text("nodes: 2\noverlays: []\nservices:\n  - {name: web, replicas: 2, publish: ['9091:80']}\n")
    lab = DockerLab(name)
    try:
        r = subprocess.run([sys.executable, "-m", "meshpkt", "lab", "up", str(spec), "--docker", "--complete-mesh",
                            "--name", name, "--json"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        status = json.loads(r.stdout)
        assert status["backend"] == "docker" and len(status["services"][0]["backends"]) == 2
        assert set(status["routing_mesh"].values()) <= {MESH_COMPLETED, MESH_DOCKER}
        answers = {subprocess.run(["ip", "netns", "exec", f"{name}-client", "curl", "-sS", "-m", "3",
                                   f"http://{status['nodes'][1]['underlay_ip']}:9091/"],
                                  capture_output=True, text=True).stdout.split(", task ")[-1].split(" ")[0]
                   for _ in range(2)}
        assert answers == {"web.1", "web.2"}
        ours = sorted(NETNS_DIR.glob(f"{name}-*"))
        pids = _pids_in(ours) | {b_pid for s in status["services"] for b_pid in
                                 (ns["task"]["pid"] for nd in status["nodes"] for ns in nd["namespaces"]
                                  if ns["task"] and ns["task"]["service"] == s["name"])}
        daemons = lab.daemons()
        assert len(pids) >= 2 + 2 and all(d.pid() in pids for d in daemons.values())
        assert any(leftover_cgroups(d.cgroup_parent) for d in daemons.values())
        os.kill(daemons["node1"].pid() or 0, signal.SIGKILL)  # containerd, shims, containers survive it
    finally:
        r = subprocess.run([sys.executable, "-m", "meshpkt", "lab", "down", "--docker", "--name", name],
                           capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert not [p for p in pids if _alive(p)]
    assert not list(NETNS_DIR.glob(f"{name}-*"))
    assert not lab.state_dir.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert name not in mounts
    assert not any(leftover_cgroups(d.cgroup_parent) for d in daemons.values())
    assert "removed" in r.stderr
