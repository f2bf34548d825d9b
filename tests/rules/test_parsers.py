"""nft JSON, ipvsadm, iproute2, bridge fdb and docker inspect parsers: seeds' literal output and
real output collected from test namespaces (tests/rules/data/lab)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpkt.rules.docker import parse_docker_networks, parse_docker_services
from meshpkt.rules.iproute import (
    parse_bridge_fdb,
    parse_ip_json,
    parse_ip_link,
    parse_ip_neigh,
    parse_ip_route,
)
from meshpkt.rules.iptables import parse_iptables_list, parse_iptables_save
from meshpkt.rules.ipvs import parse_ipvsadm_conns, parse_ipvsadm_list, parse_ipvsadm_save
from meshpkt.rules.nft import parse_nft_json
from meshpkt.rules.types import mac_str

DATA = Path(__file__).parent / "data"
LAB = DATA / "lab" / "node1"


def read(p: str | Path) -> str:
    return (DATA / p).read_text(encoding="utf-8")


# ---------------------------------------------------------------- nft -j


def test_nft_lb_emulation_and_snat() -> None:
    rs = parse_nft_json(read(LAB / "ingress_sbox" / "nft-ruleset.json"))
    assert rs.unparsed == []
    lb = rs.chain("ip meshlb", "lb")
    post = rs.chain("ip meshlb", "post")
    assert lb is not None and post is not None
    assert (lb.hook, lb.priority, post.hook, post.priority) == ("prerouting", -100, "postrouting", 100)
    (r,) = lb.rules
    assert r.target == "DNAT" and r.mark == (0x100, 0xFFFFFFFF) and r.ctstate == frozenset({"NEW"})
    assert r.lb_backends == (IPv4Address("10.0.0.17"), IPv4Address("10.0.0.20")) and r.lb_mode == "rr"
    assert r.text == ("meta mark 0x100 ct state new counter packets 0 bytes 0 "
                      "dnat to numgen inc mod 2 map { 0 : 10.0.0.17, 1 : 10.0.0.20 }")
    (s,) = post.rules
    assert s.target == "SNAT" and s.to_addr == IPv4Address("10.0.0.2") and s.ctstatus == frozenset({"DNAT"})
    assert s.dst == IPv4Network("10.0.0.0/24")


def test_nft_iptables_nft_tables_keep_xt_as_other() -> None:
    rs = parse_nft_json(read(LAB / "host" / "nft-ruleset.json"))
    ing = rs.chain("ip nat", "DOCKER-INGRESS")
    assert ing is not None
    dnat = ing.rules[0]
    assert dnat.dports == ((8080, 8080),) and dnat.target == "DNAT" and dnat.to_addr is None  # xt: no args in JSON
    pre = rs.chain("ip nat", "PREROUTING")
    assert pre is not None and pre.rules[0].other == ["xt match addrtype"] and pre.rules[0].target == "DOCKER-INGRESS"


def test_nft_bad_json_is_reported() -> None:
    rs = parse_nft_json("{not json")
    assert rs.unparsed and rs.unparsed[0].startswith("not JSON")
    assert parse_nft_json("").tables == {}


# ---------------------------------------------------------------- ipvsadm


def test_ipvsadm_list_seed001() -> None:
    tbl = parse_ipvsadm_list(read("seed001_sbox_ipvsadm_Ln.txt"))
    assert tbl.version == "1.2.1" and tbl.unparsed == []
    (svc,) = tbl.services
    assert (svc.kind, svc.fwmark, svc.scheduler) == ("FWM", 258, "rr")
    assert [(str(d.addr), d.port, d.forward, d.weight) for d in svc.dests] == [
        ("10.0.0.17", 0, "Masq", 1), ("10.0.0.20", 0, "Masq", 1), ("10.0.0.21", 0, "Masq", 1)]


def test_ipvsadm_list_seed000_and_address_services() -> None:
    tbl = parse_ipvsadm_list(read("seed000_sbox_ipvsadm_l.txt"))
    assert tbl.services[0].fwmark == 279 and len(tbl.services[0].dests) == 3
    tbl2 = parse_ipvsadm_list("TCP  10.0.0.5:80 wlc persistent 300\n  -> 10.0.0.6:80 Route 0 1 2\nbogus\n")
    s = tbl2.services[0]
    assert (s.kind, s.addr, s.port, s.flags) == ("TCP", IPv4Address("10.0.0.5"), 80, ["persistent", "300"])
    assert s.dests[0].forward == "Route" and s.dests[0].weight == 0 and tbl2.unparsed == ["bogus"]


def test_ipvsadm_save() -> None:
    # what `ipvsadm -Sn` prints for the seed-001 service (the kernel here has no IPVS to ask)
    text = "-A -f 258 -s rr\n-a -f 258 -r 10.0.0.17:0 -m -w 1\n-a -f 258 -r 10.0.0.20:0 -m -w 0\n" \
           "-A -t 10.0.0.5:80 -s wlc -p 300\n-a -t 10.0.0.5:80 -r 10.0.0.6:80 -g -w 2\n-a -f 999 -r 1.2.3.4:0 -m\n"
    tbl = parse_ipvsadm_save(text)
    fwm, tcp = tbl.services
    assert fwm.fwmark == 258 and [(str(d.addr), d.weight) for d in fwm.dests] == [("10.0.0.17", 1), ("10.0.0.20", 0)]
    assert tcp.addr == IPv4Address("10.0.0.5") and tcp.dests[0].forward == "Route" and "persistent 300" in tcp.flags
    assert tbl.unparsed == ["-a -f 999 -r 1.2.3.4:0 -m"]  # destination of an unknown service


def test_ipvsadm_conns_seed001() -> None:
    conns, unparsed = parse_ipvsadm_conns(read("seed001_sbox_ipvsadm_Lnc.txt"))
    assert unparsed == []
    assert [(c.state, str(c.dest[0])) for c in conns] == [("TIME_WAIT", "10.0.0.20"), ("TIME_WAIT", "10.0.0.21"),
                                                          ("TIME_WAIT", "10.0.0.17")]
    assert conns[0].virtual == (IPv4Address("172.18.0.2"), 9090) and conns[0].source[1] == 57786


# ---------------------------------------------------------------- ip / bridge


def test_ip_addr_seed001_sbox_vip_and_peers() -> None:
    lt = parse_ip_link(read("seed001_sbox_ip_a.txt"))
    eth0 = lt.by_name("eth0")
    assert eth0 is not None and eth0.peer_index == 7 and eth0.mtu == 1450 and eth0.link_netnsid == 0
    assert [str(a.addr) for a in eth0.addresses] == ["10.0.0.2/24", "10.0.0.15/32"]
    assert mac_str(eth0.mac) == "02:42:0a:00:00:02"
    assert lt.unparsed == ["......"]


def test_ip_addr_seed000_flattened_lines() -> None:
    lt = parse_ip_link(read("seed000_sbox_ip_a.txt"))
    assert [lk.name for lk in lt.links] == ["lo", "eth0", "eth1"]
    assert [str(a.addr) for a in lt.by_name("eth0").addresses] == ["10.0.0.7/24", "10.0.0.20/32"]  # type: ignore
    assert lt.unparsed == []


def test_ip_d_link_vxlan_seed_and_real() -> None:
    seed = parse_ip_link(read("seed001_overlay_ip_d_link_vxlan.txt"))
    vx = seed.by_name("vxlan0")
    assert vx is not None and vx.vxlan is not None and vx.master == "br0" and vx.slave_kind == "bridge"
    assert (vx.vxlan.vni, vx.vxlan.dstport, vx.vxlan.proxy, vx.vxlan.l2miss) == (4096, 4789, True, True)
    assert seed.unparsed == []
    real = parse_ip_link(read(LAB / "1-abcdef1234" / "ip-d-link.txt"))
    assert real.unparsed == []
    rv = real.by_name("vxlan0")
    assert rv is not None and rv.vxlan is not None
    assert (rv.vxlan.vni, rv.vxlan.local, rv.vxlan.learning) == (4096, IPv4Address("192.0.2.10"), True)
    veth = real.by_name("veth0")
    assert veth is not None and veth.kind == "veth" and veth.link_netns is not None and veth.peer_index is not None
    assert real.by_name("br0").kind == "bridge"  # type: ignore[union-attr]


def test_ip_json_addr_and_link() -> None:
    lt = parse_ip_json(read(LAB / "ingress_sbox" / "ip-addr.json"))
    eth0 = lt.by_name("eth0")
    assert eth0 is not None
    assert IPv4Interface("10.0.0.15/32") in [a.addr for a in eth0.addresses]
    dl = parse_ip_json(read(LAB / "1-abcdef1234" / "ip-d-link.json"))
    vx = dl.by_name("vxlan0")
    assert vx is not None and vx.vxlan is not None and (vx.vxlan.vni, vx.vxlan.dstport) == (4096, 4789)
    assert vx.master == "br0" and vx.slave_kind == "bridge"
    assert parse_ip_json("[1, 2").unparsed


def test_bridge_fdb_seed_with_dev_from_command_and_comments() -> None:
    entries, unparsed = parse_bridge_fdb(read("seed001_overlay_fdb_vxlan0.txt"), dev="vxlan0")
    assert len(entries) == 5 and all(e.dev == "vxlan0" for e in entries)
    remote = [(mac_str(e.mac), str(e.dst)) for e in entries if e.dst is not None]
    assert ("02:42:0a:00:00:14", "10.211.55.18") in remote and len(remote) == 4
    assert entries[0].master == "br0" and entries[0].state == "permanent" and not entries[0].self_
    assert entries[1].self_ and entries[1].link_netnsid == 0
    assert len(unparsed) == 2 and all(u.startswith("//") for u in unparsed)


def test_bridge_fdb_real() -> None:
    entries, unparsed = parse_bridge_fdb(read(LAB / "1-abcdef1234" / "bridge-fdb.txt"))
    assert unparsed == []
    (vx,) = [e for e in entries if e.dst is not None]
    assert (mac_str(vx.mac), vx.dev, str(vx.dst), vx.state) == ("02:42:0a:00:00:14", "vxlan0", "192.0.2.18",
                                                                "permanent")
    learned = [e for e in entries if e.state == "learned"]
    assert learned and all(e.master == "br0" for e in learned)


def test_ip_route_and_neigh_real() -> None:
    routes, unparsed = parse_ip_route(read(LAB / "1-abcdef1234" / "ip-route.txt"))
    assert unparsed == [] and routes[0].dest == IPv4Network("10.0.0.0/24") and routes[0].dev == "br0"
    assert routes[0].src == IPv4Address("10.0.0.1") and routes[0].proto == "kernel"
    more, _ = parse_ip_route("default via 172.18.0.1 dev eth1\nlocal 10.0.0.2 dev eth0 table local proto kernel\n")
    assert more[0].dest is None and more[0].via == IPv4Address("172.18.0.1") and more[1].type == "local"
    neigh, unparsed = parse_ip_neigh(read(LAB / "1-abcdef1234" / "ip-neigh.txt"))
    assert unparsed == [] and neigh[0].addr == IPv4Address("10.0.0.20") and neigh[0].state == ["PERMANENT"]
    assert mac_str(neigh[0].lladdr) == "02:42:0a:00:00:14"


# ---------------------------------------------------------------- docker


def test_docker_network_inspect_seed001() -> None:
    nets, unparsed = parse_docker_networks(read("seed001_network_ingress.json"))
    assert unparsed == []
    (ing,) = nets
    assert ing.ingress and ing.vnis == [4096] and ing.subnets == [(IPv4Network("10.0.0.0/24"),
                                                                   IPv4Address("10.0.0.1"))]
    assert {str(c.ipv4) for c in ing.containers} == {"10.0.0.16/24", "10.0.0.17/24", "10.0.0.2/24"}
    assert [str(ip) for _, ip in ing.peers] == ["10.211.55.10", "10.211.55.22", "10.211.55.18"]
    both = read("seed001_network_ingress.json") + read("seed001_network_gwbridge.json")
    nets2, _ = parse_docker_networks(both)  # concatenated outputs of two inspect commands
    assert [n.name for n in nets2] == ["ingress", "docker_gwbridge"]


def test_docker_service_inspect_seed001() -> None:
    svcs, unparsed = parse_docker_services(read("seed001_service_my_nginx.json"))
    assert unparsed == []
    (s,) = svcs
    assert (s.name, s.mode, s.replicas) == ("my-nginx", "vip", 3)
    assert [(p.protocol, p.target, p.published, p.mode) for p in s.ports] == [("tcp", 80, 9090, "ingress")]
    assert [str(v) for _, v in s.vips] == ["10.0.0.15/24", "172.16.0.27/16"]


def test_docker_truncated_json_is_reported() -> None:
    nets, unparsed = parse_docker_networks('...\n"Containers": {\n[{"Name": "x"')
    assert nets == [] and unparsed


# ---------------------------------------------------------------- never crash

PARSERS = [
    lambda t: parse_iptables_save(t),
    lambda t: parse_iptables_list(t, "nat"),
    parse_nft_json, parse_ipvsadm_list, parse_ipvsadm_save, parse_ipvsadm_conns, parse_bridge_fdb, parse_ip_link,
    parse_ip_json, parse_ip_route, parse_ip_neigh, parse_docker_networks, parse_docker_services,
]
_ALPHABET = st.sampled_from(list("abcxyzAZ019 :./-![]{}\",*#\n") + ["-A ", "Chain ", "FWM ", "->", "inet ",
                                                                    "vxlan id ", "to:", "dpt:", "0x"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_parsers_never_raise_on_junk(text: str) -> None:
    for p in PARSERS:
        p(text)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir() if p.is_file()))
def test_parsers_never_raise_on_any_fixture(name: str) -> None:
    text = read(name)
    for p in PARSERS:
        p(text)
    json.dumps([str(x) for x in parse_ip_link(text).links])
