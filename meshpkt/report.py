"""Output for machines: the documented export shapes of packets, hops and connections, and the
JSON document, each built from whole columns (Arrow/numpy) in one pass and streamed (pure, except
that the writers write to the stream they are given)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meshpkt.decode.export import PACKET_EXPORT_COLUMNS, packets_for_export  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from meshpkt.flows import Analysis


def hops_for_export(hops: pd.DataFrame) -> pd.DataFrame:
    """The per-hop table: one row per (connection, hop) with display strings."""
    drop = [c for c in ("src_ip", "dst_ip") if c in hops.columns]
    return hops.drop(columns=drop)


# --- JSON output (README "JSON output"), written from grouped columns -------------------------------

#: Connections per chunk of the streamed JSON document (bounds the strings held at once).
JSON_CHUNK = 20_000
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}
_NEEDS_FALLBACK = "[\\x00-\\x1f]"  # control characters: let Python's json escape those rare strings


def _arrow(values: Any, type_: pa.DataType | None = None) -> pa.Array:
    """One contiguous Arrow array of a column (pandas' Arrow-backed strings come chunked)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=type_,
                                                                                  from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _may_need_escape(arr: pa.Array) -> bool:
    """Whether any byte of the array's character data is a quote, a backslash or a control
    character (a conservative scan of the whole data buffer at memory speed)."""
    data = arr.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool((raw < 0x20).any() or (raw == 0x22).any() or (raw == 0x5C).any())


def _escaped(arr: pa.Array) -> pa.Array:
    """Strings made safe inside JSON quotes (only when some need it: quotes, backslashes and
    control characters are rare in addresses and point names)."""
    if not len(arr) or not _may_need_escape(arr):
        return arr
    if pc.any(pc.match_substring_regex(arr, _NEEDS_FALLBACK)).as_py():
        return pa.array([None if v is None else json.dumps(v)[1:-1] for v in arr.to_pylist()], type=pa.string())
    return pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')


def _text(values: Any) -> pa.Array:
    arr = _arrow(values, pa.string())
    return _escaped(arr if arr.type == pa.string() else pc.cast(arr, pa.string()))


def _jstr(values: Any) -> pa.Array:
    """JSON-encoded strings (``"..."``, ``null`` for absent values) of a column, vectorised."""
    return pc.fill_null(pc.binary_join_element_wise('"', _text(values), '"', ""), "null")


def _jint(values: Any) -> pa.Array:
    """JSON integers (``null`` for absent values) of a numeric column, vectorised."""
    arr = _arrow(values)
    if pa.types.is_floating(arr.type):
        arr = pc.cast(pc.round(arr), pa.int64())
    return pc.fill_null(pc.cast(arr, pa.string()), "null")


class _Quoted:
    """A string column that has no nulls: quoted inline by ``_jobject`` (one pass fewer)."""

    def __init__(self, values: Any) -> None:
        self.arr = _text(values)


def _jobject(fields: list[tuple[str, pa.Array | _Quoted]]) -> pa.Array:
    """``{"k": v, ...}`` per row from JSON-encoded columns (or ``_Quoted`` strings), one pass."""
    parts: list[Any] = []
    lit = ""
    for i, (key, col) in enumerate(fields):
        lit += ("{" if i == 0 else ", ") + json.dumps(key) + ": "
        if isinstance(col, _Quoted) and col.arr.null_count == 0:
            parts += [lit + '"', col.arr]
            lit = '"'
        else:
            parts += [lit, _jstr(col.arr) if isinstance(col, _Quoted) else col]
            lit = ""
    parts.append(lit + "}")
    return pc.binary_join_element_wise(*parts, "")


def _jlists(values: pa.Array, offsets: np.ndarray) -> pa.Array:
    """``[v, ...]`` per group: ``values`` (JSON-encoded) grouped by ``offsets`` (len = groups + 1)."""
    lists = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", "")


def _grouped(conn_ids: np.ndarray, frame: pd.DataFrame, columns: list[str]) -> tuple[pa.Table, np.ndarray]:
    """(``columns`` of ``frame`` as Arrow, rows in the order of ``conn_ids``; offsets): group ``i``
    is rows ``offsets[i]:offsets[i + 1]``; rows of unknown connections are dropped."""
    pos = pd.Index(conn_ids).get_indexer(frame["conn_id"].to_numpy()) if len(frame) else np.zeros(0, np.int64)
    keep = np.flatnonzero(pos >= 0)
    order = keep[np.argsort(pos[keep], kind="stable")]
    counts = np.bincount(pos[keep], minlength=len(conn_ids))
    offsets = np.zeros(len(conn_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    table = pa.table({c: _arrow(frame[c].astype(str) if c == "point" else frame[c]) if c in frame
                      else pa.array([], pa.string()) for c in columns})
    return table.take(pa.array(order)), offsets


_HOP_COLUMNS = ["point", "src", "dst", "vni", "outer_src", "outer_dst", "first_ts_ns", "latency_ns", "packets",
                "bytes", "retrans_fwd", "retrans_bwd"]
_TR_COLUMNS = ["kind", "from_point", "to_point", "before", "after"]


def _hop_objects(hops: pa.Table) -> pa.Array:
    retrans = pc.add(pc.cast(hops["retrans_fwd"], pa.int64()), pc.cast(hops["retrans_bwd"], pa.int64()))
    return _jobject([
        ("point", _Quoted(hops["point"])), ("src", _Quoted(hops["src"])), ("dst", _Quoted(hops["dst"])),
        ("vni", _jint(hops["vni"])), ("outer_src", _Quoted(hops["outer_src"])),
        ("outer_dst", _Quoted(hops["outer_dst"])), ("first_ts_ns", _jint(hops["first_ts_ns"])),
        ("latency_ns", _jint(hops["latency_ns"])), ("packets", _jint(hops["packets"])),
        ("bytes", _jint(hops["bytes"])), ("retransmissions", _jint(retrans)),
    ])


def _translation_objects(tr: pa.Table) -> pa.Array:
    between = pc.binary_join_element_wise('["', _text(tr["from_point"]), '", "', _text(tr["to_point"]), '"]', "")
    return _jobject([("kind", _Quoted(tr["kind"])), ("between", between), ("before", _Quoted(tr["before"])),
                     ("after", _Quoted(tr["after"]))])


def _flood_values(flood: pa.Table) -> pa.Array:
    return _jstr(flood["point"])


@dataclass
class _Groups:
    """Per-connection rows of the hop, translation and flood tables, in connection order."""

    tables: list[tuple[pa.Table, np.ndarray, Callable[[pa.Table], pa.Array]]]

    @classmethod
    def of(cls, a: Analysis) -> _Groups:
        ids = a.connections["conn_id"].to_numpy()
        stray = a.hops["stray"].to_numpy().astype(bool) if len(a.hops) else np.zeros(0, bool)
        tr = a.translations if len(a.translations) else pd.DataFrame({c: [] for c in ["conn_id", *_TR_COLUMNS]})
        return cls([(*_grouped(ids, a.hops[~stray], _HOP_COLUMNS), _hop_objects),
                    (*_grouped(ids, tr, _TR_COLUMNS), _translation_objects),
                    (*_grouped(ids, a.hops[stray], ["point"]), _flood_values)])

    def lists(self, start: int, stop: int) -> tuple[pa.Array, pa.Array, pa.Array]:
        """JSON ``hops``, ``translations`` and ``flooded_to`` lists of connections ``start:stop``."""
        out = []
        for table, off, build in self.tables:
            part = table.slice(off[start], off[stop] - off[start])
            values = build(part) if part.num_rows else pa.array([], type=pa.string())
            out.append(_jlists(values, off[start:stop + 1] - off[start]))
        return out[0], out[1], out[2]


def _connection_objects(conns: pd.DataFrame, hops: pa.Array, trs: pa.Array, flooded: pa.Array) -> pa.Array:
    proto = conns["proto"].to_numpy().astype(np.int64)
    names = pd.Series(proto).map(_PROTO_NAMES).fillna(pd.Series(proto).astype(str))
    return _jobject([
        ("id", _jint(conns["conn_id"])), ("proto", _Quoted(names)), ("client", _Quoted(conns["client"])),
        ("entry", _Quoted(conns["entry"])), ("entry_node", _Quoted(conns["entry_node"])),
        ("backend", _Quoted(conns["backend"])), ("backend_node", _Quoted(conns["backend_node"])),
        ("backend_task", _Quoted(conns["backend_task"])), ("status", _Quoted(conns["status"])),
        ("first_ts_ns", _jint(conns["first_ts_ns"])), ("duration_ns", _jint(conns["duration_ns"])),
        ("bytes_fwd", _jint(conns["bytes_fwd"])), ("bytes_bwd", _jint(conns["bytes_bwd"])),
        ("retransmissions", _jint(conns["retrans"])), ("lost_fwd", _jint(conns["lost_fwd"])),
        ("lost_bwd", _jint(conns["lost_bwd"])), ("lost_at", _Quoted(conns["lost_at"])),
        ("hops", hops), ("translations", trs), ("flooded_to", flooded),
        ("last_seen_point", _Quoted(conns["last_seen_point"])), ("missing_at", _Quoted(conns["missing_at"])),
        ("verdict", _Quoted(conns["verdict"])),
    ])


def iter_connection_json(a: Analysis, chunk: int = JSON_CHUNK) -> Iterator[pa.Array]:
    """The connections' JSON objects (one string each, README "JSON output"), ``chunk`` at a time,
    in the order of ``a.connections``. Linear: every table is grouped once, never masked per connection."""
    groups = _Groups.of(a)
    n = len(a.connections)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        yield _connection_objects(a.connections.iloc[start:stop], *groups.lists(start, stop))


def write_json(a: Analysis, out: TextIO, chunk: int = JSON_CHUNK) -> None:
    """Stream the JSON document (``summary`` and ``connections``, one connection per line) to ``out``."""
    summary = json.dumps(a.summary, indent=2).replace("\n", "\n  ")
    out.write('{\n  "summary": ' + summary + ',\n  "connections": [')
    first = True
    for objs in iter_connection_json(a, chunk):
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(objs)], type=pa.int32()), objs),
                                ",\n    ")[0].as_py()
        out.write(("\n    " if first else ",\n    ") + joined)
        first = False
    out.write("\n  ]\n}\n" if not first else "]\n}\n")


def json_document(a: Analysis) -> dict[str, Any]:
    """The JSON document as Python data (what ``write_json`` writes)."""
    buf = io.StringIO()
    write_json(a, buf)
    doc: dict[str, Any] = json.loads(buf.getvalue())
    return doc


def connection_json(a: Analysis, conn_id: int) -> dict[str, Any]:
    """The JSON object of one connection (``KeyError`` when there is none)."""
    sel = a.connections[a.connections["conn_id"].to_numpy() == conn_id]
    if sel.empty:
        raise KeyError(conn_id)
    one = replace(a, connections=sel, hops=a.hops[a.hops["conn_id"].to_numpy() == conn_id],
                  translations=a.translations[a.translations["conn_id"].to_numpy() == conn_id])
    (obj,) = next(iter_connection_json(one)).to_pylist()
    doc: dict[str, Any] = json.loads(obj)
    return doc


# --- tables for people and files -----------------------------------------------------------------

#: Connections the default table shows (problems first); ``--all`` shows every one.
TABLE_LIMIT = 30


def connections_for_table(conns: pd.DataFrame, limit: int | None = TABLE_LIMIT) -> tuple[pd.DataFrame, int]:
    """(rows to show, how many more there are): connections with a problem (verdict other than
    ``ok``) first, then the rest, each in time order; at most ``limit`` rows (all with ``None``)."""
    if conns.empty:
        return conns, 0
    ok = (conns["verdict"].to_numpy() == "ok").astype(np.int8)
    order = np.lexsort((conns["first_ts_ns"].to_numpy(), ok))
    shown = order if limit is None else order[:limit]
    return conns.iloc[shown], len(conns) - len(shown)


def connections_for_export(conns: pd.DataFrame) -> pd.DataFrame:
    """The connections table for CSV/Parquet: ``flooded_to`` as a space-separated string."""
    if "flooded_to" not in conns.columns:
        return conns
    flooded = conns["flooded_to"].map(lambda v: " ".join(v) if isinstance(v, list) else "")
    return conns.assign(flooded_to=flooded)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """An export table as Arrow (nullable integers stay integers, absent values become nulls)."""
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_table(frame: pd.DataFrame, fmt: str, out: Any) -> None:
    """Write an export table as ``csv`` or ``parquet`` straight from Arrow to ``out`` (a path or a
    binary stream)."""
    table = to_arrow(frame)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, out, pcsv.WriteOptions(quoting_style="needed"))
    else:
        raise ValueError(f"unknown table format {fmt!r}")
