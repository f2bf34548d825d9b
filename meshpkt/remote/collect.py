"""``meshpkt collect DIR --node HOST ...``: the rule dumps of :mod:`meshpkt.rules.collect`, taken over SSH.

The same files in the same layout (``DIR/<node>/<namespace>/iptables-save.txt`` ..., ``namespace.json``,
``DIR/collect.json``), so ``rules explain/show`` and ``verify --target-cluster`` read them unchanged.
One SSH session per node runs :data:`meshpkt.remote.scripts.COLLECT`; nodes are collected concurrently
and an unreachable node is one note, not the end of the collection.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from meshpkt.remote.discover import NodeInfo, name_nodes
from meshpkt.remote.scripts import COLLECT, remote_command
from meshpkt.remote.ssh import Transport, each_node, ssh_error
from meshpkt.remote.target import Target
from meshpkt.rules.collect import (
    NS_COMMANDS,
    CollectReport,
    CommandResult,
    NamespaceReport,
    NamespaceTarget,
    redact_xfrm_keys,
)
from meshpkt.rules.model import role_from_name

_ARGV = dict(NS_COMMANDS) | {"iptables-legacy-save.txt": ["iptables-legacy-save", "-c"]}


@dataclass
class Blob:
    """One framed command result from the node: namespace, file, status, exit code, stdout, stderr."""

    namespace: str
    file: str
    status: str
    returncode: int
    out: bytes
    err: bytes


@dataclass
class NodeDump:
    """What came back from one node."""

    target: Target
    hostname: str = ""
    blobs: list[Blob] = field(default_factory=list)
    error: str | None = None


def read_exact(fh: BinaryIO, n: int) -> bytes:
    """Exactly ``n`` bytes (fewer only at end of stream)."""
    parts, left = [], n
    while left > 0:
        chunk = fh.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def parse_collect(target: Target, stream: BinaryIO) -> NodeDump:
    """Parse the COLLECT script's framed output (pure over a byte stream)."""
    dump = NodeDump(target)
    ended = False
    for raw in iter(stream.readline, b""):
        words = raw.decode(errors="replace").split()
        if not words:
            continue
        if words[0] == "@hostname" and len(words) > 1:
            dump.hostname = words[1].split(".")[0]
        elif words[0] == "@res" and len(words) == 7:
            ns, fname, status, rc, osz, esz = words[1:]
            out, err = read_exact(stream, int(osz)), read_exact(stream, int(esz))
            dump.blobs.append(Blob(ns, fname, status, int(rc), out, err))
        elif words[0] == "@error":
            dump.error = " ".join(words[1:])
        elif words[0] == "@end":
            ended = True
    if not ended and dump.error is None:
        dump.error = "collection output cut short"
    return dump


def write_node(root: Path, node: str, dump: NodeDump) -> list[NamespaceReport]:
    """Write one node's dumps in :mod:`meshpkt.rules.collect`'s layout; returns the per-namespace reports."""
    reports: dict[str, NamespaceReport] = {}
    node_dir = root / node
    for b in dump.blobs:
        if b.file.startswith("docker-"):
            node_dir.mkdir(parents=True, exist_ok=True)
            if b.status == "ok":
                (node_dir / b.file).write_bytes(b.out)
            continue
        rep = reports.get(b.namespace)
        if rep is None:
            path = None if b.namespace == "host" else f"/var/run/docker/netns/{b.namespace}"
            rep = reports[b.namespace] = NamespaceReport(NamespaceTarget(node, b.namespace, path,
                                                                         role_from_name(b.namespace)))
        d = node_dir / b.namespace
        d.mkdir(parents=True, exist_ok=True)
        argv = _ARGV.get(b.file, [b.file])
        err = b.err.decode(errors="replace").strip()
        if b.status == "ok":
            text = b.out.decode(errors="replace")
            if b.file == "ip-xfrm-state.txt":  # already redacted on the node; never keep key material
                text = redact_xfrm_keys(text)
            if b.file.startswith("iptables"):
                warn = [ln for ln in err.splitlines() if ln.lstrip().lower().startswith("# warning")]
                text = "".join(w + "\n" for w in warn) + text
            (d / b.file).write_text(text, encoding="utf-8")
        rep.results.append(CommandResult(b.file, argv, b.status, b.returncode,
                                         f"{argv[0]} not installed" if b.status == "missing" else err[:500]))
    for rep in reports.values():
        t = rep.target
        meta = {"node": t.node, "name": t.name, "netns": t.path, "role": str(t.role), "role_from": t.role_from,
                "commands": [asdict(r) for r in rep.results], "remote": dump.target.label}
        (node_dir / t.name / "namespace.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return list(reports.values())


def fetch_dumps(transport: Transport, targets: Sequence[Target], timeout: float = 300.0) -> list[NodeDump]:
    """Run the collection on every node concurrently."""
    def one(t: Target) -> NodeDump:
        r = transport.run(t, remote_command(COLLECT), timeout=timeout)
        if r.returncode == 255 and b"@hostname" not in r.stdout:
            return NodeDump(t, error=f"cannot connect over SSH: {ssh_error(r.stderr)}")
        return parse_collect(t, io.BytesIO(r.stdout))

    return each_node(one, list(targets))


def collect_remote(out: str | Path, transport: Transport, targets: Sequence[Target],
                   names: dict[Target, str] | None = None) -> CollectReport:
    """Dump every namespace of every node into ``out/<node>/<namespace>/``; ``names`` maps targets to node
    names (default: each node's host name, the target when they clash). Notes say which node failed."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    dumps = fetch_dumps(transport, targets)
    if names is None:
        infos = [NodeInfo(d.target, hostname=d.hostname) for d in dumps]
        name_nodes(infos)
        names = {i.target: i.name for i in infos}
    report = CollectReport(out=str(root))
    for d in dumps:
        node = names.get(d.target, d.target.host)
        if d.error and not d.blobs:
            report.notes.append(f"{d.target.label}: {d.error}")
            continue
        if d.error:
            report.notes.append(f"{d.target.label}: {d.error}")
        report.namespaces += write_node(root, node, d)
    missing = sorted({r.argv[0] for ns in report.namespaces for r in ns.results if r.status == "missing"})
    if missing:
        report.notes.append(f"not installed, skipped: {', '.join(missing)}")
    (root / "collect.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
