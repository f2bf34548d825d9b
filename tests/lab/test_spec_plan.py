"""Pure tests of the lab spec, plan, status document and the agent's DNS answers (no root needed)."""

from __future__ import annotations

import random
import struct

import pytest

from meshpkt.errors import UsageError
from meshpkt.lab.agent import dns_response, parse_question
from meshpkt.lab.plan import docker_mac, iptables_restore_text, plan, swarm_id
from meshpkt.lab.spec import LabSpec, PortSpec
from meshpkt.lab.status import build_status, resolve_target, select_points


@pytest.fixture(scope="module")
def p():
    return plan(LabSpec())


@pytest.fixture(scope="module")
def st(p):
    return build_status(p)


def test_defaults_reproduce_seed_001_addresses(p, st):
    assert [n["underlay_ip"] for n in p.nodes] == ["10.211.55.10", "10.211.55.18", "10.211.55.22"]
    assert [n["ingress_ip"] for n in p.nodes] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    ing = st["networks"][0]
    assert (ing["name"], ing["subnet"], ing["gateway"], ing["vni"], ing["port"]) == \
        ("ingress", "10.0.0.0/24", "10.0.0.1", 4096, 4789)
    assert st["networks"][1]["vni"] == 4097
    web = st["services"][0]
    assert web["published"] == [{"published": 9090, "target": 80, "protocol": "tcp"}]
    assert web["vips"]["ingress"] == "10.0.0.5"
    assert [b["ip"] for b in web["backends"]] == ["10.0.0.6", "10.0.0.7", "10.0.0.8"]
    assert [b["node"] for b in web["backends"]] == ["node1", "node2", "node3"]
    assert all(b["mac"] == docker_mac(b["ip"]) for b in web["backends"])
    assert docker_mac("10.0.0.20") == "02:42:0a:00:00:14"
    assert web["fwmarks"]["node1"]["ingress"] == 0x102  # as in seed 001


def test_namespace_names_follow_docker(p):
    names = {ns.name for ns in p.namespaces}
    net = swarm_id("net", "ingress")
    assert len(net) == 25
    assert {"mesh-underlay", "mesh-client", "mesh-node1", "mesh-node1-ingress_sbox",
            f"mesh-node1-1-{net[:10]}"} <= names
    uo = p.networks[1]["id"]
    assert f"mesh-node2-lb_{uo[:9]}" in names
    tasks = [ns for ns in p.namespaces if ns.role == "task"]
    assert all(len(ns.name.split("-")[-1]) == 12 for ns in tasks)
    assert all(ns.name.startswith("mesh-") for ns in p.namespaces)


def test_sbox_and_task_rules_match_seed(p):
    sbox = iptables_restore_text(p.find("node1", "ingress_sbox"))
    assert "-A PREROUTING -p tcp -m tcp --dport 9090 -j MARK --set-xmark 0x102/0xffffffff" in sbox
    assert "-A INPUT -d 10.0.0.5/32 -j MARK --set-xmark 0x102/0xffffffff" in sbox
    assert "-A POSTROUTING -d 10.0.0.0/24 -m conntrack --ctstate DNAT -j SNAT --to-source 10.0.0.2" in sbox
    host = iptables_restore_text(p.find("node2", "host"))
    assert "-A DOCKER-INGRESS -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.18.0.2:9090" in host
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS" in host
    task = iptables_restore_text(p.find("node2", "my-web.2"))
    assert "-A PREROUTING -d 10.0.0.7/32 -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 80" in task
    assert "-A INPUT -d 10.0.0.7/32 -p tcp -j DROP" in task
    ipvs = plan(LabSpec(), "ipvs")
    text = iptables_restore_text(ipvs.find("node1", "ingress_sbox"))
    assert "-m ipvs --ipvs -j SNAT --to-source 10.0.0.2" in text
    assert ipvs.find("node1", "ingress_sbox").ipvs.splitlines()[:2] == ["-A -f 258 -s rr", "-a -f 258 -r 10.0.0.6:0 -m -w 1"]


def test_nft_emulation_round_robin_keeps_port(p):
    nft = p.find("node3", "ingress_sbox").nft
    assert "meta mark 0x102 ct state new dnat to numgen inc mod 3 map { 0 : 10.0.0.6, 1 : 10.0.0.7, 2 : 10.0.0.8 }" in nft
    assert ":9090" not in nft


def test_fdb_points_remote_macs_at_peer_vteps(p):
    ovl = p.find("node1", "1-" + p.networks[0]["id"][:10])
    assert "fdb add 02:42:0a:00:00:03 dev vxlan0 dst 10.211.55.18 self permanent" in ovl.fdb
    assert "fdb add 02:42:0a:00:00:08 dev vxlan0 dst 10.211.55.22 self permanent" in ovl.fdb
    assert not any("02:42:0a:00:00:06" in f for f in ovl.fdb)  # the local task is not a peer
    assert "neigh add 10.0.0.7 lladdr 02:42:0a:00:00:07 dev vxlan0 nud permanent" in ovl.neigh
    vx = ovl.iface("vxlan0")
    assert vx.vxlan == {"vni": 4096, "port": 4789, "created_in": "mesh-node1", "tmp_name": vx.vxlan["tmp_name"]}
    assert vx.mtu == 1450


def test_capture_points_and_naming(st):
    pts = [x["point"] for x in st["capture_points"]]
    assert pts[:5] == ["client.host.eth0", "underlay.host.br0", "node1.host.eth0", "node1.ingress_sbox.eth1",
                       "node1.ingress_sbox.eth0"]
    assert "node2.my-web.2.eth0" in pts and "node2.backend.1.eth0" in pts
    assert any(x.startswith("node1.1-") and x.endswith(".vxlan0") for x in pts)
    assert len(pts) == len(set(pts))
    for x in st["capture_points"]:
        assert x["point"] == f"{x['node']}.{x['namespace']}.{x['iface']}"
    assert [x["point"] for x in select_points(st, ["node1.ingress_sbox.*"], False)] == \
        ["node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0"]
    with pytest.raises(UsageError):
        select_points(st, ["nope.*"], False)


def test_resolve_target(st):
    assert resolve_target(st, "node1") == "mesh-node1"
    assert resolve_target(st, "client") == "mesh-client"
    assert resolve_target(st, "node2/ingress_sbox") == "mesh-node2-ingress_sbox"
    assert resolve_target(st, "node2/overlay").startswith("mesh-node2-1-")
    assert resolve_target(st, "node2/lb").startswith("mesh-node2-lb_")
    assert resolve_target(st, "node3/my-web.3") == st["services"][0]["backends"][2]["netns"]
    for bad in ("node9", "node1/nothing", "client/overlay"):
        with pytest.raises(UsageError):
            resolve_target(st, bad)


def test_spec_overrides_and_errors(tmp_path):
    s = LabSpec().with_overrides(name="lab2", nodes=4, replicas=5, publish=["8080:8000"], data_path_port=7789)
    p = plan(s)
    assert [n["underlay_ip"] for n in p.nodes] == ["10.211.55.10", "10.211.55.18", "10.211.55.22", "10.211.55.30"]
    web = p.services[0]
    assert web["replicas"] == 5 and web["published"][0]["target"] == 8000
    assert {n["port"] for n in p.networks if n["vni"]} == {7789}
    assert PortSpec.parse("9090:80") == PortSpec(9090, 80, "tcp")
    for bad in ("x", "70000:80", "9090:80/sctp", "mode=bridge,published=1,target=2", "published=x,target=2"):
        with pytest.raises(UsageError):
            PortSpec.parse(bad)
    with pytest.raises(UsageError):
        LabSpec().with_overrides(name="Bad_Name")
    with pytest.raises(UsageError):
        LabSpec().with_overrides(data_path_port=80)
    y = tmp_path / "lab.yaml"
    y.write_text("name: y1\nnodes: 2\nservices:\n  - name: web\n    replicas: 2\n    publish: ['9191:81']\n")
    ys = LabSpec.load(y)
    assert ys.nodes == 2 and ys.services[0].publish == (PortSpec(9191, 81),)
    t = tmp_path / "lab.toml"
    t.write_text('name = "t1"\nnodes = 2\n[[services]]\nname = "web"\nreplicas = 1\npublish = ["9090:80"]\n')
    assert LabSpec.load(t).services[0].name == "web"
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodez: 3\n")
    with pytest.raises(UsageError, match="unknown lab spec key"):
        LabSpec.load(bad)
    with pytest.raises(UsageError):
        LabSpec.load(tmp_path / "missing.yaml")


def _query(name: str, qtype: int = 1) -> bytes:
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


def test_dns_answers_like_docker(p):
    rec = p.dns["my-web.1"]
    assert rec["backend"] == ["10.0.1.2"]
    assert rec["tasks.backend"] == ["10.0.1.10", "10.0.1.11"]
    r = dns_response(_query("tasks.backend"), rec, rng=random.Random(1))
    assert r is not None
    qid, flags, qd, an = struct.unpack("!HHHH", r[:8])
    assert (qid, flags & 0x800F, qd, an) == (0x1234, 0x8000, 1, 2)
    end = parse_question(r)[-1]
    ips = set()
    for i in range(2):
        rr = r[end + i * 16: end + (i + 1) * 16]
        _ptr, typ, cls, ttl, ln = struct.unpack("!HHHIH", rr[:12])
        assert (typ, cls, ttl, ln) == (1, 1, 600, 4)
        ips.add(".".join(str(b) for b in rr[12:16]))
    assert ips == {"10.0.1.10", "10.0.1.11"}
    nx = dns_response(_query("nothere"), rec)
    assert nx is not None and nx[3] & 0x0F == 3
    aaaa = dns_response(_query("backend", 28), rec)
    assert aaaa is not None and struct.unpack("!H", aaaa[6:8])[0] == 0 and aaaa[3] & 0x0F == 0
    assert dns_response(b"\x00\x01", rec) is None


def test_udp_host_mode_and_dual_stack_specs() -> None:
    assert PortSpec.parse("5300:53/udp") == PortSpec(5300, 53, "udp")
    assert PortSpec.parse("mode=host,published=8080,target=80,protocol=udp") == PortSpec(8080, 80, "udp", "host")
    s = LabSpec.from_dict({"services": [
        {"name": "dns", "replicas": 3, "publish": ["53:53/udp", "53:53"], "networks": ["my-overlay"]},
        {"name": "h", "replicas": 2, "publish": [{"published": 8080, "target": 80, "mode": "host"}]}]})
    p = plan(s)
    dns, h = p.services
    assert dns["target_ports"] == [53] and dns["udp_ports"] == [53]
    assert [x["protocol"] for x in dns["published"]] == ["udp", "tcp"]
    assert h["networks"] == [] and h["published"] == [{"published": 8080, "target": 80, "protocol": "tcp",
                                                       "mode": "host"}]
    host = iptables_restore_text(p.find("node2", "host"))
    assert "-A DOCKER-INGRESS -p udp -m udp --dport 53 -j DNAT --to-destination 172.18.0.2:53" in host
    assert "-A DOCKER-INGRESS -p tcp -m tcp --dport 53 -j DNAT --to-destination 172.18.0.2:53" in host
    assert "-A DOCKER ! -i docker_gwbridge -p tcp -m tcp --dport 8080 -j DNAT --to-destination" in host
    task = iptables_restore_text(p.find("node1", "dns.1"))
    assert "-p udp -m udp --dport 53 -j REDIRECT --to-ports 53" in task
    for bad in ({"services": [{"name": "a", "publish": ["1:1/udp", "1:2/udp"]}]},
                {"services": [{"name": "a", "replicas": 4, "publish": ["mode=host,published=1,target=1"]}]},
                {"overlays": [{"subnet6": "fd00::/64"}, {"name": "b", "subnet": "10.0.2.0/24", "vni": 9,
                                                          "subnet6": "fd00::/48"}]},
                {"overlays": [{"subnet6": "10.0.0.0/8"}]}):
        with pytest.raises(UsageError):
            LabSpec.from_dict(bad)


def test_dual_stack_plan() -> None:
    p = plan(LabSpec.from_dict({"overlays": [{"subnet6": "fd00:0:0:1::/64"}]}))
    t = next(t for t in p.tasks if "my-overlay" in t.ips)
    off = int(t.ips["my-overlay"].rsplit(".", 1)[1])
    assert t.ips6 == {"my-overlay": f"fd00:0:0:1::{off:x}"}
    ns = p.find(t.node, t.name)
    assert ns.iface(t.ifaces["my-overlay"]).addresses6 == [f"fd00:0:0:1::{off:x}/64"]
    assert ns.sysctls[f"net.ipv6.conf.{t.ifaces['my-overlay']}.disable_ipv6"] == "0"
    assert ns.sysctls["net.ipv6.conf.eth1.disable_ipv6"] == "1"  # docker_gwbridge stays IPv4 only
    ov = next(x for x in p.namespaces if x.role == "overlay" and x.network == "my-overlay" and x.node != t.node)
    assert f"neigh add fd00:0:0:1::{off:x} lladdr {t.macs['my-overlay']} dev vxlan0 nud permanent" in ov.neigh
