"""``meshpkt lab up --ssh``: make each lab node look like a real Swarm host reached over SSH.

Per node one OpenSSH ``sshd`` runs inside the node's host network namespace, started in a mount
namespace of its own (``unshare -m --propagation private``) and a UTS namespace of its own:

* ``/run`` (so ``/var/run``) is a fresh tmpfs holding only ``/run/sshd`` and ``/run/docker/netns/``,
  where the node's namespaces appear with Docker's names (``ingress_sbox``, ``1-<netid10>``,
  ``lb_<netid9>``, the 12-hex sandbox ids of tasks); the lab's ``/run/netns`` and ``/run/meshpkt``
  bookkeeping is hidden;
* ``/etc/ssh`` is the node's own directory (``sshd_config``, a per-node host key, ``authorized_keys``);
* the host name is the node's name.

Keys are generated per lab with ``ssh-keygen`` into ``<state_dir>/ssh/``: a client key (``id_ed25519``),
``known_hosts`` with every node's host key and an ``ssh_config`` naming each node (use it as ``ssh -F``
from the lab's client namespace). ``stop`` kills the sshds (the lab's ``down`` also kills every process
left in its namespaces); the directory goes with the lab's state directory.

Pure part: :func:`sshd_config`, :func:`client_config`, :func:`docker_names`, :func:`mount_script`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshpkt.errors import LabError, ToolMissingError

SSHD = "/usr/sbin/sshd"
NETNS_DIR = "/run/netns"


@dataclass(frozen=True)
class SshNode:
    """One lab node served over SSH: its name, underlay address, host netns and Docker-named namespaces."""

    name: str
    address: str
    netns: str
    namespaces: tuple[tuple[str, str], ...]  # (docker name, lab netns name)


# ---------------------------------------------------------------------------- pure
def docker_names(status: Mapping[str, Any]) -> list[SshNode]:
    """The nodes of a lab status document with each non-host namespace under its Docker name."""
    nodes = []
    for nd in status["nodes"]:
        host = next(ns["name"] for ns in nd["namespaces"] if ns["role"] == "host")
        pairs = tuple((ns["name"][len(host) + 1:], ns["name"]) for ns in nd["namespaces"]
                      if ns["role"] != "host" and ns["name"].startswith(host + "-"))
        nodes.append(SshNode(nd["name"], nd["underlay_ip"], host, pairs))
    return nodes


def sshd_config() -> str:
    """The sshd_config of every lab node (paths as the node's sshd sees them)."""
    return "\n".join([
        "ListenAddress 0.0.0.0", "Port 22",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "AuthorizedKeysFile /etc/ssh/authorized_keys/%u",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "PidFile none", "PrintMotd no", "PrintLastLog no",
        "MaxSessions 64", "MaxStartups 64:30:128", "LogLevel ERROR",
        "Subsystem sftp internal-sftp", ""])


def client_config(ssh_dir: Path, nodes: list[SshNode]) -> str:
    """An ssh_config naming every node (``ssh -F <this> node1``), pinned to the lab's keys."""
    lines = []
    for n in nodes:
        lines += [f"Host {n.name}", f"  HostName {n.address}", ""]
    lines += ["Host *", "  User root", f"  IdentityFile {ssh_dir / 'id_ed25519'}", "  IdentitiesOnly yes",
              f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}", "  GlobalKnownHostsFile /dev/null",
              "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 5", "  LogLevel ERROR", ""]
    return "\n".join(lines)


def mount_script(node: SshNode, staging: Path, etc_ssh: Path) -> str:
    """The sh script run under ``unshare -m -u``: build the node's view of /run and /etc/ssh, exec sshd."""
    q = shlex.quote
    lines = ["set -e", f"hostname {q(node.name)}",
             f"mount -n -t tmpfs -o mode=0755,size=4m meshpkt-run {q(str(staging))}",
             f"mkdir -p {q(str(staging / 'docker/netns'))} {q(str(staging / 'sshd'))}",
             f"chmod 0755 {q(str(staging / 'sshd'))}"]
    for docker, full in node.namespaces:
        dst = q(str(staging / "docker/netns" / docker))
        lines += [f": > {dst}", f"mount -n --bind {q(NETNS_DIR + '/' + full)} {dst}"]
    lines += [f"mount -n --bind {q(str(etc_ssh))} /etc/ssh", f"mount -n --move {q(str(staging))} /run",
              f"exec {SSHD} -D -e -f /etc/ssh/sshd_config"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- keys and files
def _keygen(path: Path, comment: str) -> str:
    r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"ssh-keygen failed: {r.stderr.strip()}")
    return path.with_suffix(".pub").read_text().strip()


def _write_keys(ssh_dir: Path, nodes: list[SshNode]) -> None:
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    client_pub = _keygen(ssh_dir / "id_ed25519", "meshpkt-lab-client")
    known = []
    for n in nodes:
        etc = ssh_dir / "nodes" / n.name
        (etc / "authorized_keys").mkdir(parents=True, exist_ok=True)
        host_pub = _keygen(etc / "ssh_host_ed25519_key", f"root@{n.name}")
        (etc / "authorized_keys" / "root").write_text(client_pub + "\n")
        (etc / "sshd_config").write_text(sshd_config())
        kind, key = host_pub.split()[:2]
        known.append(f"{n.name},{n.address} {kind} {key}")
    (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
    (ssh_dir / "ssh_config").write_text(client_config(ssh_dir, nodes))


# ---------------------------------------------------------------------------- processes
def _spawn(node: SshNode, ssh_dir: Path) -> int:
    staging = ssh_dir / "staging" / node.name
    staging.mkdir(parents=True, exist_ok=True)
    log = open(ssh_dir / f"sshd-{node.name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        pr = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", mount_script(node, staging, ssh_dir / "nodes" / node.name)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()
    return pr.pid


def _wait_listening(node: SshNode, pid: int, ssh_dir: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "netns", "exec", node.netns, "ss", "-Htln", "sport = :22"],
                           capture_output=True, text=True)
        if r.stdout.strip():
            return
        if not _alive(pid):
            log = (ssh_dir / f"sshd-{node.name}.log").read_text().strip().splitlines()
            raise LabError(f"sshd on {node.name} exited: {log[-1] if log else 'no message'}")
        time.sleep(0.05)
    raise LabError(f"sshd on {node.name} did not listen on port 22 within {timeout:g} s")


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def start(status: Mapping[str, Any], state_dir: Path) -> dict[str, int]:
    """Generate the lab's keys and start one sshd per node; returns node name -> sshd pid."""
    for tool in ("ssh-keygen", "unshare", "ss"):
        if shutil.which(tool) is None:
            raise ToolMissingError(f"{tool} is not installed (needed by lab up --ssh)")
    if not os.access(SSHD, os.X_OK):
        raise ToolMissingError("sshd is not installed (apt-get install openssh-server)")
    nodes = docker_names(status)
    ssh_dir = ssh_dir_of(state_dir)
    _write_keys(ssh_dir, nodes)
    pids = {n.name: _spawn(n, ssh_dir) for n in nodes}
    with ThreadPoolExecutor(max_workers=len(nodes) or 1) as ex:
        list(ex.map(lambda n: _wait_listening(n, pids[n.name], ssh_dir), nodes))
    return pids


def ssh_dir_of(state_dir: Path) -> Path:
    """Where a lab keeps its keys and ssh_config."""
    return Path(state_dir) / "ssh"


def stop(pids: Mapping[str, int]) -> int:
    """Kill the sshds (and their sessions) started by :func:`start`; returns how many were signalled."""
    victims = []
    for pid in pids.values():
        try:
            cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"sshd" in cmd or b"unshare" in cmd or b"ip\0netns" in cmd:
            victims.append(int(pid))
    for pid in victims:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in victims) and time.monotonic() < deadline:  # gone, listener socket closed
        time.sleep(0.02)
    return len(victims)


def node_pid(state: Mapping[str, Any], node: str) -> int:
    """The sshd pid of ``node`` (its mount namespace is the node's file system view)."""
    pid = (state.get("sshd") or {}).get(node)
    if pid is None:
        raise LabError(f"no sshd for node {node!r} (was the lab started with --ssh?)")
    return int(pid)


def hide_tool(state: Mapping[str, Any], node: str, tool: str) -> str:
    """Make ``tool`` absent for SSH sessions on ``node`` (bind-mount an empty file over its real path,
    in that node's mount namespace only). Returns the path hidden."""
    pid = node_pid(state, node)
    dirs = os.environ.get("PATH", "") + ":/root/.pyenv/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    script = ('hid=""; for d in $(echo "$DIRS" | tr : " "); do [ -e "$d/$T" ] || continue; '
              'p=$(readlink -f "$d/$T"); mount -n --bind /dev/null "$p" && hid="$hid $p"; done; '
              '[ -n "$hid" ] || exit 3; echo $hid')
    r = subprocess.run(["nsenter", "-t", str(pid), "-m", "env", f"DIRS={dirs}", f"T={tool}", "sh", "-c", script],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"cannot hide {tool} on {node}: {r.stderr.strip() or 'not found'}")
    return r.stdout.strip()


def stop_node(state: Mapping[str, Any], node: str) -> None:
    """Stop ``node``'s sshd (the node then refuses SSH connections)."""
    stop({node: node_pid(state, node)})
