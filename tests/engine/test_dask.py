"""The Dask engine on a local cluster of two worker processes: the same analysis as the default
engine, a worker killed mid-run, damaged files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from meshpkt.engine import analyze as engine_analyze
from meshpkt.flows import analyze

from .conftest import SHIPPED

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def _same(a, b) -> None:
    ja, jb = a.to_json(), b.to_json()
    assert ja["connections"] == jb["connections"]
    assert ja["summary"] == jb["summary"]


def _dask(caps, client, **kw):
    return engine_analyze(caps, engine="dask", client=client, **kw)


def test_shipped_captures(client):
    _same(analyze([SHIPPED]), _dask([SHIPPED], client))


def test_generated_multi_point_set(client, tmp_path, many_connections):
    sys.path.insert(0, str(BENCH))
    import _synth

    conns = _synth.make_connections(3000)
    _synth.write_captures(conns, tmp_path / "caps")
    a = analyze([tmp_path / "caps"])
    b = _dask([tmp_path / "caps"], client, chunk_records=20_000, partition_rows=30_000)
    assert len(b.connections) == 3000 and (b.connections["status"] == "closed").all()
    _same(a, b)
    _same(analyze([many_connections]), _dask([many_connections], client, partition_rows=50))


def test_worker_killed_mid_run_is_recomputed(client, many_connections):
    killed = []

    def kill_one(stage, c):
        if stage == "decoded" and not killed:  # the decoded tables live on the workers now
            addr, pid = sorted(c.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(addr)

    b = _dask([many_connections], client, partition_rows=50, on_stage=kill_one)
    assert killed
    _same(analyze([many_connections]), b)
    client.wait_for_workers(2, timeout=900)  # the nanny restarts it (slow on a loaded machine)


def test_damaged_file_is_one_problem_and_the_rest_completes(client, tmp_path):
    caps = tmp_path / "caps"
    shutil.copytree(SHIPPED, caps)
    (caps / "text.pcap").write_text("not a capture\n")
    (caps / "cut.pcap").write_bytes((SHIPPED / "node1.host.eth0.pcap").read_bytes()[:-5])
    pa_, pb = [], []
    a, b = analyze([caps], problems=pa_), _dask([caps], client, problems=pb)
    assert sorted(str(p) for p in pa_) == sorted(str(p) for p in pb) and len(pb) == 2
    assert any("text.pcap" in str(p) for p in pb)
    _same(a, b)


def test_cli_dask_with_local_workers(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meshpkt", "analyze", str(SHIPPED), "--engine", "dask", "--workers",
                        "2", "-f", "json", "-o", str(tmp_path / "a.json")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    assert json.loads((tmp_path / "a.json").read_text()) == analyze([SHIPPED]).to_json()


@pytest.mark.root
@pytest.mark.slow
def test_live_lab_captures(client, tmp_path):
    from meshpkt.lab import Lab

    lab = Lab(f"dk{uuid.uuid4().hex[:5]}")
    lab.up()
    try:
        script = "; ".join(f"curl -s -m 2 http://{ip}:9090/ ; sleep 0.2"
                           for ip in ("10.211.55.10", "10.211.55.18", "10.211.55.22") for _ in range(3))
        lab.capture(None, tmp_path / "cap", ["sh", "-c", script], all_points=True, run_in="client", grace=0.5,
                    stdout=subprocess.DEVNULL)
    finally:
        lab.down()
    a = analyze([tmp_path / "cap"])
    assert len(a.connections) >= 9
    _same(a, _dask([tmp_path / "cap"], client))
