"""One real ``dockerd`` per lab node, each in its own network namespace (the node's ``host``).

Measured on Debian 12 with ``docker.io`` 20.10.24: a dockerd started with ``ip netns exec`` gets a
private mount namespace in which ``/sys`` is remounted for the netns, so the cgroup v1/v2 hierarchies of
the machine are mounted again there before ``exec dockerd``; it also gets its own UTS namespace so the
swarm node is called ``node1``, ``node2``... Everything of one daemon lives under one directory
(data-root, exec-root, socket, pidfile, log) and one cgroup parent, so :meth:`Dockerd.stop` and
:func:`remove_cgroups` can take it all away again.

Docker creates its sandboxes (``ingress_sbox``, ``1-<netid>``, ``lb_<netid>``, task sandboxes) as files
under ``<exec-root>/netns`` that are bind mounts *inside dockerd's mount namespace*; from outside they are
reached through ``/proc/<dockerd pid>/root<exec-root>/netns/<name>`` (:meth:`Dockerd.netns_path`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from meshpkt.errors import LabError, ToolMissingError

DOCKERD = "dockerd"
DOCKER_CLI_CANDIDATES = ("/usr/bin/docker", "docker")
"""The Debian client first: /usr/local/bin/docker may be a newer client than the daemon."""
OFFLINE_ENV = {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}


def docker_cli() -> str:
    """Path of the docker client matching the daemon (Debian's /usr/bin/docker when present)."""
    for c in DOCKER_CLI_CANDIDATES:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.access(path, os.X_OK):
            return path
    raise ToolMissingError("docker client not installed (apt-get install docker.io)")


def dockerd_missing() -> str | None:
    """Why no dockerd can be started here (None if the programs are there and we are root)."""
    if os.geteuid() != 0:
        return "needs root (dockerd, network namespaces)"
    for prog in (DOCKERD, "containerd", "runc", "ip", "unshare"):
        if shutil.which(prog) is None:
            return f"{prog} not installed (apt-get install docker.io)"
    try:
        docker_cli()
    except ToolMissingError as exc:
        return str(exc)
    return None


def cgroup_mount_script() -> str:
    """Shell lines that mount this machine's cgroup hierarchies again (after ``ip netns exec``
    remounted /sys). Read from /proc/self/mounts, so v1, hybrid and pure v2 all work."""
    lines: list[str] = []
    cg_root_is_tmpfs = False
    with open("/proc/self/mounts") as fh:
        mounts = [ln.split() for ln in fh]
    for _dev, where, fstype, *_rest in mounts:
        if where == "/sys/fs/cgroup" and fstype == "tmpfs":
            cg_root_is_tmpfs = True
            lines.append("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup")
    for dev, where, fstype, opts, *_ in mounts:
        if not where.startswith("/sys/fs/cgroup") or fstype not in ("cgroup", "cgroup2"):
            continue
        keep = ",".join(o for o in opts.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                              "noexec", "seclabel"))
        opt = f" -o {keep}" if keep else ""
        if where != "/sys/fs/cgroup" or not cg_root_is_tmpfs:
            lines.append(f"mkdir -p {where} && mount -t {fstype}{opt} {dev} {where}")
    return "\n".join(lines)


def remove_cgroups(parent: str) -> int:
    """rmdir every cgroup directory named ``parent`` (and below) in every hierarchy; returns how many."""
    removed = 0
    for top, dirs, _files in os.walk("/sys/fs/cgroup", topdown=True):
        if os.path.basename(top) == parent:
            dirs[:] = []
            for sub, _d, _f in sorted(os.walk(top), key=lambda x: -x[0].count("/")):
                try:
                    os.rmdir(sub)
                    removed += 1
                except OSError:
                    pass
        elif top.count("/") > 8:
            dirs[:] = []
    return removed


def leftover_cgroups(parent: str) -> list[str]:
    """Cgroup directories called ``parent`` still present."""
    out = []
    for top, dirs, _files in os.walk("/sys/fs/cgroup"):
        if os.path.basename(top) == parent:
            out.append(top)
            dirs[:] = []
        elif top.count("/") > 8:
            dirs[:] = []
    return out


class Dockerd:
    """One dockerd for ``node`` inside netns ``netns``, everything under ``root``."""

    def __init__(self, node: str, netns: str, root: Path, cgroup_parent: str, address: str) -> None:
        self.node = node
        self.netns = netns
        self.root = root
        self.cgroup_parent = cgroup_parent
        self.address = address
        self.exec_root = root / "x"
        self.data_root = root / "data"
        self.sock = root / "docker.sock"
        self.pidfile = root / "docker.pid"
        self.log = root / "dockerd.log"
        self.launcher: int | None = None

    @property
    def host(self) -> str:
        """DOCKER_HOST of this daemon."""
        return f"unix://{self.sock}"

    def argv(self) -> list[str]:
        """The dockerd command line."""
        return [DOCKERD, "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile), "-H", self.host, "--cgroup-parent", self.cgroup_parent,
                "--storage-driver", "vfs", "--iptables=true", "--ip-forward=true", "--bridge=none",
                "--log-level", "info"]

    def start(self) -> None:
        """Start dockerd (returns at once; :meth:`wait_ready` waits for the API)."""
        self.root.mkdir(parents=True, exist_ok=True)
        script = "\n".join(["set -e", f"hostname {self.node}", cgroup_mount_script(),
                            "exec " + " ".join(self.argv())])
        env = {**os.environ, **OFFLINE_ENV}
        env.pop("DOCKER_HOST", None)
        with open(self.log, "ab") as log:
            pr = subprocess.Popen(["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                  start_new_session=True)
        self.launcher = pr.pid

    def pid(self) -> int | None:
        """dockerd's pid (from its pidfile), if it runs."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until ``docker info`` answers; raise LabError with dockerd's last log line otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.exists() and self.cli("info", "--format", "{{.ServerVersion}}", check=False).returncode == 0:
                return
            if self.launcher and not _alive(self.launcher) and self.pid() is None:
                break
            time.sleep(0.2)
        raise LabError(f"dockerd on {self.node} did not start: {self.last_log()}")

    def last_log(self) -> str:
        """The last meaningful line of dockerd's log."""
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        errs = [ln for ln in lines if "level=fatal" in ln or "level=error" in ln or "failed" in ln.lower()]
        return (errs or lines or ["no log"])[-1][:300]

    def cli(self, *args: str, check: bool = True, input: str | bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this daemon."""
        argv = [docker_cli(), "-H", self.host, *args]
        env = {**os.environ, **OFFLINE_ENV}
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                               input=input if isinstance(input, str) or input is None else input.decode())
        except subprocess.TimeoutExpired:
            raise LabError(f"`docker {' '.join(args)}` on {self.node} timed out") from None
        if check and r.returncode != 0:
            msg = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[-1]
            raise LabError(f"`docker {' '.join(args)[:100]}` on {self.node} failed: {msg}")
        return r

    def netns_dir(self) -> Path:
        """Docker's netns directory as seen from outside dockerd's mount namespace."""
        pid = self.pid()
        if pid is None:
            raise LabError(f"dockerd on {self.node} is not running")
        return Path(f"/proc/{pid}/root") / str(self.exec_root).lstrip("/") / "netns"

    def netns_path(self, name: str) -> Path:
        """Path of Docker's namespace file ``name`` (``ingress_sbox``, ``1-<netid>``, ...)."""
        return self.netns_dir() / name

    def nsexec(self, name: str, argv: Sequence[str]) -> list[str]:
        """argv running ``argv`` in Docker's namespace ``name`` of this node."""
        return ["nsenter", f"--net={self.netns_path(name)}", "--", *argv]

    def stop(self, grace: float = 20) -> list[int]:
        """SIGTERM dockerd (it stops its containers and containerd), SIGKILL after ``grace`` seconds;
        then kill what is left in the node's namespace. Returns the pids signalled."""
        pids = [p for p in (self.pid(), self.launcher) if p]
        for p in pids:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in pids:
            if _alive(p):
                _signal(p, signal.SIGKILL)
        return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


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
