"""Findings: ranking, exit code, JSON shape (pure)."""

from __future__ import annotations

from meshpkt.diagnose.finding import Diagnosis, Finding, rank


def f(kind: str, severity: str, n: int) -> Finding:
    return Finding(kind, severity, f"{kind} summary", node="node1", connections=list(range(n)), evidence=["x"])


def test_rank_by_connections_explained_then_severity() -> None:
    got = rank([f("a", "warning", 5), f("b", "error", 1), f("c", "info", 0), f("d", "error", 5)])
    assert [x.kind for x in got] == ["d", "a", "b", "c"]


def test_exit_code_and_json() -> None:
    assert Diagnosis([f("a", "warning", 2)], {}).exit_code() == 0
    d = Diagnosis([f("b", "error", 1)], {"packets": 3}, unexplained=[7])
    assert d.exit_code() == 1
    doc = d.to_json()
    assert doc["analysis"] == {"packets": 3, "unexplained_connections": [7]}
    assert doc["findings"] == [{"kind": "b", "severity": "error", "summary": "b summary", "node": "node1",
                                "points": [], "addresses": [], "connections": [0], "evidence": ["x"], "check": ""}]
