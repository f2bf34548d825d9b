"""meshpkt.mesh.path: the stage tables against the reference data path (seed 001, section 7) and the
expected capture points against where the shipped captures really saw each SYN (read with dpkt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpkt.errors import UsageError
from meshpkt.mesh.model import Mesh, Role
from meshpkt.mesh.path import (
    NET_IFACE,
    PathKind,
    Reach,
    Side,
    expected_points,
    place_order,
    stages,
)
from meshpkt.mesh.status import load_status
from tests.mesh.pcaps import SHIPPED, syn_sightings


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return load_status(Path(SHIPPED) / "status.json")


def _targets(kind: PathKind, **kw: object) -> list[str]:
    return [f"{a.role} {a.table} {a.target}" for st in stages(kind, **kw) for a in st.actions]  # type: ignore[arg-type]


def test_ingress_request_is_the_reference_chain() -> None:
    # client -> host eth0 -> DNAT -> ingress_sbox eth1 -> MARK -> LB -> SNAT -> eth0 -> br0/vxlan0
    # -> underlay -> peer eth0 -> vxlan0 -> br0 -> task eth0 -> REDIRECT
    places = [
        (st.side.value, st.role.value, st.iface, st.encapsulated)
        for st in stages(PathKind.INGRESS, local=False)
    ]
    assert places == [
        ("client", "client", "eth0", False),
        ("underlay", "underlay", "br0", False),
        ("entry", "host", "eth0", False),
        ("entry", "ingress_sbox", "eth1", False),
        ("entry", "ingress_sbox", "eth0", False),
        ("entry", "overlay", "br0", False),
        ("entry", "overlay", "vxlan0", False),
        ("entry", "host", "eth0", True),
        ("underlay", "underlay", "br0", True),
        ("backend", "host", "eth0", True),
        ("backend", "overlay", "vxlan0", False),
        ("backend", "overlay", "br0", False),
        ("backend", "task", NET_IFACE, False),
        ("backend", "task", "", False),
    ]
    assert _targets(PathKind.INGRESS, local=False) == [
        "host nat DNAT",
        "host filter ACCEPT",
        "ingress_sbox mangle MARK",
        "ingress_sbox ipvs LB",
        "ingress_sbox nat SNAT",
        "overlay fdb VXLAN",
        "overlay vxlan DECAP",
        "task nat REDIRECT",
    ]


def test_local_backend_never_crosses_the_underlay() -> None:
    local = stages(PathKind.INGRESS, local=True)
    assert not any(st.encapsulated or st.reach == Reach.REMOTE for st in local)
    assert [st.name for st in local] == [
        "client_eth0",
        "underlay_br0",
        "node_eth0",
        "gwbridge",
        "sbox_eth0",
        "entry_br0",
        "task_eth0",
        "task_socket",
    ]


def test_udp_rules_match_udp() -> None:
    udp = stages(PathKind.INGRESS, local=True, proto="udp")
    assert [a.match for st in udp for a in st.actions if a.target == "DNAT"] == ["-p udp --dport <published>"]
    with pytest.raises(UsageError):
        stages(PathKind.INGRESS, proto="icmp")


def test_reply_undoes_the_translations_in_reverse() -> None:
    reply = stages(PathKind.INGRESS, local=False, direction="reply")
    assert reply[0].name == "task_socket" and reply[-1].name == "client_eth0"
    assert [a.target for st in reply for a in st.actions] == [
        "un-REDIRECT",
        "un-DECAP",
        "un-VXLAN",
        "un-SNAT",
        "un-LB",
        "un-ACCEPT",
        "un-DNAT",
    ]
    # un-REDIRECT acts before the task's eth0 sees the reply, un-DNAT after the ingress_sbox's eth1
    assert reply[0].actions[0].translation == "sport <target> -> <published>"
    at = {st.name: [a.target for a in st.actions] for st in reply}
    assert at["gwbridge"] == ["un-ACCEPT", "un-DNAT"] and at["sbox_eth0"] == ["un-SNAT", "un-LB"]


def test_vip_path_balances_in_the_lb_namespace() -> None:
    vip = stages(PathKind.VIP, local=False)
    lb = [st for st in vip if st.role == Role.LB]
    assert [st.name for st in lb] == ["lb_eth0_in", "lb_eth0_out"]
    assert [(a.table, a.chain, a.target) for a in lb[0].actions] == [
        ("mangle", "INPUT", "MARK"),
        ("ipvs", "FWM", "LB"),
        ("nat", "POSTROUTING", "SNAT"),
    ]
    assert "REDIRECT" not in _targets(PathKind.VIP, local=False)


def test_dnsrr_and_host_mode_have_no_load_balancer() -> None:
    assert _targets(PathKind.DNSRR, local=False) == ["overlay fdb VXLAN", "overlay vxlan DECAP"]
    host = stages(PathKind.HOST)
    assert _targets(PathKind.HOST) == ["host nat DNAT"]
    assert {st.side for st in host} == {Side.CLIENT, Side.UNDERLAY, Side.BACKEND}
    assert not any(st.role in (Role.OVERLAY, Role.INGRESS_SBOX) for st in host)


@pytest.mark.parametrize(
    "client_port, entry, backend, task_point",
    [
        (48004, "node1", "node2", "node2.my-web.2.eth0"),  # VXLAN node1 -> node2
        (51810, "node1", "node1", "node1.my-web.1.eth0"),  # local
        (40726, "node3", "node1", "node1.my-web.1.eth0"),  # VXLAN node3 -> node1
    ],
)
def test_expected_points_are_where_the_syn_was_seen(
    mesh: Mesh, client_port: int, entry: str, backend: str, task_point: str
) -> None:
    expected = expected_points(
        mesh.capture_points, PathKind.INGRESS, entry=entry, backend=backend, task_point=task_point
    )
    seen = syn_sightings(client_port)
    assert sorted((p.point, p.encapsulated) for p in expected) == sorted((pt, enc) for _t, pt, enc in seen)
    # the order differs from capture time only between taps of one machine (microseconds apart)
    first_at = {(pt, enc): t for t, pt, enc in reversed(seen)}
    times = [first_at[(p.point, p.encapsulated)] for p in expected]
    machines = [p.point.split(".")[0] for p in expected]
    for i in range(len(times) - 1):
        if machines[i] != machines[i + 1]:
            assert times[i] <= times[i + 1] + 1e-4


def test_expected_points_without_a_backend_stop_at_the_entry(mesh: Mesh) -> None:
    pts = expected_points(mesh.capture_points, entry="node2", backend=None)
    assert [p.point for p in pts] == [
        "client.host.eth0",
        "underlay.host.br0",
        "node2.host.eth0",
        "node2.ingress_sbox.eth1",
        "node2.ingress_sbox.eth0",
        "node2.1-v4wstpww8d.br0",
    ]
    assert expected_points(mesh.capture_points, entry=None, backend=None) == []


def test_reply_points_reverse_the_request(mesh: Mesh) -> None:
    kw = {"entry": "node1", "backend": "node2", "task_point": "node2.my-web.2.eth0"}
    req = expected_points(mesh.capture_points, **kw)  # type: ignore[arg-type]
    rep = expected_points(mesh.capture_points, direction="reply", **kw)  # type: ignore[arg-type]
    assert [(p.point, p.encapsulated) for p in rep] == [(p.point, p.encapsulated) for p in reversed(req)]


def test_vip_points_on_my_overlay(mesh: Mesh) -> None:
    pts = expected_points(
        mesh.capture_points,
        PathKind.VIP,
        entry="node1",
        backend="node2",
        network="my-overlay",
        source_point="node1.my-web.1.eth2",
        task_point="node2.backend.1.eth0",
    )
    assert [p.point for p in pts] == [
        "node1.my-web.1.eth2",
        "node1.1-kqe3y08348.br0",
        "node1.lb_kqe3y0834.eth0",
        "node1.lb_kqe3y0834.eth0",
        "node1.1-kqe3y08348.br0",
        "node1.1-kqe3y08348.vxlan0",
        "node1.host.eth0",
        "underlay.host.br0",
        "node2.host.eth0",
        "node2.1-kqe3y08348.vxlan0",
        "node2.1-kqe3y08348.br0",
        "node2.backend.1.eth0",
    ]


def test_place_order_ranks_the_entry_before_the_peer() -> None:
    order = place_order(PathKind.INGRESS, local=False)
    assert (
        order[(Side.ENTRY, Role.HOST, "eth0", False)] < order[(Side.ENTRY, Role.INGRESS_SBOX, "eth1", False)]
    )
    assert (
        order[(Side.ENTRY, Role.OVERLAY, "vxlan0", False)]
        < order[(Side.BACKEND, Role.OVERLAY, "vxlan0", False)]
    )
    assert order[(Side.UNDERLAY, Role.UNDERLAY, "br0", False)] == 1
