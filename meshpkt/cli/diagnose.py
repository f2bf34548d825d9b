"""`meshpkt diagnose`: name the failure from captures and dumps, with the evidence."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.diagnose import Diagnosis


class Format(StrEnum):
    table = "table"
    json = "json"


def diagnose_cmd(
    captures: Annotated[list[str] | None, typer.Argument(help="Capture files (PATH or POINT=PATH) or directories "
                                                         "(`meshpkt lab capture` output).")] = None,
    dumps: Annotated[list[Path] | None, typer.Option("--dumps", "-d", help="Dump directory or transcript "
                                                     "(`meshpkt collect`); repeatable.")] = None,
    topology: Annotated[Path | None, typer.Option("--topology", "-t", help="lab status JSON; default: "
                                                  "status.json beside the captures.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    diagram: Annotated[Path | None, typer.Option("--diagram", help="Draw the sequence diagram of the first "
                                                 "affected connection here (.png/.svg/.pdf).")] = None,
    encrypted_vni: Annotated[list[int] | None, typer.Option("--encrypted-vni", help="VNI of an encrypted "
                                                            "overlay (also read from dumps); repeatable.")] = None,
    lb_timeout: Annotated[float, typer.Option("--lb-timeout", help="IPVS TCP idle timeout in seconds.")] = 900.0,
    catalogue: Annotated[bool, typer.Option("--catalogue", help="List the detectors and exit.")] = False,
) -> None:
    """Run the analysis and the catalogue of detectors; print the failures found, with evidence.

    Exit status: 0 no error-level finding, 1 an error-level finding, 2 bad input."""
    if catalogue:
        _catalogue(fmt, out)
        return
    if not captures:
        raise UsageError("no captures given (meshpkt diagnose CAPTURES... [--dumps DIR])")
    from meshpkt.cli.analyze import parse_capture_args

    for d in dumps or []:
        if not d.exists():
            raise UsageError(f"{d}: no such dump directory or transcript")
    problems: list[Any] = []
    result = _run(parse_capture_args(captures), problems, dumps=dumps or [], topology=topology,
                  encrypted_vnis=encrypted_vni or [], lb_timeout_s=lb_timeout)
    if problems and not result.analysis.get("packets"):
        for p in problems:
            print(f"meshpkt: error: {p}", file=sys.stderr)
        raise typer.Exit(2)
    if fmt is Format.json:
        _emit(json.dumps(result.to_json(), indent=2) + "\n", out)
    else:
        _emit(render(result), out)
    if diagram is not None:
        _diagram(result, diagram)
    for p in problems:
        print(f"meshpkt: error: {p}", file=sys.stderr)
    code = result.exit_code() or (2 if problems else 0)
    if code:
        raise typer.Exit(code)


def _run(caps: list[Any], problems: list[Any], **kw: Any) -> Diagnosis:
    """``diagnose``, with a progress bar on stderr for large inputs on a TTY."""
    from meshpkt.cli.analyze import _input_size, _progress_bar
    from meshpkt.diagnose import diagnose

    bar, update = _progress_bar(_input_size(caps))
    with bar:
        return diagnose(caps, problems=problems, progress=update, **kw)


def render(result: Diagnosis) -> str:
    """A short table (one line per finding), then each finding's evidence."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    con = Console(file=buf, width=140, force_terminal=False, no_color=True)
    a = result.analysis
    con.print(f"{a.get('packets') or 0} packets, {a.get('connections') or 0} connections, "
              f"{a.get('failed_connections') or 0} failed; {len(result.findings)} finding(s)")
    if not result.findings:
        con.print("no failure found")
        return buf.getvalue()
    t = Table(show_edge=False, pad_edge=False)
    for col in ("#", "severity", "kind", "node", "conns", "summary"):
        t.add_column(col, overflow="fold")
    for k, f in enumerate(result.findings, 1):
        t.add_row(str(k), f.severity, f.kind, f.node or "-", str(len(f.connections)), f.summary)
    con.print(t)
    for k, f in enumerate(result.findings, 1):
        con.print(f"\n[{k}] {f.kind} ({f.severity}) {f.summary}", markup=False)
        if f.points:
            con.print(f"    points: {', '.join(f.points)}", markup=False)
        if f.addresses:
            con.print(f"    addresses: {', '.join(f.addresses)}", markup=False)
        for e in f.evidence:
            con.print(f"    - {e}", markup=False)
        if f.check:
            con.print(f"    check: {f.check}", markup=False)
    if result.unexplained:
        con.print(f"\nfailed connections no detector explains: {', '.join(map(str, result.unexplained))} "
                  "(see meshpkt analyze --connection N)")
    return buf.getvalue()


def _diagram(result: Diagnosis, path: Path) -> None:
    from meshpkt.plot import sequence_diagram

    target = next((f for f in result.findings if f.connections), None)
    if target is None:
        print("meshpkt: note: --diagram: no finding names a connection to draw", file=sys.stderr)
        return
    conn = target.connections[0]
    fig = sequence_diagram(result.analysis_obj, conn)
    fig.text(0.01, 0.995, f"diagnose: {target.kind} ({target.severity}): {target.summary}", ha="left",
             va="top", fontsize=9, color="#b00020", fontweight="bold")
    try:
        fig.savefig(path, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot write the diagram ({exc})") from None


def _catalogue(fmt: Format, out: Path | None) -> None:
    from meshpkt.diagnose import catalogue

    cat = catalogue()
    if fmt is Format.json:
        _emit(json.dumps(cat, indent=2) + "\n", out)
        return
    lines = []
    for d in cat:
        lines += [f"{d['kind']} ({d['severity']}, {d['reproduced']})", f"  detects: {d['detects']}",
                  f"  evidence: {d['evidence']}", f"  check: {d['check']}", ""]
    _emit("\n".join(lines), out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.write_text(text)
        except OSError as exc:
            raise UsageError(f"{out}: cannot write ({exc.strerror})") from None


def register(app: typer.Typer) -> None:
    """Add ``diagnose`` to the main app."""
    app.command("diagnose")(diagnose_cmd)
