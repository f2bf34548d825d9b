"""`meshpkt rules` commands (explain, show) and the top-level `meshpkt collect`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from meshpkt.errors import UsageError

rules_app = typer.Typer(name="rules", help="Model the mesh from rule dumps; explain a request's path.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _roles(maps: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in maps or []:
        name, sep, role = m.partition("=")
        if not sep or not name or not role:
            raise UsageError(f"--map {m!r}: expected NAME=ROLE (roles: host, ingress_sbox, overlay, lb, task)")
        out[name] = role
    return out


def _fmt(fmt: str) -> str:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: expected table or json")
    return fmt


@rules_app.command("explain")
def explain_cmd(
    dumps: Annotated[str, typer.Argument(help="Dump directory (from `meshpkt collect`) or a transcript file.")],
    to: Annotated[str, typer.Option("--to", help="NODE:PORT[/udp] - node name or address, published port.")],
    client: Annotated[str | None, typer.Option("--from", help="Client address[:port].")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    maps: Annotated[list[str] | None, typer.Option("--map", help="NAME=ROLE override (repeatable).")] = None,
) -> None:
    """Expected path of a request to NODE:PORT, hop by hop with the rules acting, and the
    inconsistencies found. Exit status 1 when an error-level inconsistency is found."""
    from meshpkt.rules.explain import explain
    from meshpkt.rules.model import load_dumps

    fmt = _fmt(fmt)
    model = load_dumps(dumps, roles=_roles(maps))
    exp = explain(model, to, client=client)
    if fmt == "json":
        typer.echo(json.dumps(exp.to_dict(), indent=2))
    else:
        _render_explanation(exp)
    if exp.errors:
        raise typer.Exit(1)


def _render_explanation(exp: object) -> None:
    from rich.console import Console
    from rich.text import Text

    from meshpkt.rules.explain import Explanation

    assert isinstance(exp, Explanation)
    con = Console()
    con.print(Text(exp.summary, style="bold"))
    con.print()
    for i, h in enumerate(exp.hops, start=1):
        head = Text(f"{i:>2}. ")
        head.append(f"{h.step:<13}", style="cyan")
        head.append(f" {h.node}/{h.namespace}", style="magenta")
        if h.backend:
            head.append(f" [{h.backend}]", style="green")
        head.append(f"  {h.summary}", style="bold")
        con.print(head)
        if h.packet:
            con.print(Text(f"      packet: {h.packet}", style="dim"))
        for r in h.rules:
            con.print(Text(f"      {r.table} {r.chain} #{r.index}: {' '.join(r.text.split())}  [{r.counters()}]"))
        for e in h.evidence:
            con.print(Text(f"      {e}"))
        for n in h.notes:
            con.print(Text(f"      note: {n}", style="dim"))
    con.print()
    _render_findings(con, list(exp.findings))


def _render_findings(con: object, findings: list[object]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from meshpkt.rules.explain import Finding

    assert isinstance(con, Console)
    if not findings:
        con.print("no inconsistencies found")
        return
    tbl = Table(title="findings")
    for col in ("severity", "code", "where", "message"):
        tbl.add_column(col, overflow="fold")
    for f in findings:
        assert isinstance(f, Finding)
        where = "/".join(x for x in (f.node, f.namespace) if x)
        tbl.add_row(Text(f.severity, style=_SEV_STYLE.get(f.severity, "")), Text(f.code), Text(where),
                    Text(f.message))
    con.print(tbl)


@rules_app.command("show")
def show_cmd(
    dumps: Annotated[str, typer.Argument(help="Dump directory or transcript file.")],
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    maps: Annotated[list[str] | None, typer.Option("--map", help="NAME=ROLE override (repeatable).")] = None,
) -> None:
    """The model built from the dumps (nodes, namespaces, published ports, marks, LB services,
    SNAT, overlays, REDIRECTs) and its inconsistencies. Exit status 1 on an error finding."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from meshpkt.rules.explain import check
    from meshpkt.rules.model import load_dumps

    fmt = _fmt(fmt)
    model = load_dumps(dumps, roles=_roles(maps))
    findings = check(model)
    summary = model.summary()
    if fmt == "json":
        typer.echo(json.dumps({"model": summary, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        con = Console()
        tbl = Table(title="namespaces")
        for col in ("node", "namespace", "role", "rules", "LB", "dumps"):
            tbl.add_column(col, overflow="fold")
        for nname, n in summary["nodes"].items():
            for ns_name, ns in n["namespaces"].items():
                tbl.add_row(nname, ns_name, ns["role"], str(ns["rules"]), str(ns["lb_services"]),
                            ", ".join(d.split(":", 1)[0] for d in ns["dumps"]))
        con.print(tbl)
        facts = Table(title="mesh")
        facts.add_column("fact")
        facts.add_column("value", overflow="fold")
        for key in ("published_ports", "marks", "lb_services", "snat", "overlays", "redirects", "tasks"):
            facts.add_row(key, "\n".join(summary[key]) or "-")
        con.print(facts)
        _render_findings(con, list(findings))
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


def collect_cmd(
    out: Annotated[str, typer.Argument(help="Output directory (created).")],
    netns_dir: Annotated[str | None, typer.Option("--netns-dir", help="Namespace files (default "
                                                  "/var/run/docker/netns; /var/run/netns with --lab).")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only namespaces starting with this; the rest "
                                               "of the name is the Docker name (e.g. mesh-node1-).")] = None,
    lab: Annotated[str | None, typer.Option("--lab", help="Collect every node of the lab NAME.")] = None,
    maps: Annotated[list[str] | None, typer.Option("--map", help="NAME=ROLE override (repeatable).")] = None,
    node_name: Annotated[str | None, typer.Option("--node-name", help="Local node's name (default: host name / "
                                                  "from --prefix).")] = None,
    node: Annotated[list[str] | None, typer.Option("--node", help="Collect these nodes over SSH: [USER@]HOST[:PORT] "
                                                   "(repeatable); see docs/remote.md.")] = None,
    inventory: Annotated[str | None, typer.Option("--inventory", help="Nodes to collect over SSH, from a file.")]
    = None,
    ssh_config: Annotated[str | None, typer.Option("--ssh-config", help="ssh_config file for --node (ssh -F).")]
    = None,
    root_ns: Annotated[bool, typer.Option("--root/--no-root", help="Also dump the root namespace as 'host' "
                                          "(real node mode only).")] = True,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Dump iptables/nft/ipvs/fdb/links/routes of every namespace (as root) into OUT/<node>/<ns>/,
    plus docker network/service inspect when a Docker daemon answers."""
    from rich.console import Console
    from rich.table import Table

    from meshpkt.rules.collect import collect

    fmt = _fmt(fmt)
    if node or inventory:
        from meshpkt.cli.collect import collect_remote_cmd

        collect_remote_cmd(out, node or [], inventory, ssh_config, fmt)
        return
    rep = collect(out, netns_dir=netns_dir, prefix=prefix, lab=lab, roles=_roles(maps), node=node_name,
                  include_root=root_ns)
    if fmt == "json":
        typer.echo(json.dumps(rep.to_dict(), indent=2))
        return
    con = Console()
    tbl = Table(title=f"collected into {rep.out}")
    for col in ("node", "namespace", "role", "ok", "missing / failed"):
        tbl.add_column(col, overflow="fold")
    for ns in rep.namespaces:
        ok = [r.file for r in ns.results if r.status == "ok"]
        bad = [f"{r.argv[0]}: {r.status}" for r in ns.results if r.status != "ok"]
        tbl.add_row(ns.target.node, ns.target.name, str(ns.target.role), str(len(ok)), ", ".join(sorted(set(bad))))
    con.print(tbl)
    for n in rep.notes:
        con.print(f"note: {n}")


def register(app: typer.Typer) -> None:
    """Add ``meshpkt rules ...`` and ``meshpkt collect`` to the main app."""
    app.add_typer(rules_app, name="rules")
    app.command("collect")(collect_cmd)
