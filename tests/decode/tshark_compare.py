"""The packet table against tshark, field by field, on any capture (crafted or from the wild).

tshark dissects each packet once (``-T fields``, every occurrence of every field, and
``frame.protocols``, the chain of dissectors). The chain tells which occurrence of a field
belongs to the layer a meshpkt column describes: the outer IP is the first ``ip``/``ipv6``,
the inner one the first after the last tunnel meshpkt decoded, the transport the protocol
right after that IP (an ICMP error's quoted header comes later and is never compared).

Each comparison ends in one of:

- ``wrong``: both have the field and the values differ;
- ``hidden``: tshark has the field, meshpkt does not, and the row does not say why
  (``decoded`` 0/1 and no ``problems``);
- ``unconfirmed``: meshpkt has a value where tshark has none at that layer, and the row does
  not say why (a first fragment's payload length, a length taken from the frame's end are
  flagged in ``problems`` and not counted).

Ports on which meshpkt found VXLAN are passed to tshark as ``-d udp.port==P,vxlan`` (tshark
only knows 4789), so that both dissect the same layers.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from meshpkt.decode.schema import valid

FIELDS = ["frame.time_epoch", "frame.len", "frame.cap_len", "frame.protocols", "eth.src", "eth.dst",
          "sll.src.eth", "ip.src", "ip.dst", "ip.id", "ip.ttl", "ip.proto", "ip.flags.df", "ip.flags.mf",
          "ip.frag_offset", "ipv6.src", "ipv6.dst", "ipv6.hlim", "udp.srcport", "udp.dstport", "tcp.srcport",
          "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
          "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.timestamp.tsval",
          "tcp.options.timestamp.tsecr", "tcp.len", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
          "esp.spi", "vxlan.vni", "geneve.vni", "vlan.id", "ieee8021ad.id"]
TUNNEL_TOKENS = ("vxlan", "geneve", "vxlan-gpe", "vxlan_gpe")
V6_EXT_TOKENS = ("ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr", "ipv6.dstopts", "ipv6.shim6", "ah")


@dataclass(frozen=True)
class Diff:
    capture: str
    record: int
    field: str
    kind: str  # wrong / hidden / unconfirmed
    ours: object
    theirs: object

    def __str__(self) -> str:
        return (f"{self.capture} #{self.record} {self.field}: {self.kind} "
                f"(meshpkt {self.ours!r}, tshark {self.theirs!r})")


def tshark_rows(path: Path, vxlan_ports: list[int]) -> list[dict[str, list[str]]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-o", "tcp.desegment_tcp_streams:FALSE", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for port in vxlan_ports:
        cmd += ["-d", f"udp.port=={port},vxlan"]
    for f in FIELDS:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = []
    for line in r.stdout.splitlines():
        vals = line.split("|")
        rows.append({f: [x for x in v.split(",") if x] for f, v in zip(FIELDS, vals, strict=True)})
    return rows


def vxlan_ports_found(df: pd.DataFrame) -> list[int]:
    """Ports on which meshpkt decoded VXLAN that tshark does not dissect as VXLAN by itself."""
    vx = df[(df["tunnel"] == 1)]
    ports = set()
    for sp, dp in zip(vx["outer_sport"], vx["outer_dport"], strict=True):
        if 4789 in (sp, dp):
            continue
        ports.add(int(dp) if dp in (8472, 4790) or dp < sp else int(sp))
    return sorted(ports)


def _ip4(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def _ip6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def _num(s: str) -> int:
    return int(s, 0)


def _mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


def _ts(s: str) -> int:
    sec, _, frac = s.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]) * (1 if not sec.startswith("-") else -1)


class _Row:
    """One packet: our row and tshark's fields, located by the protocol chain."""

    def __init__(self, capture: str, row: pd.Series, valid_of: dict[str, bool], theirs: dict[str, list[str]]):
        self.capture = capture
        self.r = row
        self.ok = valid_of
        self.t = theirs
        self.chain = theirs["frame.protocols"][0].split(":") if theirs["frame.protocols"] else []
        self.flagged = int(row["decoded"]) == 2 or int(row["problems"]) != 0

    def occurrence(self, pos: int, field: str) -> str | None:
        """The value of ``field`` for the chain token at ``pos`` (its n-th occurrence)."""
        if pos < 0:
            return None
        token = self.chain[pos]
        k = self.chain[:pos].count(token)
        vals = self.t[field]
        return vals[k] if k < len(vals) else None

    def compare(self, col: str, pos: int, field: str, conv: object) -> Iterator[Diff]:
        theirs = self.occurrence(pos, field)
        ours_ok = self.ok[col]
        ours = self.r[col]
        if theirs is not None:
            t = conv(theirs)  # type: ignore[operator]
            if ours_ok and ours != t:
                yield self.diff(col, "wrong", ours, t)
            elif not ours_ok and not self.flagged:
                yield self.diff(col, "hidden", None, t)
        elif ours_ok and pos >= 0 and not self.flagged:
            yield self.diff(col, "unconfirmed", ours, None)

    def diff(self, col: str, kind: str, ours: object, theirs: object) -> Diff:
        return Diff(self.capture, int(self.r["record"]), col, kind, _plain(ours), _plain(theirs))


def _plain(v: object) -> object:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


COMPARED = ["eth_src", "eth_dst", "outer_src", "outer_dst", "outer_ip_id", "outer_ttl", "outer_proto", "outer_df",
            "outer_src6", "outer_dst6", "outer_sport", "outer_dport", "vni", "vni_inner", "inner_eth_src",
            "inner_eth_dst", "inner_src", "inner_dst", "inner_ttl", "inner_proto", "inner_src6", "inner_dst6",
            "inner_sport", "inner_dport", "ip_id", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_win", "tcp_mss",
            "tcp_wscale", "tcp_tsval", "tcp_tsecr", "icmp_type", "icmp_code", "esp_spi", "payload_len"]


def compare_capture(df: pd.DataFrame, path: Path, name: str | None = None) -> tuple[list[Diff], int]:
    """(differences, number of values compared) between meshpkt's table and tshark."""
    rows = tshark_rows(path, vxlan_ports_found(df))
    assert len(rows) == len(df), f"{path}: tshark {len(rows)} rows, meshpkt {len(df)}"
    masks = {c: valid(df, c) for c in COMPARED + ["ts_ns"]}
    diffs: list[Diff] = []
    checks = 0
    for i, theirs in enumerate(rows):
        row = _Row(name or path.name, df.iloc[i], {c: bool(m[i]) for c, m in masks.items()}, theirs)
        diffs.extend(_frame(row))
        diffs.extend(_layers(row))
        checks += _count(row)
    return diffs, checks


def _count(row: _Row) -> int:
    return sum(len(v) for k, v in row.t.items() if k != "frame.protocols")


def _frame(row: _Row) -> Iterator[Diff]:
    r, t = row.r, row.t
    if row.ok["ts_ns"] and t["frame.time_epoch"] and int(r["ts_ns"]) != _ts(t["frame.time_epoch"][0]):
        yield row.diff("ts_ns", "wrong", int(r["ts_ns"]), _ts(t["frame.time_epoch"][0]))
    for col, f in (("wirelen", "frame.len"), ("caplen", "frame.cap_len")):
        if int(r[col]) != int(t[f][0]):
            yield row.diff(col, "wrong", int(r[col]), int(t[f][0]))


def _positions(row: _Row) -> tuple[int, int, int, int, int]:
    """Chain positions: (outer IP, outer transport, innermost L2, innermost IP, innermost transport)."""
    ch = row.chain
    ips = [k for k, tok in enumerate(ch) if tok in ("ip", "ipv6")]
    tun = [k for k, tok in enumerate(ch) if tok in TUNNEL_TOKENS]
    depth = int(row.r["tunnel_depth"])
    outer_ip = ips[0] if ips and int(row.r["outer_ipver"]) else -1
    inner_ip = inner_l2 = -1
    if depth and len(tun) >= depth:
        after = tun[depth - 1]
        inner_ip = next((k for k in ips if k > after), -1)
        inner_l2 = after + 1 if after + 1 < len(ch) and ch[after + 1] == "eth" else -1
    last_ip = inner_ip if depth else outer_ip
    return outer_ip, _transport_pos(ch, outer_ip), inner_l2, inner_ip, _transport_pos(ch, last_ip)


def _transport_pos(ch: list[str], ip: int) -> int:
    if ip < 0:
        return -1
    k = ip + 1
    while k < len(ch) and ch[k] in V6_EXT_TOKENS:
        k += 1
    return k if k < len(ch) and ch[k] in ("tcp", "udp", "icmp", "icmpv6", "esp") else -1


def _layers(row: _Row) -> Iterator[Diff]:
    r = row.r
    outer_ip, outer_t, inner_l2, inner_ip, last_t = _positions(row)
    if int(r["linktype"]) == 1 and row.chain[:1] == ["eth"]:
        yield from row.compare("eth_src", 0, "eth.src", _mac)
        yield from row.compare("eth_dst", 0, "eth.dst", _mac)
    yield from _ip_fields(row, outer_ip, "outer")
    yield from _ip_fields(row, inner_ip, "inner")
    if inner_l2 >= 0:
        yield from row.compare("inner_eth_src", inner_l2, "eth.src", _mac)
        yield from row.compare("inner_eth_dst", inner_l2, "eth.dst", _mac)
    depth = int(r["tunnel_depth"])
    if depth:
        tun = [k for k, tok in enumerate(row.chain) if tok in TUNNEL_TOKENS]
        yield from _vni(row, "vni", tun[0] if tun else -1)
        if depth > 1:
            yield from _vni(row, "vni_inner", tun[depth - 1] if len(tun) >= depth else -1)
        yield from _ports(row, outer_t, "outer")
        yield from _ports(row, last_t, "inner")
    else:
        yield from _ports(row, outer_t, "outer")
    yield from _transport(row, last_t)


def _ip_fields(row: _Row, pos: int, pre: str) -> Iterator[Diff]:
    if pos < 0:
        return
    if row.chain[pos] == "ip":
        yield from row.compare(f"{pre}_src", pos, "ip.src", _ip4)
        yield from row.compare(f"{pre}_dst", pos, "ip.dst", _ip4)
        yield from row.compare(f"{pre}_ttl", pos, "ip.ttl", int)
        if pre == "outer":
            yield from row.compare("outer_ip_id", pos, "ip.id", _num)
            yield from row.compare("outer_df", pos, "ip.flags.df", lambda x: x in ("1", "True"))
            yield from row.compare("outer_proto", pos, "ip.proto", int)
        if pre == "inner" or int(row.r["tunnel_depth"]) == 0:
            yield from row.compare("ip_id", pos, "ip.id", _num)
            if pre == "inner":
                yield from row.compare("inner_proto", pos, "ip.proto", int)
    else:
        yield from row.compare(f"{pre}_src6", pos, "ipv6.src", _ip6)
        yield from row.compare(f"{pre}_dst6", pos, "ipv6.dst", _ip6)
        yield from row.compare(f"{pre}_ttl", pos, "ipv6.hlim", int)


def _vni(row: _Row, col: str, pos: int) -> Iterator[Diff]:
    if pos < 0:
        return
    field = "geneve.vni" if row.chain[pos] == "geneve" else "vxlan.vni"
    yield from row.compare(col, pos, field, _num)


def _ports(row: _Row, pos: int, pre: str) -> Iterator[Diff]:
    if pos < 0 or row.chain[pos] not in ("tcp", "udp"):
        return
    tok = row.chain[pos]
    yield from row.compare(f"{pre}_sport", pos, f"{tok}.srcport", int)
    yield from row.compare(f"{pre}_dport", pos, f"{tok}.dstport", int)


TCP_FIELDS = [("tcp_seq", "tcp.seq_raw"), ("tcp_ack", "tcp.ack_raw"), ("tcp_flags", "tcp.flags"),
              ("tcp_win", "tcp.window_size_value"), ("tcp_mss", "tcp.options.mss_val"),
              ("tcp_wscale", "tcp.options.wscale.shift"), ("tcp_tsval", "tcp.options.timestamp.tsval"),
              ("tcp_tsecr", "tcp.options.timestamp.tsecr"), ("payload_len", "tcp.len")]


def _transport(row: _Row, pos: int) -> Iterator[Diff]:
    if pos < 0:
        return
    tok = row.chain[pos]
    if tok == "tcp":
        for col, f in TCP_FIELDS[:4] + TCP_FIELDS[8:]:
            # tcp_flags is the flags byte; tshark's tcp.flags has 12 bits (AE/reserved on top)
            yield from row.compare(col, pos, f, (lambda x: _num(x) & 0xFF) if col == "tcp_flags" else _num)
        for col, f in TCP_FIELDS[4:8]:  # options: one per header, no occurrence alignment needed
            if row.t[f] or row.ok[col]:
                yield from row.compare(col, pos, f, _num)
    elif tok in ("icmp", "icmpv6"):
        yield from row.compare("icmp_type", pos, f"{tok}.type", int)
        yield from row.compare("icmp_code", pos, f"{tok}.code", int)
    elif tok == "esp":
        yield from row.compare("esp_spi", pos, "esp.spi", _num)
    elif tok == "udp" and "esp" in row.chain[pos + 1:pos + 3]:  # ESP in UDP (NAT-T)
        yield from row.compare("esp_spi", row.chain.index("esp", pos), "esp.spi", _num)
