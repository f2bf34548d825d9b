"""Discovery output -> typed nodes -> taps and topology (pure, plus the real script run with the local sh)."""

from __future__ import annotations

import io
import json
import subprocess

from meshpkt.bpf.libpcap import compile_filter
from meshpkt.remote.collect import parse_collect
from meshpkt.remote.discover import apply_docker, name_nodes, parse_discovery
from meshpkt.remote.scripts import DISCOVER, remote_command
from meshpkt.remote.taps import plan_taps, topology
from meshpkt.remote.target import Target


def _addr(name: str, kind: str, addrs: list[str], master: str | None = None, vni: int | None = None) -> dict:
    link: dict = {"ifname": name, "address": "02:42:0a:00:00:02", "mtu": 1450,
                  "addr_info": [{"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1])}
                                for a in addrs]}
    if kind == "loopback":
        link["link_type"] = "loopback"
    else:
        link["linkinfo"] = {"info_kind": kind, **({"info_data": {"id": vni, "port": 4789}} if vni else {})}
    if master:
        link["master"] = master
    return link


def _output(host: str = "node1") -> str:
    nss = {
        "host -": [_addr("lo", "loopback", ["127.0.0.1/8"]), _addr("eth0", "device", ["10.211.55.10/24"]),
                   _addr("docker_gwbridge", "bridge", ["172.18.0.1/16"]),
                   _addr("veth17b1e51", "veth", [], "docker_gwbridge")],
        "ingress_sbox /var/run/docker/netns/ingress_sbox": [
            _addr("eth0", "veth", ["10.0.0.2/24", "10.0.0.5/32"]), _addr("eth1", "veth", ["172.18.0.2/16"])],
        "1-v4wstpww8d /var/run/docker/netns/1-v4wstpww8d": [
            _addr("br0", "bridge", ["10.0.0.1/24"]), _addr("vxlan0", "vxlan", [], "br0", 4096),
            _addr("veth0", "veth", [], "br0")],
        "lb_kqe3y0834 /var/run/docker/netns/lb_kqe3y0834": [_addr("eth0", "veth", ["10.0.1.4/24", "10.0.1.2/32"])],
        "dfbc0845c453 /var/run/docker/netns/dfbc0845c453": [
            _addr("eth0", "veth", ["10.0.0.6/24"]), _addr("eth1", "veth", ["172.18.0.3/16"]),
            _addr("eth2", "veth", ["10.0.1.7/24"])],
    }
    lines = [f"@hostname {host}.example.org", "@uid 0", "@tool sh 1", "@tool nsenter 1", "@tool tcpdump 1",
             "@tool python3 0"]
    for head, links in nss.items():
        lines += [f"@ns {head}", json.dumps(links)]
    return "\n".join(lines + ["@end"]) + "\n"


def test_parse_discovery_roles_and_interfaces() -> None:
    node = parse_discovery(Target("n1"), _output())
    assert node.error is None and node.hostname == "node1"
    assert node.missing() == [] and node.missing(("python3",)) == ["python3"]
    roles = {ns.name: ns.role for ns in node.namespaces}
    assert roles == {"host": "host", "ingress_sbox": "ingress_sbox", "1-v4wstpww8d": "overlay",
                     "lb_kqe3y0834": "lb", "dfbc0845c453": "task"}
    vx = node.ns("1-v4wstpww8d").interfaces[1]
    assert (vx.kind, vx.vni, vx.vxlan_port, vx.master) == ("vxlan", 4096, 4789, "br0")


def test_cut_short_output_is_an_error() -> None:
    node = parse_discovery(Target("n1"), _output().replace("@end\n", ""))
    assert node.error == "discovery output cut short"


def test_taps_follow_swarms_data_path_and_filters_compile() -> None:
    node = parse_discovery(Target("n1"), _output())
    name_nodes([node])
    taps = plan_taps(node)
    assert [t.point for t in taps] == [
        "node1.host.eth0", "node1.host.docker_gwbridge", "node1.ingress_sbox.eth0", "node1.ingress_sbox.eth1",
        "node1.1-v4wstpww8d.br0", "node1.1-v4wstpww8d.vxlan0", "node1.lb_kqe3y0834.eth0",
        "node1.dfbc0845c453.eth0", "node1.dfbc0845c453.eth2"]  # not the task's docker_gwbridge leg
    assert all(t.filter == "" for t in taps)
    taps = plan_taps(node, ports=[9090], extra="not arp")
    for t in taps:
        compile_filter(t.filter)  # libpcap accepts every generated filter
        assert "9090" in t.filter and "not arp" in t.filter
    under = next(t for t in taps if t.point == "node1.host.eth0").filter
    assert "udp dst port 4789" in under


def test_docker_names_tasks_and_networks() -> None:
    node = parse_discovery(Target("n1"), _output())
    apply_docker(node, [{"Id": "v4wstpww8d" + "x" * 15, "Name": "ingress", "Ingress": True},
                        {"Id": "kqe3y08348" + "y" * 15, "Name": "my-overlay"}],
                 [{"Name": "/my-web.1.abc", "NetworkSettings": {"SandboxKey": "/var/run/docker/netns/dfbc0845c453"},
                   "Config": {"Labels": {"com.docker.swarm.service.name": "my-web",
                                         "com.docker.swarm.task.name": "my-web.1.abc"}}}])
    assert node.ns("dfbc0845c453").label == "my-web.1"
    assert node.ns("1-v4wstpww8d").network == "ingress" and node.ns("lb_kqe3y0834").network == "my-overlay"
    assert node.ns("ingress_sbox").network == "ingress"


def test_topology_document_for_analyze() -> None:
    from meshpkt.flows.topology import from_lab_status

    nodes = [parse_discovery(Target("a"), _output("node1")), parse_discovery(Target("b"), _output("node1"))]
    name_nodes(nodes)
    assert [n.name for n in nodes] == ["a", "b"]  # clashing host names: the targets name the nodes
    doc = topology(nodes, plan_taps(nodes[0]) + plan_taps(nodes[1]))
    topo = from_lab_status(doc)
    assert topo.points["a.ingress_sbox.eth1"].role == "ingress_sbox"
    assert topo.points["b.dfbc0845c453.eth0"].role == "task"
    assert 4096 in topo.vni_names
    assert len(topo.tasks) == 2  # 10.0.0.6 and 10.0.1.7 (one node's addresses; b repeats a)


def test_discover_script_runs_in_a_real_sh() -> None:
    cmd = remote_command(DISCOVER)
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    node = parse_discovery(Target("local"), r.stdout)
    assert node.error is None, r.stdout[-300:] + r.stderr
    assert node.tools["sh"] and node.namespaces[0].name == "host"
    assert any(i.name == "lo" for i in node.namespaces[0].interfaces)


def test_collect_frames_are_binary_safe() -> None:
    blob = bytes(range(256)) * 3
    stream = (b"@hostname n1\n" + f"@res host ip-addr.txt ok 0 {len(blob)} 4\n".encode() + blob + b"warn"
              + b"@res ingress_sbox ipvsadm-Ln.txt missing 127 0 0\n@end\n")
    dump = parse_collect(Target("n1"), io.BytesIO(stream))
    assert dump.error is None and dump.hostname == "n1"
    assert dump.blobs[0].out == blob and dump.blobs[0].err == b"warn"
    assert dump.blobs[1].status == "missing"
    cut = parse_collect(Target("n1"), io.BytesIO(stream[:40]))
    assert cut.error == "collection output cut short"
