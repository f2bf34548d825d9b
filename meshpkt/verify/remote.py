"""``meshpkt verify --target-cluster HOST,HOST,...``: verify a real cluster's rules over SSH.

Steps: discover the named nodes and collect their dumps over SSH (:mod:`meshpkt.remote`); plan the checks
and probes from what the cluster itself says it should be (:mod:`meshpkt.remote.vplan`); refuse anything
aimed outside the named nodes and their Docker networks; with ``dry_run`` print every probe and stop.
Otherwise start taps on every node (confirmed listening), send the probes rate-limited -- TCP connections
from where meshpkt runs to the published ports (closed with RST after the SYN-ACK), SYN frames written in
the nodes' namespaces by their own python3 -- stop the taps, decode and judge.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshpkt.errors import UsageError
from meshpkt.remote.vplan import PORT_RANGE, Cluster, RemotePlan, Seen, judge_remote, plan_remote
from meshpkt.verify.types import UNTESTED, Check, VerifyReport

MAX_RATE = 100.0
Progress = Callable[[str], None]


def probe_filter() -> str:
    """Taps keep only probe traffic: TCP with a source or destination port in :data:`PORT_RANGE`, plain or
    inside VXLAN (inner TCP ports read after the inner IPv4 header, whatever its length)."""
    lo, hi = PORT_RANGE
    sp, dp = "udp[30 + ((udp[30] & 0xf) << 2):2]", "udp[30 + ((udp[30] & 0xf) << 2) + 2:2]"
    inner = (f"udp[28:2]=0x0800 and udp[39]=6 and (({sp} >= {lo} and {sp} <= {hi}) or "
             f"({dp} >= {lo} and {dp} <= {hi}))")
    return f"(tcp portrange {lo}-{hi}) or (udp and {inner})"


def local_address(dst: str) -> str:
    """The source address this host uses toward ``dst`` (no packet is sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((dst, 9))
        return str(s.getsockname()[0])
    except OSError as exc:
        raise UsageError(f"no route to {dst}: {exc}") from None
    finally:
        s.close()


def check_scope(plan: RemotePlan, cluster: Cluster) -> None:
    """Refuse any probe not aimed at a named node or inside one of its Docker networks."""
    addrs = {cluster.underlay_ip(n) for n in cluster.nodes}
    nets = [ipaddress.IPv4Interface(a).network for n in cluster.nodes for ns in n.namespaces if ns.role == "overlay"
            for i in ns.interfaces if i.name == "br0" for a in i.addresses if "." in a]
    paths = {ns.path for n in cluster.nodes for ns in n.namespaces if ns.path}
    for p in plan.probes:
        ok = (p.dst in addrs) if p.kind == "conn" else (
            p.netns in paths and any(ipaddress.IPv4Address(p.dst) in net for net in nets))
        if not ok or not PORT_RANGE[0] <= p.sport <= PORT_RANGE[1]:
            raise UsageError(f"refusing probe {p.summary()}: outside the named nodes and their Docker networks")


def _conn_probe(src: str, sport: int, dst: str, port: int, timeout: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        s.bind((src, sport))
        s.settimeout(timeout)
        s.connect((dst, port))
    except OSError:
        pass
    finally:
        s.close()


def send_conns(plan: RemotePlan, rate: float, timeout: float = 1.0) -> None:
    """TCP connections to the published ports, ``rate`` per second, each reset after its SYN-ACK."""
    threads = []
    for p in [p for p in plan.probes if p.kind == "conn"]:
        t = threading.Thread(target=_conn_probe, args=(p.src, p.sport, p.dst, p.dport, timeout), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(1.0 / rate)
    for t in threads:
        t.join(timeout + 2)


def send_frames(transport: Any, cluster: Cluster, plan: RemotePlan, rate: float) -> dict[str, str]:
    """Write the frame probes with each node's python3 (one SSH session per node and namespace);
    probe id -> why it was not sent."""
    from meshpkt.remote.scripts import WRITE, WRITER, remote_command
    from meshpkt.remote.ssh import each_node, ssh_error

    errors: dict[str, str] = {}
    jobs: dict[tuple[str, str], list[Any]] = {}
    for p in plan.probes:
        if p.kind == "frame":
            jobs.setdefault((p.entry, p.netns), []).append(p)
    by_name = {n.name: n for n in cluster.nodes}

    def one(key: tuple[str, str]) -> None:
        node = by_name[key[0]]
        probes = jobs[key]
        if not node.tools.get("python3"):
            for p in probes:
                errors[p.id] = f"{node.name} has no python3: frames cannot be written inside its namespaces"
            return
        job = {"gap": 1.0 / rate, "frames": [{"id": p.id, "iface": p.iface, "hex": p.frame.hex()} for p in probes]}
        r = transport.run(node.target, remote_command(WRITE, [key[1], WRITER]), input=json.dumps(job).encode(),
                          timeout=60 + len(probes) / rate)
        try:
            res = json.loads(r.stdout.decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            why = "no python3" if b"@error no python3" in r.stdout else ssh_error(r.stderr)
            for p in probes:
                errors[p.id] = f"{node.name}: frame writer failed: {why}"
            return
        for pid, why in res.get("errors", {}).items():
            errors[pid] = f"{node.name}: {why}"

    each_node(one, list(jobs))
    return errors


def read_seen(files: Sequence[Path], vxlan_port: int) -> list[Seen]:
    """The TCP packets of the verify pcaps (innermost headers; VXLAN outer destination and VNI kept)."""
    from meshpkt.decode import read
    from meshpkt.decode.addr import ip4_str

    files = [f for f in files if f.exists() and f.stat().st_size > 24]
    if not files:
        return []
    df = read([(f.name[:-5], f) for f in files], vxlan_ports=(vxlan_port,))
    import numpy as np

    df = df[df["tcp_flags"] >= 0]
    vx = (df["vni"] >= 0).to_numpy()

    def pick(name: str) -> Any:
        return np.where(vx, df["inner_" + name].to_numpy(), df["outer_" + name].to_numpy())

    src, dst, vtep = ip4_str(pick("src")), ip4_str(pick("dst")), ip4_str(df["outer_dst"].to_numpy())
    sport, dport, vni = pick("sport"), pick("dport"), df["vni"].to_numpy()
    points, flags, seqs = df["point"].astype(str).to_numpy(), df["tcp_flags"].to_numpy(), df["tcp_seq"].to_numpy()
    out = []
    for i in range(len(df)):  # a verify run captures a few hundred probe packets, not a bulk path
        out.append(Seen(str(points[i]), str(src[i]), int(sport[i]), str(dst[i]), int(dport[i]), int(flags[i]),
                        int(seqs[i]), (str(vtep[i]), int(vni[i])) if vx[i] else None))
    return out


def _prepare(nodes: Sequence[str], transport: Any, work: Path, say: Progress) -> tuple[Any, Cluster]:
    from meshpkt.remote.collect import collect_remote
    from meshpkt.remote.discover import discover
    from meshpkt.remote.target import targets_from
    from meshpkt.rules.model import load_dumps

    targets = targets_from(nodes)
    say(f"discovering {len(targets)} nodes over SSH")
    infos = discover(transport, targets)
    bad = [f"{n.target.label}: {n.error}" for n in infos if n.error]
    if len(bad) == len(infos):
        raise UsageError("no node reachable: " + "; ".join(bad))
    ok = [n for n in infos if not n.error]
    say("collecting the rules of every node")
    rep = collect_remote(work / "dumps", transport, [n.target for n in ok], {n.target: n.name for n in ok})
    cluster = Cluster(ok, load_dumps(work / "dumps"))
    return bad + [n for n in rep.notes if "cannot connect" in n], cluster


def verify_cluster(nodes: Sequence[str], *, ssh_config: str | Path | None = None, dry_run: bool = False,
                   keep: str | Path | None = None, rate: float = 20.0, seed: int | None = None,
                   progress: Progress | None = None, show: Callable[[str], None] | None = None) -> VerifyReport:
    """Verify the cluster made of ``nodes`` (``[USER@]HOST[:PORT]``); see the module docstring.
    ``show`` receives one line per probe in a dry run."""
    from meshpkt.remote.ssh import Transport

    if not 0 < rate <= MAX_RATE:
        raise UsageError(f"rate must be in (0, {MAX_RATE:g}] probes/s")
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    transport = Transport(ssh_config=Path(ssh_config) if ssh_config else None)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="meshpkt-verify-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        notes, cluster = _prepare(nodes, transport, work, say)
        first = cluster.underlay_ip(cluster.nodes[0]) or cluster.nodes[0].target.host
        plan = plan_remote(cluster, origin=local_address(first), seed=seed)
        check_scope(plan, cluster)
        report = VerifyReport(lab="cluster " + ",".join(n.name for n in cluster.nodes), lb="remote",
                              checks=plan.checks, probes=len(plan.probes), seconds=0.0,
                              keep=str(work) if keep else None, notes=notes + plan.notes)
        if dry_run:
            for p in plan.probes:
                where = "from here" if p.kind == "conn" else f"written on {p.entry} {p.netns} {p.iface}"
                what = (f"{p.src}:{p.sport} > {p.dst}:{p.dport} TCP connect (RST after the SYN-ACK)"
                        if p.kind == "conn" else p.summary())
                (show or print)(f"would send {p.id} ({p.group}, {where}): {what}")
            for c in plan.checks:
                c.verdict, c.reason = UNTESTED, "dry run: nothing sent"
            report.notes.append(f"dry run: {len(plan.probes)} probes listed, nothing sent")
        else:
            _probe(transport, cluster, plan, work, rate, say)
        report.seconds = time.monotonic() - t0
        return report
    finally:
        transport.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _probe(transport: Any, cluster: Cluster, plan: RemotePlan, work: Path, rate: float, say: Progress) -> None:
    from meshpkt.remote.capture import Limits, hang_up, plan_sessions, start_sessions, stop_sessions

    problems: list[str] = []
    sessions = plan_sessions(cluster.nodes, (), probe_filter(), problems)
    pcap = work / "pcap"
    pcap.mkdir(parents=True, exist_ok=True)
    try:
        start_sessions(transport, sessions, pcap, Limits(max_bytes=20 << 20, hard_seconds=600), problems)
        say(f"probing: {len(plan.probes)} probes, taps at "
            f"{sum(st == 'listening' for s in sessions for st in s.tap_state.values())} points")
        writer_errors = send_frames(transport, cluster, plan, rate)
        send_conns(plan, rate)
        time.sleep(0.5)
        stop_sessions(sessions)
    except BaseException:
        hang_up(sessions)
        raise
    port = next((i.vxlan_port for n in cluster.nodes for ns in n.namespaces for i in ns.interfaces if i.vxlan_port),
                None) or 4789
    say("decoding captures and judging")
    seen = read_seen(sorted(pcap.glob("*.pcap")), port)
    judge_remote(plan, seen, writer_errors)
    for c in plan.checks:
        if c.verdict == UNTESTED and problems and not c.reason:
            c.reason = "; ".join(problems)


def checks_of(report: VerifyReport) -> list[Check]:
    """The report's rows (for tests)."""
    return list(report.checks)
