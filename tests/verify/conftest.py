"""Fixtures for the verify tests: labs with unique names, always torn down."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def _new_lab() -> tuple[Any, dict[str, Any]]:
    from meshpkt.lab import Lab, LabSpec

    name = f"v{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        status = lab.up(LabSpec(name=name))
    except BaseException:
        lab.down()
        raise
    return lab, status


@pytest.fixture(scope="module")
def healthy_lab() -> Iterator[tuple[Any, dict[str, Any]]]:
    """One default 3-node lab shared by a module (not broken by its tests)."""
    from meshpkt.lab.build import lab_namespaces

    lab, status = _new_lab()
    try:
        yield lab, status
    finally:
        lab.down()
        assert not lab_namespaces(lab.name)


@pytest.fixture
def fresh_lab() -> Iterator[Callable[[], tuple[Any, dict[str, Any]]]]:
    """A factory of fresh default labs for one test; every lab it made is removed afterwards."""
    made: list[Any] = []

    def make() -> tuple[Any, dict[str, Any]]:
        lab, status = _new_lab()
        made.append(lab)
        return lab, status

    try:
        yield make
    finally:
        for lab in made:
            lab.down()
