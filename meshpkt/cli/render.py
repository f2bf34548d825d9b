"""Rich rendering of analyses for people (tables)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from meshpkt.flows import Analysis


def _console(out: Path | None, buf: io.StringIO) -> Any:
    from rich.console import Console

    if out is None:
        import sys

        return Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=200)
    return Console(file=buf, width=160, highlight=False, force_terminal=False, color_system=None)


def _ms(ns: Any) -> str:
    try:
        return f"{int(ns) / 1e6:.3f}"
    except (TypeError, ValueError):
        return ""


def _summary_tables(con: Console, a: Analysis) -> None:
    """Capture summary, capture points with clock offsets, VNIs."""
    from rich.table import Table

    s = a.summary
    t = Table(title="Capture", show_header=False, title_justify="left")
    t.add_row("packets", str(s["packets"]))
    t.add_row("time span", f"{s['duration_s']:.6f} s")
    t.add_row("bytes", str(s["bytes"]))
    t.add_row("link types", ", ".join(f"{k}: {v}" for k, v in s["linktypes"].items()))
    t.add_row("decoded", ", ".join(f"{k}: {v}" for k, v in s["decoded"].items()) + f", truncated: {s['truncated']}")
    t.add_row("topology", str(s["topology"]))
    t.add_row("connections", str(s["connections"]))
    con.print(t)
    if s["points"]:
        pt = Table(title="Capture points", title_justify="left")
        pt.add_column("point")
        pt.add_column("packets", justify="right")
        pt.add_column("clock offset (ms)", justify="right")
        for p, n in s["points"].items():
            off = s.get("clock_offsets", {}).get(p, {})
            txt = (f"{off['offset_ns'] / 1e6:+.3f} ± {off['uncertainty_ns'] / 1e6:.3f}"
                   if off.get("applied") else "")
            pt.add_row(p, str(n), txt)
        con.print(pt)
    if s["vnis"]:
        vt = Table(title="VXLAN VNIs", title_justify="left")
        vt.add_column("vni", justify="right")
        vt.add_column("packets", justify="right")
        for k, v in s["vnis"].items():
            vt.add_row(k, str(v))
        con.print(vt)


def _traffic_tables(con: Console, s: Mapping[str, Any]) -> None:
    """Top outer talkers and the flows inside VXLAN."""
    from rich.table import Table

    if s["top_talkers"]:
        tt = Table(title="Top talkers (outer)", title_justify="left")
        for col in ("src", "dst", "proto", "packets", "bytes"):
            tt.add_column(col, justify="right" if col in ("packets", "bytes") else "left")
        for r in s["top_talkers"]:
            tt.add_row(r["src"], r["dst"], r["proto"], str(r["packets"]), str(r["bytes"]))
        con.print(tt)
    if s["inner_flows"]:
        it = Table(title="Inner flows (inside VXLAN)", title_justify="left")
        for col in ("vni", "src", "dst", "proto", "packets"):
            it.add_column(col)
        for r in s["inner_flows"]:
            it.add_row(str(r["vni"]), r["src"], r["dst"], r["proto"], str(r["packets"]))
        con.print(it)


def _connections_table(con: Console, a: Analysis, limit: int | None) -> None:
    from rich.table import Table

    if len(a.connections):
        ct = Table(title="Connections", title_justify="left")
        for col in ("id", "client", "entry", "backend", "status", "hops", "missing at", "verdict"):
            ct.add_column(col)
        from meshpkt.report import connections_for_table

        shown, more = connections_for_table(a.connections, limit)
        if more:
            ct.caption = f"... and {more} more (--all shows every connection)"
        for r in shown.itertuples():
            backend = r.backend or ""
            if r.backend_node:
                backend += f" ({r.backend_node})"
            entry = r.entry + (f" ({r.entry_node})" if r.entry_node else "")
            ct.add_row(str(r.conn_id), r.client, entry, backend, r.status, str(r.hops_seen), r.missing_at or "",
                       _verdict_cell(r))
        con.print(ct)


def _verdict_cell(row: Any) -> str:
    """The verdict code, with the lost segments when the connection recovered from a loss."""
    code = getattr(row, "verdict_code", None)
    text = code if isinstance(code, str) and code else ("ok" if row.verdict == "ok" else "problem")
    lost = int(getattr(row, "lost_fwd", 0) or 0) + int(getattr(row, "lost_bwd", 0) or 0)
    return f"{text} ({lost} lost)" if lost else text


def _balance_table(con: Console, a: Analysis) -> None:
    from rich.table import Table

    per = a.balance.get("per_entry", {})
    if per:
        bt = Table(title="Load balancing (requests per backend per entry node)", title_justify="left")
        backends = sorted({b for d in per.values() for b in d})
        bt.add_column("entry node")
        for b in backends:
            bt.add_column(b, justify="right")
        bt.add_column("round-robin")
        for node, d in per.items():
            rr = a.balance["round_robin"][node]["round_robin"]
            bt.add_row(node, *[str(d.get(b, 0)) for b in backends], "yes" if rr else "no")
        con.print(bt)


def render_analysis(a: Analysis, out: Path | None = None, limit: int | None = None) -> None:
    """Summary tables, then the connections (those with a problem first; at most ``limit``
    rows, all of them with ``None``), balance and clock offsets."""
    buf = io.StringIO()
    con = _console(out, buf)
    _summary_tables(con, a)
    _traffic_tables(con, a.summary)
    _connections_table(con, a, limit)
    _balance_table(con, a)
    if out is not None:
        out.write_text(buf.getvalue())


def render_connection(a: Analysis, conn_id: int, out: Path | None = None) -> None:
    """Hop-by-hop view of one connection."""
    from rich.table import Table

    buf = io.StringIO()
    con = _console(out, buf)
    c = a.connection(conn_id)
    con.print(f"[bold]connection {c['id']}[/bold]  {c['client']} -> {c['entry']}"
              f" ({c['entry_node'] or '?'}) -> {c['backend'] or '?'} ({c['backend_node'] or '?'})")
    con.print(f"status: {c['status']}   bytes: {c['bytes_fwd']} -> / <- {c['bytes_bwd']}   "
              f"retransmissions: {c['retransmissions']}")
    t = Table(title="Hops (path order)", title_justify="left")
    for col in ("#", "point", "src", "dst", "vxlan", "+ms", "packets", "bytes", "retrans"):
        t.add_column(col)
    for i, h in enumerate(c["hops"]):
        vx = f"vni {h['vni']} {h['outer_src']} > {h['outer_dst']}" if h["vni"] is not None else ""
        t.add_row(str(i), h["point"], h["src"], h["dst"], vx, _ms(h["latency_ns"]), str(h["packets"]),
                  str(h["bytes"]), str(h["retransmissions"]))
    con.print(t)
    if c["translations"]:
        tt = Table(title="Translations", title_justify="left")
        for col in ("kind", "between", "before", "after"):
            tt.add_column(col)
        for tr in c["translations"]:
            tt.add_row(tr["kind"], " -> ".join(tr["between"]), tr["before"], tr["after"])
        con.print(tt)
    con.print(f"last seen: {c['last_seen_point']}   missing at: {c['missing_at'] or '-'}")
    con.print(f"verdict: {c['verdict']}")
    if out is not None:
        out.write_text(buf.getvalue())
