"""`meshpkt lab` commands: up, down, status, exec, capture (a Swarm routing mesh in namespaces)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from meshpkt.mesh import Mesh

lab_app = typer.Typer(
    name="lab",
    help="A Swarm-faithful routing mesh in network namespaces, with capture at every hop (needs root).",
    no_args_is_help=True,
)

_NAME = typer.Option("mesh", "--name", "-n", help="Lab name; every namespace is called <name>-...")


@lab_app.command("up")
def up_cmd(
    spec: Annotated[Path | None, typer.Argument(
        help="Spec file (.yaml/.yml/.toml); defaults reproduce seed 001.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Lab name [default: the spec's, else mesh].")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", help="Number of nodes [3].")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", help="Replicas of the published service [3].")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", help="Published port P:T of the published service [9090:80].")] = None,
    data_path_port: Annotated[int | None, typer.Option("--data-path-port", help="VXLAN UDP port [4789].")] = None,
    lb: Annotated[str, typer.Option(
        "--lb", help="Load balancer: auto (IPVS if available) | ipvs | nftables.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the status document as JSON.")] = False,
    ssh: Annotated[bool, typer.Option("--ssh", help="Also run an sshd in every node (keys and ssh_config in "
                                      "the lab's state directory; see docs/remote.md).")] = False,
    docker: Annotated[bool, typer.Option("--docker", help="A real Docker Swarm (docker.io) instead of the "
                                                          "namespace lab.")] = False,
    complete_mesh: Annotated[bool, typer.Option("--complete-mesh", help="With --docker: program the routing "
                                                "mesh Docker skips on kernels without ip_vs.")] = False,
) -> None:
    """Build the lab: nodes, ingress + a user overlay, a published service and an internal one."""
    from meshpkt.lab import Lab, LabSpec

    base = LabSpec.load(spec) if spec is not None else LabSpec()
    s = base.with_overrides(name=name, nodes=nodes, replicas=replicas, publish=publish,
                            data_path_port=data_path_port)
    if docker:
        from meshpkt.lab.docker import docker_up

        status = docker_up(s, complete_mesh=complete_mesh)
    else:
        status = Lab(s.name).up(s, lb=lb, ssh=ssh)
    if as_json:
        print(json.dumps(status, indent=1))
        return
    _render_summary(status, title=f"lab {status['name']} is up in {status['up_seconds']:.2f} s")
    if ssh:
        print(f"ssh: ip netns exec {status['clients'][0]['netns']} ssh -F {Lab(s.name).ssh_config()} "
              f"{status['nodes'][0]['name']}")


_DOCKER = typer.Option(False, "--docker", help="The real Docker Swarm lab (lab up --docker).")


@lab_app.command("down")
def down_cmd(name: str = _NAME, docker: bool = _DOCKER) -> None:
    """Remove every namespace, process and file of the lab (idempotent)."""
    from rich.console import Console

    from meshpkt.lab import Lab
    from meshpkt.lab.docker import DockerLab

    r = DockerLab(name).down() if docker else Lab(name).down()
    Console(stderr=True).print(f"lab {name}: removed {r['namespaces']} namespaces, stopped {r['processes']} processes")


@lab_app.command("status")
def status_cmd(name: str = _NAME,
               as_json: Annotated[bool, typer.Option("--json", help="The full status document as JSON.")] = False,
               docker: bool = _DOCKER) -> None:
    """Describe the lab: LB implementation, nodes, namespaces, services, capture points."""
    from meshpkt.lab import Lab
    from meshpkt.lab.docker import DockerLab

    status = DockerLab(name).status() if docker else Lab(name).status()
    if as_json:
        print(json.dumps(status, indent=1))
        return
    _render_summary(status, title=f"lab {status['name']}" + ("" if status["alive"] else " (DAMAGED)"),
                    details=True)


@lab_app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    target: Annotated[str, typer.Argument(help="NODE[/NAMESPACE]: node1.., client, underlay; NAMESPACE = host, "
                                               "ingress_sbox, overlay[:NET], lb[:NET], a task name (my-web.1).")],
    cmd: Annotated[list[str], typer.Argument(help="Command to run (after --).")],
    name: str = _NAME,
) -> None:
    """Run a command inside one of the lab's namespaces (exit status is the command's)."""
    from meshpkt.lab import Lab

    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    rc = Lab(name).exec(target, cmd).returncode
    raise typer.Exit(rc)


@lab_app.command("capture")
def capture_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for <point>.pcap files and status.json.")],
    args: Annotated[list[str] | None, typer.Argument(
        help="[POINT...] then the command to run while capturing (after --).")] = None,
    all_points: Annotated[bool, typer.Option("--all", help="Capture at every capture point.")] = False,
    point: Annotated[list[str] | None, typer.Option(
        "--point", "-P", help="A capture point or glob (repeatable).")] = None,
    run_in: Annotated[str | None, typer.Option(
        "--in", help="Run the command inside NODE[/NAMESPACE] (e.g. client).")] = None,
    grace: Annotated[float, typer.Option("--grace", help="Seconds to keep capturing after the command ends.")] = 0.5,
    bpf: Annotated[str | None, typer.Option("--filter", help="pcap-filter expression for every tcpdump.")] = None,
    buffer: Annotated[int, typer.Option("--buffer", min=1, help="Capture buffer per tap, KiB (tcpdump -B); "
                                        "too small a buffer drops packets under load.")] = 16384,
    name: str = _NAME,
    docker: bool = _DOCKER,
) -> None:
    """Capture with tcpdump at lab capture points while a command runs; writes <node>.<ns>.<iface>.pcap.

    Points are given with --point/-P, or as leading arguments that match capture point names/globs.
    """
    import fnmatch

    from rich.console import Console

    from meshpkt.lab import Lab
    from meshpkt.lab.docker import DockerLab

    lab: Lab | DockerLab = DockerLab(name) if docker else Lab(name)
    names = [p["point"] for p in lab.status()["capture_points"]]
    args = list(args or [])
    points = list(point or [])
    while args and "." in args[0] and any(fnmatch.fnmatchcase(n, args[0]) for n in names):
        points.append(args.pop(0))
    r = lab.capture(points or None, out, args, all_points=all_points, run_in=run_in, grace=grace, bpf=bpf,
                    buffer_kib=buffer)
    con = Console(stderr=True, highlight=False)
    total = sum(p["packets"] or 0 for p in r["points"])
    con.print(f"{len(r['points'])} capture points, {total:,} packets -> {r['out']} (status: {r['status']})",
              soft_wrap=True)
    if r.get("warning"):
        con.print(f"[bold yellow]warning:[/] {r['warning']}", soft_wrap=True)
    if r["rc"]:
        raise typer.Exit(r["rc"])


def _render_services(con: Console, mesh: Mesh) -> None:
    from rich.table import Table

    t = Table("service", "mode", "VIPs", "fwmark (node1)", "published", "backends", title="services")
    first = mesh.nodes[0].name if mesh.nodes else ""
    for s in mesh.services:
        t.add_row(s.name, str(s.mode), ", ".join(f"{k} {v}" for k, v in s.vips.items()),
                  ", ".join(f"{k} 0x{v:x}" for k, v in s.fwmarks.get(first, {}).items()),
                  ", ".join(f"*:{p.published}->{p.target}/{p.protocol}" for p in s.published) or "-",
                  "\n".join(f"{b.task} {b.ip} @{b.node}" + ("" if b.alive else " (dead)") for b in s.backends))
    con.print(t)


def _render_summary(status: Mapping[str, Any], title: str, details: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    from meshpkt.mesh import load_status

    mesh = load_status(status)
    con = Console()
    con.print(f"[bold]{title}[/bold]  load balancer: [cyan]{mesh.lb}[/cyan] -- {mesh.lb_detail}")
    t = Table("network", "id", "subnet", "gateway", "VNI", "port", title="networks")
    for n in mesh.networks:
        t.add_row(n.name, n.id[:12], str(n.subnet or ""), str(n.gateway or ""), str(n.vni or "-"), str(n.port or "-"))
    con.print(t)
    t = Table("node", "underlay IP", "ingress IP", "namespaces", title="nodes")
    for c in mesh.clients:
        t.add_row(c.name, str(c.ip or ""), "-", c.netns)
    for nd in mesh.nodes:
        t.add_row(nd.name, str(nd.underlay_ip or ""), str(nd.ingress_ip or ""),
                  "\n".join(f"{ns.name} ({ns.role})" for ns in nd.namespaces) if details else str(len(nd.namespaces)))
    con.print(t)
    _render_services(con, mesh)
    for node, state in (mesh.extra.get("routing_mesh") or {}).items():
        con.print(f"routing mesh on {node}: {state}")
    if details:
        con.print("capture points: " + " ".join(p.point for p in mesh.capture_points))
        if mesh.faults:
            con.print("faults: " + "; ".join(f"{f.kind} {dict(f.args)}" for f in mesh.faults))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(lab_app, name="lab")
