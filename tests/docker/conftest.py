"""One real Docker Swarm (Debian's docker.io: three dockerd, each in its node's namespace) shared by the
``docker`` tests (package scope: it is gone before other packages' tests run), built from the default lab spec, plus the namespace lab of the same spec for the fidelity
comparison. The swarm is dumped with ``meshpkt collect`` before and after its routing mesh is completed.

Skips (with the reason) only when dockerd cannot run here: not root, docker.io / busybox-static not
installed, or dockerd failing to start. Everything is removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpkt.errors import LabError
from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.docker import BUSYBOX, DockerLab
from meshpkt.lab.dockerd import dockerd_missing


def docker_skip_reason() -> str | None:
    """Why the real-Docker tests cannot run on this machine (None: they must run)."""
    reason = dockerd_missing()
    if reason:
        return f"real Docker tests: {reason}"
    if not any(Path(b).is_file() for b in BUSYBOX):
        return "real Docker tests: busybox-static not installed (apt-get install busybox-static)"
    return None


def curl(netns: str, url: str, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    """curl ``url`` from inside ``netns`` (the node's curl: busybox wget segfaults in containers)."""
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "-m", str(timeout), url],
                          capture_output=True, text=True, timeout=timeout + 10)


CLIENT = """
import json, subprocess, sys
out, netns, rounds, *ips = sys.argv[1:]
got = []
for node, ip in (x.split("=") for x in ips):
    for _ in range(int(rounds)):
        r = subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "-m", "3", f"http://{ip}:9090/"],
                           capture_output=True, text=True)
        got.append([node, r.returncode, r.stdout.strip()])
open(out, "w").write(json.dumps(got))
"""


def requests(lab: DockerLab, status: dict[str, Any], out: Path, points: list[str],
             rounds: int, bpf: str | None = None) -> list[tuple[str, int, str]]:
    """``rounds`` requests from the client to each node's published port 9090 while ``meshpkt lab capture
    --docker`` records ``points`` into ``out``; returns (node, curl exit status, answer) per request."""
    answers = out.parent / f"{out.name}.answers.json"
    cmd = [sys.executable, "-c", CLIENT, str(answers), f"{lab.name}-client", str(rounds),
           *(f"{nd['name']}={nd['underlay_ip']}" for nd in status["nodes"])]
    args = [a for p in points for a in ("-P", p)] + (["--filter", bpf] if bpf else [])
    r = subprocess.run([sys.executable, "-m", "meshpkt", "lab", "capture", "--docker", "--name", lab.name,
                        "-o", str(out), *args, "--", *cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [(n, rc, ans) for n, rc, ans in json.loads(answers.read_text())]


def _namespace_lab(tmp: Path) -> tuple[dict[str, Any], Path]:
    """The namespace lab of the same spec: status + collect dumps (the lab is removed again)."""
    from meshpkt.rules.collect import collect

    name = f"fk{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        status = lab.up(LabSpec(name=name))
        collect(tmp / "lab", lab=name)
    finally:
        lab.down()
    return status, tmp / "lab"


@pytest.fixture(scope="package")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    """The shared swarm: ``lab``, ``before``/``after`` status and dump dirs, ``refused`` ((node, curl status,
    answer) per request to each node's published port before completion) and ``before_captures``,
    ``completed`` (node -> state), ``lab_status``/``lab_dumps`` (the namespace lab of the same spec)."""
    reason = docker_skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("swarm")
    name = f"dk{uuid.uuid4().hex[:6]}"
    lab = DockerLab(name)
    try:
        try:
            lab.up(LabSpec(name=name))
        except LabError as exc:
            if "did not start" in str(exc):
                pytest.skip(f"dockerd cannot start on this machine: {exc}")
            raise
        before = lab.status()
        lab.collect(tmp / "before")
        # the operator's symptom, captured at the client and the nodes: published ports refused
        refused = requests(lab, before, tmp / "cap-before", ["client.host.eth0", "*.host.eth0"], 1)
        completed = lab.complete_mesh()
        after = lab.status()
        lab.collect(tmp / "after")
        lab_status, lab_dumps = _namespace_lab(tmp)
        yield types.SimpleNamespace(lab=lab, name=name, before=before, before_dumps=tmp / "before",
                                    before_captures=tmp / "cap-before",
                                    refused=refused, completed=completed, after=after, after_dumps=tmp / "after",
                                    lab_status=lab_status, lab_dumps=lab_dumps, tmp=tmp)
    finally:
        lab.down()
