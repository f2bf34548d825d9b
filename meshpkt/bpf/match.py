"""Evaluate a filter over meshpkt's packet table, with the semantics of the compiled BPF.

BPF runs the conjuncts left to right and stops at the first false one; a load past the
captured bytes does not make one test false, it ends the whole program with "reject". So
every term evaluates, per packet, to 1 (true), 0 (false) or -1 (its field is absent from the
table: the load would run past the captured bytes), and And/Or combine the three values
like BPF does: a -1 reached during evaluation decides the packet as rejected even inside an
Or. Guard terms (EtherType, protocol, first fragment) come before the loads they protect
(see :func:`meshpkt.bpf.spec.build`), so a field absent *by meaning* (ports of an ICMP
packet) is never reached.

Link layer: libpcap's offsets assume untagged frames unless the filter starts with ``vlan``
(:class:`~meshpkt.bpf.terms.OuterVlan`, then exactly one tag); tagged rows are excluded
accordingly.

Known limits (documented in the README): the table has no inner fragment offset (a later
inner fragment is recognised by its missing ports), no outer IPv6 extension-header flag
(libpcap does not follow them; the decoder may), and 0.0.0.0 / MAC 0 read as "absent".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from meshpkt.bpf.spec import FilterSpec, build
from meshpkt.bpf.terms import (
    And,
    Const,
    Expr,
    InnerAddr,
    InnerEtherType,
    InnerFirstFragment,
    InnerMac,
    InnerPort,
    InnerProto,
    InnerTcpFlags,
    InnerVlan,
    Or,
    OuterAddr,
    OuterFamily,
    OuterPort,
    OuterProto,
    OuterVlan,
    Term,
    Vni,
    VxlanPort,
    walk,
)
from meshpkt.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

T, F, ABORT = np.int8(1), np.int8(0), np.int8(-1)


class _Cols:
    """Lazy numpy views of the table's columns."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.n = len(df)
        self._c: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._c:
            if name not in self.df.columns:
                raise UsageError(f"packet table has no column {name!r} (not a meshpkt packet table?)")
            col = self.df[name]
            if col.dtype == object:
                self._c[name] = col.to_numpy()
            else:
                self._c[name] = col.to_numpy(dtype=np.int64, na_value=-1)
        return self._c[name]


def _tri(value: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    out = np.where(value, T, F).astype(np.int8)
    if present is not None:
        out[~present] = ABORT
    return out


def _v6_in(col: np.ndarray, net: Any) -> np.ndarray:
    prefix = int(net.network_address)
    mask = int(net.netmask)
    return np.fromiter(((x is not None and (int.from_bytes(x, "big") & mask) == prefix) for x in col),
                       dtype=bool, count=len(col))


def _term(t: Term, c: _Cols) -> np.ndarray:
    if isinstance(t, OuterVlan):
        return _tri(c["vlan"] != -1)
    if isinstance(t, OuterFamily):
        return _tri(c["outer_ipver"] == t.version)
    if isinstance(t, VxlanPort):
        is_udp = c["outer_proto"] == 17
        hit = is_udp & (c["outer_dport"] == t.port)
        out = _tri(hit)
        out[is_udp & (c["outer_dport"] == -1) & ~c["outer_frag"].astype(bool)] = ABORT
        return out
    if isinstance(t, OuterAddr):
        name = "outer_src" if t.dir == "src" else "outer_dst"
        if t.version == 4:
            v4 = c["outer_ipver"] == 4
            val = c[name]
            return _tri(v4 & ((val & int(t.net.netmask)) == int(t.net.network_address)), ~(v4 & (val == 0)))
        return _tri((c["outer_ipver"] == 6) & _v6_in(c[name + "6"], t.net))
    if isinstance(t, OuterProto):
        return _tri(c["outer_proto"] == t.proto)
    if isinstance(t, OuterPort):
        port = c["outer_sport" if t.dir == "src" else "outer_dport"]
        l4 = np.isin(c["outer_proto"], (6, 17))
        out = _tri(l4 & (port == t.port))
        out[l4 & (port == -1) & ~c["outer_frag"].astype(bool)] = ABORT
        return out
    if isinstance(t, Vni):
        return _tri(c["vni"] == t.vni, c["vni"] != -1)
    if isinstance(t, InnerMac):
        col = c["inner_eth_src" if t.dir == "src" else "inner_eth_dst"]
        return _tri(col == t.mac, col != 0)
    if isinstance(t, InnerEtherType):
        et, iv = c["inner_ethertype"], c["inner_vlan"]
        tagged = iv != -1
        return _tri((et == 0x0800) & (tagged if t.vlan else ~tagged), et != 0)
    if isinstance(t, InnerVlan):
        iv = c["inner_vlan"]
        if t.vid is None:
            return _tri(iv != -1, (iv != -1) | (c["inner_ethertype"] != 0))
        return _tri(iv == t.vid, iv != -1)
    if isinstance(t, InnerProto):
        p = c["inner_proto"]
        return _tri(p == t.proto, p != -1)
    if isinstance(t, InnerAddr):
        col = c["inner_src" if t.dir == "src" else "inner_dst"]
        return _tri((col & int(t.net.netmask)) == int(t.net.network_address), col != 0)
    if isinstance(t, InnerFirstFragment):
        # no inner fragment column: a later fragment shows up as missing ports in the next term
        return _tri(np.ones(c.n, dtype=bool), c["inner_proto"] != -1)
    if isinstance(t, InnerPort):
        col = c["inner_sport" if t.dir == "src" else "inner_dport"]
        return _tri(col == t.port, col != -1)
    if isinstance(t, InnerTcpFlags):
        fl = c["tcp_flags"]
        return _tri((fl & (t.set | t.clear)) == t.set, fl != -1)
    raise TypeError(f"no evaluation for term {t!r}")


def _eval(e: Expr, c: _Cols) -> np.ndarray:
    if isinstance(e, Term):
        return _term(e, c)
    if isinstance(e, Const):
        return np.full(c.n, T if e.value else F, dtype=np.int8)
    if isinstance(e, And | Or):
        stop_on = F if isinstance(e, And) else T
        res = np.full(c.n, T if isinstance(e, And) else F, dtype=np.int8)
        active = np.ones(c.n, dtype=bool)
        for item in e.items:
            if not active.any():
                break
            r = _eval(item, c)
            decided = active & ((r == stop_on) | (r == ABORT))
            res[decided] = r[decided]
            active &= ~decided
        return res
    raise TypeError(f"not an expression node: {e!r}")


def evaluate(expr: Expr, df: pd.DataFrame) -> np.ndarray:
    """Per-row tri-state result (1 accept, 0 reject, -1 rejected by an out-of-bounds load)."""
    c = _Cols(df)
    res = _eval(expr, c)
    # the link layer as libpcap sees it: untagged, or exactly one tag after "vlan"
    if "vlan" in df.columns:
        tagged = c["vlan"] != -1
        if any(isinstance(n, OuterVlan) for n in walk(expr)):
            ok = tagged & (c["vlan2"] == -1)
        else:
            ok = ~tagged
        res = np.where(ok, res, F).astype(np.int8)
    return res


def match(spec: FilterSpec | Expr, df: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``df`` (meshpkt's packet table): the rows the filter selects."""
    expr = build(spec) if isinstance(spec, FilterSpec) else spec
    return evaluate(expr, df) == T
