"""Connection reconstruction on crafted multi-point captures of the ingress path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from meshpkt.flows import analyze

CONFTEST = Path(__file__).with_name("conftest.py")


def _conns_mod():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flows_conftest", CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


synth = _conns_mod()


def test_every_connection_reaches_its_backend(ingress_captures):
    d = ingress_captures()
    a = analyze([d])
    c = a.connections.sort_values("first_ts_ns")
    assert len(c) == 9
    expected = synth.default_conns()
    for row, conn in zip(c.itertuples(), expected, strict=True):
        assert row.client == f"10.211.55.2:{conn.client_port}"
        assert row.entry == f"{synth.NODES[conn.entry]}:9090"
        assert row.entry_node == conn.entry
        assert row.backend == f"{conn.task}:9090"
        assert row.backend_node == synth.TASKS[conn.task]
        assert row.status == "closed"
        assert row.missing_at is None
        assert row.bytes_fwd > 30 and row.bytes_bwd > 30


def test_cross_node_hop_chain_and_translations(ingress_captures):
    d = ingress_captures([synth.Conn("node1", "10.0.0.6", 51883, 57786)])
    a = analyze([d])
    j = a.to_json()
    assert j["summary"]["packets"] == len(a.packets)
    (conn,) = j["connections"]
    pts = [h["point"] for h in conn["hops"]]
    assert pts == ["client.host.eth0", "node1.host.eth0", "node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0",
                   "node1.1-abcdef1234.br0", "node1.host.eth0", "node2.host.eth0", "node2.1-abcdef1234.br0",
                   "node2.web.2.eth0"]
    hops = conn["hops"]
    assert hops[0]["src"] == "10.211.55.2:51883" and hops[0]["dst"] == "10.211.55.10:9090"
    assert hops[2]["dst"] == "172.18.0.2:9090"
    assert hops[3]["src"] == "10.0.0.2:57786" and hops[3]["dst"] == "10.0.0.6:9090"
    assert hops[5]["vni"] == 4096 and hops[5]["outer_src"] == "10.211.55.10" and hops[5]["outer_dst"] == "10.211.55.18"
    assert hops[0]["vni"] is None and hops[0]["outer_src"] is None
    kinds = [(t["kind"], t["between"]) for t in conn["translations"]]
    assert ("dnat", ["node1.host.eth0", "node1.ingress_sbox.eth1"]) in kinds
    assert ("ipvs-masq+snat", ["node1.ingress_sbox.eth1", "node1.ingress_sbox.eth0"]) in kinds
    assert ("vxlan-encap", ["node1.1-abcdef1234.br0", "node1.host.eth0"]) in kinds
    assert ("vxlan-decap", ["node2.host.eth0", "node2.1-abcdef1234.br0"]) in kinds
    assert conn["missing_at"] is None
    assert conn["status"] == "closed"
    # latencies grow along the path
    lat = [h["latency_ns"] for h in hops]
    assert lat == sorted(lat) and lat[-1] > 0


def test_dropped_vxlan_names_the_hop(ingress_captures):
    conns = [synth.Conn("node1", "10.0.0.6", 51883, 57786, drop_after="node1.host.eth0"),
             synth.Conn("node1", "10.0.0.5", 51884, 57787),
             synth.Conn("node2", "10.0.0.6", 51885, 57788)]
    a = analyze([ingress_captures(conns)])
    c = a.connections.sort_values("first_ts_ns").reset_index(drop=True)
    dead, alive = c.iloc[0], c.iloc[1]
    assert dead.status == "syn-unanswered"
    assert dead.backend == "10.0.0.6:9090"
    assert dead.last_seen_point == "node1.host.eth0"
    assert dead.missing_at == "node2.host.eth0"
    assert "never arrived at node2.host.eth0" in dead.verdict
    assert dead.retrans == 2
    assert alive.status == "closed" and alive.missing_at is None


def test_lost_before_the_load_balancer(ingress_captures):
    conns = [synth.Conn("node2", "10.0.0.7", 51990, 58000, drop_after="node2.ingress_sbox.eth1"),
             synth.Conn("node2", "10.0.0.6", 51991, 58001)]
    a = analyze([ingress_captures(conns)])
    row = a.connections.sort_values("first_ts_ns").iloc[0]
    assert row.backend is None
    assert row.missing_at == "node2.ingress_sbox.eth0"


def test_round_robin_balance(ingress_captures):
    a = analyze([ingress_captures()])
    for node in ("node1", "node2", "node3"):
        rr = a.balance["round_robin"][node]
        assert rr["round_robin"] is True
        assert sorted(rr["sequence"]) == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
        assert a.balance["per_entry"][node] == {"10.0.0.5": 1, "10.0.0.6": 1, "10.0.0.7": 1}


def test_clock_offset_recovered_from_crafted_shift(ingress_captures):
    shift = 5_000_000  # node2's eth0 capture runs 5 ms ahead
    a = analyze([ingress_captures(shift_ns={"node2.host.eth0": shift})])
    off = a.offsets
    rel = off["node2.host.eth0"].offset_ns - off["node1.host.eth0"].offset_ns
    assert abs(rel - shift) < 100_000
    assert off["node2.host.eth0"].applied
    assert not off["node1.ingress_sbox.eth1"].applied or off["node1.ingress_sbox.eth1"].offset_ns == \
        off["node1.host.eth0"].offset_ns
    # corrected order is still the physical one
    conn = next(c for c in a.to_json()["connections"] if c["backend"] == "10.0.0.6:9090" and
                c["entry"].startswith("10.211.55.10"))
    pts = [h["point"] for h in conn["hops"]]
    assert pts.index("node2.host.eth0") == pts.index("node1.1-abcdef1234.br0") + 2


def test_clock_offset_recovered_after_editcap(ingress_captures, tmp_path):
    d = ingress_captures()
    f = d / "node3.host.eth0.pcap"
    shifted = tmp_path / "shifted.pcap"
    subprocess.run(["editcap", "-t", "-0.0123", str(f), str(shifted)], check=True)
    shutil.move(shifted, f)
    a = analyze([d])
    rel = a.offsets["node3.host.eth0"].offset_ns - a.offsets["node1.host.eth0"].offset_ns
    assert abs(rel - (-12_300_000)) < 100_000
    assert all(a.connections["status"] == "closed")


def test_point_equals_path_names_points(ingress_captures):
    d = ingress_captures([synth.Conn("node3", "10.0.0.7", 52000, 58001)])
    caps = [(f"P{k}", str(p)) for k, p in enumerate(sorted(d.glob("*.pcap")))]
    a = analyze(caps)
    assert set(a.summary["points"]) == {f"P{k}" for k in range(len(caps))}
    assert len(a.connections) == 1


def test_big_segments_lost_after_a_hop_are_named(ingress_captures):
    conns = [synth.Conn("node1", "10.0.0.6", 51883, 57786, drop_data_after="node1.host.eth0"),
             synth.Conn("node1", "10.0.0.5", 51884, 57787),
             synth.Conn("node2", "10.0.0.6", 51885, 57788)]
    a = analyze([ingress_captures(conns)])
    c = a.to_json()["connections"]
    dead = next(x for x in c if x["client"] == "10.211.55.2:51883")
    assert dead["status"] == "reset"
    assert dead["lost_fwd"] == 3 and dead["lost_at"] == "node1.host.eth0"
    assert dead["missing_at"] == "node2.host.eth0"
    assert "3 forward packets reached node1.host.eth0 but never arrived at node2.host.eth0" in dead["verdict"]
    healthy = [x for x in c if x["client"] != "10.211.55.2:51883"]
    assert all(x["lost_fwd"] == 0 and x["lost_bwd"] == 0 and x["missing_at"] is None for x in healthy)


def test_one_pcapng_with_an_interface_per_point(ingress_captures, tmp_path):
    from meshpkt.capture import iter_records, write_pcapng

    d = ingress_captures([synth.Conn("node1", "10.0.0.6", 51883, 57786)])
    files = sorted(d.glob("*.pcap"))
    names = [f.name[: -len(".pcap")] for f in files]
    packets = sorted(
        ((ts, k, data) for k, f in enumerate(files) for ts, _lt, _if, data in iter_records(f)),
        key=lambda r: r[0])
    out = tmp_path / "all.pcapng"
    write_pcapng(out, [(n, 1) for n in names], ((k, ts, data, None) for ts, k, data in packets))
    a = analyze([out])
    assert set(a.summary["points"]) == set(names)
    (conn,) = a.to_json()["connections"]
    assert [h["point"] for h in conn["hops"]][-1] == "node2.web.2.eth0"
    assert conn["backend"] == "10.0.0.6:9090" and conn["status"] == "closed"
