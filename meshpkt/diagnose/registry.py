"""The catalogue: one :class:`Detector` subclass per kind, registered in :data:`DETECTORS`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from meshpkt.diagnose.context import Context
    from meshpkt.diagnose.finding import Finding


class Detector:
    """A detector: ``run(ctx)`` returns the findings of its kind.

    Class attributes document it (they make ``docs/diagnose.md`` and ``--catalogue``):
    ``kind``, ``severity`` (of a confirmed finding), ``detects`` (the failure), ``evidence``
    (the data that proves it), ``check`` (what to check or change), ``reproduced`` (how the
    test reproduces it: "lab" or "crafted").
    """

    kind: ClassVar[str] = ""
    severity: ClassVar[str] = "error"
    detects: ClassVar[str] = ""
    evidence: ClassVar[str] = ""
    check: ClassVar[str] = ""
    reproduced: ClassVar[str] = "lab"

    def run(self, ctx: Context) -> list[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError


DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: add a detector to the catalogue (one per kind)."""
    if not cls.kind or cls.kind in DETECTORS:
        raise ValueError(f"detector kind {cls.kind!r} empty or registered twice")
    DETECTORS[cls.kind] = cls
    return cls


def catalogue() -> list[dict[str, str]]:
    """Every registered detector's documentation, in registration order."""
    from meshpkt.diagnose import detectors  # noqa: F401 - registers them

    return [{"kind": d.kind, "severity": d.severity, "detects": d.detects, "evidence": d.evidence,
             "check": d.check, "reproduced": d.reproduced} for d in DETECTORS.values()]
