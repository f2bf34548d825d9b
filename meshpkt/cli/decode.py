"""`meshpkt decode CAPTURE... --out DIR`: captures to a Parquet dataset (per capture point)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def decode_cmd(
    captures: Annotated[list[str], typer.Argument(help="Capture files (PATH or POINT=PATH) or directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    vxlan_port: Annotated[list[int] | None, typer.Option("--vxlan-port", help="Extra UDP port carrying VXLAN; "
                                                         "4789 always.")] = None,
) -> None:
    """Decode captures into a Parquet dataset partitioned by capture point, for `meshpkt analyze DIR`
    (run it where the pcaps are, so that only compact Parquet travels)."""
    from meshpkt.cli.analyze import parse_capture_args
    from meshpkt.engine.dataset import write_dataset

    problems: list[Any] = []
    doc = write_dataset(parse_capture_args(captures), out, vxlan_ports=tuple(sorted({4789, *(vxlan_port or [])})),
                        problems=problems)
    print(f"{out}: {doc['packets']} packets from {len(doc['points'])} capture points", file=sys.stderr)
    for p in problems:
        print(f"meshpkt: error: {p}", file=sys.stderr)
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``decode`` to the main app."""
    app.command("decode")(decode_cmd)
