"""meshpkt.mesh.status: the shipped status.json loads into a Mesh and writes back key for key; lookups
answer what the document (read independently with json) says; bad documents give one clear error."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from meshpkt.errors import UsageError
from meshpkt.lab.plan import plan
from meshpkt.lab.spec import LabSpec
from meshpkt.lab.status import build_mesh, build_status
from meshpkt.mesh.model import EndpointMode, Mesh, Role
from meshpkt.mesh.status import load_status, status_document, write_status

SHIPPED = Path(__file__).resolve().parents[2] / "captures" / "ingress-3node" / "status.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(SHIPPED.read_text())


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return load_status(SHIPPED)


def test_shipped_document_round_trips_exactly(doc: dict, mesh: Mesh) -> None:
    out = status_document(mesh)
    assert out == doc
    assert json.dumps(out, indent=1) == json.dumps(doc, indent=1)  # key order too


def test_write_status_round_trips(tmp_path: Path, mesh: Mesh) -> None:
    write_status(mesh, tmp_path / "status.json")
    assert load_status(tmp_path / "status.json") == mesh


def test_lookups_agree_with_the_document(doc: dict, mesh: Mesh) -> None:
    for svc in doc["services"]:
        for b in svc["backends"]:
            for ip in b["ips"].values():
                assert mesh.node_of_ip(ip) == b["node"]
                backend = mesh.backend_of_ip(ip)
                assert backend is not None and backend.task == b["task"]
        for net, vip in svc["vips"].items():
            hit = mesh.service_of_vip(vip)
            assert hit is not None and (hit[0].name, hit[1]) == (svc["name"], net)
            for node, marks in svc["fwmarks"].items():
                assert mesh.service(svc["name"]).fwmark(node, net) == marks.get(net)  # type: ignore[union-attr]
    for nd in doc["nodes"]:
        assert mesh.node_of_ip(nd["underlay_ip"]) == nd["name"]
        assert mesh.node_of_ip(nd["ingress_ip"]) == nd["name"]
    for net in doc["networks"]:
        if net["vni"] is not None:
            assert mesh.network_of_vni(net["vni"]).name == net["name"]  # type: ignore[union-attr]
    assert mesh.is_client(doc["clients"][0]["ip"])
    assert mesh.node_of_ip("192.0.2.1") is None


def test_typed_values(mesh: Mesh) -> None:
    node1 = mesh.node("node1")
    assert node1 is not None and node1.underlay_ip == IPv4Address("10.211.55.10")
    sbox = node1.by_role(Role.INGRESS_SBOX)[0]
    assert sbox.interface("eth1") is not None and sbox.interface_on("ingress") is not None
    assert mesh.service("my-web").mode == EndpointMode.VIP  # type: ignore[union-attr]
    assert mesh.service("my-web").target_of(9090) == 80  # type: ignore[union-attr]
    assert mesh.published_ports() == {(9090, "tcp"): 80}
    vteps = mesh.vteps()
    assert {(v.node, str(v.ip), v.vni) for v in vteps if v.network == "ingress"} == {
        ("node1", "10.211.55.10", 4096),
        ("node2", "10.211.55.18", 4096),
        ("node3", "10.211.55.22", 4096),
    }
    assert mesh.point("node2.my-web.2.eth0").network == "ingress"
    assert mesh.point("nodeX.somewhere.eth3").role == Role.TASK  # parsed from the name


def test_lab_plan_builds_the_same_mesh_as_its_document() -> None:
    p = plan(LabSpec())
    m = build_mesh(p, pids={"my-web.1": 42})
    assert load_status(build_status(p, pids={"my-web.1": 42})) == m
    tasks = [ns.task for ns in m.namespaces() if ns.task is not None]
    assert {t.name: t.pid for t in tasks}["my-web.1"] == 42
    assert [p.point for p in m.capture_points[:5]] == [
        "client.host.eth0",
        "underlay.host.br0",
        "node1.host.eth0",
        "node1.ingress_sbox.eth1",
        "node1.ingress_sbox.eth0",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such status file"),
        ("not json", "not a lab status JSON"),
        ("[1, 2]", "expected an object"),
        ('{"schema": "other/1"}', "is not a lab status"),
        ('{"nodes": [{"name": "n1", "underlay_ip": "10.0.0.1", "mac": "zz"}]}', "not a MAC address"),
        ('{"nodes": [{"underlay_ip": "10.0.0.1"}]}', "not a lab status document"),
    ],
)
def test_bad_documents_are_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "status.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_status(path)
