"""Build, run and tear down the lab with ``ip``/``bridge``/``iptables-restore``/``nft``/``sysctl``.

Nothing is created in the root network namespace: veths are created inside namespaces with their peer
put straight into the other namespace, and each vxlan0 is created in its node's host namespace and moved
into the overlay namespace (like Docker, so its UDP socket lives in the node's host namespace).

State lives in ``/run/meshpkt/lab/<name>/state.json`` (written before anything is created, so
``down`` can clean up after a crash); ``down`` also scans ``ip netns list`` for the lab's names.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import meshpkt.lab.plan as _plan
from meshpkt.errors import LabError, MeshpktError, NeedRootError, ToolMissingError, UsageError
from meshpkt.lab.spec import LabSpec
from meshpkt.lab.status import build_status, resolve_target

STATE_ROOT = Path("/run/meshpkt/lab")
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
AGENT = Path(__file__).with_name("agent.py")
ESP = Path(__file__).with_name("esp.py")
ESP_DETAIL = {
    "xfrm": "kernel IPsec: ESP transport mode, rfc4106(gcm(aes)), states and policies in `ip xfrm`",
    "userspace": "userspace ESP (kernel has no CONFIG_INET_ESP/CONFIG_CRYPTO_GCM): marked VXLAN is routed into "
                 "esp0 and sent as ESP (NULL cipher, HMAC-SHA-256-128) by meshpkt.lab.esp; its SA/SP table "
                 "replaces `ip xfrm`; the cleartext DROP rule adds `! -i esp0`",
}
_WORKERS = 8
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")


# ---------------------------------------------------------------------------- process helpers
def need_root() -> None:
    """Raise NeedRootError unless running as root."""
    if os.geteuid() != 0:
        raise NeedRootError("meshpkt lab needs root (network namespaces, iptables): run it with sudo")


def need_tools(*names: str) -> None:
    """Raise ToolMissingError for the first missing program."""
    for n in names:
        if shutil.which(n) is None:
            raise ToolMissingError(f"{n} is not installed (needed by meshpkt lab)")


def run(argv: Sequence[str], input: str | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; a failure becomes a one-line LabError."""
    try:
        r = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ToolMissingError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` timed out") from None
    if check and r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()
        cmd = " ".join(argv)
        raise LabError(f"`{cmd[:120]}` failed: {msg[0] if msg else ''}")
    return r


def nsexec(netns: str, argv: Sequence[str]) -> list[str]:
    """argv to run ``argv`` inside ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def lab_ns_regex(name: str) -> re.Pattern[str]:
    """Matches exactly the namespace names a lab called ``name`` creates (not another lab's)."""
    return re.compile(rf"^{re.escape(name)}-(underlay|client|node\d+(-.+)?)$")


def lab_namespaces(name: str) -> list[str]:
    """Existing namespaces belonging to lab ``name``."""
    rx = lab_ns_regex(name)
    return [n for n in list_netns() if rx.match(n)]


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_netns(names: Iterable[str]) -> dict[int, str]:
    """pid -> netns name of every process whose network namespace is one of ``names``."""
    inodes = {ino: n for n in names if (ino := _netns_inode(n)) is not None}
    if not inodes:
        return {}
    out: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if ino in inodes:
            out[int(entry)] = inodes[ino]
    return out


def _kill(pids: Iterable[int], grace: float = 1.0) -> int:
    pids = [p for p in set(pids) if p > 1]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.02)
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


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


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(_WORKERS, max(1, len(items)))) as ex:
        return list(ex.map(fn, items))


# ---------------------------------------------------------------------------- the lab
class Lab:
    """A lab (one Swarm-like cluster in namespaces) called ``name``.

    ``Lab(name).up(spec)`` builds it, ``down()`` removes it (idempotent), ``status()`` describes it,
    ``exec(target, argv)`` runs a command in one of its namespaces, ``capture(...)`` records pcaps at
    its capture points. The ``remove_*``/``drop_vxlan``/``kill_task``/``set_mtu`` methods break one
    thing on purpose (for verify and tests).
    """

    def __init__(self, name: str = "mesh", state_root: str | Path = STATE_ROOT) -> None:
        if not _NAME_RE.match(name):
            raise UsageError(f"bad lab name {name!r}: 1-10 lowercase letters/digits, starting with a letter")
        self.name = name
        self.state_dir = Path(state_root) / name
        self.state_file = self.state_dir / "state.json"

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any] | None:
        try:
            with open(self.state_file) as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def _state(self) -> dict[str, Any]:
        st = self._load_state()
        if not st or st.get("phase") != "up":
            raise LabError(f"no lab named {self.name!r} is up (start one with `meshpkt lab up --name {self.name}`)")
        return st

    def _get_plan(self, st: dict[str, Any]) -> _plan.Plan:
        return _plan.plan(LabSpec.from_dict(st["spec"]), st["status"]["lb"], st["status"].get("esp", "xfrm"))

    def is_up(self) -> bool:
        """True if the lab has a state file or any of its namespaces exist."""
        return self.state_file.exists() or bool(lab_namespaces(self.name))

    # ------------------------------------------------------------------ up
    def up(self, spec: LabSpec | None = None, lb: str = "auto", ssh: bool = False) -> dict[str, Any]:
        """Build the lab; return its status. ``lb``: auto (IPVS if the kernel has it) | ipvs | nftables.
        ``ssh``: also run an sshd per node (see :mod:`meshpkt.lab.sshd`).

        Raises LabError if a lab with this name exists; on any failure removes what it made.
        """
        spec = spec or LabSpec()
        if spec.name != self.name:
            spec = replace(spec, name=self.name)
        spec.check()
        if lb not in ("auto", "ipvs", "nftables"):
            raise UsageError(f"bad lb {lb!r}: choose auto, ipvs or nftables")
        need_root()
        need_tools("ip", "bridge", "iptables-restore", "nft", "sysctl")
        if self.is_up():
            n = len(lab_namespaces(self.name))
            raise LabError(f"lab {self.name!r} already exists ({n} namespaces); "
                           f"run `meshpkt lab down --name {self.name}` first")
        t0 = time.monotonic()
        p = _plan.plan(spec, "nftables")
        self._save_state({"name": self.name, "phase": "building", "spec": spec.to_dict(),
                          "namespaces": [ns.name for ns in p.namespaces], "pids": {}})
        try:
            run(["ip", "-batch", "-"], input="".join(f"netns add {ns.name}\n" for ns in p.namespaces))
            impl = self._detect_lb(p, lb)
            esp = self._detect_esp(p)
            if impl != "nftables" or esp != "xfrm":
                p = _plan.plan(spec, impl, esp)
            self._links(p)
            self._configure(p)
            pids = self._start_agents(p)
            pids.update(self._start_esp(p))
            up_seconds = round(time.monotonic() - t0, 3)
            created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            status = build_status(p, state_dir=str(self.state_dir), created=created, up_seconds=up_seconds,
                                  pids=pids)
            extend_status(status, p)
            made = bool((self._load_state() or {}).get("made_etc_netns"))
            self._save_state({"name": self.name, "phase": "up", "spec": spec.to_dict(),
                              "namespaces": [ns.name for ns in p.namespaces], "pids": pids,
                              "status": status, "made_etc_netns": made})
            if ssh:
                self._start_sshd(status)
            return status
        except KeyboardInterrupt:
            self.down()
            raise
        except MeshpktError as exc:
            self.down()
            raise LabError(f"lab up failed (cleaned up): {exc}") from None
        except Exception as exc:
            self.down()
            raise LabError(f"lab up failed (cleaned up): {type(exc).__name__}: {exc}") from None

    def _start_sshd(self, status: dict[str, Any]) -> None:
        from meshpkt.lab import sshd

        st = self._load_state() or {}
        st["sshd"] = {}
        self._save_state(st)
        st["sshd"] = sshd.start(status, self.state_dir)
        self._save_state(st)

    def ssh_config(self) -> Path:
        """The ssh_config of a lab started with ``ssh=True`` (use as ``ssh -F`` from its client namespace)."""
        from meshpkt.lab import sshd

        if "sshd" not in self._state():
            raise LabError(f"lab {self.name!r} has no sshd (start it with `meshpkt lab up --ssh`)")
        return sshd.ssh_dir_of(self.state_dir) / "ssh_config"

    def _detect_lb(self, p: _plan.Plan, lb: str) -> str:
        if lb == "nftables":
            return "nftables"
        ok = False
        if shutil.which("ipvsadm"):
            sbox = next(ns.name for ns in p.namespaces if ns.role == "ingress_sbox")
            ok = run(nsexec(sbox, ["ipvsadm", "-Ln"]), check=False).returncode == 0
        if lb == "ipvs" and not ok:
            raise LabError("IPVS is not available (ipvsadm -Ln fails: no ip_vs in this kernel); use --lb auto")
        return "ipvs" if ok else "nftables"

    def _detect_esp(self, p: _plan.Plan) -> str:
        """``xfrm`` when the kernel can do Docker's ESP (rfc4106(gcm(aes))), else ``userspace``."""
        if not any(o.encrypted for o in p.spec.overlays):
            return "xfrm"
        und = f"{self.name}-underlay"
        probe = ["xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x1",
                 "mode", "transport", "aead", "rfc4106(gcm(aes))", "0x" + "00" * 20, "64"]
        ok = run(["ip", "-n", und, *probe], check=False).returncode == 0
        if ok:
            run(["ip", "-n", und, "xfrm", "state", "flush"], check=False)
        return "xfrm" if ok else "userspace"

    def _links(self, p: _plan.Plan) -> None:
        jobs: list[tuple[str, list[str]]] = []
        vx_by_host: dict[str, list[str]] = {}
        for ns in p.namespaces:
            for i in ns.interfaces:
                if i.kind == "vxlan" and i.vxlan:
                    v = i.vxlan
                    vx_by_host.setdefault(v["created_in"], []).extend([
                        f"link add {v['tmp_name']} type vxlan id {v['vni']} dstport {v['port']} "
                        "proxy l2miss l3miss learning noudpcsum",
                        f"link set dev {v['tmp_name']} netns {ns.name} name {i.name}",
                    ])
        for ns in p.namespaces:
            lines = []
            for i in ns.interfaces:
                if i.kind == "bridge":
                    lines.append(f"link add {i.name} type bridge")
                elif i.kind == "veth" and i.create_peer and i.peer:
                    lines.append(f"link add {i.name} type veth peer name {i.peer[1]} netns {i.peer[0]}")
                elif i.kind == "tun":
                    lines.append(f"tuntap add dev {i.name} mode tun")
            lines += vx_by_host.get(ns.name, [])
            if lines:
                jobs.append((ns.name, lines))
        _parallel(lambda j: run(["ip", "-n", j[0], "-batch", "-"], input="\n".join(j[1]) + "\n"), jobs)

    def _configure(self, p: _plan.Plan) -> None:
        def one(ns: _plan.Netns) -> None:
            if ns.sysctls:  # before any link goes up (no IPv6 noise in captures)
                run(nsexec(ns.name, ["sysctl", "-q", "-e", "-w", *(f"{k}={v}" for k, v in ns.sysctls.items())]))
            lines = ["link set dev lo up"]
            for i in sorted(ns.interfaces, key=lambda x: x.kind != "bridge"):
                cmd = f"link set dev {i.name}" + (f" address {i.mac}" if i.mac else "") + f" mtu {i.mtu}"
                if i.bridge:
                    cmd += f" master {i.bridge}"
                lines += [cmd, f"link set dev {i.name} up"]
            for i in ns.interfaces:
                lines += [f"addr add {a} dev {i.name}" for a in i.addresses]
                lines += [f"addr add {a} dev {i.name} nodad" for a in i.addresses6]
            lines += [f"route add {r}" for r in ns.routes]
            lines += ns.ip_extra
            lines += ns.neigh
            run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n")
            if ns.fdb:
                run(["bridge", "-n", ns.name, "-batch", "-"], input="\n".join(ns.fdb) + "\n")
            text = _plan.iptables_restore_text(ns)
            if text:
                run(nsexec(ns.name, ["iptables-restore"]), input=text)
            if ns.nft:
                run(nsexec(ns.name, ["nft", "-f", "-"]), input=ns.nft)
            if ns.ipvs:
                run(nsexec(ns.name, ["ipvsadm", "-R"]), input=ns.ipvs)
            if ns.xfrm_states or ns.xfrm_policies:
                self._xfrm(ns, p.esp)

        if any(ns.xfrm_states for ns in p.namespaces):
            self._xfrm_key()  # once, before the parallel workers read it
        _parallel(one, p.namespaces)

    def _xfrm_key(self) -> bytes:
        """The lab's 16-byte overlay encryption key (made at ``up``, mode 0600, removed with the lab)."""
        path = self.state_dir / "xfrm.key"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(16))
        return path.read_bytes()

    def _xfrm(self, ns: _plan.Netns, esp: str) -> None:
        """Program the ESP states and policies of an encrypted overlay in a host namespace (kernel xfrm),
        or write them as the table of its userspace ESP process."""
        key = self._xfrm_key()
        if esp == "userspace":
            self._write_esp_table(ns.node, {
                "key": key.hex(), "states": [{"src": x.src, "dst": x.dst, "spi": x.spi} for x in ns.xfrm_states],
                "policies": [{"src": x.src, "dst": x.dst, "dport": x.dport, "spi": x.spi} for x in ns.xfrm_policies]})
            return
        lines = [st.add_line(key) for st in ns.xfrm_states] + [pol.add_line() for pol in ns.xfrm_policies]
        run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n")

    def _esp_table(self, node: str) -> Path:
        return self.state_dir / "esp" / f"{node}.json"

    def _write_esp_table(self, node: str, data: dict[str, Any]) -> None:
        """Write ``node``'s userspace ESP table (key, states, policies), readable by root only."""
        path = self._esp_table(node)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        tmp.replace(path)

    def esp_table(self, node: str) -> dict[str, Any]:
        """The userspace ESP table of ``node`` (states, policies, counters; the key redacted)."""
        try:
            data = json.loads(self._esp_table(node).read_text())
        except (OSError, ValueError):
            return {"states": [], "policies": [], "stats": {}}
        data["key"] = "(redacted)"
        try:
            data["stats"] = json.loads(self._esp_table(node).with_suffix(".json.stats").read_text())
        except (OSError, ValueError):
            data["stats"] = {}
        return data

    def _start_esp(self, p: _plan.Plan) -> dict[str, int]:
        """Start the userspace ESP process of every node with an encrypted overlay; {"esp:<node>": pid}."""
        if p.esp != "userspace":
            return {}
        hosts = [ns for ns in p.namespaces if ns.role == "host" and ns.xfrm_policies]
        pids: dict[str, int] = {}
        for ns in hosts:
            node_ip = next(n["underlay_ip"] for n in p.nodes if n["name"] == ns.node)
            cfg = self.state_dir / "esp" / f"{ns.node}.cfg.json"
            cfg.write_text(json.dumps({"tun": _plan.ESP_TUN, "dev": "eth0", "local": node_ip,
                                       "table": str(self._esp_table(ns.node))}))
            log = open(self.state_dir / "esp" / f"{ns.node}.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                pr = subprocess.Popen(nsexec(ns.name, [sys.executable, "-I", str(ESP), str(cfg)]),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                      start_new_session=True)
            finally:
                log.close()
            pids[f"esp:{ns.node}"] = pr.pid
            st = self._load_state() or {}
            st.setdefault("pids", {}).update(pids)
            self._save_state(st)
            self._wait_ready(f"esp:{ns.node}", pr, self.state_dir / "esp" / f"{ns.node}.log")
        return pids

    def _agent_config(self, p: _plan.Plan, t: _plan.Task) -> dict[str, Any]:
        node_ip = next(n["underlay_ip"] for n in p.nodes if n["name"] == t.node)
        return {"task": t.name, "node": t.node, "node_ip": node_ip, "ports": t.ports,
                "dns_ip": _plan.DNS_IP, "dns_port": t.dns_port, "records": p.dns.get(t.name, {}),
                "udp_ports": t.udp_ports, "udp_ips": sorted(set(t.ips.values()) | {t.gw_ip}),
                "ips6": sorted(t.ips6.values())}

    def _start_agents(self, p: _plan.Plan, only: Iterable[str] | None = None) -> dict[str, int]:
        adir = self.state_dir / "agents"
        adir.mkdir(parents=True, exist_ok=True)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        tasks = [t for t in p.tasks if only is None or t.name in set(only)]
        if tasks and not ETC_NETNS.exists():  # remember to remove /etc/netns again in down()
            st0 = self._load_state() or {}
            st0["made_etc_netns"] = True
            self._save_state(st0)
        for t in tasks:
            cfg = adir / f"{t.name}.json"
            cfg.write_text(json.dumps(self._agent_config(p, t)))
            etc = ETC_NETNS / t.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {_plan.DNS_IP}\noptions ndots:0\n")
            log = open(adir / f"{t.name}.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                procs[t.name] = subprocess.Popen(
                    nsexec(t.netns, [sys.executable, "-I", str(AGENT), str(cfg)]),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
            finally:
                log.close()
        pids = {name: pr.pid for name, pr in procs.items()}
        # record pids before waiting, so a Ctrl-C here still lets down() find them
        st = self._load_state() or {}
        st.setdefault("pids", {}).update(pids)
        self._save_state(st)
        deadline = time.monotonic() + 15
        for name, pr in procs.items():
            self._wait_ready(name, pr, self.state_dir / "agents" / f"{name}.log", deadline)
        return pids

    @staticmethod
    def _wait_ready(name: str, pr: subprocess.Popen[bytes], log: Path, deadline: float | None = None) -> None:
        """Wait for the ``ready`` line of a started process (task server, ESP), or raise LabError."""
        deadline = deadline or time.monotonic() + 15
        assert pr.stdout is not None
        line = b""
        os.set_blocking(pr.stdout.fileno(), False)
        while b"\n" not in line:
            if time.monotonic() > deadline:
                raise LabError(f"{name} did not start within 15 s")
            try:
                chunk = pr.stdout.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                line += chunk
            elif pr.poll() is not None:
                err = log.read_text().strip().splitlines()
                raise LabError(f"{name} exited: {err[-1] if err else pr.returncode}")
            else:
                time.sleep(0.01)
        pr.stdout.close()

    # ------------------------------------------------------------------ down
    def down(self) -> dict[str, int]:
        """Remove every namespace, process and file of the lab (idempotent, also after a crashed up)."""
        need_root()
        st = self._load_state() or {}
        if st.get("sshd"):
            from meshpkt.lab import sshd

            sshd.stop(st["sshd"])
        names = set(lab_namespaces(self.name))
        names |= {n for n in st.get("namespaces", []) if (NETNS_DIR / n).exists()}
        victims: set[int] = set()
        for pid in (st.get("pids") or {}).values():
            try:
                cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"agent.py" in cmd or b"tcpdump" in cmd or b"esp.py" in cmd:
                victims.add(int(pid))
        victims |= set(pids_in_netns(names))
        killed = _kill(victims) if victims else 0
        if names:
            order = sorted(names, key=lambda n: (-n.count("-"), n))
            run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in order), check=False)
        rx = lab_ns_regex(self.name)
        if ETC_NETNS.is_dir():
            for d in ETC_NETNS.iterdir():
                if rx.match(d.name):
                    shutil.rmtree(d, ignore_errors=True)
            if st.get("made_etc_netns"):
                try:
                    ETC_NETNS.rmdir()  # only if empty (another lab may still use it)
                except OSError:
                    pass
        shutil.rmtree(self.state_dir, ignore_errors=True)
        left = lab_namespaces(self.name)
        if left:
            raise LabError(f"could not remove namespace(s): {', '.join(left)}")
        return {"namespaces": len(names), "processes": killed}

    # ------------------------------------------------------------------ status / exec
    def status(self) -> dict[str, Any]:
        """The status document (see :mod:`meshpkt.lab.status`), with ``alive`` checked now."""
        st = self._state()
        status = dict(st["status"])
        existing = set(list_netns())
        status["alive"] = all(n in existing for n in st["namespaces"] if n not in st.get("removed", []))
        status["faults"] = list(st.get("faults", []))
        return status

    def netns(self, target: str) -> str:
        """Resolve ``NODE[/NAMESPACE]`` (see :func:`meshpkt.lab.status.resolve_target`) to a netns name."""
        return resolve_target(self._state()["status"], target)

    def exec(self, target: str, argv: Sequence[str], *, check: bool = False, capture_output: bool = False,
             input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace named by ``target``; returns the CompletedProcess."""
        need_root()
        if not argv:
            raise UsageError("no command given (use: lab exec NODE[/NAMESPACE] -- CMD...)")
        ns = self.netns(target)
        try:
            r = subprocess.run(nsexec(ns, argv), capture_output=capture_output, text=True, input=input,
                               timeout=timeout)
        except FileNotFoundError:
            raise ToolMissingError("ip is not installed") from None
        if check and r.returncode != 0:
            err = (r.stderr or "").strip().splitlines() if capture_output else []
            raise LabError(f"`{' '.join(argv)}` in {ns} failed with status {r.returncode}"
                           + (f": {err[-1]}" if err else ""))
        return r

    def capture(self, points: list[str] | None, out: str | Path, cmd: Sequence[str] | None, *,
                all_points: bool = False, run_in: str | None = None, grace: float = 0.5,
                snaplen: int = 262144, bpf: str | None = None, buffer_kib: int | None = 16384,
                stdout: Any = None, stderr: Any = None) -> dict[str, Any]:
        """Capture at ``points`` (names/globs, or every point with ``all_points``) while ``cmd`` runs.

        Writes ``<out>/<point>.pcap`` per point and ``<out>/status.json``; ``run_in`` runs ``cmd`` inside
        a lab namespace (``NODE[/NAMESPACE]``), else as given. Returns {out, rc, status, points:[...]}.
        """
        from meshpkt.lab.capture import run_capture

        need_root()
        status = self.status()
        ns = self.netns(run_in) if run_in else None
        return run_capture(status, points, Path(out), list(cmd or []), all_points=all_points, run_netns=ns,
                           grace=grace, snaplen=snaplen, bpf=bpf, buffer_kib=buffer_kib,
                           stdout=stdout, stderr=stderr)

    # ------------------------------------------------------------------ fault hooks
    def _record_fault(self, kind: str, **args: Any) -> None:
        st = self._state()
        st.setdefault("faults", []).append({"kind": kind, "args": args})
        self._save_state(st)

    def _ns(self, node: str, short: str) -> _plan.Netns:
        p = self._get_plan(self._state())
        try:
            return p.find(node, short)
        except KeyError:
            raise UsageError(f"no namespace {short} on {node}") from None

    def _lb_ns(self, node: str, network: str) -> _plan.Netns:
        p = self._get_plan(self._state())
        for ns in p.namespaces:
            if ns.node == node and ns.role in ("ingress_sbox", "lb") and ns.network == network:
                return ns
        raise UsageError(f"no load balancer namespace for network {network!r} on {node!r}")

    def _delete_rules(self, ns: _plan.Netns, pred: Callable[[_plan.Rule], bool]) -> int:
        rules = [r for r in ns.rules if pred(r)]
        if not rules:
            raise UsageError(f"no such rule in {ns.name}")
        for r in rules:
            run(nsexec(ns.name, ["iptables", "-t", r.table, "-D", r.chain, *r.args]))
        return len(rules)

    def remove_dnat(self, node: str, port: int | None = None, protocol: str = "tcp") -> None:
        """Delete the host's nat DOCKER-INGRESS DNAT rule(s) (for ``port``/``protocol``, default all published)."""
        ns = self._ns(node, "host")
        want = f"dnat:{port}" + ("" if protocol == "tcp" else f"/{protocol}")
        self._delete_rules(ns, lambda r: r.tag.startswith("dnat:") and (port is None or r.tag == want))
        self._record_fault("remove_dnat", node=node, port=port, protocol=protocol)

    def remove_host_dnat(self, node: str, port: int, protocol: str = "tcp") -> None:
        """Delete the host's nat DOCKER DNAT of a host-mode published port (and its filter DOCKER ACCEPT)."""
        ns = self._ns(node, "host")
        sfx = "" if protocol == "tcp" else f"/{protocol}"
        self._delete_rules(ns, lambda r: r.tag in (f"hostdnat:{port}{sfx}", f"hostaccept:{port}{sfx}"))
        self._record_fault("remove_host_dnat", node=node, port=port, protocol=protocol)

    def remove_snat(self, node: str, network: str = "ingress") -> None:
        """Delete the ``-d <subnet> SNAT`` rule of ingress_sbox (or of ``lb_<net>`` for a user network)."""
        self._delete_rules(self._lb_ns(node, network), lambda r: r.tag == "snat")
        self._record_fault("remove_snat", node=node, network=network)

    def remove_mark(self, node: str, network: str = "ingress", service: str | None = None) -> None:
        """Delete the mangle MARK rules feeding the load balancer (PREROUTING port marks and INPUT VIP marks;
        with the nftables emulation also its VIP mark rules)."""
        ns = self._lb_ns(node, network)

        def pred(r: _plan.Rule) -> bool:
            kind, _, svc = r.tag.partition(":")
            return kind in ("mark", "vipmark") and (service is None or svc == service)

        self._delete_rules(ns, pred)
        p = self._get_plan(self._state())
        if p.lb == "nftables":
            vips = [s["vips"][network] for s in p.services
                    if network in s["vips"] and (service is None or s["name"] == service)]
            self._nft_delete_matching(ns.name, "fwm_vip", [f"ip daddr {v} " for v in vips])
        self._record_fault("remove_mark", node=node, network=network, service=service)

    def break_lb(self, node: str, network: str = "ingress") -> None:
        """Empty the load balancer of ``network`` on ``node`` (ingress_sbox or ``lb_<net>``): its IPVS services
        (``ipvsadm -C``) or the emulation's ``fwm_lb`` chain. Marked packets are then not balanced: the
        namespace itself receives the VIP traffic (and answers RST)."""
        ns = self._lb_ns(node, network)
        p = self._get_plan(self._state())
        if p.lb == "ipvs":
            run(nsexec(ns.name, ["ipvsadm", "-C"]))
        else:
            run(nsexec(ns.name, ["nft", "flush", "chain", "ip", _plan.LB_NFT_TABLE, "fwm_lb"]))
        self._record_fault("break_lb", node=node, network=network)

    def _nft_delete_matching(self, netns: str, chain: str, needles: list[str]) -> None:
        r = run(nsexec(netns, ["nft", "-a", "list", "chain", "ip", _plan.LB_NFT_TABLE, chain]))
        for line in r.stdout.splitlines():
            m = re.search(r"# handle (\d+)", line)
            if m and any(n in line for n in needles):
                run(nsexec(netns, ["nft", "delete", "rule", "ip", _plan.LB_NFT_TABLE, chain, "handle", m.group(1)]))

    def remove_redirect(self, task: str) -> None:
        """Delete the task's nat PREROUTING REDIRECT rule(s)."""
        ns = self._task_ns(task)
        self._delete_rules(ns, lambda r: r.tag.startswith("redirect:"))
        self._record_fault("remove_redirect", task=task)

    def _xfrm_pair(self, node: str, peer: str) -> tuple[_plan.Netns, str, str]:
        p = self._get_plan(self._state())
        ips = {n["name"]: n["underlay_ip"] for n in p.nodes}
        if node not in ips or peer not in ips:
            raise UsageError(f"unknown node in {node!r}, {peer!r}")
        ns = p.find(node, "host")
        if not ns.xfrm_policies:
            raise UsageError(f"{node} has no encrypted overlay (no xfrm policies)")
        return ns, ips[node], ips[peer]

    def remove_xfrm_policy(self, node: str, peer: str) -> None:
        """Delete ``node``'s ``dir out`` IPsec policy towards ``peer``: its VXLAN for encrypted VNIs then
        leaves in cleartext (and ``peer``'s filter INPUT drops it)."""
        ns, a, b = self._xfrm_pair(node, peer)
        pols = [x for x in ns.xfrm_policies if x.src == a and x.dst == b]
        if not pols:
            raise UsageError(f"no xfrm policy {node} -> {peer}")
        if not self._esp_edit(node, "policies", a, b):
            run(["ip", "-n", ns.name, "-batch", "-"], input="".join(x.del_line() + "\n" for x in pols))
        self._record_fault("remove_xfrm_policy", node=node, peer=peer)

    def remove_xfrm_state(self, node: str, peer: str, direction: str = "out") -> None:
        """Delete ``node``'s ESP state for ``node -> peer`` (``out``) or ``peer -> node`` (``in``)."""
        ns, a, b = self._xfrm_pair(node, peer)
        if direction not in ("out", "in"):
            raise UsageError("direction must be out or in")
        src, dst = (a, b) if direction == "out" else (b, a)
        states = [x for x in ns.xfrm_states if x.src == src and x.dst == dst]
        if not self._esp_edit(node, "states", src, dst):
            run(["ip", "-n", ns.name, "-batch", "-"], input="".join(x.del_line() + "\n" for x in states))
        self._record_fault("remove_xfrm_state", node=node, peer=peer, direction=direction)

    def _esp_edit(self, node: str, table: str, src: str, dst: str) -> bool:
        """Userspace ESP: drop ``src -> dst`` entries from ``node``'s table and make its process reload it.
        False when the lab uses the kernel's xfrm."""
        st = self._state()
        if st["status"].get("esp") != "userspace":
            return False
        data = json.loads(self._esp_table(node).read_text())
        data[table] = [e for e in data[table] if not (e["src"] == src and e["dst"] == dst)]
        self._write_esp_table(node, data)
        pid = (st.get("pids") or {}).get(f"esp:{node}")
        if pid:
            os.kill(int(pid), signal.SIGHUP)
            time.sleep(0.1)
        return True

    def _task_ns(self, task: str) -> _plan.Netns:
        p = self._get_plan(self._state())
        for ns in p.namespaces:
            if ns.role == "task" and ns.task and task in (ns.task["name"], ns.task["docker_name"]):
                return ns
        raise UsageError(f"no task {task!r} (tasks: {', '.join(t.name for t in p.tasks)})")

    def remove_fdb(self, node: str, peer: str, network: str = "ingress", neigh: bool = False) -> int:
        """Delete the permanent fdb entries (and with ``neigh`` the ARP entries) on ``node``'s vxlan0 of
        ``network`` that point at ``peer``'s VTEP. Returns how many fdb entries were removed."""
        p = self._get_plan(self._state())
        peer_ip = next((n["underlay_ip"] for n in p.nodes if n["name"] == peer), None)
        if peer_ip is None:
            raise UsageError(f"unknown peer node {peer!r}")
        ns = next((x for x in p.namespaces if x.node == node and x.role == "overlay" and x.network == network),
                  None)
        if ns is None:
            raise UsageError(f"no overlay namespace for {network!r} on {node!r}")
        fdb = [f for f in ns.fdb if f" dst {peer_ip} " in f]
        if fdb:
            run(["bridge", "-n", ns.name, "-batch", "-"],
                input="".join(f.replace("fdb add", "fdb del").replace(f" dst {peer_ip} self permanent", " self")
                              + "\n" for f in fdb))
        if neigh:
            macs = {f.split()[2] for f in fdb}
            lines = [n.replace("neigh add", "neigh del").split(" lladdr")[0] + " dev vxlan0"
                     for n in ns.neigh if n.split()[4] in macs]
            if lines:
                run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n")
        self._record_fault("remove_fdb", node=node, peer=peer, network=network, neigh=neigh)
        return len(fdb)

    def drop_vxlan(self, node_a: str, node_b: str, both: bool = False) -> None:
        """Drop VXLAN (UDP to the data path port) from ``node_a`` to ``node_b`` on the underlay switch
        (an nftables bridge-family rule in the underlay namespace); ``both`` drops the reverse too."""
        st = self._state()
        p = self._get_plan(st)
        ips = {n["name"]: n["underlay_ip"] for n in p.nodes}
        if node_a not in ips or node_b not in ips:
            raise UsageError(f"unknown node in {node_a!r}, {node_b!r}")
        port = p.spec.data_path_port
        pairs = [(ips[node_a], ips[node_b])] + ([(ips[node_b], ips[node_a])] if both else [])
        text = "\n".join([f"add table bridge {_plan.FAULT_NFT_TABLE}",
                          f"add chain bridge {_plan.FAULT_NFT_TABLE} fault {{ type filter hook forward priority 0; "
                          "policy accept; }",
                          *(f"add rule bridge {_plan.FAULT_NFT_TABLE} fault ip saddr {a} ip daddr {b} "
                            f"udp dport {port} counter drop" for a, b in pairs)]) + "\n"
        run(nsexec(f"{self.name}-underlay", ["nft", "-f", "-"]), input=text)
        self._record_fault("drop_vxlan", node_a=node_a, node_b=node_b, both=both)

    def lossy_vxlan(self, node_a: str, percent: int, node_b: str | None = None) -> None:
        """Drop ``percent`` % of the VXLAN frames leaving ``node_a`` (to ``node_b`` only, if given) at random
        on the underlay switch (nftables ``numgen random mod 100`` in the underlay bridge's forward hook)."""
        p = self._get_plan(self._state())
        ips = {n["name"]: n["underlay_ip"] for n in p.nodes}
        if node_a not in ips or (node_b is not None and node_b not in ips):
            raise UsageError(f"unknown node in {node_a!r}, {node_b!r}")
        if not 0 < percent < 100:
            raise UsageError(f"bad loss percentage {percent}")
        to = f" ip daddr {ips[node_b]}" if node_b is not None else ""
        text = "\n".join([f"add table bridge {_plan.FAULT_NFT_TABLE}",
                          f"add chain bridge {_plan.FAULT_NFT_TABLE} fault {{ type filter hook forward priority 0; "
                          "policy accept; }",
                          f"add rule bridge {_plan.FAULT_NFT_TABLE} fault ip saddr {ips[node_a]}{to} "
                          f"udp dport {p.spec.data_path_port} numgen random mod 100 < {percent} counter drop"]) + "\n"
        run(nsexec(f"{self.name}-underlay", ["nft", "-f", "-"]), input=text)
        self._record_fault("lossy_vxlan", node_a=node_a, node_b=node_b, percent=percent)

    def kill_task(self, task: str, update_lb: bool = False) -> None:
        """The task's container dies: its server is killed and its namespace removed. Peers keep their
        stale fdb/ARP entries and every node's load balancer keeps the backend, unless ``update_lb``
        (then it is removed from every LB, like Swarm after reconciliation)."""
        st = self._state()
        ns = self._task_ns(task)
        name = (ns.task or {})["name"]
        pid = (st.get("pids") or {}).get(name)
        victims = set(pids_in_netns([ns.name]))
        if pid:
            victims.add(int(pid))
        _kill(victims)
        run(["ip", "netns", "del", ns.name], check=False)
        shutil.rmtree(ETC_NETNS / ns.name, ignore_errors=True)
        st = self._state()
        st.setdefault("removed", []).append(ns.name)
        st.setdefault("killed", []).append(name)
        for s in st["status"]["services"]:
            for b in s["backends"]:
                if b["task"] == name:
                    b["alive"] = False
        self._save_state(st)
        if update_lb:
            self._reload_lbs(frozenset(st["killed"]))
        self._record_fault("kill_task", task=name, update_lb=update_lb)

    def _reload_lbs(self, exclude: frozenset[str]) -> None:
        p = self._get_plan(self._state())
        for ns in p.namespaces:
            if ns.role not in ("ingress_sbox", "lb"):
                continue
            text = _plan.lb_nft(p, ns, exclude)
            if p.lb == "ipvs":
                run(nsexec(ns.name, ["ipvsadm", "-C"]))
                run(nsexec(ns.name, ["ipvsadm", "-R"]), input=text)
            else:
                run(nsexec(ns.name, ["nft", "-f", "-"]),
                    input=f"delete table ip {_plan.LB_NFT_TABLE}\n" + text)

    def set_mtu(self, target: str, iface: str, mtu: int) -> None:
        """Set the MTU of ``iface`` in the namespace ``target`` (``NODE[/NAMESPACE]``)."""
        if not 68 <= mtu <= 65535:
            raise UsageError(f"bad MTU {mtu}")
        ns = self.netns(target)
        run(["ip", "-n", ns, "link", "set", "dev", iface, "mtu", str(mtu)])
        st = self._state()
        for nsj in _iter_ns(st["status"]):
            if nsj["name"] == ns:
                for i in nsj["interfaces"]:
                    if i["name"] == iface:
                        i["mtu"] = mtu
        self._save_state(st)
        self._record_fault("set_mtu", target=target, iface=iface, mtu=mtu)


def extend_status(status: dict[str, Any], p: _plan.Plan) -> None:
    """Add to the status document what the typed model does not carry yet (extension keys, all optional):
    ``esp``/``esp_detail``; per dual-stack network ``subnet6``/``gateway6``; per service ``udp_ports``; per
    backend ``ips6`` and (host mode) ``gwbridge_ip``; per task namespace ``ips6``/``udp_ports``; per interface
    ``addresses6``."""
    status["esp"] = p.esp
    status["esp_detail"] = ESP_DETAIL[p.esp]
    nets = {n["name"]: n for n in p.networks}
    for n in status["networks"]:
        n.update({k: nets[n["name"]][k] for k in ("subnet6", "gateway6") if k in nets.get(n["name"], {})})
    svcs = {s["name"]: s for s in p.services}
    for s in status["services"]:
        planned = svcs.get(s["name"], {})
        if "udp_ports" in planned:
            s["udp_ports"] = planned["udp_ports"]
        extra = {b["task"]: b for b in planned.get("backends", [])}
        for b in s["backends"]:
            b.update({k: extra[b["task"]][k] for k in ("ips6", "gwbridge_ip") if k in extra.get(b["task"], {})})
    planned_ns = {ns.name: ns for ns in p.namespaces}
    for nsj in _iter_ns(status):
        ns = planned_ns.get(nsj["name"])
        if ns is None:
            continue
        if nsj.get("task") and ns.task:
            nsj["task"].update({k: ns.task[k] for k in ("ips6", "udp_ports") if k in ns.task})
        for ij in nsj["interfaces"]:
            i = next((x for x in ns.interfaces if x.name == ij["name"]), None)
            if i is not None and i.addresses6:
                ij["addresses6"] = list(i.addresses6)


def _iter_ns(status: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from status.get("underlay_namespaces", [])
    for nd in status["nodes"]:
        yield from nd["namespaces"]


# ---------------------------------------------------------------------------- module API
def up(spec: LabSpec | None = None, lb: str = "auto", state_root: str | Path = STATE_ROOT) -> dict[str, Any]:
    """Build the lab described by ``spec`` (default: 3 nodes, my-web 9090:80 x3, backend x2)."""
    spec = spec or LabSpec()
    return Lab(spec.name, state_root).up(spec, lb=lb)


def down(name: str = "mesh", state_root: str | Path = STATE_ROOT) -> dict[str, int]:
    """Remove lab ``name`` (idempotent)."""
    return Lab(name, state_root).down()


def status(name: str = "mesh", state_root: str | Path = STATE_ROOT) -> dict[str, Any]:
    """The status document of lab ``name`` (see :mod:`meshpkt.lab.status`)."""
    return Lab(name, state_root).status()
