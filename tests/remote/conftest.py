"""A lab whose nodes run sshd (``lab up --ssh``), shared by the remote tests of one module."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class SshLab:
    """A running ``--ssh`` lab: its name, ssh_config and the client namespace to ssh from."""

    lab: object
    name: str
    config: Path
    client_ns: str

    def ssh(self, node: str, cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on ``node`` over real SSH from the lab's client namespace."""
        return subprocess.run(["ip", "netns", "exec", self.client_ns, "ssh", "-F", str(self.config), node, cmd],
                              capture_output=True, text=True, timeout=timeout)


def start_ssh_lab() -> Iterator[SshLab]:
    """Build a fresh ``--ssh`` lab; always torn down."""
    from meshpkt.lab import Lab

    name = f"s{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        status = lab.up(ssh=True)
        yield SshLab(lab, name, lab.ssh_config(), status["clients"][0]["netns"])
    finally:
        lab.down()


@pytest.fixture(scope="module")
def ssh_lab() -> Iterator[SshLab]:
    """A module-wide ``--ssh`` lab (tests must not break it; use ``fresh_ssh_lab`` for faults)."""
    yield from start_ssh_lab()


@pytest.fixture
def fresh_ssh_lab() -> Iterator[SshLab]:
    """A lab of its own for one test (faults, hidden tools, stopped sshd)."""
    yield from start_ssh_lab()


def meshpkt_in_client(lab: SshLab, *args: str) -> list[str]:
    """argv running the meshpkt CLI inside the lab's client namespace (so ssh reaches the nodes)."""
    import sys

    return ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "meshpkt", *args]


def tcpdumps_in_lab(name: str) -> list[int]:
    """Live tcpdump processes in any namespace of lab ``name``."""
    from meshpkt.lab.build import lab_namespaces, pids_in_netns

    out = []
    for pid in pids_in_netns(lab_namespaces(name)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if b"tcpdump" in cmd.split(b"\0")[0] and state not in ("Z", "X"):
            out.append(pid)
    return out


def curl(lab: SshLab, url: str) -> tuple[int, str]:
    """(local port, body) of one HTTP request from the lab's client namespace."""
    r = subprocess.run(["ip", "netns", "exec", lab.client_ns, "curl", "-s", "--max-time", "5", "-w",
                        "\n%{local_port}", url], capture_output=True, text=True, timeout=30)
    body, _, port = r.stdout.rpartition("\n")
    assert r.returncode == 0 and port.isdigit(), r.stderr
    return int(port), body.strip()
