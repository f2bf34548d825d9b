"""The netfilter walker on small hand-written rule sets (iptables-save syntax)."""

from __future__ import annotations

from ipaddress import IPv4Address

from meshpkt.rules.model import DumpText, Namespace, build_model
from meshpkt.rules.walk import Pkt, walk_chain, walk_hook


def ns_of(save: str, addrs: str = "") -> Namespace:
    dumps = [DumpText("n", "x", "iptables-save", save)]
    if addrs:
        dumps.append(DumpText("n", "x", "ip-link", addrs))
    return build_model(dumps).nodes["n"].namespaces["x"]


NAT = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER-INGRESS - [0:0]
:SKIP - [0:0]
-A PREROUTING -j SKIP
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS
-A SKIP -p udp -j DNAT --to-destination 1.1.1.1
-A SKIP -j RETURN
-A DOCKER-INGRESS -p tcp -m tcp ! --dport 9090 -j RETURN
-A DOCKER-INGRESS -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.18.0.2:9090
-A POSTROUTING -d 10.0.0.0/24 -m ipvs --ipvs -j SNAT --to-source 10.0.0.2
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j MARK --set-xmark 0xff00/0xff00
-A PREROUTING -p tcp -m tcp --dport 9090 -j MARK --set-xmark 0x2/0xff
-A PREROUTING -m mark --mark 0xff02 -j MARK --set-mark 0x102
COMMIT
*filter
:FORWARD DROP [0:0]
:INPUT ACCEPT [0:0]
-A FORWARD -i eth0 -j ACCEPT
-A INPUT -m physdev --physdev-in x -j DROP
COMMIT
"""
ADDRS = "2: eth0: <UP> mtu 1500\n    inet 192.0.2.10/24 scope global eth0\n"


def test_prerouting_mark_then_dnat_in_priority_order() -> None:
    ns = ns_of(NAT, ADDRS)
    res = walk_hook(ns, "prerouting", Pkt("tcp", IPv4Address("192.0.2.10"), 9090))
    assert res.pkt.dst == IPv4Address("172.18.0.2") and res.pkt.dport == 9090
    assert res.pkt.mark == 0x102  # masked set-xmark, then a mark match, then set-mark
    assert [(r.table, r.chain, r.target) for r in res.rules] == [
        ("mangle", "PREROUTING", "MARK"), ("mangle", "PREROUTING", "MARK"), ("mangle", "PREROUTING", "MARK"),
        ("nat", "PREROUTING", "SKIP"), ("nat", "SKIP", "RETURN"), ("nat", "PREROUTING", "DOCKER-INGRESS"),
        ("nat", "DOCKER-INGRESS", "DNAT")]
    assert res.notes == []


def test_addrtype_local_and_negated_port() -> None:
    ns = ns_of(NAT, ADDRS)
    other = walk_hook(ns, "prerouting", Pkt("tcp", IPv4Address("8.8.8.8"), 9090))
    assert other.pkt.dst == IPv4Address("8.8.8.8")  # not a local address: no DOCKER-INGRESS
    wrong_port = walk_chain(ns, "nat", "DOCKER-INGRESS", Pkt("tcp", IPv4Address("192.0.2.10"), 80))
    assert [r.target for r in wrong_port.rules] == ["RETURN"] and wrong_port.pkt.dport == 80


def test_policy_drop_and_interfaces() -> None:
    ns = ns_of(NAT, ADDRS)
    assert walk_hook(ns, "forward", Pkt("tcp", IPv4Address("1.2.3.4"), 1, iif="eth1")).verdict == "DROP"
    assert walk_hook(ns, "forward", Pkt("tcp", IPv4Address("1.2.3.4"), 1, iif="eth0")).verdict == "ACCEPT"
    unknown = walk_hook(ns, "forward", Pkt("tcp", IPv4Address("1.2.3.4"), 1))
    assert unknown.verdict == "ACCEPT" and unknown.notes and "assumed to match" in unknown.notes[0]


def test_unmodelled_match_is_assumed_and_noted() -> None:
    res = walk_hook(ns_of(NAT), "input", Pkt("tcp", IPv4Address("1.2.3.4"), 1))
    assert res.verdict == "DROP" and "physdev" in res.notes[0]


def test_postrouting_ipvs_snat() -> None:
    ns = ns_of(NAT)
    p = Pkt("tcp", IPv4Address("10.0.0.20"), 9090, src=IPv4Address("10.211.55.2"))
    assert walk_hook(ns, "postrouting", p).pkt.src == IPv4Address("10.211.55.2")  # not IPVS traffic
    p.ipvs = True
    res = walk_hook(ns, "postrouting", p)
    assert res.pkt.src == IPv4Address("10.0.0.2") and res.verdict == "ACCEPT" and p.src != res.pkt.src


def test_missing_chain_is_noted() -> None:
    ns = ns_of("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n")
    res = walk_hook(ns, "forward", Pkt("tcp", IPv4Address("1.2.3.4"), 1))
    assert res.verdict == "ACCEPT" and "DOCKER-USER not in the dump" in res.notes[0]
