"""The pure core of verify without root: planning from a lab status + dumps, and judging from packets.

The dumps are rendered from the lab's own (pure) plan, in the formats ``meshpkt collect`` writes
(``iptables-save``, ``ipvsadm -Sn``, ``ip -j -d link``, ``bridge fdb``), for a lab using real IPVS."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshpkt.errors import UsageError
from meshpkt.lab.plan import Plan, iptables_restore_text, plan
from meshpkt.lab.spec import LabSpec
from meshpkt.lab.status import build_status
from meshpkt.rules.model import DumpText, MeshModel, build_model
from meshpkt.verify.judge import Packets, Pkt, flags_str, judge
from meshpkt.verify.plan import plan_verify, select_checks
from meshpkt.verify.run import INJECTOR, parse_cluster, schedule
from meshpkt.verify.types import (
    FAIL,
    PASS,
    UNTESTED,
    Check,
    DnatParams,
    FdbParams,
    LinkParams,
    MarkParams,
    Probe,
    ServerParams,
)

# ---------------------------------------------------------------------- synthetic lab


def _ip_json(ns: Any) -> str:
    out = []
    for i, itf in enumerate(ns.interfaces, start=2):
        obj: dict[str, Any] = {"ifindex": i, "ifname": itf.name, "mtu": itf.mtu, "address": itf.mac,
                               "addr_info": [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1])}
                                             for a in itf.addresses]}
        if itf.bridge:
            obj["master"] = itf.bridge
        if itf.kind == "vxlan" and itf.vxlan:
            obj["linkinfo"] = {"info_kind": "vxlan", "info_data": {"id": itf.vxlan["vni"], "port": itf.vxlan["port"],
                                                                   "learning": True, "proxy": True}}
        out.append(obj)
    return json.dumps(out)


def synthetic(drop_tag: str | None = None, drop_fdb_in: str | None = None) -> tuple[Plan, dict[str, Any], MeshModel]:
    """(expected plan, status, model of the dumps); ``drop_tag`` removes rules with that tag from the
    dumps of node1, ``drop_fdb_in`` the fdb entries of that namespace."""
    p = plan(LabSpec(name="syn"), "ipvs")
    status = build_status(p)
    dumps = []
    for ns in p.namespaces:
        if ns.role in ("underlay", "client"):
            continue
        short = "host" if ns.role == "host" else ns.name[len(f"syn-{ns.node}-"):]
        rules = [r for r in ns.rules if not (drop_tag and ns.node == "node1" and r.tag == drop_tag)]
        saved = ns.rules
        ns.rules = rules
        text = iptables_restore_text(ns)
        ns.rules = saved
        if text:
            dumps.append(DumpText(ns.node, short, "iptables-save", text))
        if ns.ipvs:
            dumps.append(DumpText(ns.node, short, "ipvsadm-save", ns.ipvs))
        dumps.append(DumpText(ns.node, short, "ip-json", _ip_json(ns)))
        if ns.fdb and ns.name != drop_fdb_in:
            fdb = "\n".join(f.replace("fdb add ", "", 1) for f in ns.fdb) + "\n"
            dumps.append(DumpText(ns.node, short, "bridge-fdb", fdb))
    return p, status, build_model(dumps)


@pytest.fixture(scope="module")
def healthy() -> tuple[Plan, dict[str, Any], MeshModel]:
    return synthetic()


def test_plan_rows_and_probes(healthy: tuple[Plan, dict[str, Any], MeshModel]) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    p, status, model = healthy
    vp = plan_verify(status, p, model, seed=1)
    kinds: dict[str, int] = {}
    for c in vp.checks:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    assert kinds == {"server": 8, "link": 6, "fdb": 28, "dnat": 3, "unpublished": 3, "mark": 3, "vipmark": 6,
                     "lb": 9, "snat": 6, "redirect": 3, "mtu": 9}
    # every rule was found in the dumps (present), with its exact text and a counter key
    for c in vp.checks:
        if c.kind in ("dnat", "mark", "vipmark", "lb", "snat", "fdb", "redirect", "unpublished"):
            assert c.present is True, c.id
    d = next(c for c in vp.checks if c.id == "dnat:node1:9090")
    assert d.rule == "-A DOCKER-INGRESS -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.18.0.2:9090"
    assert d.where == "nat DOCKER-INGRESS" and d.netns == "syn-node1" and d.counter_key is not None
    vm = next(c for c in vp.checks if c.kind == "vipmark")
    assert vm.where == "mangle INPUT" and "-j MARK --set-xmark" in vm.rule  # IPVS lab: Docker's iptables rule
    lb = next(c for c in vp.checks if c.id == "lb:node1/ingress_sbox:258")
    assert lb.where == "ipvs" and lb.params.backends == ["10.0.0.6", "10.0.0.7", "10.0.0.8"]
    # prerequisites always point to earlier checks
    seen: set[str] = set()
    for c in vp.checks:
        for pre in c.probes.values():
            assert set(pre) <= seen, (c.id, pre)
        seen.add(c.id)
    frames = [x for x in vp.probes if x.kind == "frame"]
    conns = [x for x in vp.probes if x.kind == "conn"]
    assert len(frames) == 9 + 3 + 15 + 8 and len(conns) == 9
    assert len({x.sport for x in vp.probes}) == len(vp.probes)
    assert len({x.seq for x in frames}) == len(frames)
    node1 = status["nodes"][0]
    first = next(x for x in frames if x.group == "ingress" and x.entry == "node1")
    f = Ether(first.frame)
    assert f[Ether].src == status["clients"][0]["mac"] and f[Ether].dst == node1["mac"]
    assert f[IP].dst == node1["underlay_ip"] and f[IP].flags == "DF" and f[TCP].flags == "S"
    assert f[TCP].seq == first.seq and f[TCP].dport == 9090
    srv = next(x for x in frames if x.group == "server" and x.target == "my-web.2" and x.network == "ingress")
    g = Ether(srv.frame)
    assert g[Ether].dst == "02:42:0a:00:00:07" and g[IP].dst == "10.0.0.7" and g[TCP].dport == 80
    assert srv.netns == "syn-node2-ingress_sbox"


def test_missing_rules_are_named_with_expected_text() -> None:
    p, status, model = synthetic(drop_tag="dnat:9090")
    vp = plan_verify(status, p, model, seed=1)
    d = next(c for c in vp.checks if c.id == "dnat:node1:9090")
    assert d.present is False and d.counter_key is None
    assert d.rule == "-A DOCKER-INGRESS -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.18.0.2:9090"
    assert next(c for c in vp.checks if c.id == "dnat:node2:9090").present is True
    ov = next(ns for ns in p.namespaces if ns.node == "node1" and ns.role == "overlay" and ns.network == "ingress")
    p2, status2, model2 = synthetic(drop_fdb_in=ov.name)
    vp2 = plan_verify(status2, p2, model2, seed=1)
    fdb = [c for c in vp2.checks if c.kind == "fdb" and c.netns == ov.name]
    assert fdb and all(c.present is False and c.rule.endswith("self permanent") for c in fdb)


def test_select_checks_takes_prerequisites(healthy: tuple[Plan, dict[str, Any], MeshModel]) -> None:
    p, status, model = healthy
    vp = plan_verify(status, p, model, seed=1)
    rows, need = select_checks(vp.checks, ["mtu:node1>my-web.2"])
    assert [c.id for c in rows] == ["mtu:node1>my-web.2"]
    assert {"snat:node1/ingress_sbox", "lb:node1/ingress_sbox:258", "mark:node1:9090", "dnat:node1:9090",
            "redirect:my-web.2:9090", "server:my-web.2:ingress", "link:node1>node2", "link:node2>node1"} <= need
    rows, _ = select_checks(vp.checks, ["dnat"])
    assert {c.id for c in rows} == {"dnat:node1:9090", "dnat:node2:9090", "dnat:node3:9090"}
    with pytest.raises(UsageError, match="matches no rule"):
        select_checks(vp.checks, ["nothing-like-this"])


def test_schedule_is_rate_limited(healthy: tuple[Plan, dict[str, Any], MeshModel]) -> None:
    p, status, model = healthy
    vp = plan_verify(status, p, model, seed=1)
    frames = [x for x in vp.probes if x.kind == "frame"]
    jobs = schedule(frames, 50.0, 100.0)
    ats = sorted(f["at"] for j in jobs.values() for f in j["frames"])
    assert len(ats) == len(frames)
    assert all(b - a >= 0.0199 for a, b in zip(ats, ats[1:], strict=False))  # <= 50 probes/s over all namespaces
    assert all(j["start"] == 100.0 for j in jobs.values())
    # liveness probes go first (the other checks depend on them)
    order = sorted((f["at"], f["id"]) for j in jobs.values() for f in j["frames"])
    first_ids = {pid for _at, pid in order[:8]}
    assert first_ids == {x.id for x in frames if x.group == "server"}


def test_parse_cluster() -> None:
    assert parse_cluster("10.0.0.1, 10.0.0.2") == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(UsageError):
        parse_cluster("10.0.0.1,nope")
    with pytest.raises(UsageError):
        parse_cluster("")


# ---------------------------------------------------------------------- judge


def _i(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def pkt(point: str, src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int = 0, ts: int = 0,
        outer: tuple[str, str, int] | None = None, eth_dst: int = 0, plen: int = 0) -> Pkt:
    vx = outer is not None
    o = outer or (src, dst, 0)
    return Pkt(point=point, ts=ts, vx=vx, vni=o[2] if vx else -1, osrc=_i(o[0]), odst=_i(o[1]),
               osport=40000 if vx else sport, odport=4789 if vx else dport, src=_i(src), dst=_i(dst), sport=sport,
               dport=dport, eth_dst=eth_dst, seq=seq, ack=ack, flags=flags, plen=plen,
               wirelen=54 + plen + (50 if vx else 0), df=True)


def _probe(pid: str, seq: int) -> Probe:
    return Probe(id=pid, kind="frame", group="ingress", netns="x-client", iface="eth0", src="10.211.55.2",
                 sport=20000 + seq % 1000, dst="10.211.55.10", dport=9090, seq=seq)


def _dnat_check(present: bool = True) -> Check:
    return Check(id="dnat:node1:9090", kind="dnat", node="node1", namespace="host", netns="x-node1",
                 where="nat DOCKER-INGRESS", rule="-A DOCKER-INGRESS ... DNAT", present=present,
                 counter_key=("x-node1", "nat", "DOCKER-INGRESS", "-A DOCKER-INGRESS ... DNAT"),
                 probes={"p1": [], "p2": []},
                 params=DnatParams(before_point="node1.host.eth0", after_point="node1.ingress_sbox.eth1",
                                   dst="10.211.55.10", to="172.18.0.2", port=9090))


def _mark_check() -> Check:
    return Check(id="mark:node1:9090", kind="mark", node="node1", namespace="ingress_sbox", netns="x-node1-sbox",
                 where="mangle PREROUTING", rule="-A PREROUTING ... MARK", present=True,
                 probes={"p1": ["dnat:node1:9090"], "p2": ["dnat:node1:9090"]},
                 params=MarkParams(before_point="node1.ingress_sbox.eth1", after_point="node1.ingress_sbox.eth0",
                                   dst="172.18.0.2", to="172.18.0.2", port=9090, fwmark=0x102))


def test_judge_dnat_pass_and_counter() -> None:
    probes = {"p1": _probe("p1", 1000), "p2": _probe("p2", 2000)}
    pk = Packets([
        pkt("node1.host.eth0", "10.211.55.2", 21000, "10.211.55.10", 9090, 0x02, 1000, ts=1),
        pkt("node1.ingress_sbox.eth1", "10.211.55.2", 21000, "172.18.0.2", 9090, 0x02, 1000, ts=2),
        pkt("node1.host.eth0", "10.211.55.2", 22000, "10.211.55.10", 9090, 0x02, 2000, ts=3),
        pkt("node1.ingress_sbox.eth1", "10.211.55.2", 22000, "172.18.0.2", 9090, 0x02, 2000, ts=4),
    ])
    key = ("x-node1", "nat", "DOCKER-INGRESS", "-A DOCKER-INGRESS ... DNAT")
    [c] = judge([_dnat_check()], probes, pk, {key: 5}, {key: 7})
    assert c.verdict == PASS and c.counter_delta == 2 and c.reached == c.passed == 2
    assert c.before is not None and c.before.packet == "10.211.55.2:21000 > 10.211.55.10:9090 S"
    assert c.after is not None and c.after.packet == "10.211.55.2:21000 > 172.18.0.2:9090 S"
    # the same traffic with a counter that did not move: another rule did the translation
    [c] = judge([_dnat_check()], probes, pk, {key: 5}, {key: 5})
    assert c.verdict == FAIL and "counted 0 packets" in c.message


def test_judge_dnat_missing_then_downstream_untested() -> None:
    probes = {"p1": _probe("p1", 1000), "p2": _probe("p2", 2000)}
    pk = Packets([
        pkt("node1.host.eth0", "10.211.55.2", 21000, "10.211.55.10", 9090, 0x02, 1000, ts=1),
        pkt("node1.host.eth0", "10.211.55.10", 9090, "10.211.55.2", 21000, 0x14, 0, ack=1001, ts=2),
        pkt("node1.host.eth0", "10.211.55.2", 22000, "10.211.55.10", 9090, 0x02, 2000, ts=3),
    ])
    d, m = judge([_dnat_check(present=False), _mark_check()], probes, pk, {}, {})
    assert d.verdict == FAIL
    assert d.message.startswith("x-node1 nat DOCKER-INGRESS: -A DOCKER-INGRESS ... DNAT: rule missing")
    assert d.after is not None and d.after.packet == "10.211.55.10:9090 > 10.211.55.2:21000 R."
    assert m.verdict == UNTESTED and "dnat:node1:9090 FAIL" in m.message


def test_judge_fdb_and_link() -> None:
    mac = "02:42:0a:00:00:07"
    m = int(mac.replace(":", ""), 16)
    probes = {"p1": _probe("p1", 1000)}
    fdb = Check(id="fdb:node1/1-x:" + mac, kind="fdb", node="node1", namespace="1-x", netns="x-node1-1-x",
                where="fdb vxlan0", rule=f"{mac} dev vxlan0 dst 10.211.55.18 self permanent", present=True,
                params=FdbParams(before_point="node1.1-x.vxlan0", after_point="node1.host.eth0", mac=mac,
                                 vtep="10.211.55.18", vni=4096, peer="node2", network="ingress", learned=None))
    link = Check(id="link:node1>node2", kind="link", node="node1", namespace="underlay", netns="x-underlay",
                 where="link", rule="10.211.55.10 > 10.211.55.18 udp/4789", present=None,
                 params=LinkParams(before_point="node1.host.eth0", after_point="node2.host.eth0", src="10.211.55.10",
                                   dst="10.211.55.18", peer="node2"))
    inner = ("10.0.0.2", 21000, "10.0.0.7", 9090)
    sent = [pkt("node1.1-x.vxlan0", *inner, 0x02, 1000, ts=1, eth_dst=m),
            pkt("node1.host.eth0", *inner, 0x02, 1000, ts=2, eth_dst=m, outer=("10.211.55.10", "10.211.55.18", 4096))]
    arrived = [pkt("node2.host.eth0", *inner, 0x02, 1000, ts=3, eth_dst=m, outer=("10.211.55.10", "10.211.55.18",
                                                                                      4096))]
    f, lk = judge([fdb, link], probes, Packets(sent + arrived), {}, {})
    assert f.verdict == PASS and lk.verdict == PASS
    assert f.after is not None and "VXLAN vni 4096 | 10.0.0.2:21000 > 10.0.0.7:9090 S" in f.after.packet
    # dropped on the underlay: the link fails and names the underlay rule that dropped it
    drop = [{"family": "bridge", "table": "meshpkt_fault", "chain": "fault", "delta": 1,
             "text": "ip saddr 10.211.55.10 ip daddr 10.211.55.18 udp dport 4789 counter packets 1 bytes 100 drop"}]
    f, lk = judge([fdb, link], probes, Packets(sent), {}, {}, underlay_rules=drop)
    assert f.verdict == PASS and lk.verdict == FAIL
    assert lk.where == "nft bridge meshpkt_fault fault" and "drop" in lk.rule and "counted 1 packets" in lk.message
    # not encapsulated at all: the fdb entry fails
    f, lk = judge([fdb, link], probes, Packets(sent[:1]), {}, {})
    assert f.verdict == FAIL and "not encapsulated" in f.message and lk.verdict == UNTESTED
    # encapsulated through a learned entry while the permanent one is missing: still a failure of the rule
    assert isinstance(fdb.params, FdbParams)
    fdb.present, fdb.params.learned = False, f"{mac} dev vxlan0 dst 10.211.55.18 self"
    f, _ = judge([fdb, link], probes, Packets(sent + arrived), {}, {})
    assert f.verdict == FAIL and "learned entry" in f.message


def test_judge_server_stale_backend() -> None:
    probes = {"p1": Probe(id="p1", kind="frame", group="server", netns="x-node2-ingress_sbox", iface="eth0",
                          src="10.0.0.3", sport=21000, dst="10.0.0.7", dport=80, seq=5000)}
    c = Check(id="server:my-web.2:ingress", kind="server", node="node2", namespace="my-web.2", netns="x-node2-abc",
              where="server", rule="tcp 10.0.0.7:80 listener of my-web.2 (ingress)", probes={"p1": []},
              params=ServerParams(point="node2.ingress_sbox.eth0", ip="10.0.0.7", port=80, task_point="",
                                  alive=False, lbs=["node1/ingress_sbox FWM 258 rr"]))
    sent = pkt("node2.ingress_sbox.eth0", "10.0.0.3", 21000, "10.0.0.7", 80, 0x02, 5000, ts=1)
    [r] = judge([c], probes, Packets([sent]), {}, {})
    assert r.verdict == FAIL and "stale backend" in r.message and "node1/ingress_sbox FWM 258 rr" in r.message
    assert isinstance(c.params, ServerParams)
    c.params.alive = True
    answer = pkt("node2.ingress_sbox.eth0", "10.0.0.7", 80, "10.0.0.3", 21000, 0x12, 777, ack=5001, ts=2)
    [r] = judge([c], probes, Packets([sent, answer]), {}, {})
    assert r.verdict == PASS and r.after is not None and r.after.packet.endswith("S.")


def test_flags_str() -> None:
    assert [flags_str(f) for f in (0x02, 0x12, 0x04, 0x14, 0x18, 0x11, 0)] == ["S", "S.", "R", "R.", "P.", "F.",
                                                                                "none"]


# ---------------------------------------------------------------------- the injector (no namespace needed)


def test_injector_connection_sends_full_size_segments() -> None:
    got: list[int] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            got.append(len(self.headers.get("X-Meshpkt-Pad", "")))
            body = b"task t1 127.0.0.1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            return

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        job = {"start": time.monotonic(), "frames": [],
               "conns": [{"id": "m1", "at": 0, "src": "127.0.0.1", "sport": 0, "dst": "127.0.0.1", "port": port,
                          "size": 4000, "timeout": 2.0},
                         {"id": "m2", "at": 0, "src": "127.0.0.1", "sport": 0, "dst": "127.0.0.1", "port": 1,
                          "size": 10, "timeout": 0.5}]}
        r = subprocess.run([sys.executable, "-I", str(INJECTOR)], input=json.dumps(job), capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        by = {c["id"]: c for c in out["conns"]}
        assert by["m1"]["ok"] is True and by["m1"]["body"] == "task t1 127.0.0.1"
        assert by["m2"]["ok"] is False and "Refused" in by["m2"]["error"]
        assert got == [4000]
    finally:
        srv.shutdown()
