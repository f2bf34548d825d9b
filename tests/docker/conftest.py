"""One real Docker Swarm (Debian's docker.io: three dockerd, each in its node's namespace) shared by the
``docker`` tests (package scope: it is gone before other packages' tests run), built from the default lab spec, plus the namespace lab of the same spec for the fidelity
comparison. The swarm is dumped with ``meshpkt collect`` before and after its routing mesh is completed.

Skips (with the reason) only when dockerd cannot run here: not root, docker.io / busybox-static not
installed, or dockerd failing to start. Everything is removed afterwards, whatever happens.
"""

from __future__ import annotations

import subprocess
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
    """The shared swarm: ``lab``, ``before``/``after`` status and dump dirs, ``refused`` (curl results to
    each node's published port before completion), ``completed`` (node -> state), ``lab_status``/``lab_dumps``."""
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
        refused = {nd["name"]: curl(f"{name}-client", f"http://{nd['underlay_ip']}:9090/", 2)
                   for nd in before["nodes"]}
        completed = lab.complete_mesh()
        after = lab.status()
        lab.collect(tmp / "after")
        lab_status, lab_dumps = _namespace_lab(tmp)
        yield types.SimpleNamespace(lab=lab, name=name, before=before, before_dumps=tmp / "before",
                                    refused=refused, completed=completed, after=after, after_dumps=tmp / "after",
                                    lab_status=lab_status, lab_dumps=lab_dumps, tmp=tmp)
    finally:
        lab.down()
