"""`meshpkt analyze`: decode captures, reconstruct connections, render tables or exports."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.flows import Analysis


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    parquet = "parquet"


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


def _progress_callback(total_hint: int) -> tuple[Any, Any]:
    """A rich progress bar on stderr for large inputs (None below ~16 MB)."""
    if total_hint < 16 * 1024 * 1024 or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = prog.add_task("decoding", total=total_hint)

    def cb(done: int, total: int) -> None:
        prog.update(task, completed=done, total=total)

    return prog, cb


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
                 clock: bool = True) -> tuple[Analysis, list[Any]]:
    from meshpkt.flows import analyze

    caps = parse_capture_args(captures)
    problems: list[Any] = []
    prog, cb = _progress_callback(_input_size(caps))
    ports = tuple(sorted({4789, *(vxlan_ports or [])}))
    if prog is not None:
        with prog:
            result = analyze(caps, topology=topology, vxlan_ports=ports, progress=cb, problems=problems,
                             correct_clocks=clock)
    else:
        result = analyze(caps, topology=topology, vxlan_ports=ports, problems=problems, correct_clocks=clock)
    return result, problems


def _write_frame(df: Any, fmt: Format, out: Path | None) -> None:
    if fmt is Format.parquet:
        if out is None:
            raise UsageError("--format parquet needs --out PATH")
        df.to_parquet(out, index=False)
    elif fmt is Format.csv:
        text = df.to_csv(index=False)
        _emit(text, out)
    elif fmt is Format.json:
        _emit(df.to_json(orient="records", lines=False, default_handler=str) + "\n", out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


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
    no_clock: Annotated[bool, typer.Option("--no-clock-correction", help="Keep timestamps as captured.")] = False,
) -> None:
    """Decode captures and reconstruct every connection across the mesh's hops."""
    result, problems = run_analysis(captures, topology, vxlan_port, clock=not no_clock)
    if problems and len(result.packets) == 0:  # nothing could be read: the errors are the answer
        for p in problems:
            print(f"meshpkt: error: {p}", file=sys.stderr)
        raise typer.Exit(2)
    from meshpkt.report import hops_for_export, packets_for_export

    if packets:
        if fmt is Format.table:
            fmt = Format.csv
        _write_frame(packets_for_export(result.packets), fmt, out)
    elif connection is not None:
        if connection not in set(result.connections["conn_id"].tolist()):
            raise UsageError(f"no connection {connection} (there are {len(result.connections)})")
        if fmt is Format.table:
            from meshpkt.cli.render import render_connection

            render_connection(result, connection, out)
        elif fmt is Format.json:
            _emit(json.dumps(result.connection(connection), indent=2) + "\n", out)
        else:
            _write_frame(hops_for_export(result.hops[result.hops["conn_id"] == connection]), fmt, out)
    elif fmt is Format.table:
        from meshpkt.cli.render import render_analysis

        render_analysis(result, out)
    elif fmt is Format.json:
        _emit(json.dumps(result.to_json(), indent=2) + "\n", out)
    elif fmt is Format.csv:
        _write_frame(result.connections, fmt, out)
    else:
        _write_frame(hops_for_export(result.hops), fmt, out)
    for p in problems:
        print(f"meshpkt: error: {p}", file=sys.stderr)
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the main app."""
    app.command("analyze")(analyze_cmd)
