"""Nodes to reach: ``[USER@]HOST[:PORT]`` (also ``[USER@][v6addr]:PORT``) and inventory files. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from meshpkt.errors import UsageError

_HOST_RE = re.compile(r"^[A-Za-z0-9_.%:-]+$")


@dataclass(frozen=True)
class Target:
    """One node as the user named it. ``host`` may be an ssh_config alias; ``label`` is how it was written."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        """The node as written (``root@node1:2222``), for messages."""
        text = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{self.user}@" if self.user else "") + text + (f":{self.port}" if self.port else "")


def parse_target(text: str) -> Target:
    """``[USER@]HOST[:PORT]`` -> Target; raises UsageError on anything else."""
    s = text.strip()
    user, sep, rest = s.rpartition("@")
    if not sep:
        user, rest = "", s
    port: str | None = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else (None if not tail else "x")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest
    if not host or not _HOST_RE.match(host) or host.startswith("-") or (sep and not user):
        raise UsageError(f"bad node {text!r}: expected [USER@]HOST[:PORT]")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"bad node {text!r}: port must be 1-65535")
    return Target(host, user or None, int(port) if port else None)


def parse_inventory(text: str) -> list[Target]:
    """One node per line (``[USER@]HOST[:PORT]``, several per line separated by spaces or commas);
    ``#`` starts a comment; an Ansible-style ``[group]`` header line is ignored."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or (line.startswith("[") and line.endswith("]") and "]:" not in line):
            continue
        for word in re.split(r"[\s,]+", line):
            if word and "=" not in word:
                out.append(parse_target(word))
    return out


def load_inventory(path: str | Path) -> list[Target]:
    """Read an inventory file (see :func:`parse_inventory`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UsageError(f"{p}: no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read inventory ({exc})") from None
    targets = parse_inventory(text)
    if not targets:
        raise UsageError(f"{p}: no node in inventory")
    return targets


def targets_from(nodes: Iterable[str], inventory: str | Path | None = None) -> list[Target]:
    """``--node`` values (each may hold several comma-separated nodes) plus an inventory; no duplicates."""
    out: list[Target] = []
    for n in nodes:
        out += [parse_target(w) for w in n.split(",") if w.strip()]
    if inventory is not None:
        out += load_inventory(inventory)
    seen: set[Target] = set()
    uniq = [t for t in out if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
    if not uniq:
        raise UsageError("no node given (use --node [USER@]HOST[:PORT] or --inventory FILE)")
    return uniq
