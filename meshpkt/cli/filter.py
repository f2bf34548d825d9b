"""`meshpkt filter`: tcpdump/BPF (or Wireshark) filters for fields inside VXLAN."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from meshpkt.errors import UsageError
from meshpkt.mesh.proto import VXLAN_PORT


class Dialect(StrEnum):
    pcap = "pcap"
    wireshark = "wireshark"


_EPILOG = (
    "Repeat a flag to OR its values; different flags AND. Example: "
    "tcpdump -i eth0 \"$(meshpkt filter --inner-proto tcp --inner-host 10.0.0.20)\""
)

_L = list[str] | None
_I = list[str] | None  # parsed (and range-checked) by FilterSpec: one-line errors, hex allowed


_PORT_HELP = "VXLAN UDP destination port (default 4789; Swarm's --data-path-port)."
_FLAGS_HELP = "Comma list that must all hold, '!' = clear: syn,!ack = a pure SYN."
_CONV_HELP = "Inner packets between A[:P] and B[:Q], both directions: 10.0.0.2:60559,10.0.0.20:9090."


def _opt(name: str, metavar: str, help: str) -> Any:
    return typer.Option(name, metavar=metavar, help=help)


def filter_cmd(
    port: Annotated[_I, _opt("--port", "PORT", _PORT_HELP)] = None,
    vni: Annotated[_I, _opt("--vni", "VNI", "VXLAN network identifier.")] = None,
    inner_proto: Annotated[_L, _opt("--inner-proto", "PROTO", "tcp, udp, icmp or a protocol number.")] = None,
    inner_src: Annotated[_L, _opt("--inner-src", "IP", "Inner IPv4 source (address or CIDR).")] = None,
    inner_dst: Annotated[_L, _opt("--inner-dst", "IP", "Inner IPv4 destination.")] = None,
    inner_host: Annotated[_L, _opt("--inner-host", "IP", "Inner IPv4 source or destination.")] = None,
    inner_net: Annotated[_L, _opt("--inner-net", "CIDR", "Inner source or destination in this CIDR.")] = None,
    inner_sport: Annotated[_I, _opt("--inner-sport", "PORT", "Inner TCP/UDP source port.")] = None,
    inner_dport: Annotated[_I, _opt("--inner-dport", "PORT", "Inner TCP/UDP destination port.")] = None,
    inner_port: Annotated[_I, _opt("--inner-port", "PORT", "Inner TCP/UDP source or destination port.")] = None,
    inner_tcp_flags: Annotated[_L, _opt("--inner-tcp-flags", "FLAGS", _FLAGS_HELP)] = None,
    inner_mac: Annotated[_L, _opt("--inner-mac", "MAC", "Inner Ethernet source or destination MAC.")] = None,
    inner_vlan: Annotated[bool, typer.Option("--inner-vlan", help="The inner frame carries an 802.1Q tag.")] = False,
    inner_vlan_id: Annotated[_I, _opt("--inner-vlan-id", "VID", "Inner 802.1Q VLAN id (implies --inner-vlan).")] = None,
    outer_src: Annotated[_L, _opt("--outer-src", "IP", "Underlay (VTEP) source, IPv4/IPv6/CIDR.")] = None,
    outer_dst: Annotated[_L, _opt("--outer-dst", "IP", "Underlay destination.")] = None,
    outer_host: Annotated[_L, _opt("--outer-host", "IP", "Underlay source or destination.")] = None,
    outer_ip: Annotated[str, typer.Option("--outer-ip", help="Outer IP version: any, 4 or 6 (4 gives the "
                                          "shortest filter).")] = "any",
    outer_vlan: Annotated[bool, typer.Option("--outer-vlan", help="Captured frames carry an 802.1Q tag (trunk "
                                             "port): prefix libpcap's 'vlan'.")] = False,
    conversation: Annotated[_L, _opt("--conversation", "A:P,B:Q", _CONV_HELP)] = None,
    dialect: Annotated[Dialect, typer.Option("--dialect", help="pcap (tcpdump/libpcap) or wireshark (display "
                                             "filter, tshark -Y).")] = Dialect.pcap,
    explain: Annotated[bool, typer.Option("--explain", help="Also print the byte map of every term.")] = False,
    check: Annotated[Path | None, typer.Option("--check", metavar="PCAP", help="Run the filter with libpcap "
                                               "over PCAP and compare with what the decoder says matches "
                                               "(exit 1 if they differ).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="With --check or --connection: JSON output.")] = False,
    connection: Annotated[int | None, typer.Option("--connection", metavar="ID", help="Print one filter per "
                                                   "capture point for connection ID of `meshpkt analyze "
                                                   "CAPTURES`.")] = None,
    captures: Annotated[list[str] | None, typer.Argument(help="With --connection: the captures (PATH or "
                                                         "POINT=PATH) to analyse.", show_default=False)] = None,
) -> None:
    """Build a tcpdump (BPF) filter for fields inside VXLAN; prints the expression alone."""
    from meshpkt.bpf import FilterSpec, build, render
    from meshpkt.bpf import explain as explain_lines

    if connection is not None:
        _connection(connection, captures or [], port, dialect.value, json_out)
        return
    if captures:
        raise UsageError(f"unexpected arguments {captures!r} (captures go with --connection)")
    spec = FilterSpec.from_flags(
        ports=tuple(port or (VXLAN_PORT,)), vni=tuple(vni or ()), inner_proto=tuple(inner_proto or ()),
        inner_src=tuple(inner_src or ()), inner_dst=tuple(inner_dst or ()), inner_host=tuple(inner_host or ()),
        inner_net=tuple(inner_net or ()), inner_sport=tuple(inner_sport or ()),
        inner_dport=tuple(inner_dport or ()), inner_port=tuple(inner_port or ()),
        inner_tcp_flags=tuple(inner_tcp_flags or ()), inner_mac=tuple(inner_mac or ()), inner_vlan=inner_vlan,
        inner_vlan_id=tuple(inner_vlan_id or ()), outer_src=tuple(outer_src or ()),
        outer_dst=tuple(outer_dst or ()), outer_host=tuple(outer_host or ()), outer_ip=outer_ip,
        outer_vlan=outer_vlan, conversation=tuple(conversation or ()),
    )
    if check is not None:
        _check(spec, check, json_out)
        return
    expr = build(spec)
    text = render(expr, dialect.value)  # type: ignore[arg-type]
    if dialect is Dialect.pcap:
        _compiles(text)
    typer.echo(text)
    if explain:
        for line in explain_lines(expr, dialect.value):  # type: ignore[arg-type]
            typer.echo(f"  {line}")


def _compiles(text: str) -> None:
    """Refuse to print an expression libpcap would reject (missing libpcap: no check)."""
    from meshpkt.bpf import libpcap
    from meshpkt.errors import ToolMissingError

    try:
        libpcap.compile_filter(text)
    except ToolMissingError:
        return


def _check(spec: Any, path: Path, json_out: bool) -> None:
    from meshpkt.bpf.check import check_capture

    res = check_capture(spec, path)
    if json_out:
        typer.echo(json.dumps(res.to_json(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(show_header=False, title=f"filter check: {res.path}", title_justify="left")
        t.add_row("filter", res.expression)
        t.add_row("packets", str(res.packets))
        t.add_row("libpcap matches", str(res.libpcap))
        t.add_row("decoder says", str(res.decoder))
        t.add_row("verdict", "equal" if res.equal else f"DIFFER at records {res.disagree}")
        Console(highlight=False, soft_wrap=True).print(t)
    if not res.equal:
        raise typer.Exit(1)


def _connection(conn_id: int, captures: list[str], ports: list[str] | None, dialect: str, json_out: bool) -> None:
    if not captures:
        raise UsageError("--connection needs the captures to analyse: meshpkt filter --connection ID CAPTURES...")
    from meshpkt.bpf import filters_for_hops
    from meshpkt.bpf.spec import parse_port
    from meshpkt.cli.analyze import parse_capture_args
    from meshpkt.flows import analyze

    port_nums = [parse_port(p, "VXLAN port") for p in ports or []]
    vxlan_ports = tuple(sorted({VXLAN_PORT, *port_nums}))
    analysis = analyze(parse_capture_args(captures), vxlan_ports=vxlan_ports)
    try:
        conn = analysis.connection(conn_id)
    except KeyError:
        n = len(analysis.connections)
        raise UsageError(f"no connection {conn_id} in these captures ({n} connection{'s' * (n != 1)})") from None
    vx_port = port_nums[0] if port_nums else VXLAN_PORT
    hops = [dict(h, proto=conn.get("proto") or "tcp", port=vx_port) for h in conn["hops"]]
    filters = filters_for_hops(hops, dialect)  # type: ignore[arg-type]
    if json_out:
        typer.echo(json.dumps({"connection": conn_id, "filters": filters}, indent=2))
        return
    for point, text in filters.items():
        typer.echo(f"{point}\t{text}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("filter", epilog=_EPILOG, no_args_is_help=False)(filter_cmd)
