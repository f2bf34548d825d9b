"""verify on the lab of issue 14 (tests/lab/coverage.yaml: UDP published port, encrypted overlay with
task -> VIP traffic, dnsrr and host-mode services): every row passes on the healthy lab, and removing the UDP
DNAT, an IPsec policy or state, or a VIP MARK fails exactly that rule, named."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpkt.lab import Lab, LabSpec
from meshpkt.lab.build import lab_namespaces
from meshpkt.verify import FAIL, PASS, Check
from meshpkt.verify.run import verify

pytestmark = pytest.mark.root

SPEC = Path(__file__).resolve().parent.parent / "lab" / "coverage.yaml"


def _up() -> tuple[Lab, dict[str, Any]]:
    import yaml

    name = f"w{uuid.uuid4().hex[:6]}"
    lab = Lab(name)
    try:
        return lab, lab.up(LabSpec.from_dict({**yaml.safe_load(SPEC.read_text()), "name": name}))
    except BaseException:
        lab.down()
        raise


Make = Callable[[], tuple[Lab, dict[str, Any]]]


@pytest.fixture
def cov_lab() -> Iterator[Make]:
    made: list[Lab] = []

    def make() -> tuple[Lab, dict[str, Any]]:
        lab, st = _up()
        made.append(lab)
        return lab, st

    try:
        yield make
    finally:
        for lab in made:
            lab.down()
            assert not lab_namespaces(lab.name)


def _ns(st: dict[str, Any], node: str, role: str, network: str | None = None) -> str:
    nd = next(n for n in st["nodes"] if n["name"] == node)
    return str(next(ns["name"] for ns in nd["namespaces"]
                    if ns["role"] == role and (network is None or ns["network"] == network)))


def _named(c: Check, netns: str, where: str, *needles: str) -> None:
    assert c.verdict == FAIL, c.message
    assert (c.netns, c.where) == (netns, where), c.message
    for n in needles:
        assert n in c.rule, (n, c.rule)
    assert c.message.startswith(f"{netns} {where}: {c.rule}: "), c.message


def test_healthy_coverage_lab_passes(cov_lab: Make) -> None:
    lab, st = cov_lab()
    report = verify(lab.name, seed=11)
    bad = [f"{c.verdict} {c.id}: {c.message}" for c in report.checks if c.verdict != PASS]
    assert report.ok and not bad, bad
    rows = {c.id: c for c in report.checks}
    for node in ("node1", "node2", "node3"):
        for kind in ("dnat", "mark"):
            assert rows[f"{kind}:{node}:5300/udp"].reached == 3  # one datagram per backend
    for task in ("dns.1", "dns.2", "dns.3"):
        c = rows[f"redirect:{task}:5300/udp"]
        assert c.reached == c.passed == 3 and "datagrams to :5300 answered by the server on :53" in c.message
    xfrm = [c for c in report.checks if c.kind == "xfrm"]
    assert len(xfrm) == 3 * 6 and all(c.reached > 0 for c in xfrm)  # policy + 2 states per ordered node pair
    assert len([c for c in report.checks if c.kind == "dnsrr"]) == 4  # 2 peers tasks x 2 other nodes
    # the VIP of every service on the encrypted overlay is proven on every node
    assert len([c for c in report.checks if c.kind == "vipmark"]) == 3 * 3
    # a second run right after passes too (fresh source ports: no stale conntrack entry is followed)
    again = verify(lab.name, seed=11)
    assert again.ok, [c.message for c in again.failures]


def test_udp_dnat_removed(cov_lab: Make) -> None:
    lab, st = cov_lab()
    lab.remove_dnat("node1", 5300, "udp")
    report = verify(lab.name, seed=7)
    assert [c.id for c in report.failures] == ["dnat:node1:5300/udp"]
    c = report.failures[0]
    _named(c, _ns(st, "node1", "host"), "nat DOCKER-INGRESS", "-p udp", "--dport 5300",
           "-j DNAT --to-destination 172.18.0.2:5300")
    assert c.before is not None and c.before.point == "node1.host.eth0" and c.before.packet.endswith(" udp len 31")
    rows = {x.id: x for x in report.checks}
    assert rows["mark:node1:5300/udp"].verdict == "UNTESTED"
    assert rows["dnat:node1:9090"].verdict == PASS and rows["dnat:node2:5300/udp"].verdict == PASS


def test_xfrm_policy_removed(cov_lab: Make) -> None:
    lab, st = cov_lab()
    lab.remove_xfrm_policy("node1", "node2")
    report = verify(lab.name, seed=7)
    assert [c.id for c in report.failures] == ["xfrm:policy:node1>node2"], [c.message for c in report.failures]
    c = report.failures[0]
    ip1, ip2 = (n["underlay_ip"] for n in st["nodes"][:2])
    _named(c, _ns(st, "node1", "host"), "xfrm policy", f"src {ip1}/32 dst {ip2}/32 proto udp dport 4789 dir out",
           "mark 0xd0c4e3/0xffffffff", "proto esp spi 0x")
    assert "left node1.host.eth0 in cleartext" in c.reason and "missing from the dumps" in c.reason
    assert c.after is not None and "VXLAN vni 4097" in c.after.packet  # the leaked frame itself
    rows = {x.id: x for x in report.checks}
    assert rows["xfrm:policy:node2>node1"].verdict == PASS


def test_xfrm_state_removed(cov_lab: Make) -> None:
    lab, st = cov_lab()
    lab.remove_xfrm_state("node3", "node1", "in")  # node3 cannot decrypt what node1 sends it
    report = verify(lab.name, seed=7)
    fails = [c.id for c in report.failures]
    assert fails == ["xfrm:state:node1>node3@node3"], [c.message for c in report.failures]
    c = report.failures[0]
    _named(c, _ns(st, "node3", "host"), "xfrm state", "proto esp spi 0x", "mode transport")
    assert "state missing from the dumps; ESP arrived at node3.host.eth0" in c.reason


def test_vip_mark_removed(cov_lab: Make) -> None:
    lab, st = cov_lab()
    lab.remove_mark("node1", network="my-overlay", service="backend")
    report = verify(lab.name, seed=7)
    vip = next(s["vips"]["my-overlay"] for s in st["services"] if s["name"] == "backend")
    assert [c.id for c in report.failures] == [f"vipmark:node1/{_short(st, 'node1')}:{vip}"], \
        [c.message for c in report.failures]
    c = report.failures[0]
    assert c.netns == _ns(st, "node1", "lb", "my-overlay") and vip in c.rule
    assert "rule missing from the dumps" in c.message


def _short(st: dict[str, Any], node: str) -> str:
    nd = next(n for n in st["nodes"] if n["name"] == node)
    return str(next(ns["short"] for ns in nd["namespaces"] if ns["role"] == "lb"))


def test_lb_of_vip_broken(cov_lab: Make) -> None:
    """node1's lb_ load balancer emptied: its LB rows fail, named; the VIP MARK rows before it are not blamed."""
    lab, st = cov_lab()
    lab.break_lb("node1", "my-overlay")
    report = verify(lab.name, seed=7)
    short = _short(st, "node1")
    fails = sorted(c.id for c in report.failures)
    assert fails and all(f.startswith(f"lb:node1/{short}:") for f in fails), fails
    assert len(fails) == 3  # backend, my-web and dns each have a VIP on my-overlay
    c = report.failures[0]
    assert c.netns == _ns(st, "node1", "lb", "my-overlay") and c.where in ("ipvs", "nft ip meshpkt_ipvs fwm_lb")
    rows = {x.id: x for x in report.checks}
    assert all(x.verdict == "UNTESTED" for x in rows.values() if x.id.startswith(f"vipmark:node1/{short}:"))


def test_host_mode_dnat_removed(cov_lab: Make) -> None:
    lab, st = cov_lab()
    node = next(b["node"] for s in st["services"] if s["name"] == "hostweb" for b in s["backends"])
    lab.remove_host_dnat(node, 8080)
    report = verify(lab.name, seed=7)
    assert [c.id for c in report.failures] == [f"hostdnat:{node}:8080"], [c.message for c in report.failures]
    c = report.failures[0]
    _named(c, _ns(st, node, "host"), "nat DOCKER", "! -i docker_gwbridge", "--dport 8080",
           "-j DNAT --to-destination 172.18.")
    assert c.before is not None and c.before.point == f"{node}.host.eth0"
