"""`meshpkt capture`: tcpdump at every hop of every node of a real cluster, over SSH."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from meshpkt.errors import UsageError

NODE_HELP = "Node to reach: [USER@]HOST[:PORT] (repeatable, or comma-separated); HOST may be an ssh_config alias."


def transport_from(ssh_config: Path | None, connect_timeout: float, control: bool) -> Any:
    """The SSH transport for the CLI options."""
    from meshpkt.remote.ssh import Transport

    return Transport(ssh_config=ssh_config, connect_timeout=connect_timeout, control=control)


def _ports(service: str | None, transport: Any, targets: list[Any]) -> list[int]:
    if service is None:
        return []
    words = [w for w in service.replace(",", " ").split() if w]
    if words and all(w.isdigit() and 0 < int(w) < 65536 for w in words):
        return [int(w) for w in words]
    from meshpkt.remote.scripts import remote_command

    fmt = "{{range .Endpoint.Ports}}{{.PublishedPort}} {{end}}"
    for t in targets:
        r = transport.run(t, remote_command('docker service inspect --format "$1" "$2"', [fmt, service]),
                          timeout=30)
        ports = [int(w) for w in r.stdout.decode(errors="replace").split() if w.isdigit()]
        if r.returncode == 0 and ports:
            return ports
    raise UsageError(f"--service {service}: no node's docker CLI knows a service with published ports by that "
                     "name; give its published port(s) instead (--service 9090)")


def capture_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for <node>.<namespace>.<iface>.pcap, "
                                      "status.json and dumps/.")],
    node: Annotated[list[str] | None, typer.Option("--node", help=NODE_HELP)] = None,
    inventory: Annotated[Path | None, typer.Option("--inventory", help="File listing nodes, one per line.")] = None,
    ssh_config: Annotated[Path | None, typer.Option("--ssh-config", help="ssh_config file (ssh -F).")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Capture for S seconds.")] = None,
    packets: Annotated[int | None, typer.Option("--packets", help="Stop each tap after N packets "
                                                "(and all when every tap has them).")] = None,
    until_ctrl_c: Annotated[bool, typer.Option("--until-ctrl-c", help="Capture until Ctrl-C.")] = False,
    service: Annotated[str | None, typer.Option("--service", help="Only this service's traffic: a service name "
                                                "(needs the docker CLI on a node) or its published port(s).")] = None,
    bpf: Annotated[str | None, typer.Option("--filter", help="pcap-filter expression ANDed on every tap.")] = None,
    snaplen: Annotated[int, typer.Option("--snaplen", help="Bytes kept per packet.")] = 262144,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Stop a tap when its file reaches this many MB.")] = 200,
    hard_limit: Annotated[int, typer.Option("--hard-limit", help="Nodes stop their tcpdumps after this many "
                                            "seconds, whatever happens.")] = 3600,
    collect: Annotated[bool, typer.Option("--collect/--no-collect", help="Also bring back the rule dumps "
                                          "(OUT/dumps).")] = True,
    connect_timeout: Annotated[float, typer.Option("--connect-timeout", help="SSH connect timeout (s).")] = 5,
    control: Annotated[bool, typer.Option("--control-master", help="Share one SSH connection per node.")] = False,
) -> None:
    """Capture at every hop of every node at once over SSH (sshd, sh, nsenter, tcpdump on the nodes);
    `meshpkt analyze OUT` then reads the result. Exit 1 when a node could not be captured, 2 when none."""
    from meshpkt.remote.capture import Limits, capture_remote
    from meshpkt.remote.target import targets_from

    if sum(x is not None for x in (duration, packets)) + until_ctrl_c == 0:
        raise UsageError("say when to stop: --duration S, --packets N or --until-ctrl-c")
    if snaplen < 64 or max_mb <= 0 or (duration is not None and duration <= 0) or (packets is not None and packets < 1):
        raise UsageError("--snaplen must be >= 64, --max-mb, --duration and --packets positive")
    targets = targets_from(node or [], inventory)
    transport = transport_from(ssh_config, connect_timeout, control)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        ports = _ports(service, transport, targets)
        lim = Limits(duration=duration, packets=packets, max_bytes=int(max_mb * 1024 * 1024),
                     hard_seconds=hard_limit, snaplen=snaplen)
        res = capture_remote(
            transport, targets, out, limits=lim, until_interrupt=until_ctrl_c, ports=ports, bpf=bpf, collect=collect,
            on_problem=lambda p: print(f"meshpkt: {p}", file=sys.stderr, flush=True),
            on_capturing=lambda taps, nodes: print(
                f"capturing at {taps} taps on {nodes} nodes" + (" (Ctrl-C to stop)" if until_ctrl_c else ""),
                file=sys.stderr, flush=True))
    finally:
        transport.close()
    _render(res)
    if not res.points:
        raise typer.Exit(2)
    if res.problems:
        raise typer.Exit(1)


def _render(res: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    tbl = Table("point", "packets", "dropped", "bytes", title=f"captured into {res.out}")
    for p in res.points:
        tbl.add_row(p["point"], str(p["packets"] if p["packets"] is not None else "?"), str(p["dropped"] or 0),
                    str(p["bytes"]))
    Console().print(tbl)
    tail = f"{len(res.points)} capture points from {len(res.nodes)} nodes"
    if res.interrupted:
        tail += " (stopped by Ctrl-C)"
    print(tail + (f"; {len(res.problems)} problem(s)" if res.problems else ""), file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``meshpkt capture`` to the main app."""
    app.command("capture")(capture_cmd)
