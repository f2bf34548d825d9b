"""Shared fixtures. Tests marked ``root`` need root and network namespaces; they skip with
the reason when either is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"
SEEDS = REPO.parent / "shared" / "seeds"


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    name = f"mpk-probe-{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_NETNS_REASON: str | None | bool = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _NETNS_REASON
    if not any("root" in item.keywords for item in items):
        return
    if _NETNS_REASON is False:
        _NETNS_REASON = _netns_reason()
    if _NETNS_REASON:
        skip = pytest.mark.skip(reason=str(_NETNS_REASON))
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def unique_name() -> str:
    """A short unique name for namespaces/labs created by one test."""
    return f"t{uuid.uuid4().hex[:6]}"


@pytest.fixture
def netns(unique_name: str) -> Iterator[str]:
    """A fresh network namespace, deleted after the test whatever happens."""
    name = f"mpk-{unique_name}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
