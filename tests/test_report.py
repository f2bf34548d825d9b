"""Export shapes of the packet table (``meshpkt.report``) on the shipped lab capture."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from meshpkt.decode import decode_file
from meshpkt.report import PACKET_EXPORT_COLUMNS, packets_for_export

CAP = Path(__file__).resolve().parents[1] / "captures" / "ingress-3node" / "node1.host.eth0.pcap"


def test_packets_export_formats_every_row_like_python():
    df = decode_file(CAP)
    out = packets_for_export(df)
    assert list(out.columns) == [c for c in PACKET_EXPORT_COLUMNS if c in df.columns]
    for raw, shown in zip(df["payload_hash"], out["payload_hash"], strict=True):
        assert shown == ("" if raw == 0 else f"{int(raw):016x}")
    for col in ("outer_src", "inner_dst"):
        for raw, shown in zip(df[col], out[col], strict=True):
            assert shown == ("" if raw == 0 else str(ipaddress.IPv4Address(int(raw))))
    for raw, shown in zip(df["eth_src"], out["eth_src"], strict=True):
        assert shown == ":".join(f"{b:02x}" for b in int(raw).to_bytes(6, "big"))
    vx = out[out["vni"].notna()]
    assert len(vx) and (vx["vni"] == 4096).all()


# --- the JSON document ---------------------------------------------------------------------------

import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from meshpkt import report  # noqa: E402
from meshpkt.flows import analyze  # noqa: E402

SHIPPED = CAP.parent
_FLOWS_CONFTEST = Path(__file__).resolve().parent / "flows" / "conftest.py"


def _synth():
    spec = importlib.util.spec_from_file_location("report_flows_conftest", _FLOWS_CONFTEST)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _none(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _reference_connection(a, conn_id: int) -> dict:
    """The document's connection object as the original per-connection code built it (row by row)."""
    row = a.connections[a.connections["conn_id"] == conn_id].iloc[0]
    all_hops = a.hops[a.hops["conn_id"] == conn_id]
    hops = all_hops[~all_hops["stray"].to_numpy()]
    tr = a.translations[a.translations["conn_id"] == conn_id]
    return {
        "id": int(conn_id), "proto": {6: "tcp", 17: "udp", 1: "icmp"}.get(int(row["proto"]), str(row["proto"])),
        "client": row["client"], "entry": row["entry"], "entry_node": _none(row["entry_node"]),
        "backend": _none(row["backend"]), "backend_node": _none(row["backend_node"]),
        "backend_task": _none(row["backend_task"]), "status": row["status"],
        "first_ts_ns": int(row["first_ts_ns"]), "duration_ns": int(row["duration_ns"]),
        "bytes_fwd": int(row["bytes_fwd"]), "bytes_bwd": int(row["bytes_bwd"]),
        "retransmissions": int(row["retrans"]), "lost_fwd": int(row["lost_fwd"]), "lost_bwd": int(row["lost_bwd"]),
        "lost_at": _none(row["lost_at"]),
        "hops": [{"point": h.point, "src": h.src, "dst": h.dst, "vni": _none(h.vni), "outer_src": _none(h.outer_src),
                  "outer_dst": _none(h.outer_dst), "first_ts_ns": int(h.first_ts_ns), "latency_ns": _none(h.latency_ns),
                  "packets": int(h.packets), "bytes": int(h.bytes),
                  "retransmissions": int(h.retrans_fwd + h.retrans_bwd)} for h in hops.itertuples()],
        "translations": [{"kind": t.kind, "between": [t.from_point, t.to_point], "before": t.before,
                          "after": t.after} for t in tr.itertuples()],
        "flooded_to": [str(p) for p in all_hops.loc[all_hops["stray"].to_numpy(), "point"]],
        "last_seen_point": row["last_seen_point"], "missing_at": _none(row["missing_at"]), "verdict": row["verdict"],
    }


def _check_document(a) -> dict:
    buf = io.StringIO()
    report.write_json(a, buf, chunk=2)  # several chunks even on small inputs
    doc = json.loads(buf.getvalue())
    assert doc["summary"] == json.loads(json.dumps(a.summary))
    assert [c["id"] for c in doc["connections"]] == a.connections["conn_id"].tolist()
    for got in doc["connections"]:
        assert got == _reference_connection(a, got["id"])
        assert a.connection(got["id"]) == got
    return doc


def test_json_document_of_the_shipped_captures_matches_the_row_by_row_reference():
    a = analyze([SHIPPED])
    doc = _check_document(a)
    assert len(doc["connections"]) == 6
    assert any(c["translations"] and c["hops"][0]["vni"] is None for c in doc["connections"])
    assert any(h["vni"] == 4096 for c in doc["connections"] for h in c["hops"])


def test_json_document_with_losses_floods_and_nulls_matches_the_reference(tmp_path):
    synth = _synth()
    conns = [synth.Conn("node1", "10.0.0.6", 51883, 57786, drop_after="node1.host.eth0"),
             synth.Conn("node2", "10.0.0.7", 51990, 58000, drop_after="node2.ingress_sbox.eth1"),
             synth.Conn("node3", "10.0.0.5", 51991, 58001, drop_data_after="node3.host.eth0"),
             *synth.default_conns()]
    a = analyze([synth.build(conns, tmp_path / "cap")])
    doc = _check_document(a)
    assert any(c["missing_at"] for c in doc["connections"])
    assert any(c["backend"] is None for c in doc["connections"])
    assert any(c["lost_at"] for c in doc["connections"])


def test_json_document_without_connections():
    from dataclasses import replace

    full = analyze([SHIPPED])
    a = replace(full, connections=full.connections.iloc[:0], hops=full.hops.iloc[:0],
                translations=full.translations.iloc[:0])
    buf = io.StringIO()
    report.write_json(a, buf)
    assert json.loads(buf.getvalue())["connections"] == []
    with pytest.raises(KeyError):
        a.connection(1)


@pytest.mark.parametrize("text", ['plain', 'a"quote', "back\\slash", "tab\there", "ctrl\x01", "ünï", "", None])
def test_json_strings_are_escaped_like_python(text):
    (enc,) = report._jstr(pd.Series([text], dtype=object)).to_pylist()
    assert json.loads(enc) == text
