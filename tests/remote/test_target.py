"""Node names and inventories (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpkt.errors import UsageError
from meshpkt.remote.target import Target, load_inventory, parse_inventory, parse_target, targets_from


@pytest.mark.parametrize(("text", "want"), [
    ("node1", Target("node1")),
    ("root@node1", Target("node1", "root")),
    ("admin@10.0.0.1:2222", Target("10.0.0.1", "admin", 2222)),
    ("[fe80::1]:22", Target("fe80::1", None, 22)),
    ("u@fe80::1", Target("fe80::1", "u")),
    ("n-1.example.org", Target("n-1.example.org")),
])
def test_parse_target(text: str, want: Target) -> None:
    assert parse_target(text) == want


@pytest.mark.parametrize("text", ["", "@host", "host:0", "host:99999", "host:ab", "-oProxyCommand=x", "a b", "h;rm"])
def test_bad_targets_are_one_line_errors(text: str) -> None:
    with pytest.raises(UsageError, match="bad node|expected"):
        parse_target(text)


def test_inventory(tmp_path: Path) -> None:
    text = "# swarm\n[managers]\nroot@m1 m2:2222\nw1, w2  # workers\nansible_user=x\n"
    assert [t.label for t in parse_inventory(text)] == ["root@m1", "m2:2222", "w1", "w2"]
    f = tmp_path / "inv"
    f.write_text(text)
    assert len(load_inventory(f)) == 4
    with pytest.raises(UsageError, match="no such inventory"):
        load_inventory(tmp_path / "missing")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(UsageError, match="no node"):
        load_inventory(tmp_path / "empty")
    with pytest.raises(UsageError, match="no node given"):
        targets_from([])


def test_targets_are_deduplicated(tmp_path: Path) -> None:
    f = tmp_path / "inv"
    f.write_text("root@m1\nw1\n")
    assert [t.label for t in targets_from(["w1,x", "w1"], f)] == ["w1", "x", "root@m1"]
