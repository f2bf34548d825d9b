"""Fault hooks added for ``meshpkt diagnose`` (functions taking a :class:`~meshpkt.lab.build.Lab`).

Each breaks one thing inside the lab's own namespaces (never the root namespace) and records itself
in the lab's fault list, like the ``remove_*``/``drop_vxlan``/``kill_task``/``set_mtu`` methods of
:class:`~meshpkt.lab.build.Lab`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from meshpkt.errors import UsageError
from meshpkt.lab.build import nsexec, run

if TYPE_CHECKING:
    from meshpkt.lab.build import Lab


def _node_ip(lab: Lab, node: str) -> str:
    st = lab.status()
    ip = next((n["underlay_ip"] for n in st["nodes"] if n["name"] == node), None)
    if ip is None:
        raise UsageError(f"unknown node {node!r}")
    return str(ip)


def wrong_vtep_source(lab: Lab, node: str, address: str) -> None:
    """Give ``node``'s eth0 a second underlay address and make it the source of the node's traffic
    to the underlay subnet (as a second NIC or a wrongly chosen ``--data-path-addr`` does): its VXLAN
    then leaves from ``address`` while its peers' fdb entries still name the original one."""
    st = lab.status()
    subnet = ipaddress.ip_network((st.get("underlay") or {}).get("subnet") or "10.211.55.0/24", strict=False)
    if ipaddress.ip_address(address) not in subnet:
        raise UsageError(f"{address} is not in the underlay subnet {subnet}")
    ns = lab.netns(node)
    run(["ip", "-n", ns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "route", "replace", str(subnet), "dev", "eth0", "src", address])
    lab._record_fault("wrong_vtep_source", node=node, address=address)


def iptables_split_brain(lab: Lab, node: str) -> None:
    """Add rules through iptables-legacy in ``node``'s host namespace, whose Docker rules live in the
    nf_tables backend: both rule sets are then active, each tool sees only its own."""
    ns = lab.netns(node)
    for argv in (["-t", "nat", "-A", "POSTROUTING", "-s", "172.18.0.0/16", "-j", "MASQUERADE"],
                 ["-t", "filter", "-A", "INPUT", "-p", "udp", "--dport", "4789", "-j", "ACCEPT"]):
        run(nsexec(ns, ["iptables-legacy", *argv]))
    lab._record_fault("iptables_split_brain", node=node)


def undo_split_brain(lab: Lab, node: str) -> None:
    """Flush the legacy tables again (the kernel's legacy xtables are per namespace: nothing leaks)."""
    ns = lab.netns(node)
    for table in ("nat", "filter"):
        run(nsexec(ns, ["iptables-legacy", "-t", table, "-F"]), check=False)
