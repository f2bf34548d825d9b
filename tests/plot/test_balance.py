"""Balance plot from crafted and shipped captures: bars and points per backend per entry node."""

from __future__ import annotations

import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from meshpkt.errors import UsageError
from meshpkt.plot import balance_plot
from meshpkt.plot.balance import balance_table


def _bars(fig, figtools):
    return figtools.by_gid(fig, "balance-bar", Rectangle)


def test_round_robin_over_three_nodes(make_analysis, figtools):
    a = make_analysis()  # every node sends one request to each of the 3 tasks
    fig = balance_plot(a)
    bars = _bars(fig, figtools)
    heights = sorted(b.get_height() for b in bars)
    assert len(bars) == 9 and heights == [1.0] * 9
    points = figtools.by_gid(fig, "balance-point", PathCollection)
    assert sum(len(p.get_offsets()) for p in points) == 9
    ax_bars, ax_time = fig.axes
    assert [t.get_text() for t in ax_bars.get_xticklabels()] == ["node1", "node2", "node3"]
    assert [t.get_text() for t in ax_time.get_yticklabels()] == [f"node{k}\nround-robin" for k in (1, 2, 3)]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["10.0.0.5 (web.1 on node1)", "10.0.0.6 (web.2 on node2)", "10.0.0.7 (web.3 on node3)"]
    assert figtools.overlapping_texts(fig) == []
    assert figtools.texts_outside(fig) == []


def test_uneven_balance_is_visible(make_analysis, figtools):
    C = figtools.Conn
    conns = [C("node1", "10.0.0.5", 51000, 41000), C("node1", "10.0.0.5", 51001, 41001),
             C("node1", "10.0.0.6", 51002, 41002), C("node2", "10.0.0.7", 51003, 41003)]
    a = make_analysis(conns)
    tab = balance_table(a)
    assert list(tab["backend"]) == ["10.0.0.5", "10.0.0.5", "10.0.0.6", "10.0.0.7"]
    fig = balance_plot(a)
    bars = sorted(_bars(fig, figtools), key=lambda b: b.get_x())  # node1: .5 .6 .7, then node2: .5 .6 .7
    assert [b.get_height() for b in bars] == [2, 1, 0, 0, 0, 1]
    ax_time = fig.axes[1]
    assert [t.get_text() for t in ax_time.get_yticklabels()] == ["node1\nnot round-robin", "node2\nround-robin"]
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(x for x in labels if x) == ["1", "1", "2"]
    assert figtools.overlapping_texts(fig) == []


def test_nothing_to_draw(make_analysis, figtools):
    a = make_analysis([figtools.Conn("node1", "10.0.0.5", 51000, 41000)])
    empty = a.__class__(a.packets, a.hops, a.connections.iloc[:0], a.translations, {}, {}, {}, a.topology)
    with pytest.raises(UsageError, match="nothing to draw"):
        balance_plot(empty)
    nob = a.connections.copy()
    nob["backend"] = None
    with pytest.raises(UsageError, match="no connection reached a backend"):
        balance_plot(a.__class__(a.packets, a.hops, nob, a.translations, {}, {}, {}, a.topology))


def test_shipped_captures(shipped_analysis, figtools, tmp_path):
    fig = balance_plot(shipped_analysis)
    c = shipped_analysis.connections
    n = int((c["backend"].notna() & c["entry_node"].notna()).sum())
    assert sum(b.get_height() for b in _bars(fig, figtools)) == n
    assert figtools.overlapping_texts(fig) == []
    out = tmp_path / "bal.png"
    fig.savefig(out)
    assert out.read_bytes()[:4] == b"\x89PNG"
