"""Entry point of the ``meshpkt`` command.

Only typer is imported here; every command module imports pandas/scapy/matplotlib inside
its functions, so ``meshpkt --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from meshpkt.errors import MeshpktError

app = typer.Typer(
    name="meshpkt",
    help="Craft packets and analyse the traffic of Docker Swarm's routing mesh.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from meshpkt.cli import analyze, capture, decode, diagnose, diagram, filter, lab, rules, verify

    for mod in (analyze, filter, lab, rules, verify, diagram, capture, diagnose, decode):
        mod.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected errors become one line on stderr and exit status 2."""
    try:
        app(args=argv, prog_name="meshpkt")
    except MeshpktError as exc:
        print(f"meshpkt: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("meshpkt: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # never a traceback for the user, unless asked
        if os.environ.get("MESHPKT_DEBUG"):
            raise
        print(f"meshpkt: internal error: {type(exc).__name__}: {exc} (MESHPKT_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
