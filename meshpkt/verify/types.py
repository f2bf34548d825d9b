"""Data types of :mod:`meshpkt.verify`: probes, checks (one per rule = one output row), evidence and
the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, UNTESTED = "PASS", "FAIL", "UNTESTED"


@dataclass
class Probe:
    """One probe: a crafted frame (``kind="frame"``, TCP SYN with sequence number ``seq``) written on
    ``iface`` inside ``netns``, or a real TCP connection (``kind="conn"``) from ``netns`` sending
    ``size`` bytes. ``group`` says what it is for: ingress | unpublished | vip | server | mtu."""

    id: str
    kind: str
    group: str
    netns: str
    iface: str | None
    src: str
    sport: int
    dst: str
    dport: int
    seq: int | None = None
    frame: bytes = b""
    size: int = 0
    entry: str = ""
    """ingress/unpublished/mtu: the node the client talks to; vip/server: the node injecting."""
    target: str = ""
    """server: the task; vip: the service; ingress/mtu: the service."""
    network: str = ""

    def summary(self) -> str:
        """``10.211.55.2:40001 > 10.211.55.10:9090 S`` (what is sent)."""
        what = "S" if self.kind == "frame" else f"connect + {self.size} bytes"
        return f"{self.src}:{self.sport} > {self.dst}:{self.dport} {what}"


@dataclass
class Evidence:
    """A packet as seen at a capture point (one-line summary), or why there is none."""

    point: str
    packet: str

    def __str__(self) -> str:
        return f"{self.point}: {self.packet}" if self.point else self.packet


@dataclass
class Check:
    """One rule on an expected path, its probes, and (after judging) the verdict with evidence.

    ``kind``: dnat | mark | lb | snat | fdb | link | redirect | server | unpublished | vipmark | mtu.
    ``where`` is ``"<table> <chain>"`` for netfilter rules (``"nft <family> <table> <chain>"`` for nft
    rules), ``"fdb <dev>"``, ``"link"``, ``"ipvs"``, ``"server"`` or ``"mtu"``. ``rule`` is the rule's text
    as dumped (or, when ``present`` is False, the text it should have). ``probes`` maps each probe id
    to the checks that must pass before that probe says anything about this one.
    """

    id: str
    kind: str
    node: str
    namespace: str
    netns: str
    where: str
    rule: str
    present: bool | None = None
    counter_key: tuple[str, str, str, str] | None = None
    probes: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    verdict: str = UNTESTED
    message: str = ""
    """PASS: what was proven; FAIL: ``"<netns> <where>: <rule>: <reason>"``; UNTESTED: why."""
    reason: str = ""
    """The verdict's reason alone (FAIL/UNTESTED)."""
    before: Evidence | None = None
    after: Evidence | None = None
    counter_before: int | None = None
    counter_after: int | None = None
    reached: int = 0
    passed: int = 0

    @property
    def counter_delta(self) -> int | None:
        """Packets the rule counted during the run (None when it has no counter)."""
        if self.counter_before is None or self.counter_after is None:
            return None
        return self.counter_after - self.counter_before

    def location(self) -> str:
        """``"mesh-node1 nat DOCKER-INGRESS"``."""
        return f"{self.netns} {self.where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able row."""
        return {
            "id": self.id, "kind": self.kind, "verdict": self.verdict, "node": self.node,
            "namespace": self.namespace, "netns": self.netns, "where": self.where, "rule": self.rule,
            "present": self.present, "message": self.message, "reason": self.reason,
            "before": asdict(self.before) if self.before else None,
            "after": asdict(self.after) if self.after else None,
            "counter": (None if self.counter_key is None else
                        {"before": self.counter_before, "after": self.counter_after, "delta": self.counter_delta}),
            "probes": {"sent": len(self.probes), "reached": self.reached, "passed": self.passed},
        }


@dataclass
class VerifyReport:
    """Everything one ``verify`` run found: one :class:`Check` per rule (``checks``, in path order)."""

    lab: str
    lb: str
    checks: list[Check]
    probes: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    keep: str | None = None
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{"PASS": n, "FAIL": n, "UNTESTED": n}``."""
        out = {PASS: 0, FAIL: 0, UNTESTED: 0}
        for c in self.checks:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.verdict == PASS for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.verdict == FAIL]

    def exit_code(self) -> int:
        """0 when every rule passed, 1 otherwise."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able report."""
        return {"schema": "meshpkt.verify/1", "lab": self.lab, "lb": self.lb, "ok": self.ok,
                "counts": self.counts(), "probes": self.probes, "seconds": round(self.seconds, 3),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}, "keep": self.keep,
                "notes": list(self.notes), "checks": [c.to_dict() for c in self.checks]}
