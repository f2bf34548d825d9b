"""`meshpkt diagram`: sequence diagram of a connection, topology picture of a lab, balance plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.mesh import Mesh

FORMATS = ("png", "svg", "pdf")


def image_format(path: Path) -> str:
    """png/svg/pdf from the file name, else UsageError."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"{path}: cannot tell the image format from the name; use .png, .svg or .pdf")
    return fmt


def _load_status(path: Path) -> Mesh:
    """The mesh a status JSON or a dump directory describes (one-line errors)."""
    import json

    from meshpkt.plot.topology import as_mesh

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory; give the lab status JSON (`meshpkt lab status --json`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a lab status JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a lab status JSON (expected an object)")
    return as_mesh(data)


def diagram_cmd(
    captures: Annotated[list[str] | None, typer.Argument(
        help="Capture files (PATH or POINT=PATH) or directories; none with --topology alone.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Image to write: .png, .svg or .pdf.")] = Path(
        "diagram.png"),
    connection: Annotated[int | None, typer.Option("--connection", "-c", help="Connection id to draw "
                                                   "(see `meshpkt analyze`).")] = None,
    first: Annotated[bool, typer.Option("--first", help="Draw the first connection in the captures.")] = False,
    topology: Annotated[Path | None, typer.Option("--topology", "-t", help="Lab status JSON (`meshpkt lab "
                                                  "status --json`). Alone: draw the lab's topology (a dump "
                                                  "directory or transcript works too); with captures: name "
                                                  "the hops with it.")] = None,
    balance: Annotated[bool, typer.Option("--balance", help="Plot requests per backend per entry node and "
                                          "over time.")] = False,
    max_packets: Annotated[int, typer.Option("--max-packets", min=1, help="Packets drawn in a sequence "
                                             "diagram; later ones are summarised in a note.")] = 40,
    dpi: Annotated[int, typer.Option("--dpi", min=72, max=600, help="Resolution of PNG output.")] = 150,
) -> None:
    """Draw a connection's packets hop by hop, a lab's topology, or the load balancing.

    \b
      meshpkt diagram CAPTURES... --first --out flow.png
      meshpkt diagram CAPTURES... --connection 3 --out flow.svg
      meshpkt diagram --topology lab-status.json --out topo.png
      meshpkt diagram --topology DUMPS_DIR --out topo.png
      meshpkt diagram --balance CAPTURES... --out balance.png
    """
    fmt = image_format(out)
    caps = list(captures or [])
    if connection is not None and first:
        raise UsageError("give either --connection ID or --first, not both")
    if not caps:
        if balance:
            raise UsageError("--balance needs CAPTURES")
        if topology is None:
            raise UsageError("nothing to draw: give CAPTURES (with --connection ID or --first), "
                             "--topology FILE, or --balance CAPTURES")
        if connection is not None or first:
            raise UsageError("--connection/--first need CAPTURES")
        from meshpkt.plot import topology_diagram

        if topology.suffix.lower() == ".json":
            status = _load_status(topology)
            fig = topology_diagram(status)
            what = f"topology of lab {status.name or '?'}"
        else:  # a dump directory or transcript (`meshpkt collect`, pasted shell sessions)
            from meshpkt.rules.model import load_dumps

            fig = topology_diagram(load_dumps(topology), title=f"Topology from dumps: {topology}")
            what = f"topology from the dumps in {topology}"
    else:
        if not balance and connection is None and not first:
            raise UsageError("choose the connection to draw: --connection ID or --first "
                             "(or --balance for the load-balancing plot)")
        from meshpkt.cli.analyze import run_analysis

        result, problems = run_analysis(caps, topology, None)
        for p in problems:
            typer.echo(f"meshpkt: warning: {p}", err=True)
        from meshpkt.plot import balance_plot, first_connection, sequence_diagram

        if balance:
            fig = balance_plot(result)
            what = "load balancing"
        else:
            cid = first_connection(result) if first else int(connection)  # type: ignore[arg-type]
            fig = sequence_diagram(result, cid, max_packets=max_packets)
            what = f"connection {cid}"
    try:
        fig.savefig(out, format=fmt, dpi=dpi, facecolor="white")
    except OSError as exc:
        raise UsageError(f"{out}: cannot write ({exc.strerror or exc})") from None
    from rich.console import Console

    Console(stderr=True).print(f"wrote {out} ({what})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``diagram`` to the main app."""
    app.command("diagram")(diagram_cmd)
