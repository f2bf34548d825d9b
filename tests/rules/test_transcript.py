"""Cutting transcripts (seed 001 / 000) into (node, namespace, command, output) chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpkt.rules.transcript import classify_command, split_transcript, strip_netns

DATA = Path(__file__).parent / "data"


def test_seed001_chunks() -> None:
    chunks = split_transcript((DATA / "seed001.txt").read_text(encoding="utf-8"))
    parsed = [(c.node, c.namespace, c.command) for c in chunks if classify_command(c.command)]
    assert parsed == [
        ("centos7-10", "host", "docker network inspect ingress"),
        ("centos7-10", "host", "docker network inspect docker_gwbridge"),
        ("centos7-10", "host", "docker service inspect my-nginx"),
        ("centos7-10", "host", "iptables -L -nv -t nat"),
        ("centos7-10", "host", "iptables -L -nv -t filter"),
        ("centos7-10", "ingress_sbox", "ip a"),
        ("centos7-10", "host", "ip a show enp0s5"),
        ("centos7-10", "ingress_sbox", "iptables -L -nv -t mangle"),
        ("centos7-10", "ingress_sbox", "iptables -L -nv -t nat"),
        ("centos7-10", "ingress_sbox", "ipvsadm -L -n"),
        ("centos7-10", "ingress_sbox", "ipvsadm -L -n -c"),
        ("centos7-10", "1-9j40lm9s5d", "ip a"),
        ("centos7-10", "1-9j40lm9s5d", "ip -d link show type vxlan"),
        ("centos7-10", "1-9j40lm9s5d", "bridge -d fdb show dev vxlan0"),
        ("centos7-18", "7fd6d0335ad4", "iptables -L -nv -t nat"),
        ("centos7-18", "7fd6d0335ad4", "iptables -L -nv -t filter"),
    ]
    # the output stops at the article's prose, and is the literal text otherwise
    mangle = next(c for c in chunks if c.command == "iptables -L -nv -t mangle")
    assert mangle.output == (DATA / "seed001_sbox_mangle_L.txt").read_text(encoding="utf-8")
    ipvs = next(c for c in chunks if c.command == "ipvsadm -L -n")
    assert ipvs.output.splitlines()[-1].strip().startswith("-> 10.0.0.21:0")
    client = [c for c in chunks if c.node == "jinshideMacBook-Pro-2"]
    assert client and all(c.command.startswith("curl") or not c.command for c in client)


def test_seed000_bare_prompts_and_nsenter_shell() -> None:
    chunks = split_transcript((DATA / "seed000.txt").read_text(encoding="utf-8"))
    parsed = [(c.namespace, c.command) for c in chunks if classify_command(c.command)]
    assert parsed == [("host", "iptables -L -n -t nat"), ("host", "ip a"),
                      ("host", "docker network inspect docker_gwbridge"), ("ingress_sbox", "ip a"),
                      ("ingress_sbox", "iptables -nL -t mangle"), ("ingress_sbox", "ipvsadm -l")]
    exec_chunks = [c for c in chunks if c.namespace.startswith("container:")]
    assert {c.namespace for c in exec_chunks} >= {"container:6faf", "container:1a24"}


def test_namespace_shell_until_exit() -> None:
    text = ("[root@n1 ~]# ip netns exec ingress_sbox bash\n[root@n1 ~]# ipvsadm -Ln\nFWM  256 rr\n"
            "[root@n1 ~]# exit\n[root@n1 ~]# iptables-save\n*nat\n")
    chunks = split_transcript(text)
    assert [(c.namespace, c.command) for c in chunks] == [
        ("ingress_sbox", "bash"), ("ingress_sbox", "ipvsadm -Ln"), ("host", "exit"), ("host", "iptables-save")]
    assert chunks[1].output == "FWM  256 rr\n"


@pytest.mark.parametrize(("cmd", "ns", "rest"), [
    ("ip netns exec 1-9j40lm9s5d bridge -d fdb show dev vxlan0", "1-9j40lm9s5d", "bridge -d fdb show dev vxlan0"),
    ("nsenter --net=/var/run/docker/netns/ingress_sbox iptables-save", "ingress_sbox", "iptables-save"),
    ("nsenter --net /run/docker/netns/lb_abc -- ipvsadm -Ln", "lb_abc", "ipvsadm -Ln"),
    ("ip -n ns1 addr", "ns1", "ip addr"),
    ("docker exec -it util.1 ip r", "container:util.1", "ip r"),
    ("sudo ip netns exec x iptables -L -t nat", "x", "iptables -L -t nat"),
    ("iptables -L", None, "iptables -L"),
])
def test_strip_netns(cmd: str, ns: str | None, rest: str) -> None:
    assert strip_netns(cmd) == (ns, rest)


@pytest.mark.parametrize(("cmd", "kind", "table", "dev"), [
    ("iptables -L -nv -t nat", "iptables-list", "nat", None),
    ("iptables -nL -t mangle", "iptables-list", "mangle", None),
    ("iptables -L -n -v -x --line-numbers", "iptables-list", "filter", None),
    ("iptables -tnat -nvL", "iptables-list", "nat", None),
    ("iptables -S -t nat", "iptables-save", "nat", None),
    ("iptables-save -c", "iptables-save", None, None),
    ("iptables-legacy-save", "iptables-save", None, None),
    ("nft -j list ruleset", "nft-json", None, None),
    ("ipvsadm -L -n", "ipvsadm-list", None, None),
    ("ipvsadm -l", "ipvsadm-list", None, None),
    ("ipvsadm -Ln", "ipvsadm-list", None, None),
    ("ipvsadm -L -n -c", "ipvsadm-conns", None, None),
    ("ipvsadm -Sn", "ipvsadm-save", None, None),
    ("bridge -d fdb show dev vxlan0", "bridge-fdb", None, "vxlan0"),
    ("bridge fdb", "bridge-fdb", None, None),
    ("ip -d link show type vxlan", "ip-link", None, None),
    ("ip a", "ip-link", None, None),
    ("ip -j addr show", "ip-json", None, None),
    ("ip route", "ip-route", None, None),
    ("ip neigh show", "ip-neigh", None, None),
    ("docker network inspect ingress", "docker-network", None, None),
    ("docker service inspect my-nginx", "docker-service", None, None),
])
def test_classify(cmd: str, kind: str, table: str | None, dev: str | None) -> None:
    k = classify_command(cmd)
    assert k is not None and (k.kind, k.table, k.dev) == (kind, table, dev)


@pytest.mark.parametrize("cmd", ["brctl show", "nft list ruleset", "tcpdump -i eth0", "iptables -A INPUT -j DROP",
                                 'docker service inspect --format "{{json .Endpoint.Spec.Ports}}" x', "ip netns show",
                                 ""])
def test_classify_unknown(cmd: str) -> None:
    assert classify_command(cmd) is None
