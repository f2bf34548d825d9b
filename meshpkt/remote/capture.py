"""``meshpkt capture --node ...``: tcpdump at every hop of every node at once, over SSH.

Steps: discover every node (:mod:`~meshpkt.remote.discover`); a node that cannot be reached or lacks
nsenter/tcpdump is one problem line and the others go on; plan the taps (:mod:`~meshpkt.remote.taps`);
one SSH session per node runs :data:`~meshpkt.remote.scripts.CAPTURE`, which starts the tcpdumps and
reports each one listening (or why not) before anything is said to be capturing; stop on the duration,
when every tap reached its packet count, or on Ctrl-C by writing ``stop`` to each session, which then
sends the pcaps back over the same channel. If the ssh client dies instead, the node's script reads end
of file and stops its tcpdumps by itself. Then the rule dumps (:mod:`~meshpkt.remote.collect`) go to
``OUT/dumps`` and a topology document to ``OUT/status.json``, so ``meshpkt analyze OUT`` works as is.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.remote.collect import collect_remote, read_exact
from meshpkt.remote.discover import NodeInfo, discover
from meshpkt.remote.scripts import CAPTURE, remote_command
from meshpkt.remote.ssh import Transport, ssh_error
from meshpkt.remote.taps import Tap, plan_taps, topology
from meshpkt.remote.target import Target

_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.pcap$")
_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass
class Limits:
    """When to stop: ``duration`` seconds, ``packets`` per tap, ``max_bytes`` per tap (enforced on the node),
    ``hard_seconds`` (the node stops by itself after this, whatever happens to meshpkt)."""

    duration: float | None = None
    packets: int | None = None
    max_bytes: int = 200 * 1024 * 1024
    hard_seconds: int = 3600
    snaplen: int = 262144


@dataclass
class Session:
    """One node's capture session and what it reported."""

    node: NodeInfo
    taps: list[Tap]
    proc: subprocess.Popen[bytes] | None = None
    tap_state: dict[str, str] = field(default_factory=dict)  # point -> "listening" | "failed: ..."
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # point -> bytes written
    ready: threading.Event = field(default_factory=threading.Event)
    all_done: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    reader: threading.Thread | None = None


@dataclass
class CaptureResult:
    """What a remote capture produced."""

    out: str
    points: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    status: str | None = None
    dumps: str | None = None
    interrupted: bool = False


def _read_session(s: Session, out: Path) -> None:
    assert s.proc is not None and s.proc.stdout is not None
    stream = s.proc.stdout
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            word, _, rest = line.partition(" ")
            if word == "@tap":
                point, _, state = rest.partition(" ")
                s.tap_state[point] = state
            elif word == "@capturing":
                s.ready.set()
            elif word == "@alldone":
                s.all_done.set()
            elif word == "@stats":
                point, _, text = rest.partition(" ")
                s.stats[point] = {m.group(2): int(m.group(1)) for m in _STAT.finditer(text)}
            elif word == "@file":
                name, _, size = rest.rpartition(" ")
                _save(stream, out, name, int(size), s)
            elif word == "@error":
                s.error = rest
    finally:
        s.ready.set()
        s.ended.set()


def _save(stream: Any, out: Path, name: str, size: int, s: Session) -> None:
    if not _NAME.match(name) or name.startswith("."):
        read_exact(stream, size)
        s.error = f"unexpected file name {name!r} from the node"
        return
    left = size
    with open(out / name, "wb") as fh:
        while left > 0:
            chunk = read_exact(stream, min(left, 1 << 20))
            if not chunk:
                break
            fh.write(chunk)
            left -= len(chunk)
    s.files[name[:-5]] = size - left


def _start(transport: Transport, s: Session, out: Path, lim: Limits) -> None:
    args: list[str] = [str(lim.max_bytes), str(lim.hard_seconds), str(lim.packets or 0), str(lim.snaplen)]
    for t in s.taps:
        args += [t.path, t.iface, t.point, t.filter]
    s.proc = transport.popen(s.node.target, remote_command(CAPTURE, args))
    s.reader = threading.Thread(target=_read_session, args=(s, out), daemon=True)
    s.reader.start()


def _stop(sessions: Sequence[Session], timeout: float = 120.0) -> None:
    for s in sessions:
        if s.proc and s.proc.stdin and not s.ended.is_set():
            try:
                s.proc.stdin.write(b"stop\n")
                s.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
    deadline = time.monotonic() + timeout
    for s in sessions:
        s.ended.wait(max(0.1, deadline - time.monotonic()))
    _hang_up(sessions)


def _hang_up(sessions: Sequence[Session]) -> None:
    """Close every session (the nodes' scripts read end of file and stop their tcpdumps)."""
    for s in sessions:
        if s.proc is None:
            continue
        try:
            if s.proc.stdin:
                s.proc.stdin.close()
        except OSError:
            pass
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
        if s.proc.stderr:
            s.proc.stderr.close()


def _wait(sessions: Sequence[Session], lim: Limits, until_interrupt: bool) -> None:
    t0 = time.monotonic()
    while True:
        if lim.duration is not None and time.monotonic() - t0 >= lim.duration:
            return
        if lim.packets and all(s.all_done.is_set() or s.ended.is_set() for s in sessions):
            return
        if all(s.ended.is_set() for s in sessions):
            return
        if not until_interrupt and lim.duration is None and not lim.packets:
            return
        time.sleep(0.05)


def plan_sessions(nodes: Sequence[NodeInfo], ports: Sequence[int], bpf: str | None,
                  problems: list[str]) -> list[Session]:
    """Sessions for the usable nodes; every unusable node adds one problem line."""
    sessions = []
    for n in nodes:
        label = n.name if n.name == n.target.label else f"{n.name} ({n.target.label})"
        if n.error:
            problems.append(f"{n.target.label}: {n.error}")
            continue
        miss = n.missing()
        if miss:
            problems.append(f"{label}: missing {', '.join(miss)}: not captured")
            continue
        taps = plan_taps(n, ports, bpf)
        if not taps:
            problems.append(f"{label}: no hop to capture (no Docker namespaces and no underlay interface)")
            continue
        sessions.append(Session(n, taps))
    return sessions


def start_sessions(transport: Transport, sessions: Sequence[Session], out: Path, lim: Limits,
                   problems: list[str]) -> None:
    """Start every session and wait until each node reported its taps (problems appended)."""
    for s in sessions:
        _start(transport, s, out, lim)
    _report_start(sessions, problems)


def stop_sessions(sessions: Sequence[Session]) -> None:
    """Stop every session (``stop``) and wait for the files to come back."""
    _stop(sessions)


def hang_up(sessions: Sequence[Session]) -> None:
    """Close every session at once (the nodes stop their tcpdumps on end of file)."""
    _hang_up(sessions)


def _report_start(sessions: Sequence[Session], problems: list[str]) -> None:
    for s in sessions:
        if not s.ready.wait(60):
            s.error = s.error or "no answer from the node within 60 s"
        if s.error or not s.tap_state:
            err = s.error or ssh_error(s.proc.stderr.read() if s.proc and s.proc.stderr and s.ended.is_set() else b"")
            problems.append(f"{s.node.name} ({s.node.target.label}): capture failed: {err}")
        for point, state in s.tap_state.items():
            if state != "listening":
                problems.append(f"{point}: tcpdump {state}")


def capture_remote(transport: Transport, targets: Sequence[Target], out: str | Path, *, limits: Limits | None = None,
                   until_interrupt: bool = False, ports: Sequence[int] = (), bpf: str | None = None,
                   collect: bool = True, on_capturing: Callable[[int, int], None] | None = None,
                   on_problem: Callable[[str], None] | None = None) -> CaptureResult:
    """Capture on every node at once (see the module docstring); returns files, stats and problems."""
    lim = limits or Limits()
    if lim.duration is None and not lim.packets and not until_interrupt:
        raise UsageError("say when to stop: --duration S, --packets N or --until-ctrl-c")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    res = CaptureResult(out=str(root))
    nodes = discover(transport, targets)
    sessions = plan_sessions(nodes, ports, bpf, res.problems)
    for p in res.problems:
        if on_problem:
            on_problem(p)
    if not sessions:
        return res
    shown = len(res.problems)
    try:
        for s in sessions:
            _start(transport, s, root, lim)
        _report_start(sessions, res.problems)
        for p in res.problems[shown:]:
            if on_problem:
                on_problem(p)
        if on_capturing:
            on_capturing(sum(st == "listening" for s in sessions for st in s.tap_state.values()), len(sessions))
        try:
            _wait(sessions, lim, until_interrupt)
        except KeyboardInterrupt:
            res.interrupted = True
        _stop(sessions)
    except BaseException:
        _hang_up(sessions)
        raise
    _finish(res, sessions, nodes, transport, root, collect)
    return res


def _finish(res: CaptureResult, sessions: Sequence[Session], nodes: Sequence[NodeInfo], transport: Transport,
            root: Path, collect: bool) -> None:
    for s in sessions:
        res.nodes.append(s.node.name)
        if s.error and s.ready.is_set() and s.tap_state:
            res.problems.append(f"{s.node.name}: {s.error}")
        for t in s.taps:
            if t.point in s.files:
                st = s.stats.get(t.point, {})
                res.points.append({"point": t.point, "node": t.node, "namespace": t.namespace, "iface": t.iface,
                                   "file": str(root / f"{t.point}.pcap"), "bytes": s.files[t.point],
                                   "packets": st.get("captured"), "dropped": st.get("dropped by kernel")})
    model = None
    if collect:
        ok = [s.node for s in sessions]
        rep = collect_remote(root / "dumps", transport, [n.target for n in ok], {n.target: n.name for n in ok})
        res.dumps = str(root / "dumps")
        res.problems += [f"collect: {n}" for n in rep.notes if "cannot connect" in n]
        model = _model(root / "dumps")
    taps = [t for s in sessions for t in s.taps if t.point in s.files]
    doc = topology([n for n in nodes if not n.error], taps, model)
    from meshpkt.mesh.status import load_status, write_status

    write_status(load_status(doc), root / "status.json")  # through the typed mesh model
    res.status = str(root / "status.json")


def _model(path: Path) -> Any:
    from meshpkt.rules.model import load_dumps

    try:
        return load_dumps(path)
    except Exception:  # the dumps are a bonus for the topology; the pcaps stand without them
        return None
