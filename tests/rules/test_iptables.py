"""iptables parsers on the seeds' literal output and on real iptables 1.8.9 (nft backend) output."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from meshpkt.rules.iptables import parse_iptables_list, parse_iptables_save, parse_rule_spec

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_seed001_host_nat_list_k_counters_and_addrtype() -> None:
    rs = parse_iptables_list(read("seed001_host_nat_L.txt"), table="nat")
    pre = rs.chain("nat", "PREROUTING")
    assert pre is not None and pre.policy == "ACCEPT" and pre.hook == "prerouting" and pre.priority == -100
    assert pre.pkts == 13068 and pre.bytes == 1352000
    r1, r2 = pre.rules
    assert (r1.target, r1.dst_type, r1.pkts, r1.bytes, r1.counters_exact) == ("DOCKER-INGRESS", "LOCAL", 9629,
                                                                              585000, False)
    assert r1.is_jump and r2.target == "DOCKER"
    ing = rs.chain("nat", "DOCKER-INGRESS")
    assert ing is not None and ing.references == 2 and ing.policy is None
    dnat = ing.rules[0]
    assert dnat.target == "DNAT" and dnat.proto == "tcp" and dnat.dports == ((9090, 9090),)
    assert dnat.to_addr == IPv4Address("172.18.0.2") and dnat.to_ports == (9090, 9090)
    assert (dnat.pkts, dnat.bytes, dnat.counters_exact) == (75, 4800, True)
    assert dnat.text.startswith("75  4800 DNAT") and dnat.text.endswith("to:172.18.0.2:9090")
    assert ing.rules[1].target == "RETURN" and ing.rules[1].proto is None
    assert rs.unparsed == ["......"]  # the blog's elision is kept, not dropped


def test_seed001_host_filter_interfaces_negation_and_state() -> None:
    rs = parse_iptables_list(read("seed001_host_filter_L.txt"), table="filter")
    fwd = rs.chain("filter", "FORWARD")
    assert fwd is not None and len(fwd.rules) == 11
    r6 = fwd.rules[5]  # ACCEPT all -- docker0 !docker0
    assert (r6.in_iface, r6.in_neg, r6.out_iface, r6.out_neg) == ("docker0", False, "docker0", True)
    r8 = fwd.rules[7]
    assert r8.out_iface == "docker_gwbridge" and r8.ctstate == frozenset({"RELATED", "ESTABLISHED"})
    assert r8.pkts == 1408 and r8.bytes == 1492000 and not r8.counters_exact
    ing = rs.chain("filter", "DOCKER-INGRESS")
    assert ing is not None
    assert ing.rules[0].dports == ((9090, 9090),) and ing.rules[0].target == "ACCEPT"
    assert ing.rules[1].sports == ((9090, 9090),) and ing.rules[1].ctstate == frozenset({"RELATED", "ESTABLISHED"})
    assert not any(r.other for r in rs.rules())


def test_seed001_sbox_mangle_mark_and_nat_ipvs_snat() -> None:
    mangle = parse_iptables_list(read("seed001_sbox_mangle_L.txt"), table="mangle")
    pre = mangle.chain("mangle", "PREROUTING")
    inp = mangle.chain("mangle", "INPUT")
    assert pre is not None and inp is not None
    assert pre.rules[0].set_mark == (0x102, 0xFFFFFFFF) and pre.rules[0].dport == 9090
    assert inp.rules[0].set_mark == (0x102, 0xFFFFFFFF) and inp.rules[0].dst == IPv4Network("10.0.0.15/32")
    assert pre.priority == -150
    nat = parse_iptables_list(read("seed001_sbox_nat_L.txt"), table="nat")
    post = nat.chain("nat", "POSTROUTING")
    assert post is not None and post.priority == 100
    snat = post.rules[1]
    assert snat.target == "SNAT" and snat.ipvs is True and snat.to_addr == IPv4Address("10.0.0.2")
    assert snat.dst == IPv4Network("10.0.0.0/24") and snat.other == []
    assert post.rules[0].target == "DOCKER_POSTROUTING" and post.rules[0].dst == IPv4Network("127.0.0.11/32")


def test_seed001_task_redirect_and_filters() -> None:
    nat = parse_iptables_list(read("seed001_task_nat_L.txt"), table="nat")
    (red,) = list(nat.rules())
    assert red.target == "REDIRECT" and red.to_ports == (80, 80) and red.dport == 9090
    assert red.dst == IPv4Network("10.0.0.20/32")
    flt = parse_iptables_list(read("seed001_task_filter_L.txt"), table="filter")
    inp = flt.chain("filter", "INPUT")
    assert inp is not None
    assert [r.proto for r in inp.rules] == ["tcp", "sctp", "udp", "tcp"]
    assert [r.target for r in inp.rules] == ["ACCEPT", "DROP", "DROP", "DROP"]
    assert inp.rules[0].ctstate == frozenset({"NEW", "ESTABLISHED"})
    assert flt.unparsed == []


def test_seed000_without_v_columns() -> None:
    rs = parse_iptables_list(read("seed000_host_nat_L.txt"), table="nat")
    dnat = rs.chain("nat", "DOCKER-INGRESS").rules[0]  # type: ignore[union-attr]
    assert dnat.to_addr == IPv4Address("172.18.0.2") and dnat.dport == 8000 and dnat.pkts is None
    assert rs.unparsed == ["...", "..."]
    mangle = parse_iptables_list(read("seed000_sbox_mangle_nL.txt"), table="mangle")
    (mark,) = list(mangle.rules())
    assert mark.set_mark == (0x117, 0xFFFFFFFF) and mark.dport == 8000


def test_real_list_with_line_numbers_and_numeric_proto() -> None:
    rs = parse_iptables_list(read("lab_extra/host-iptables-L-nat-vx-linenumbers.txt"), table="nat")
    assert rs.unparsed == []
    ing = rs.chain("nat", "DOCKER-INGRESS")
    assert ing is not None and [r.index for r in ing.rules] == [1, 2]
    assert ing.rules[0].proto == "tcp" and ing.rules[0].to_addr == IPv4Address("172.18.0.2")  # "6" -> tcp
    masq = rs.chain("nat", "POSTROUTING").rules[0]  # type: ignore[union-attr]
    assert masq.target == "MASQUERADE" and masq.out_iface == "docker_gwbridge" and masq.src_type == "LOCAL"


def test_real_save_nft_backend_counters_and_comment() -> None:
    rs = parse_iptables_save(read("lab/node1/0123456789ab/iptables-save.txt"))
    assert rs.backend == "nf_tables"
    assert any("iptables-legacy tables present" in w for w in rs.warnings)
    assert rs.unparsed == []
    out = rs.chain("filter", "OUTPUT")
    assert out is not None
    r = out.rules[0]
    assert r.comment == "swarm task reply" and r.sports == ((80, 80),) and r.ctstate == frozenset({"ESTABLISHED"})
    assert (r.pkts, r.bytes) == (0, 0) and not r.text.startswith("[")
    red = rs.chain("nat", "PREROUTING").rules[0]  # type: ignore[union-attr]
    assert red.target == "REDIRECT" and red.to_ports == (80, 80) and red.dst == IPv4Network("10.0.0.17/32")
    legacy = parse_iptables_save(read("lab/node1/0123456789ab/iptables-legacy-save.txt"))
    assert legacy.backend == "legacy"
    assert [r.dports for r in legacy.rules()] == [((4789, 4789),)]


def test_real_save_set_xmark_and_user_chains() -> None:
    rs = parse_iptables_save(read("lab/node1/ingress_sbox/iptables-save.txt"))
    marks = [r for r in rs.rules() if r.target == "MARK"]
    assert [m.set_mark for m in marks] == [(0x100, 0xFFFFFFFF), (0x100, 0xFFFFFFFF)]
    host = parse_iptables_save(read("lab/node1/host/iptables-save.txt"))
    ing = host.chain("nat", "DOCKER-INGRESS")
    assert ing is not None and ing.policy is None and ing.hook is None
    assert host.chain("filter", "FORWARD").rules[0].target == "DOCKER-INGRESS"  # type: ignore[union-attr]


def test_list_and_save_of_the_same_namespace_agree() -> None:
    save = parse_iptables_save(read("lab/node1/0123456789ab/iptables-save.txt"))
    lst = parse_iptables_list(read("lab_extra/task-iptables-L-filter-v.txt"), table="filter")
    rules_s = [r for r in save.rules() if r.table == "filter"]
    rules_l = list(lst.rules())
    key = [(r.chain, r.target, r.proto, r.src, r.dst, r.dports, r.sports, r.ctstate) for r in rules_s]
    assert key == [(r.chain, r.target, r.proto, r.src, r.dst, r.dports, r.sports, r.ctstate) for r in rules_l]
    assert [r.comment for r in rules_l][-1] == "swarm task reply"


def test_list_rules_format() -> None:
    rs = parse_iptables_save(read("lab_extra/task-iptables-S.txt"), default_table="filter")
    assert rs.unparsed == [] and rs.chain("filter", "INPUT").policy == "ACCEPT"  # type: ignore[union-attr]
    assert len(list(rs.rules())) == 5


def test_rule_spec_negations_and_old_syntax() -> None:
    r = parse_rule_spec('-A FORWARD ! -s 10.0.0.0/8 -i docker_gwbridge ! -o docker_gwbridge -p udp -m udp '
                        '! --dport 53 -m mark --mark 0x1/0xff -m physdev --physdev-in veth0 -j ACCEPT')
    assert r is not None
    assert r.src == IPv4Network("10.0.0.0/8") and r.src_neg
    assert r.out_neg and not r.in_neg and r.dports_neg and r.mark == (1, 0xFF)
    assert r.other == ["--physdev-in veth0"]
    old = parse_rule_spec("-A INPUT -s ! 1.2.3.4 -j DROP")
    assert old is not None and old.src_neg and old.src == IPv4Network("1.2.3.4/32")
    assert parse_rule_spec("garbage") is None


def test_unknown_lines_are_kept() -> None:
    rs = parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nwhat is this\n-A PREROUTING -j DOCKER\nCOMMIT\n")
    assert rs.unparsed == ["what is this"]
    assert rs.chain("nat", "DOCKER") is None  # a jump to an undeclared chain creates nothing
    ls = parse_iptables_list("hello\nChain X (1 references)\n pkts bytes target prot opt in out source destination\n"
                             "  nonsense line\n", table="filter")
    assert ls.unparsed == ["hello", "  nonsense line"]
