"""Cut a terminal transcript (a seed, a pasted session) into ``(node, namespace, command, output)``
chunks, and recognise which dump each command produced.

Prompts recognised: ``[root@centos7-10 ~]# cmd``, ``root@node1:~# cmd``, ``host:~ user$ cmd``,
and bare ``$ cmd`` / ``# cmd`` when the command starts with a known tool. The namespace comes
from the command prefix (``ip netns exec X``, ``ip -n X``, ``nsenter --net=/var/run/docker/netns/X``,
``docker exec C``, ``sh docker_netns.sh X``); a bare ``nsenter --net=...`` (or ``ip netns exec X bash``)
switches the namespace of the following commands until ``exit``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "host"
"""Namespace name used for a node's root namespace."""

_PROMPTS = [
    re.compile(r"^\s*\[(?P<user>[\w.-]+)@(?P<host>[\w.-]+)[^\]]*\]\s*[#$]\s?(?P<cmd>.*)$"),
    re.compile(r"^(?P<user>[\w.-]+)@(?P<host>[\w.-]+):[^#$\s]*\s?[#$]\s?(?P<cmd>.*)$"),
    re.compile(r"^(?P<host>[\w.-]+):\S*\s+(?P<user>[\w.-]+)\$\s?(?P<cmd>.*)$"),
]
_BARE_PROMPT = re.compile(r"^\s*[#$]\s+(?P<cmd>\S.*)$")
_KNOWN_TOOLS = {"iptables", "iptables-save", "iptables-legacy", "iptables-legacy-save", "iptables-nft",
                "iptables-nft-save", "ip", "ipvsadm", "nsenter", "bridge", "docker", "nft", "brctl", "ls", "cat",
                "sh", "bash", "curl", "tcpdump", "ln", "ifconfig", "sysctl", "ss", "conntrack", "exit", "sudo"}
_SHELLS = {"sh", "bash", "zsh", "ash", "/bin/sh", "/bin/bash"}
_NSENTER_LINE = re.compile(r"^\s*nsenter\s+(?:-n\s+|--net[= ])(\S+)\s*$")
_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


@dataclass
class Chunk:
    """One command of a transcript and its output.

    ``node`` is the prompt's host name (None for bare prompts), ``namespace`` the network
    namespace the command ran in (``"host"`` = root namespace), ``command`` the command without
    its namespace prefix, ``raw_command`` as typed, ``line`` the 1-based line of the prompt.
    """

    node: str | None
    namespace: str
    command: str
    raw_command: str
    output: str
    line: int
    skipped: list[str] = field(default_factory=list)


def _prompt(line: str) -> tuple[str | None, str] | None:
    for rx in _PROMPTS:
        m = rx.match(line)
        if m:
            return m.group("host"), m.group("cmd").strip()
    m = _BARE_PROMPT.match(line)
    if m:
        cmd = m.group("cmd").strip()
        first = cmd.split()[0] if cmd.split() else ""
        if first in _KNOWN_TOOLS:
            return None, cmd
    return None


def _is_prose(line: str) -> bool:
    s = line.strip()
    if not s or s.startswith("//") or s.startswith("#"):
        return False
    return bool(_CJK.search(s)) or s.startswith("•")


def strip_netns(command: str) -> tuple[str | None, str]:
    """``"ip netns exec X iptables -L"`` -> ``("X", "iptables -L")``; no prefix -> ``(None, command)``.
    ``nsenter --net=/var/run/docker/netns/X cmd`` -> X; ``docker exec [-it] C cmd`` -> ``"container:C"``."""
    try:
        toks = shlex.split(command)
    except ValueError:
        toks = command.split()
    if toks and toks[0] == "sudo":
        toks = toks[1:]
    if not toks:
        return None, command
    ns: str | None = None
    rest: list[str] = toks
    if toks[:3] == ["ip", "netns", "exec"] and len(toks) >= 4:
        ns, rest = toks[3], toks[4:]
    elif toks[0] == "ip" and len(toks) >= 3 and toks[1] in ("-n", "-netns", "--netns"):
        ns, rest = toks[2], ["ip"] + toks[3:]
    elif toks[0] == "nsenter":
        i = 1
        while i < len(toks):
            t = toks[i]
            if t.startswith("--net="):
                ns = t.split("=", 1)[1].rstrip("/").rsplit("/", 1)[-1]
            elif t in ("--net", "-n") and i + 1 < len(toks) and "/" in toks[i + 1]:
                ns = toks[i + 1].rstrip("/").rsplit("/", 1)[-1]
                i += 1
            elif t == "--":
                i += 1
                break
            elif not t.startswith("-"):
                break
            i += 1
        rest = toks[i:]
    elif toks[0] == "docker" and len(toks) >= 3 and toks[1] == "exec":
        i = 2
        while i < len(toks) and toks[i].startswith("-"):
            i += 2 if toks[i] in ("-e", "-u", "-w", "--env", "--user", "--workdir") else 1
        if i < len(toks):
            ns, rest = f"container:{toks[i]}", toks[i + 1:]
    elif toks[0] in ("sh", "bash") and len(toks) >= 3 and toks[1].endswith("docker_netns.sh"):
        ns, rest = toks[2], toks[3:]
    if ns is None:
        return None, command
    return ns, " ".join(shlex.quote(t) if (" " in t or not t) else t for t in rest)


def split_transcript(text: str, stop_at_prose: bool = True) -> list[Chunk]:
    """Cut ``text`` at prompt lines. With ``stop_at_prose``, a command's output also ends at the
    first line of prose (CJK text or a ``•`` bullet, not ``//`` comments) so article text between
    commands does not reach the parsers."""
    chunks: list[Chunk] = []
    cur: Chunk | None = None
    out: list[str] = []
    stopped = False
    shell_ns: dict[str | None, str] = {}  # node -> namespace entered with a bare nsenter / netns exec shell

    def close() -> None:
        nonlocal cur, out
        if cur is not None:
            cur.output = "\n".join(out).strip("\n") + ("\n" if out else "")
            chunks.append(cur)
        cur, out = None, []

    for lineno, line in enumerate(text.splitlines(), start=1):
        p = _prompt(line)
        if p is not None:
            close()
            stopped = False
            node, raw = p
            ns, cmd = strip_netns(raw)
            first = cmd.split()[0] if cmd.split() else ""
            if ns is not None and not ns.startswith("container:") and (not cmd.strip() or first in _SHELLS):
                shell_ns[node] = ns  # entering a namespace shell (same prompt, other netns)
            elif raw.strip() == "exit" and node in shell_ns:
                shell_ns.pop(node)
            if ns is None:
                ns = shell_ns.get(node, HOST)
            cur = Chunk(node=node, namespace=ns, command=cmd, raw_command=raw, output="", line=lineno)
            continue
        m = _NSENTER_LINE.match(line)
        if m and (cur is None or stopped):
            # "nsenter --net=/var/run/docker/netns/X" quoted in prose: the following bare prompts run there
            shell_ns[None] = m.group(1).rstrip("/").rsplit("/", 1)[-1]
            continue
        if cur is None:
            continue
        if stopped:
            continue
        if stop_at_prose and _is_prose(line):
            stopped = True
            continue
        out.append(line)
    close()
    return chunks


@dataclass(frozen=True)
class DumpKind:
    """What a command printed: ``kind`` (see :data:`KINDS`) and options (table, device...)."""

    kind: str
    table: str | None = None
    dev: str | None = None


KINDS = ("iptables-save", "iptables-list", "nft-json", "ipvsadm-list", "ipvsadm-save", "ipvsadm-conns",
         "bridge-fdb", "ip-link", "ip-json", "ip-route", "ip-neigh", "docker-network", "docker-service")


def _iptables_save(args: list[str]) -> DumpKind | None:
    table = None
    for i, a in enumerate(args[:-1]):
        if a in ("-t", "--table"):
            table = args[i + 1]
    return DumpKind("iptables-save", table=table)


def _iptables(args: list[str]) -> DumpKind | None:
    table = "filter"
    listing = save = False
    for i, a in enumerate(args):
        if a in ("-t", "--table") and i + 1 < len(args):
            table = args[i + 1]
        elif a.startswith("-t") and not a.startswith("--") and len(a) > 2:
            table = a[2:]
        elif a in ("--list", "-L"):
            listing = True
        elif a in ("--list-rules", "-S"):
            save = True
        elif re.fullmatch(r"-[a-zA-Z]+", a):
            listing = listing or "L" in a
            save = save or "S" in a
    if listing:
        return DumpKind("iptables-list", table=table)
    return DumpKind("iptables-save", table=table) if save else None


def _nft(args: list[str]) -> DumpKind | None:
    return DumpKind("nft-json") if ("-j" in args or "--json" in args) and "list" in args else None


def _ipvsadm(args: list[str]) -> DumpKind | None:
    short = "".join(a[1:] for a in args if re.fullmatch(r"-[a-zA-Z]+", a))
    longs = set(a for a in args if a.startswith("--"))
    if "S" in short or "--save" in longs:
        return DumpKind("ipvsadm-save")
    if "c" in short or "--connection" in longs:
        return DumpKind("ipvsadm-conns")
    if "L" in short or "l" in short or "--list" in longs or not args:
        return DumpKind("ipvsadm-list")
    return None


def _bridge(args: list[str]) -> DumpKind | None:
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] != "fdb" or (len(words) > 1 and words[1] not in ("show", "list", "ls", "dev")):
        return None
    dev = None
    if "dev" in words:
        i = words.index("dev")
        dev = words[i + 1] if i + 1 < len(words) else None
    return DumpKind("bridge-fdb", dev=dev)


def _ip(args: list[str]) -> DumpKind | None:
    flags = [a for a in args if a.startswith("-")]
    ip_words = [a for a in args if not a.startswith("-")]
    if not ip_words:
        return None
    obj = ip_words[0]
    json_out = any(f in ("-j", "-json", "--json") or bool(re.fullmatch(r"-[a-z]{2,3}", f) and "j" in f)
                   for f in flags)
    if obj in ("l", "li", "lin", "link", "a", "ad", "add", "addr", "addre", "addres", "address"):
        return DumpKind("ip-json" if json_out else "ip-link")
    if obj in ("r", "ro", "rou", "route"):
        return None if json_out else DumpKind("ip-route")
    if obj in ("n", "ne", "nei", "neigh", "neighbor", "neighbour"):
        return None if json_out else DumpKind("ip-neigh")
    return None


def _docker(args: list[str]) -> DumpKind | None:
    if len(args) < 2 or args[1] != "inspect" or any(a.startswith("--format") or a == "-f" for a in args):
        return None
    if args[0] == "network":
        return DumpKind("docker-network")
    if args[0] == "service" and "--pretty" not in args:
        return DumpKind("docker-service")
    return None


_TOOLS: dict[str, Callable[[list[str]], DumpKind | None]] = {
    **dict.fromkeys(("iptables-save", "iptables-legacy-save", "iptables-nft-save"), _iptables_save),
    **dict.fromkeys(("iptables", "iptables-legacy", "iptables-nft"), _iptables),
    "nft": _nft, "ipvsadm": _ipvsadm, "bridge": _bridge, "ip": _ip, "docker": _docker,
}


def classify_command(command: str) -> DumpKind | None:
    """Which parser reads the output of ``command`` (namespace prefix already stripped); None
    when meshpkt has no parser for it."""
    try:
        toks = shlex.split(command)
    except ValueError:
        toks = command.split()
    if toks and toks[0] == "sudo":
        toks = toks[1:]
    if not toks:
        return None
    tool = _TOOLS.get(toks[0].rsplit("/", 1)[-1])
    return tool(toks[1:]) if tool is not None else None
