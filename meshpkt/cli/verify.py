"""`meshpkt verify`: prove each rule of a lab's routing mesh with crafted probes (needs root)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from meshpkt.verify.types import VerifyReport

_STYLE = {"PASS": "bold green", "FAIL": "bold red", "UNTESTED": "bold yellow"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command("verify")
    def verify_cmd(
        lab: Annotated[str | None, typer.Option("--lab", "-l", help="Lab to verify [default: the only lab that is up].")
                       ] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="Output: table | json.")] = "table",
        keep: Annotated[Path | None, typer.Option("--keep", help="Keep dumps, pcaps (one per capture point) and "
                                                  "verify.json in this directory.")] = None,
        rule: Annotated[list[str] | None, typer.Option(
            "--rule", "-r", help="Only rules whose id matches (glob or substring; repeatable): dnat, "
                                 "'fdb:node1*', my-web.2, mtu ...")] = None,
        target_cluster: Annotated[str | None, typer.Option(
            "--target-cluster", help="Verify a real cluster over SSH: its nodes [USER@]HOST[:PORT], comma-separated "
                                     "(explicit opt-in: only these nodes and their Docker networks are probed).")
        ] = None,
        ssh_config: Annotated[Path | None, typer.Option("--ssh-config", help="ssh_config file (ssh -F) for "
                                                        "--target-cluster.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="With --target-cluster: print every probe, "
                                              "send nothing.")] = False,
    ) -> None:
        """Inject crafted probes into the lab and prove every rule on every expected path, hop by hop:
        host DNAT, sbox MARK, LB, SNAT (TCP SYNs and UDP datagrams per published port), each overlay fdb
        entry, each underlay link, each task REDIRECT, each task server, unpublished ports, VIP MARKs,
        dnsrr tasks, IPsec policies and states of encrypted overlays, and the path MTU.

        Exit status: 0 every rule passed, 1 a rule failed or could not be tested, 2 usage/permission error.
        """
        from meshpkt.errors import UsageError

        if fmt not in ("table", "json"):
            raise UsageError(f"--format must be table or json, not {fmt!r}")
        from rich.console import Console

        err = Console(stderr=True)
        from meshpkt.verify import verify

        report = verify(lab, keep=keep, rules=rule, target_cluster=target_cluster, ssh_config=ssh_config,
                        dry_run=dry_run, show=lambda line: print(line, file=sys.stderr),
                        progress=(lambda m: err.print(f"[dim]verify: {m}[/dim]")) if fmt == "table" else None)
        if dry_run and target_cluster:
            raise typer.Exit(0)
        if fmt == "json":
            print(json.dumps(report.to_dict(), indent=1))
        else:
            render(report)
        raise typer.Exit(report.exit_code())


def render(report: VerifyReport) -> None:
    """Print the report as a rich table, the failures in full, and a summary line."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console() if sys.stdout.isatty() else Console(width=220)
    t = Table(show_lines=False, header_style="bold", pad_edge=False)
    t.add_column("verdict", no_wrap=True)
    t.add_column("rule", no_wrap=True)
    t.add_column("where", overflow="fold")
    t.add_column("rule text", overflow="fold", max_width=60)
    t.add_column("before -> after", overflow="fold")
    t.add_column("Δpkts", justify="right", no_wrap=True)
    for c in report.checks:
        ev = ""
        if c.before is not None:
            ev = str(c.before)
        if c.after is not None:
            ev += f"\n-> {c.after}"
        if c.verdict != "PASS" and c.reason:
            ev += f"\n{c.reason}"
        d = c.counter_delta
        t.add_row(Text(c.verdict, style=_STYLE.get(c.verdict, "")), c.id, f"{c.namespace}\n{c.where}", c.rule,
                  ev.strip(), "-" if d is None else f"+{d}")
    con.print(t)
    fails = report.failures
    if fails:
        con.print(Text(f"{len(fails)} rule(s) FAILED:", style="bold red"))
        for c in fails:
            con.print(f"  [red]✗[/red] {c.message}", highlight=False, soft_wrap=True)
    counts = report.counts()
    con.print(f"lab {report.lab} ({report.lb}): {len(report.checks)} rules, "
              f"[green]{counts['PASS']} PASS[/green], [red]{counts['FAIL']} FAIL[/red], "
              f"[yellow]{counts['UNTESTED']} UNTESTED[/yellow]; {report.probes} probes in {report.seconds:.1f} s"
              + (f"; kept in {report.keep}" if report.keep else ""), highlight=False)
    for n in report.notes:
        con.print(f"[dim]note: {n}[/dim]")
