"""`meshpkt analyze`: decode captures, reconstruct connections, render tables or exports."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.flows import Analysis

#: Inputs smaller than this get no progress bar (they are done before one would be drawn).
PROGRESS_MIN_BYTES = 16 * 1024 * 1024


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    parquet = "parquet"


class Engine(StrEnum):
    local = "local"
    partitioned = "partitioned"
    dask = "dask"


def parse_capture_args(items: list[str]) -> list[Any]:
    """``PATH`` or ``POINT=PATH`` -> path or (point, path)."""
    out: list[Any] = []
    for item in items:
        if "=" in item and not Path(item).exists():
            point, _, path = item.partition("=")
            if not point or not path:
                raise UsageError(f"{item!r}: expected PATH or POINT=PATH")
            out.append((point, path))
        else:
            out.append(item)
    return out


def _progress_bar(total_hint: int) -> tuple[AbstractContextManager[Any], Any]:
    """A rich progress bar on stderr (bytes, bytes/s, packets, packets/s) for large inputs read
    from a terminal; ``(nullcontext(), None)`` otherwise."""
    if total_hint < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return nullcontext(), None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TextColumn("{task.fields[packets]:,} packets"),
                    TextColumn("{task.fields[pps]:,.0f} packets/s"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)
    task = prog.add_task("decoding", total=total_hint, packets=0, pps=0.0)

    def update(done: int, total: int, packets: int) -> None:
        elapsed = prog.tasks[0].elapsed or 0.0
        prog.update(task, completed=done, total=total, packets=packets,
                    pps=packets / elapsed if elapsed > 0 else 0.0)

    return prog, update


def _input_size(captures: list[Any]) -> int:
    total = 0
    for c in captures:
        p = Path(c[1] if isinstance(c, tuple) else c)
        try:
            if p.is_dir():
                total += sum(f.stat().st_size for f in p.iterdir() if f.is_file())
            elif p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def run_analysis(captures: list[str], topology: Path | None, vxlan_ports: list[int] | None,
                 clock: bool = True, engine: str = "local", workers: int | None = None,
                 scheduler: str | None = None, packets_out: tuple[str, Any] | None = None
                 ) -> tuple[Analysis, list[Any]]:
    """Parse the capture arguments and run ``meshpkt.engine.analyze`` with a progress bar."""
    from meshpkt.engine import analyze

    caps = parse_capture_args(captures)
    problems: list[Any] = []
    bar, update = _progress_bar(_input_size(caps))
    ports = tuple(sorted({4789, *(vxlan_ports or [])}))
    with bar:
        result = analyze(caps, topology=topology, vxlan_ports=ports, progress=update, problems=problems,
                         correct_clocks=clock, engine=engine, workers=workers, scheduler=scheduler,
                         packets_out=packets_out)
    return result, problems


def _spilled_packets(fmt: Format, out: Path | None) -> tuple[str, Any]:
    """Where the partitioned engine writes ``--packets`` as it goes (it holds no packet table)."""
    if fmt is Format.json:
        raise UsageError("--packets with --engine partitioned writes csv or parquet")
    if fmt is Format.parquet and out is None:
        raise UsageError("--format parquet needs --out PATH")
    if out is None:
        sys.stdout.flush()
        return "csv", sys.stdout.buffer
    return ("csv" if fmt is Format.table else fmt.value), str(out)


def _open_text(out: Path | None) -> AbstractContextManager[Any]:
    return nullcontext(sys.stdout) if out is None else out.open("w")


def _write_frame(df: Any, fmt: Format, out: Path | None) -> None:
    """An export table: CSV/Parquet straight from Arrow, JSON records."""
    from meshpkt.report import write_table

    if fmt is Format.parquet:
        if out is None:
            raise UsageError("--format parquet needs --out PATH")
        write_table(df, "parquet", str(out))
    elif fmt is Format.csv:
        if out is None:
            sys.stdout.flush()
            write_table(df, "csv", sys.stdout.buffer)
        else:
            write_table(df, "csv", str(out))
    elif fmt is Format.json:
        with _open_text(out) as fh:
            fh.write(df.to_json(orient="records", lines=False, default_handler=str) + "\n")


def render(result: Analysis, fmt: Format, out: Path | None, packets: bool, connection: int | None,
           show_all: bool) -> None:
    """Write what was asked for: a table for people, or json/csv/parquet."""
    from meshpkt import report

    if packets:
        _write_frame(report.packets_for_export(result.packets), Format.csv if fmt is Format.table else fmt, out)
    elif connection is not None:
        _render_connection(result, fmt, out, connection)
    elif fmt is Format.table:
        from meshpkt.cli.render import render_analysis

        render_analysis(result, out, limit=None if show_all else report.TABLE_LIMIT)
    elif fmt is Format.json:
        with _open_text(out) as fh:
            report.write_json(result, fh)
    elif fmt is Format.csv:
        _write_frame(report.connections_for_export(result.connections), fmt, out)
    else:
        _write_frame(report.hops_for_export(result.hops), fmt, out)


def _render_connection(result: Analysis, fmt: Format, out: Path | None, connection: int) -> None:
    import json

    from meshpkt import report

    if connection not in set(result.connections["conn_id"].tolist()):
        raise UsageError(f"no connection {connection} (there are {len(result.connections)})")
    if fmt is Format.table:
        from meshpkt.cli.render import render_connection

        render_connection(result, connection, out)
    elif fmt is Format.json:
        with _open_text(out) as fh:
            fh.write(json.dumps(result.connection(connection), indent=2) + "\n")
    else:
        _write_frame(report.hops_for_export(result.hops[result.hops["conn_id"] == connection]), fmt, out)


def analyze_cmd(
    captures: Annotated[list[str], typer.Argument(help="Capture files (PATH or POINT=PATH), directories, "
                                                  "or pcapng files holding several interfaces.")],
    topology: Annotated[Path | None, typer.Option("--topology", "-t", help="lab status JSON "
                                                  "(`meshpkt lab status --json`); default: status.json "
                                                  "beside the captures, else inferred.")] = None,
    vxlan_port: Annotated[list[int] | None, typer.Option("--vxlan-port", help="Extra UDP port carrying VXLAN "
                                                         "(Swarm --data-path-port); 4789 always.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    packets: Annotated[bool, typer.Option("--packets", help="Export the per-packet table.")] = False,
    connection: Annotated[int | None, typer.Option("--connection", "-c", help="Hop-by-hop view of one "
                                                   "connection.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Table: every connection (default: those with "
                                           "a problem first, then the first ones, 30 rows).")] = False,
    no_clock: Annotated[bool, typer.Option("--no-clock-correction", help="Keep timestamps as captured.")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local: in memory on this machine; partitioned: "
                                       "in bounded memory (captures larger than RAM); dask: on a Dask cluster.")
                      ] = Engine.local,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Worker processes (default: "
                                                "the CPUs available).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address "
                                                  "(tcp://HOST:8786); default: a local cluster.")] = None,
) -> None:
    """Decode captures and reconstruct every connection across the mesh's hops."""
    if scheduler is not None and engine is not Engine.dask:
        raise UsageError("--scheduler needs --engine dask")
    spilled = _spilled_packets(fmt, out) if packets and engine is Engine.partitioned else None
    result, problems = run_analysis(captures, topology, vxlan_port, clock=not no_clock, engine=engine.value,
                                    workers=workers, scheduler=scheduler, packets_out=spilled)
    if problems and result.summary["packets"] == 0:  # nothing could be read: the errors are the answer
        for p in problems:
            print(f"meshpkt: error: {p}", file=sys.stderr)
        raise typer.Exit(2)
    if spilled is None:
        render(result, fmt, out, packets, connection, show_all)
    for p in problems:
        print(f"meshpkt: error: {p}", file=sys.stderr)
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the main app."""
    app.command("analyze")(analyze_cmd)
