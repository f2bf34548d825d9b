"""`meshpkt collect DIR --node HOST ...`: the rule dumps of every node, over SSH (see docs/remote.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def collect_remote_cmd(out: str, nodes: list[str], inventory: str | None, ssh_config: str | None,
                       fmt: str) -> None:
    """Collect over SSH and render; exit 1 when a node could not be collected, 2 when none."""
    from rich.console import Console
    from rich.table import Table

    from meshpkt.remote.collect import collect_remote
    from meshpkt.remote.ssh import Transport
    from meshpkt.remote.target import targets_from

    targets = targets_from(nodes, inventory)
    transport = Transport(ssh_config=Path(ssh_config) if ssh_config else None)
    rep = collect_remote(out, transport, targets)
    failed = [n for n in rep.notes if ": cannot connect" in n or "cut short" in n]
    if fmt == "json":
        typer.echo(json.dumps(rep.to_dict(), indent=2))
    else:
        tbl = Table(title=f"collected into {rep.out}")
        for col in ("node", "namespace", "role", "ok", "missing / failed"):
            tbl.add_column(col, overflow="fold")
        for ns in rep.namespaces:
            ok = [r.file for r in ns.results if r.status == "ok"]
            bad = [f"{r.argv[0]}: {r.status}" for r in ns.results if r.status != "ok"]
            tbl.add_row(ns.target.node, ns.target.name, str(ns.target.role), str(len(ok)), ", ".join(sorted(set(bad))))
        Console().print(tbl)
    for n in rep.notes:
        print(("meshpkt: " if n in failed else "note: ") + n, file=sys.stderr)
    if not rep.namespaces:
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(1)
