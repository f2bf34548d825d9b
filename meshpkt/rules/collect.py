"""``meshpkt collect``: dump the rules, links and tables of every namespace of a node (or of a
lab) into the directory layout :func:`meshpkt.rules.model.load_dumps` reads.

The only module of :mod:`meshpkt.rules` that runs processes. It only *reads* kernel state
(``iptables-save``, ``nft -j list ruleset``, ``ipvsadm -Ln``, ``ip``, ``bridge``), entering each
namespace with ``nsenter --net=PATH`` (``ip netns exec`` when nsenter is missing).

Name mapping (which namespace file is which node/namespace):

* real node (default): every file of ``--netns-dir`` (``/var/run/docker/netns``) is a namespace
  of this node (``--node``, default the host name); the root namespace is ``host``.
* ``--prefix P``: only files starting with ``P`` count, the rest of the name is the Docker name
  (``mesh-node1-ingress_sbox`` -> ``ingress_sbox``); the file named ``P`` without its trailing dash
  (``mesh-node1``) is the node's ``host`` namespace and the root namespace is not dumped. The
  node name defaults to the last dash-separated word of ``P`` (``node1``).
* ``--lab NAME``: every ``NAME-<node>`` file of ``--netns-dir`` (default ``/var/run/netns``) is a
  node's host namespace and ``NAME-<node>-<docker name>`` its other namespaces (node names must
  not contain dashes).
* ``--map NAME=ROLE`` overrides the role guessed from the name (written to ``namespace.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meshpkt.errors import NeedRootError, UsageError
from meshpkt.rules.model import Role, parse_role, role_from_name
from meshpkt.rules.transcript import HOST

DOCKER_NETNS = "/var/run/docker/netns"
IP_NETNS = "/var/run/netns"

NS_COMMANDS: list[tuple[str, list[str]]] = [
    ("iptables-save.txt", ["iptables-save", "-c"]),
    ("nft-ruleset.json", ["nft", "-j", "list", "ruleset"]),
    ("ipvsadm-Ln.txt", ["ipvsadm", "-Ln"]),
    ("ipvsadm-Sn.txt", ["ipvsadm", "-Sn"]),
    ("ipvsadm-Lnc.txt", ["ipvsadm", "-Lnc"]),
    ("bridge-fdb.txt", ["bridge", "fdb", "show"]),
    ("ip-d-link.txt", ["ip", "-d", "link", "show"]),
    ("ip-d-link.json", ["ip", "-j", "-d", "link", "show"]),
    ("ip-addr.txt", ["ip", "addr", "show"]),
    ("ip-addr.json", ["ip", "-j", "addr", "show"]),
    ("ip-route.txt", ["ip", "route", "show"]),
    ("ip-neigh.txt", ["ip", "neigh", "show"]),
    ("ip-xfrm-state.txt", ["ip", "xfrm", "state"]),  # encrypted overlays (keys redacted on write)
    ("ip-xfrm-policy.txt", ["ip", "xfrm", "policy"]),
]
"""(file name, command) dumped in every namespace."""


@dataclass
class NamespaceTarget:
    """One namespace to dump: node, Docker-style name, namespace file (None = the root namespace),
    role and where the role came from."""

    node: str
    name: str
    path: str | None
    role: Role
    role_from: str = "name"


@dataclass
class CommandResult:
    """What one dump command did: ``status`` ok / missing (tool not installed) / failed / skipped."""

    file: str
    argv: list[str]
    status: str
    returncode: int | None = None
    stderr: str = ""


@dataclass
class NamespaceReport:
    """The commands run in one namespace."""

    target: NamespaceTarget
    results: list[CommandResult] = field(default_factory=list)


@dataclass
class CollectReport:
    """Everything ``collect`` did: per namespace, Docker commands, notes."""

    out: str
    namespaces: list[NamespaceReport] = field(default_factory=list)
    docker: dict[str, list[CommandResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (also written to ``OUT/collect.json``)."""
        return asdict(self)


Runner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------- name mapping (pure)


def map_netns_names(names: Sequence[str], *, netns_dir: str, prefix: str | None = None, lab: str | None = None,
                    node: str | None = None, hostname: str = "node", include_root: bool = True,
                    roles: Mapping[str, str | Role] | None = None) -> list[NamespaceTarget]:
    """Turn the file names of ``netns_dir`` into namespace targets (see the module docstring)."""
    role_map = {k: (v if isinstance(v, Role) else parse_role(v)) for k, v in (roles or {}).items()}
    out: list[NamespaceTarget] = []

    def add(nd: str, name: str, path: str | None, file_name: str | None) -> None:
        role = role_from_name(name)
        src = "name"
        for key in (f"{nd}/{name}", name, file_name or ""):
            if key and key in role_map:
                role, src = role_map[key], "map"
                break
        out.append(NamespaceTarget(node=nd, name=name, path=path, role=role, role_from=src))

    if lab:
        words = {n[len(lab) + 1:].split("-", 1)[0] for n in names if n.startswith(lab + "-") and len(n) > len(lab) + 1}
        # a node is <lab>-X with namespaces <lab>-X-...; lone <lab>-underlay / <lab>-client are not nodes
        nodes = sorted(w for w in words if any(n.startswith(f"{lab}-{w}-") for n in names))
        for nd in nodes:
            head = f"{lab}-{nd}"
            for n in sorted(names):
                if n == head:
                    add(nd, HOST, os.path.join(netns_dir, n), n)
                elif n.startswith(head + "-"):
                    add(nd, n[len(head) + 1:], os.path.join(netns_dir, n), n)
        return out
    if prefix:
        nd = node or prefix.rstrip("-").rsplit("-", 1)[-1] or hostname
        host_file = prefix.rstrip("-")
        for n in sorted(names):
            if n == host_file:
                add(nd, HOST, os.path.join(netns_dir, n), n)
            elif n.startswith(prefix) and len(n) > len(prefix):
                add(nd, n[len(prefix):], os.path.join(netns_dir, n), n)
        return out
    nd = node or hostname
    if include_root:
        add(nd, HOST, None, None)
    for n in sorted(names):
        add(nd, n, os.path.join(netns_dir, n), n)
    return out


# ---------------------------------------------------------------------- running


def _in_ns(target: NamespaceTarget, argv: list[str]) -> list[str] | None:
    if target.path is None:
        return argv
    if shutil.which("nsenter"):
        return ["nsenter", f"--net={target.path}", "--"] + argv
    if os.path.dirname(target.path) == IP_NETNS and shutil.which("ip"):
        return ["ip", "netns", "exec", os.path.basename(target.path)] + argv
    return None


def _dump_one(target: NamespaceTarget, directory: Path, run: Runner, timeout: float) -> NamespaceReport:
    rep = NamespaceReport(target=target)
    directory.mkdir(parents=True, exist_ok=True)
    ipvs_dead = False
    cmds = list(NS_COMMANDS)
    i = 0
    while i < len(cmds):
        fname, argv = cmds[i]
        i += 1
        if shutil.which(argv[0]) is None:
            rep.results.append(CommandResult(fname, argv, "missing", stderr=f"{argv[0]} not installed"))
            continue
        if argv[0] == "ipvsadm" and ipvs_dead:
            rep.results.append(CommandResult(fname, argv, "skipped", stderr="IPVS not available"))
            continue
        full = _in_ns(target, argv)
        if full is None:
            rep.results.append(CommandResult(fname, argv, "missing", stderr="neither nsenter nor ip netns exec usable"))
            continue
        try:
            cp = run(full, timeout)
        except subprocess.TimeoutExpired:
            rep.results.append(CommandResult(fname, argv, "failed", stderr=f"timed out after {timeout:g}s"))
            continue
        except OSError as exc:
            rep.results.append(CommandResult(fname, argv, "failed", stderr=str(exc)))
            continue
        err = cp.stderr.strip()
        if cp.returncode != 0:
            rep.results.append(CommandResult(fname, argv, "failed", cp.returncode, err[:500]))
            if argv[0] == "ipvsadm" and ("Protocol not available" in err or "Can't initialize ipvs" in err):
                ipvs_dead = True
            continue
        text = cp.stdout
        if fname == "ip-xfrm-state.txt":
            text = redact_xfrm_keys(text)
        if fname.startswith("iptables"):  # keep the tool's warnings (as `iptables-save 2>&1` shows them)
            warn = [ln for ln in cp.stderr.splitlines() if ln.lstrip().lower().startswith("# warning")]
            text = "".join(w + "\n" for w in warn) + text
        (directory / fname).write_text(text, encoding="utf-8")
        rep.results.append(CommandResult(fname, argv, "ok", 0, err[:500]))
        if fname == "iptables-save.txt" and "iptables-legacy tables present" in cp.stdout + cp.stderr:
            cmds.insert(i, ("iptables-legacy-save.txt", ["iptables-legacy-save", "-c"]))
    meta = {"node": target.node, "name": target.name, "netns": target.path, "role": str(target.role),
            "role_from": target.role_from, "commands": [asdict(r) for r in rep.results]}
    (directory / "namespace.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return rep


def redact_xfrm_keys(text: str) -> str:
    """``ip xfrm state`` output with the key material of ``aead``/``enc``/``auth``/``auth-trunc`` lines replaced."""
    import re

    return re.sub(r"^(\s*(?:aead|enc|auth|auth-trunc|comp) \S+ )0x[0-9a-fA-F]+", r"\1(redacted)", text, flags=re.M)


def _docker(node_dir: Path, run: Runner, timeout: float, notes: list[str]) -> list[CommandResult]:
    results: list[CommandResult] = []
    if shutil.which("docker") is None:
        notes.append("docker CLI not installed: no docker network/service inspect")
        return results
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], min(timeout, 10.0))
    except (subprocess.TimeoutExpired, OSError) as exc:
        notes.append(f"docker daemon not reachable ({exc}): no docker network/service inspect")
        return results
    if info.returncode != 0 or not info.stdout.strip():
        notes.append("docker daemon not reachable: no docker network/service inspect")
        return results
    for what, fname in (("network", "docker-network-inspect.json"), ("service", "docker-service-inspect.json")):
        try:
            ls = run(["docker", what, "ls", "-q"], timeout)
        except (subprocess.TimeoutExpired, OSError) as exc:
            results.append(CommandResult(fname, ["docker", what, "ls", "-q"], "failed", stderr=str(exc)))
            continue
        ids = ls.stdout.split()
        if ls.returncode != 0 or not ids:
            results.append(CommandResult(fname, ["docker", what, "ls", "-q"], "failed" if ls.returncode else "skipped",
                                         ls.returncode, (ls.stderr.strip() or "nothing listed")[:300]))
            continue
        argv = ["docker", what, "inspect"] + ids
        try:
            cp = run(argv, timeout)
        except (subprocess.TimeoutExpired, OSError) as exc:
            results.append(CommandResult(fname, argv, "failed", stderr=str(exc)))
            continue
        if cp.returncode == 0:
            (node_dir / fname).write_text(cp.stdout, encoding="utf-8")
            results.append(CommandResult(fname, argv, "ok", 0))
        else:
            results.append(CommandResult(fname, argv, "failed", cp.returncode, cp.stderr.strip()[:300]))
    return results


def collect(out: str | Path, netns_dir: str | None = None, prefix: str | None = None, lab: str | None = None,
            roles: Mapping[str, str | Role] | None = None, node: str | None = None, include_root: bool = True,
            timeout: float = 30.0, run: Runner | None = None) -> CollectReport:
    """Dump every namespace into ``out/<node>/<namespace>/`` and return what was done.

    With ``lab`` or ``prefix`` the root namespace is never entered and Docker is not queried.
    Needs root (raises NeedRootError otherwise); a missing netns directory or no namespace
    matching raises UsageError.
    """
    if os.geteuid() != 0:
        raise NeedRootError("collect needs root (it enters network namespaces)")
    runner = run or _run
    ndir = netns_dir or (IP_NETNS if lab else DOCKER_NETNS)
    names: list[str] = []
    if os.path.isdir(ndir):
        names = sorted(n for n in os.listdir(ndir) if not n.startswith("."))
    elif lab or prefix or netns_dir:
        raise UsageError(f"{ndir}: no such namespace directory")
    targets = map_netns_names(names, netns_dir=ndir, prefix=prefix, lab=lab, node=node,
                              hostname=socket.gethostname().split(".")[0], include_root=include_root and not
                              (lab or prefix), roles=roles)
    if not targets:
        what = f"named {lab}-<node>[-...]" if lab else (f"starting with {prefix!r}" if prefix else "")
        raise UsageError(f"no namespaces {what} in {ndir}".replace("  ", " "))
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    report = CollectReport(out=str(root))
    for t in targets:
        report.namespaces.append(_dump_one(t, root / t.node / t.name, runner, timeout))
    missing = sorted({r.argv[0] for ns in report.namespaces for r in ns.results if r.status == "missing"})
    if missing:
        report.notes.append(f"not installed, skipped: {', '.join(missing)}")
    if any(r.status == "skipped" and "IPVS" in r.stderr for ns in report.namespaces for r in ns.results) or any(
            r.argv[0] == "ipvsadm" and r.status == "failed" for ns in report.namespaces for r in ns.results):
        report.notes.append("IPVS not available (ipvsadm failed): LB services can only come from nft rules")
    if not (lab or prefix):
        nodes = sorted({t.node for t in targets})
        for nd in nodes:
            report.docker[nd] = _docker(root / nd, runner, timeout, report.notes)
    else:
        report.notes.append("lab/prefix mode: docker network/service inspect not collected")
    (root / "collect.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
