"""``meshpkt collect DIR --node ...`` over real SSH: the same dumps as a local ``collect --lab``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remote.conftest import SshLab, meshpkt_in_client

pytestmark = pytest.mark.root


def _explain(path: Path, to: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "meshpkt", "rules", "explain", str(path), "--to", to, "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_remote_collect_equals_local_collect(ssh_lab: SshLab, tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    r = subprocess.run(meshpkt_in_client(ssh_lab, "collect", str(remote), "--node", "node1,node2", "--node", "node3",
                                         "--ssh-config", str(ssh_lab.config)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "meshpkt", "collect", str(local), "--lab", ssh_lab.name],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = sorted(p.relative_to(local).as_posix() for p in local.glob("*/*/*.txt"))
    assert names and names == sorted(p.relative_to(remote).as_posix() for p in remote.glob("*/*/*.txt"))
    for node in ("node1", "node3"):
        meta = json.loads((remote / node / "ingress_sbox" / "namespace.json").read_text())
        assert meta["role"] == "ingress_sbox" and meta["netns"] == "/var/run/docker/netns/ingress_sbox"
    a, b = _explain(remote, "10.211.55.18:9090"), _explain(local, "10.211.55.18:9090")
    assert a["summary"] == b["summary"] and "REDIRECT :80" in a["summary"]
    assert [f["code"] for f in a["findings"]] == [f["code"] for f in b["findings"]]


def test_unreachable_node_is_one_line_and_the_rest_is_collected(ssh_lab: SshLab, tmp_path: Path) -> None:
    out = tmp_path / "d"
    inv = tmp_path / "inventory"
    inv.write_text("node1\nroot@10.211.55.99\n")
    r = subprocess.run(meshpkt_in_client(ssh_lab, "collect", str(out), "--inventory", str(inv), "--ssh-config",
                                         str(ssh_lab.config)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    bad = [ln for ln in r.stderr.splitlines() if ln.startswith("meshpkt:")]
    assert len(bad) == 1 and "root@10.211.55.99" in bad[0] and "cannot connect" in bad[0], r.stderr
    assert (out / "node1" / "host" / "iptables-save.txt").is_file()
