"""Acceptance: break one thing at a time in a fresh lab; `verify` must FAIL exactly the broken rule(s)
and name the namespace, table/chain (or fdb/link) and the rule text (issue 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meshpkt.verify import FAIL, PASS, Check
from meshpkt.verify.run import verify

pytestmark = pytest.mark.root


def _ip(status: dict[str, Any], node: str) -> str:
    return next(n["underlay_ip"] for n in status["nodes"] if n["name"] == node)


def _ns(status: dict[str, Any], node: str, role: str, network: str | None = None) -> dict[str, Any]:
    nd = next(n for n in status["nodes"] if n["name"] == node)
    return next(ns for ns in nd["namespaces"] if ns["role"] == role and (network is None or ns["network"] == network))


def _task(status: dict[str, Any], name: str) -> dict[str, Any]:
    for nd in status["nodes"]:
        for ns in nd["namespaces"]:
            if ns["role"] == "task" and ns["task"]["name"] == name:
                return ns
    raise KeyError(name)


def _run(lab: Any) -> tuple[list[Check], dict[str, Check]]:
    report = verify(lab.name, seed=7)
    assert report.exit_code() == 1
    fails = report.failures
    # every row has a verdict; nothing passes that was not reached
    assert all(c.verdict in (PASS, FAIL, "UNTESTED") for c in report.checks)
    assert all(c.reached > 0 for c in report.checks if c.verdict == PASS)
    return fails, {c.id: c for c in report.checks}


def _named(c: Check, netns: str, where: str, *needles: str) -> None:
    """The failing row names the namespace, the table/chain (or fdb/link) and the rule text."""
    assert c.verdict == FAIL
    assert c.netns == netns, c.message
    assert c.where == where, c.message
    for n in needles:
        assert n in c.rule, (n, c.rule)
    assert c.message.startswith(f"{netns} {where}: {c.rule}: "), c.message


Make = Callable[[], tuple[Any, dict[str, Any]]]


def test_host_dnat_removed(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.remove_dnat("node1")
    fails, rows = _run(lab)
    assert [c.id for c in fails] == ["dnat:node1:9090"]
    c = fails[0]
    _named(c, _ns(st, "node1", "host")["name"], "nat DOCKER-INGRESS",
           "-A DOCKER-INGRESS", "--dport 9090", "-j DNAT --to-destination 172.18.0.2:9090")
    assert c.present is False and "missing" in c.message
    # evidence: the SYN reached node1's eth0, and the host answered it itself (RST) instead of forwarding
    assert c.before is not None and c.before.point == "node1.host.eth0"
    assert c.before.packet.endswith(f"> {_ip(st, 'node1')}:9090 S")
    assert c.after is not None and " R" in c.after.packet
    # downstream rules of node1 could not be reached: UNTESTED, not FAIL; other nodes still pass
    assert rows["mark:node1:9090"].verdict == "UNTESTED"
    assert rows["dnat:node2:9090"].verdict == PASS and rows["unpublished:node1:9091"].verdict == PASS


def test_sbox_mark_removed(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.remove_mark("node1")
    fails, rows = _run(lab)
    assert [c.id for c in fails] == ["mark:node1:9090"]
    c = fails[0]
    _named(c, _ns(st, "node1", "ingress_sbox")["name"], "mangle PREROUTING",
           "-A PREROUTING", "--dport 9090", "-j MARK --set-xmark 0x102")
    # unmarked, the SYN is delivered to the sandbox itself, which resets it
    assert c.after is not None and c.after.packet.startswith("172.18.0.2:9090 > ") and " R" in c.after.packet
    assert rows["dnat:node1:9090"].verdict == PASS
    assert rows["lb:node1/ingress_sbox:258"].verdict == "UNTESTED"


def test_sbox_snat_removed(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.remove_snat("node1")
    fails, _rows = _run(lab)
    assert [c.id for c in fails] == ["snat:node1/ingress_sbox"]
    c = fails[0]
    _named(c, _ns(st, "node1", "ingress_sbox")["name"], "nat POSTROUTING",
           "-A POSTROUTING -d 10.0.0.0/24", "-j SNAT --to-source 10.0.0.2")
    # after the LB the client's address is still the source
    client = st["clients"][0]["ip"]
    assert c.after is not None and c.after.point == "node1.ingress_sbox.eth0"
    assert c.after.packet.startswith(f"{client}:") and " > 10.0.0." in c.after.packet


def test_peer_fdb_entry_removed(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    n = lab.remove_fdb("node1", "node2")
    assert n >= 1
    fails, rows = _run(lab)
    ov = _ns(st, "node1", "overlay", "ingress")
    peer = _ip(st, "node2")
    assert fails and all(c.kind == "fdb" for c in fails)
    assert {c.id for c in fails} == {c.id for c in rows.values()
                                     if c.kind == "fdb" and c.netns == ov["name"] and f"dst {peer}" in c.rule}
    assert len(fails) == n
    for c in fails:
        _named(c, ov["name"], "fdb vxlan0", "02:42:0a:00:00:", "dev vxlan0", f"dst {peer}")
    # the entry for node2's task: frames entered vxlan0 and were not encapsulated
    web2 = next(c for c in fails if getattr(c.params, "mac", None) == _task(st, "my-web.2")["interfaces"][0]["mac"])
    assert web2.before is not None and web2.before.point.endswith(".vxlan0")
    assert web2.after is not None and "no VXLAN copy" in web2.after.packet


def test_task_redirect_removed(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.remove_redirect("my-web.2")
    fails, rows = _run(lab)
    assert [c.id for c in fails] == ["redirect:my-web.2:9090"]
    c = fails[0]
    t = _task(st, "my-web.2")
    ip = t["task"]["ips"]["ingress"]
    _named(c, t["name"], "nat PREROUTING", f"-d {ip}/32", "--dport 9090", "-j REDIRECT --to-ports 80")
    assert c.before is not None and c.before.packet.endswith(f"> {ip}:9090 S")
    assert c.after is not None and "no SYN-ACK" in c.after.packet
    # the server itself still answers on :80
    assert rows["server:my-web.2:ingress"].verdict == PASS


def test_task_server_killed_stale_backend(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    t = _task(st, "my-web.2")
    lab.kill_task("my-web.2")
    fails, rows = _run(lab)
    assert sorted(c.id for c in fails) == ["server:my-web.2:ingress", "server:my-web.2:my-overlay"]
    for c in fails:
        assert c.netns == t["name"] and c.namespace == "my-web.2" and c.where == "server"
        assert "stale backend" in c.message and "is gone" in c.message
    ing = rows["server:my-web.2:ingress"]
    assert f"{t['task']['ips']['ingress']}:80" in ing.rule
    for node in ("node1", "node2", "node3"):  # every node's LB still sends to it
        assert f"{node}/ingress_sbox FWM 258 rr" in ing.message
    ovl = rows["server:my-web.2:my-overlay"]
    assert f"{t['task']['ips']['my-overlay']}:80" in ovl.rule and "/lb_" in ovl.message and "FWM 257" in ovl.message
    assert rows["redirect:my-web.2:9090"].verdict == "UNTESTED"


def test_vxlan_dropped_on_underlay(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.drop_vxlan("node1", "node2")
    fails, rows = _run(lab)
    assert [c.id for c in fails] == ["link:node1>node2"]
    c = fails[0]
    a, b = _ip(st, "node1"), _ip(st, "node2")
    assert c.netns == f"{lab.name}-underlay" and c.namespace == "underlay"
    assert c.where.startswith("nft bridge meshpkt_fault")
    assert a in c.rule and b in c.rule and "drop" in c.rule
    assert c.before is not None and c.before.point == "node1.host.eth0" and f"> {b}:4789 VXLAN" in c.before.packet
    assert c.after is not None and c.after.point == "node2.host.eth0"
    assert rows["link:node2>node1"].verdict == PASS


def test_mtu_mismatch(fresh_lab: Make) -> None:
    lab, st = fresh_lab()
    lab.set_mtu("node2", "eth0", 1400)
    fails, rows = _run(lab)
    ids = {c.id for c in fails}
    assert ids == {"mtu:node1>my-web.2", "mtu:node3>my-web.2", "mtu:node2>my-web.1", "mtu:node2>my-web.2",
                   "mtu:node2>my-web.3"}
    host2 = _ns(st, "node2", "host")["name"]
    for c in fails:
        assert c.netns == host2 and c.namespace == "host" and c.where == "link eth0"
        assert c.rule.startswith("eth0 mtu 1400 < ")
        assert "never reached node2.host.eth0" in c.message and "DF" in c.message
    # small packets are fine: every other rule passes
    assert all(c.verdict == PASS for c in rows.values() if c.kind != "mtu")
    vx = rows["mtu:node1>my-web.2"]
    assert vx.before is not None and "VXLAN" in vx.before.packet and "len 1398" in vx.before.packet
