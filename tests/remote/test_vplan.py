"""Verdicts of the remote verify from captured packets (pure): each rule judged by its own evidence."""

from __future__ import annotations

from meshpkt.remote.vplan import RemoteParams, RemotePlan, Seen, judge_remote, probe_ports_ok
from meshpkt.verify.types import Check, Probe


def _plan() -> RemotePlan:
    base = {"port": 9090, "addr": "10.211.55.10", "sbox_ip": "172.18.0.2", "ingress_ip": "10.0.0.2",
            "node_name": "node1", "backends": ["10.0.0.6", "10.0.0.7"], "others": "node2"}
    probes = [Probe(f"r{i}", "conn", "ingress", "", None, "10.211.55.2", 61000 + i, "10.211.55.10", 9090,
                    entry="node1") for i in (1, 2)]
    pre = {p.id: [] for p in probes}
    checks = [
        Check("dnat:node1:9090", "dnat", "node1", "host", "host", "nat DOCKER-INGRESS", "-A DNAT", present=True,
              probes=dict(pre), params=RemoteParams(dict(base))),
        Check("mark:node1:9090", "mark", "node1", "ingress_sbox", "ingress_sbox", "mangle PREROUTING", "-A MARK",
              present=True, probes={p: ["dnat:node1:9090"] for p in pre}, params=RemoteParams(dict(base))),
        Check("lb:node1:ingress:9090", "lb", "node1", "ingress_sbox", "ingress_sbox", "lb", "rr", present=None,
              probes={p: ["mark:node1:9090"] for p in pre}, params=RemoteParams(dict(base))),
    ]
    return RemotePlan(checks, probes)


def _syn(point: str, src: str, sport: int, dst: str, seq: int) -> Seen:
    return Seen(point, src, sport, dst, 9090, 0x02, seq)


def test_full_path_passes() -> None:
    plan = _plan()
    seen = []
    for i, (seq, be) in enumerate(((100, "10.0.0.6"), (200, "10.0.0.7")), start=1):
        seen += [_syn("node1.host.eth0", "10.211.55.2", 61000 + i, "10.211.55.10", seq),
                 _syn("node1.ingress_sbox.eth1", "10.211.55.2", 61000 + i, "172.18.0.2", seq),
                 _syn("node1.ingress_sbox.eth0", "10.0.0.2", 61000 + i, be, seq)]
    judge_remote(plan, seen, {})
    assert [c.verdict for c in plan.checks] == ["PASS", "PASS", "PASS"]
    assert plan.checks[0].after is not None and "172.18.0.2" in plan.checks[0].after.packet


def test_dnat_not_applied_fails_and_the_rest_is_untested() -> None:
    plan = _plan()
    seen = [_syn("node1.host.eth0", "10.211.55.2", 61001, "10.211.55.10", 100)]
    judge_remote(plan, seen, {})
    assert [c.verdict for c in plan.checks] == ["FAIL", "UNTESTED", "UNTESTED"]
    assert "never ingress_sbox eth1" in plan.checks[0].reason


def test_one_backend_never_chosen_fails_the_lb_only() -> None:
    plan = _plan()
    seen = []
    for i, seq in ((1, 100), (2, 200)):
        seen += [_syn("node1.host.eth0", "10.211.55.2", 61000 + i, "10.211.55.10", seq),
                 _syn("node1.ingress_sbox.eth1", "10.211.55.2", 61000 + i, "172.18.0.2", seq),
                 _syn("node1.ingress_sbox.eth0", "10.0.0.2", 61000 + i, "10.0.0.6", seq)]
    judge_remote(plan, seen, {})
    assert [c.verdict for c in plan.checks] == ["PASS", "PASS", "FAIL"]
    assert "10.0.0.7" in plan.checks[2].reason


def test_missing_rule_fails_without_probes() -> None:
    plan = _plan()
    plan.checks[1].present = False
    judge_remote(plan, [], {})
    assert plan.checks[1].verdict == "FAIL" and "present on node2" in plan.checks[1].reason


def test_probe_ports_are_marked() -> None:
    assert probe_ports_ok(_plan())
