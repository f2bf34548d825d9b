"""The SSH transport: the user's OpenSSH client (``ssh``), so ``~/.ssh/config``, the agent, keys and
ProxyJump all work as they do for the user; ``--ssh-config`` is passed as ``ssh -F``.

Every session is ``ssh [-F CFG] -o BatchMode=yes -o ConnectTimeout=N [-p PORT] [-l USER] HOST -- CMD``
(never a password prompt); with ``control=True`` sessions to one node share one connection
(ControlMaster=auto, a socket in a private temporary directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from meshpkt.errors import ToolMissingError, UsageError
from meshpkt.remote.target import Target

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Transport:
    """How to reach nodes: ssh_config file, connect timeout, optional connection sharing."""

    ssh_config: Path | None = None
    connect_timeout: float = 5.0
    control: bool = False
    options: list[str] = field(default_factory=list)
    _control_dir: str | None = None

    def __post_init__(self) -> None:
        if shutil.which("ssh") is None:
            raise ToolMissingError("ssh (OpenSSH client) is not installed")
        if self.ssh_config is not None and not Path(self.ssh_config).is_file():
            raise UsageError(f"{self.ssh_config}: no such ssh config file")
        if self.control:
            self._control_dir = tempfile.mkdtemp(prefix="meshpkt-ssh-")

    def argv(self, target: Target, command: str) -> list[str]:
        """The ssh command line running ``command`` (one shell command string) on ``target``."""
        a = ["ssh"]
        if self.ssh_config is not None:
            a += ["-F", str(self.ssh_config)]
        a += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
              "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-T"]
        if self._control_dir:
            a += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=30"]
        a += self.options
        if target.port:
            a += ["-p", str(target.port)]
        if target.user:
            a += ["-l", target.user]
        return [*a, target.host, "--", command]

    def run(self, target: Target, command: str, *, timeout: float = 120.0,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` on ``target``, collecting stdout/stderr as bytes (rc 255 = ssh failed)."""
        try:
            return subprocess.run(self.argv(target, command), input=input, capture_output=True, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 255, b"", f"timed out after {timeout:g} s".encode())

    def popen(self, target: Target, command: str) -> subprocess.Popen[bytes]:
        """Start a session with pipes on stdin/stdout/stderr (stdin open: closing it ends the session)."""
        return subprocess.Popen(self.argv(target, command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def close(self) -> None:
        """Stop shared connections and remove the control directory."""
        if self._control_dir:
            for sock in os.listdir(self._control_dir):
                subprocess.run(["ssh", "-o", f"ControlPath={self._control_dir}/{sock}", "-O", "exit", "x"],
                               capture_output=True, timeout=10)
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None


def ssh_error(stderr: bytes | str) -> str:
    """The last meaningful line of ssh's stderr (``connect to host ... Connection refused``)."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    return lines[-1] if lines else "ssh failed"


def each_node(fn: Callable[[T], R], items: Sequence[T], workers: int = 16) -> list[R]:
    """``fn`` on every item concurrently (one session per node), results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        return list(ex.map(fn, items))
