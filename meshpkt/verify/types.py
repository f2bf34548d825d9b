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
    """TCP: the SYN's sequence number; UDP: the probe's key (low 32 bits of its payload hash)."""
    frame: bytes = b""
    size: int = 0
    entry: str = ""
    """ingress/unpublished/mtu: the node the client talks to; vip/server: the node injecting."""
    target: str = ""
    """server: the task; vip: the service; ingress/mtu: the service."""
    network: str = ""
    proto: str = "tcp"
    """tcp (a SYN) | udp (a datagram with a unique payload, answered by the task's identity line)."""

    def summary(self) -> str:
        """``10.211.55.2:40001 > 10.211.55.10:9090 S`` (what is sent)."""
        what = ("udp" if self.proto == "udp" else "S") if self.kind == "frame" else f"connect + {self.size} bytes"
        return f"{self.src}:{self.sport} > {self.dst}:{self.dport} {what}"


@dataclass
class Params:
    """What a check of one kind needs to judge it (one subclass per kind, see :mod:`meshpkt.verify.judge`)."""


@dataclass
class StepParams(Params):
    """A rule that translates probes between two capture points (dnat, mark, vipmark, snat)."""

    before_point: str
    after_point: str
    dst: str
    """Destination of the probes at ``before_point``."""
    port: int
    to: str = ""
    """dnat: the new destination; snat: the new source; mark: the ingress_sbox address."""
    fwmark: int = 0
    subnet: str = ""
    proto: str = "tcp"
    lb_present: bool | None = None
    """mark/vipmark: whether the load balancer of ``fwmark`` is in the dumps (without it a set mark is
    invisible: nothing is balanced either way)."""


@dataclass
class DnatParams(StepParams):
    """host nat DOCKER-INGRESS DNAT: ``before_point`` is the node's eth0, ``after_point`` ingress_sbox eth1."""


@dataclass
class MarkParams(StepParams):
    """ingress_sbox mangle PREROUTING MARK (``dst`` = ``to`` = the sbox address)."""


@dataclass
class VipmarkParams(StepParams):
    """lb_<net> / ingress_sbox VIP MARK (``dst`` = the VIP)."""


@dataclass
class SnatParams(StepParams):
    """nat POSTROUTING SNAT to the load balancer's address (``to``) for ``subnet``."""


@dataclass
class LbParams(Params):
    """The FWM load balancer (IPVS or its nft emulation)."""

    before_point: str
    after_point: str
    dst: str
    port: int
    backends: list[str]
    expected_backends: list[str]
    fwmark: int
    label: str
    node_ip: str
    proto: str = "tcp"


@dataclass
class UnpublishedParams(Params):
    """host nat DOCKER-INGRESS RETURN for a port nothing publishes."""

    entry_point: str
    after_point: str
    dst: str
    port: int
    dnat: str | None = None


@dataclass
class RedirectParams(Params):
    """Task nat PREROUTING REDIRECT ``port`` -> ``target`` seen at ``point``."""

    point: str
    ip: str
    port: int
    target: int
    alive: bool = True
    proto: str = "tcp"


@dataclass
class ServerParams(Params):
    """A task's listener on ``ip:port``, probed from its node's load balancer namespace at ``point``."""

    point: str
    ip: str
    port: int
    task_point: str = ""
    alive: bool = True
    lbs: list[str] = field(default_factory=list)
    proto: str = "tcp"


@dataclass
class FdbParams(Params):
    """A permanent fdb entry: frames to ``mac`` entering ``before_point`` leave ``after_point`` in VXLAN to
    ``vtep`` (on an encrypted overlay: arrive at ``after_point`` = the peer's vxlan0)."""

    before_point: str
    after_point: str
    mac: str
    vtep: str
    vni: int
    peer: str
    network: str
    learned: str | None = None
    encrypted: bool = False
    out_point: str = ""
    """Encrypted overlay: the sender's eth0, where ESP (or leaked VXLAN) to ``vtep`` proves the fdb's choice."""


@dataclass
class LinkParams(Params):
    """The underlay between two nodes' eth0 for VXLAN."""

    before_point: str
    after_point: str
    src: str
    dst: str
    peer: str


@dataclass
class MtuParams(Params):
    """Full-size segments of real connections along ``path`` ([[point, encapsulated], ...])."""

    task: str
    ip: str
    path: list[list[Any]]
    sbox_point: str
    client_point: str
    client_mss: int = 1460


@dataclass
class XfrmParams(Params):
    """Encrypted overlay ``src`` -> ``dst``: frames of VNI ``vni`` entering ``vxlan_point`` leave
    ``out_point`` as ESP with ``spi`` (never as cleartext VXLAN) and arrive at ``peer_vxlan_point``.
    ``what``: policy (the sender's out policy) | out (the sender's SA) | in (the receiver's SA)."""

    what: str
    src: str
    dst: str
    spi: int
    vni: int
    vxlan_point: str
    out_point: str
    in_point: str
    peer_vxlan_point: str
    macs: list[str] = field(default_factory=list)
    """MACs the sender's fdb points at ``dst`` on this overlay (the frames that must cross)."""


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

    ``kind``: dnat | mark | lb | snat | fdb | link | redirect | server | unpublished | vipmark | mtu | xfrm.
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
    params: Params = field(default_factory=Params)
    """Typed per kind (:class:`DnatParams`, :class:`LbParams`, ...)."""
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
