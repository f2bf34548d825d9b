"""What a detector reports: :class:`Finding`; what ``diagnose`` returns: :class:`Diagnosis`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One named failure with the data that proves it.

    ``node`` is where to look (the node whose rule, table or link is at fault), ``points`` the
    capture points where the evidence was seen, ``addresses`` the addresses involved (the
    backend, the VTEPs, the published endpoint), ``connections`` the ids (of the analysis) of
    the connections it explains, ``evidence`` one line per fact, ``check`` what to check or
    change.
    """

    kind: str
    severity: str
    summary: str
    node: str | None = None
    points: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    check: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the finding (see ``docs/diagnose.md``)."""
        return {"kind": self.kind, "severity": self.severity, "summary": self.summary, "node": self.node,
                "points": list(self.points), "addresses": list(self.addresses),
                "connections": [int(c) for c in self.connections], "evidence": list(self.evidence),
                "check": self.check}


def rank(findings: list[Finding]) -> list[Finding]:
    """Most connections explained first; then errors before warnings before infos."""
    return sorted(findings, key=lambda f: (-len(f.connections), SEVERITIES.index(f.severity), f.kind))


@dataclass
class Diagnosis:
    """Findings (ranked) plus a summary of the analysis they come from."""

    findings: list[Finding]
    analysis: dict[str, Any]
    analysis_obj: Any = None  # the flows Analysis (for diagrams); not in the JSON
    unexplained: list[int] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def exit_code(self) -> int:
        """1 when an error-level finding exists, else 0."""
        return 1 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        """``{"findings": [...], "analysis": {...}}``."""
        return {"findings": [f.to_json() for f in self.findings],
                "analysis": {**self.analysis, "unexplained_connections": list(self.unexplained)}}
