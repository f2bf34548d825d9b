"""Crafted multi-point captures (the flows tests' generator) for the engine tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SHIPPED = Path(__file__).resolve().parents[2] / "captures" / "ingress-3node"
_FLOWS_CONFTEST = Path(__file__).resolve().parents[1] / "flows" / "conftest.py"


def load_synth() -> ModuleType:
    """``tests/flows/conftest.py`` as a module: ``Conn``, ``build``, ``default_conns``."""
    spec = importlib.util.spec_from_file_location("engine_flows_synth", _FLOWS_CONFTEST)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth() -> ModuleType:
    return load_synth()


@pytest.fixture(scope="session")
def many_connections(tmp_path_factory, synth) -> Path:
    """40 connections over the three entry nodes, two of them dropped on the way."""
    conns = []
    for k in range(40):
        entry = ("node1", "node2", "node3")[k % 3]
        task = ("10.0.0.5", "10.0.0.6", "10.0.0.7")[(k // 3) % 3]
        drop = "node1.host.eth0" if k in (7, 31) and entry == "node2" else None
        conns.append(synth.Conn(entry, task, 52000 + k, 41000 + k, drop_after=drop))
    conns[10] = synth.Conn("node1", "10.0.0.6", 52010, 41010, drop_after="node1.host.eth0")
    conns[33] = synth.Conn("node2", "10.0.0.7", 52033, 41033, drop_after="node2.ingress_sbox.eth1")
    return synth.build(conns, tmp_path_factory.mktemp("many") / "cap")
