"""A tiny Docker-like set of namespaces for the root tests of ``meshpkt.rules`` (and to
regenerate the real-tool fixtures in ``tests/rules/data/lab``).

Namespaces (``ip netns``, under /var/run/netns), with LAB a unique name::

    LAB-node1                    host: eth0 192.0.2.10/24 (veth), docker_gwbridge 172.18.0.1/16,
                                 nat DOCKER-INGRESS DNAT tcp/8080 -> 172.18.0.2:8080, filter DOCKER-INGRESS
    LAB-node1-ingress_sbox       eth1 172.18.0.2/16, eth0 10.0.0.2/24 + VIP 10.0.0.15/32,
                                 mangle MARK 0x100, nft table ip meshlb: IPVS emulation + SNAT 10.0.0.2
    LAB-node1-1-abcdef1234       br0 10.0.0.1/24, vxlan0 VNI 4096 dstport 4789, fdb 02:42:0a:00:00:14 -> 192.0.2.18
    LAB-node1-0123456789ab       task eth0 10.0.0.17/24, nat REDIRECT 8080 -> 80, filter INPUT/OUTPUT,
                                 one iptables-legacy rule (so iptables-save warns about legacy tables)

Nothing is ever done in the root namespace.
"""

from __future__ import annotations

import subprocess

OVERLAY = "1-abcdef1234"
TASK = "0123456789ab"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command; raise with its stderr when it fails (and ``check``)."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {cp.stderr.strip()}")
    return cp


def names(lab: str) -> dict[str, str]:
    """Role -> namespace name."""
    return {"host": f"{lab}-node1", "sbox": f"{lab}-node1-ingress_sbox", "overlay": f"{lab}-node1-{OVERLAY}",
            "task": f"{lab}-node1-{TASK}"}


def build(lab: str) -> dict[str, str]:
    """Create the namespaces of ``lab``; returns role -> namespace. Call :func:`teardown` after."""
    ns = names(lab)
    for n in ns.values():
        sh("ip", "netns", "add", n)

    def ex(role: str, *argv: str) -> None:
        sh("ip", "netns", "exec", ns[role], *argv)

    for role in ns:
        ex(role, "ip", "link", "set", "lo", "up")
    # host: underlay + docker_gwbridge
    ex("host", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")  # no dummy module here
    ex("host", "ip", "link", "set", "eth0peer", "up")
    ex("host", "ip", "addr", "add", "192.0.2.10/24", "dev", "eth0")
    ex("host", "ip", "link", "set", "eth0", "up")
    ex("host", "ip", "link", "add", "docker_gwbridge", "type", "bridge")
    ex("host", "ip", "addr", "add", "172.18.0.1/16", "dev", "docker_gwbridge")
    ex("host", "ip", "link", "set", "docker_gwbridge", "up")
    ex("host", "ip", "link", "add", "vethgw", "type", "veth", "peer", "name", "eth1", "netns", ns["sbox"])
    ex("host", "ip", "link", "set", "vethgw", "master", "docker_gwbridge", "up")
    ex("sbox", "ip", "addr", "add", "172.18.0.2/16", "dev", "eth1")
    ex("sbox", "ip", "link", "set", "eth1", "up")
    # overlay: br0 + vxlan0 + veths to sbox and task
    ex("overlay", "ip", "link", "add", "br0", "type", "bridge")
    ex("overlay", "ip", "addr", "add", "10.0.0.1/24", "dev", "br0")
    ex("overlay", "ip", "link", "set", "br0", "up")
    ex("overlay", "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "4096", "dstport", "4789", "local",
       "192.0.2.10", "proxy", "l2miss", "l3miss", "learning")
    ex("overlay", "ip", "link", "set", "vxlan0", "master", "br0", "up")
    ex("overlay", "bridge", "fdb", "add", "02:42:0a:00:00:14", "dev", "vxlan0", "dst", "192.0.2.18", "self",
       "permanent")
    ex("overlay", "ip", "neigh", "add", "10.0.0.20", "lladdr", "02:42:0a:00:00:14", "dev", "vxlan0", "nud",
       "permanent")
    for peer, ifname, addr in (("sbox", "veth0", "10.0.0.2/24"), ("task", "veth1", "10.0.0.17/24")):
        ex("overlay", "ip", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", ns[peer])
        ex("overlay", "ip", "link", "set", ifname, "master", "br0", "up")
        ex(peer, "ip", "addr", "add", addr, "dev", "eth0")
        ex(peer, "ip", "link", "set", "eth0", "up")
    ex("sbox", "ip", "addr", "add", "10.0.0.15/32", "dev", "eth0")
    # host rules (Docker's ingress rules)
    ipt = ("iptables", "-w")
    ex("host", *ipt, "-t", "nat", "-N", "DOCKER-INGRESS")
    ex("host", *ipt, "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS")
    ex("host", *ipt, "-t", "nat", "-A", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS")
    ex("host", *ipt, "-t", "nat", "-A", "DOCKER-INGRESS", "-p", "tcp", "--dport", "8080", "-j", "DNAT",
       "--to-destination", "172.18.0.2:8080")
    ex("host", *ipt, "-t", "nat", "-A", "DOCKER-INGRESS", "-j", "RETURN")
    ex("host", *ipt, "-t", "nat", "-A", "POSTROUTING", "-m", "addrtype", "--src-type", "LOCAL", "-o",
       "docker_gwbridge", "-j", "MASQUERADE")
    ex("host", *ipt, "-N", "DOCKER-INGRESS")
    ex("host", *ipt, "-A", "FORWARD", "-j", "DOCKER-INGRESS")
    ex("host", *ipt, "-A", "DOCKER-INGRESS", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
    ex("host", *ipt, "-A", "DOCKER-INGRESS", "-p", "tcp", "--sport", "8080", "-m", "conntrack", "--ctstate",
       "ESTABLISHED,RELATED", "-j", "ACCEPT")
    ex("host", *ipt, "-A", "DOCKER-INGRESS", "-j", "RETURN")
    # ingress_sbox: marks + nft emulation of IPVS FWM 256 + SNAT
    ex("sbox", *ipt, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "MARK", "--set-mark",
       "0x100")
    ex("sbox", *ipt, "-t", "mangle", "-A", "INPUT", "-d", "10.0.0.15/32", "-j", "MARK", "--set-mark", "0x100")
    ex("sbox", "nft", "add", "table", "ip", "meshlb")
    ex("sbox", "nft", "add", "chain", "ip", "meshlb", "lb", "{ type nat hook prerouting priority dstnat; }")
    ex("sbox", "nft", "add", "rule", "ip", "meshlb", "lb", "meta", "mark", "0x100", "ct", "state", "new", "counter",
       "dnat", "to", "numgen", "inc", "mod", "2", "map", "{ 0 : 10.0.0.17, 1 : 10.0.0.20 }")
    ex("sbox", "nft", "add", "chain", "ip", "meshlb", "post", "{ type nat hook postrouting priority srcnat; }")
    ex("sbox", "nft", "add", "rule", "ip", "meshlb", "post", "ct", "status", "dnat", "ip", "daddr", "10.0.0.0/24",
       "counter", "snat", "to", "10.0.0.2")
    # task: REDIRECT + filters (+ one legacy rule)
    ex("task", *ipt, "-t", "nat", "-A", "PREROUTING", "-d", "10.0.0.17/32", "-p", "tcp", "--dport", "8080", "-j",
       "REDIRECT", "--to-ports", "80")
    ex("task", *ipt, "-A", "INPUT", "-d", "10.0.0.17/32", "-p", "tcp", "--dport", "80", "-m", "conntrack",
       "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
    for proto in ("sctp", "udp", "tcp"):
        ex("task", *ipt, "-A", "INPUT", "-d", "10.0.0.17/32", "-p", proto, "-j", "DROP")
    ex("task", *ipt, "-A", "OUTPUT", "-s", "10.0.0.17/32", "-p", "tcp", "--sport", "80", "-m", "conntrack",
       "--ctstate", "ESTABLISHED", "-m", "comment", "--comment", "swarm task reply", "-j", "ACCEPT")
    ex("task", "iptables-legacy", "-w", "-A", "INPUT", "-p", "udp", "--dport", "4789", "-j", "ACCEPT")
    return ns


def teardown(lab: str) -> None:
    """Delete every namespace of ``lab`` (ignores the missing ones)."""
    for n in names(lab).values():
        sh("ip", "netns", "del", n, check=False)
