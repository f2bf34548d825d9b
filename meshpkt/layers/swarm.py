"""Frames of Docker Swarm's ingress routing mesh, hop by hop.

One TCP segment from an outside client to a published port crosses these hops (the ingress stages of
:mod:`meshpkt.mesh.path`; addresses of the reference capture of a 3-node cluster)::

    client_to_node    client 10.211.55.2:51883 -> node 10.211.55.10:9090       (node's eth0)
    node_to_sbox      client 10.211.55.2:51883 -> 172.18.0.2:9090              (docker_gwbridge, after DNAT)
    sbox_to_task      10.0.0.2:51883 -> 10.0.0.20:9090                         (overlay, after IPVS + SNAT)
    vxlan_underlay    10.211.55.10:45803 -> 10.211.55.18:4789 VXLAN vni 4096 | the overlay frame
    sbox_to_task      the same overlay frame again at the task's eth0 (node2)
    task_redirected   10.0.0.2:51883 -> 10.0.0.20:80                          (inside the task, after REDIRECT)

and the reply retraces them (:func:`task_to_sbox`, :func:`vxlan_underlay` the other way,
:func:`sbox_to_node`, :func:`node_to_client`). NAT rewrites addresses and ports only: the
TCP sequence/ack numbers, options (timestamps), IP id and payload are the same on every hop,
which :func:`ingress_path` reproduces. The TTL drops by one where the node routes the
packet (host -> docker_gwbridge); IPVS in the sbox does not decrement it (the reference
capture shows ttl 63 on both sides of the sbox).

Every address, port, VNI and MAC is an argument; the defaults are the reference capture's
values (3-node CentOS 7 cluster; the client's and docker_gwbridge's MACs are not in it and are
made up). Builders return scapy packets; ``bytes(pkt)`` gives the wire bytes with
correct lengths and checksums.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from meshpkt.errors import UsageError
from meshpkt.layers.vxlan import VXLAN, VXLAN_PORT
from meshpkt.mesh.addr import docker_mac, mac_str
from meshpkt.mesh.path import PathKind, stages

# --- reference capture values -------------------------------------------------------------------
CLIENT_IP = "10.211.55.2"
CLIENT_PORT = 51883
CLIENT_MAC = "00:1c:42:00:00:18"  # not in the capture (Parallels host side); made up
NODE_IP = "10.211.55.10"  # centos7-10, where the request enters
NODE_MAC = "00:1c:42:ae:b6:41"  # centos7-10 enp0s5
TASK_NODE_IP = "10.211.55.18"  # centos7-18, where the chosen task runs
TASK_NODE_MAC = "00:1c:42:60:87:b2"  # centos7-18 enp0s5
PUBLISHED_PORT = 9090
TARGET_PORT = 80  # nginx inside the task; REDIRECT 9090 -> 80
GWBRIDGE_MAC = "02:42:d6:4a:1b:7e"  # docker_gwbridge's own MAC: random per host; made up
SBOX_GW_IP = "172.18.0.2"  # ingress_sbox eth1 on docker_gwbridge
SBOX_GW_MAC = "02:42:ac:12:00:02"
SBOX_OVERLAY_IP = "10.0.0.2"  # ingress_sbox eth0 on the ingress overlay (SNAT source)
TASK_IP = "10.0.0.20"
VNI = 4096
UNDERLAY_SPORT = 45803  # captured: 10.211.55.10.45803 > 10.211.55.18.4789
UNDERLAY_REPLY_SPORT = 38329  # captured: 10.211.55.18.38329 > 10.211.55.10.4789

# TCP options of the captured handshake (macOS client SYN, nginx SYN-ACK)
SYN_OPTIONS: list[tuple[str, Any]] = [
    ("MSS", 1460), ("NOP", None), ("WScale", 6), ("NOP", None), ("NOP", None),
    ("Timestamp", (1319360275, 0)), ("SAckOK", b""), ("EOL", None),
]
SYNACK_OPTIONS: list[tuple[str, Any]] = [
    ("MSS", 1410), ("SAckOK", b""), ("Timestamp", (100373895, 1319360275)), ("NOP", None), ("WScale", 7),
]


def swarm_mac(ip: str | int) -> str:
    """The MAC Docker gives an overlay endpoint: ``02:42:`` + the IPv4 bytes.

    >>> swarm_mac("10.0.0.20")
    '02:42:0a:00:00:14'
    """
    return mac_str(docker_mac(ip))


@dataclass(frozen=True)
class TcpSegment:
    """What NAT leaves alone: the TCP segment's numbers, options, payload and IP id.

    Defaults are the reference capture's SYN (flags SYN+ECE+CWR, shown by tcpdump as ``[SEW]``).
    """

    flags: str | int = "SEC"
    seq: int = 1488146503
    ack: int = 0
    window: int = 65535
    options: Sequence[tuple[str, Any]] = field(default_factory=lambda: list(SYN_OPTIONS))
    payload: bytes = b""
    ip_id: int = 0
    df: bool = True
    tos: int = 0

    def tcp(self, sport: int, dport: int) -> Packet:
        """The TCP header (+ payload) with these ports."""
        t = TCP(sport=sport, dport=dport, flags=self.flags, seq=self.seq, ack=self.ack,
                window=self.window, options=list(self.options))
        return t / Raw(self.payload) if self.payload else t

    def ip(self, src: str, dst: str, ttl: int) -> Packet:
        """The IPv4 header carrying this segment."""
        return IP(src=src, dst=dst, ttl=ttl, id=self.ip_id, flags="DF" if self.df else 0, tos=self.tos)


EXAMPLE_SYN = TcpSegment()
"""The client's SYN of the reference capture (docs/architecture.md#reference-capture), as sent."""

EXAMPLE_SYNACK = TcpSegment(flags="SAE", seq=3176725104, ack=1488146504, window=27960,
                         options=list(SYNACK_OPTIONS))
"""The task's SYN-ACK of the reference capture, as sent."""


def _frame(src_mac: str, dst_mac: str, seg: TcpSegment, src: str, sport: int, dst: str, dport: int,
           ttl: int) -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / seg.ip(src, dst, ttl) / seg.tcp(sport, dport)


# --- request hops ------------------------------------------------------------------------
def client_to_node(seg: TcpSegment = EXAMPLE_SYN, *, client: str = CLIENT_IP, client_port: int = CLIENT_PORT,
                   node: str = NODE_IP, published_port: int = PUBLISHED_PORT, client_mac: str = CLIENT_MAC,
                   node_mac: str = NODE_MAC, ttl: int = 64) -> Packet:
    """Hop 1, on the node's NIC: client -> node address : published port."""
    return _frame(client_mac, node_mac, seg, client, client_port, node, published_port, ttl)


def node_to_sbox(seg: TcpSegment = EXAMPLE_SYN, *, client: str = CLIENT_IP, client_port: int = CLIENT_PORT,
                 sbox_gw: str = SBOX_GW_IP, published_port: int = PUBLISHED_PORT,
                 gwbridge_mac: str = GWBRIDGE_MAC, sbox_gw_mac: str = SBOX_GW_MAC, ttl: int = 63) -> Packet:
    """Hop 2, on docker_gwbridge / ingress_sbox eth1: after the host's DNAT to the sbox.

    The client address survives; the destination is the sbox's gwbridge address.
    """
    return _frame(gwbridge_mac, sbox_gw_mac, seg, client, client_port, sbox_gw, published_port, ttl)


def sbox_to_task(seg: TcpSegment = EXAMPLE_SYN, *, sbox_ip: str = SBOX_OVERLAY_IP, sport: int = CLIENT_PORT,
                 task: str = TASK_IP, published_port: int = PUBLISHED_PORT, sbox_mac: str | None = None,
                 task_mac: str | None = None, ttl: int = 63) -> Packet:
    """Hop 3, on the overlay (sbox eth0, br0, vxlan0, the task's eth0): after IPVS + SNAT.

    A plain Ethernet frame between the two overlay endpoints (MACs default to
    :func:`swarm_mac` of their addresses); the client's address is gone. IPVS keeps the
    client's source port unless it clashes, hence ``sport`` defaults to the client's port.
    """
    return _frame(sbox_mac or swarm_mac(sbox_ip), task_mac or swarm_mac(task), seg, sbox_ip, sport, task,
                  published_port, ttl)


def vxlan_src_port(inner: Packet | bytes, low: int = 32768, high: int = 60999) -> int:
    """A deterministic source port for the outer UDP header, like Linux's flow hash.

    Linux picks ``udp_flow_src_port()``: a hash of the inner flow scaled into the local port
    range, so every packet of one inner flow gets the same outer source port. We hash the
    inner IPv4 addresses and ports (CRC-32) into ``[low, high]``.
    """
    pkt = inner if isinstance(inner, Packet) else Ether(inner)
    key = b""
    if IP in pkt:
        ip = pkt[IP]
        key = ipaddress.IPv4Address(ip.src).packed + ipaddress.IPv4Address(ip.dst).packed + bytes([ip.proto])
        l4 = ip.payload
        if isinstance(l4, TCP | UDP):
            key += l4.sport.to_bytes(2, "big") + l4.dport.to_bytes(2, "big")
    else:
        key = bytes(pkt)[:14]
    return low + zlib.crc32(key) % (high - low + 1)


def vxlan_underlay(inner: Packet | bytes, vtep_src: str = NODE_IP, vtep_dst: str = TASK_NODE_IP, vni: int = VNI,
                   port: int = VXLAN_PORT, sport: int | None = None, *, src_mac: str = NODE_MAC,
                   dst_mac: str = TASK_NODE_MAC, ttl: int = 64, ip_id: int = 44918, df: bool = False,
                   udp_checksum: bool = False) -> Packet:
    """The underlay frame carrying ``inner`` (an Ethernet frame) between two VTEPs.

    ``sport=None`` derives the outer source port from the inner flow
    (:func:`vxlan_src_port`). Docker's vxlan links have ``noudpcsum``: the outer UDP
    checksum is 0 unless ``udp_checksum`` is set. ``port`` is the swarm's data-path port.
    """
    if not 0 <= vni < 1 << 24:
        raise UsageError(f"VNI must fit in 24 bits, got {vni}")
    inner_pkt = inner if isinstance(inner, Packet) else Ether(inner)
    udp = UDP(sport=vxlan_src_port(inner_pkt) if sport is None else sport, dport=port)
    if not udp_checksum:
        udp.chksum = 0
    return (Ether(src=src_mac, dst=dst_mac) / IP(src=vtep_src, dst=vtep_dst, ttl=ttl, id=ip_id,
                                                flags="DF" if df else 0)
            / udp / VXLAN(vni=vni) / inner_pkt)


def task_redirected(seg: TcpSegment = EXAMPLE_SYN, *, sbox_ip: str = SBOX_OVERLAY_IP, sport: int = CLIENT_PORT,
                    task: str = TASK_IP, target_port: int = TARGET_PORT, sbox_mac: str | None = None,
                    task_mac: str | None = None, ttl: int = 63) -> Packet:
    """Inside the task, after ``REDIRECT --to-port target_port``: what the server socket receives.

    Not visible to tcpdump on the task's eth0 (capture happens before PREROUTING); useful
    for socket-level or NFLOG comparisons.
    """
    return _frame(sbox_mac or swarm_mac(sbox_ip), task_mac or swarm_mac(task), seg, sbox_ip, sport, task,
                  target_port, ttl)


# --- reply hops --------------------------------------------------------------------------
def task_to_sbox(seg: TcpSegment = EXAMPLE_SYNACK, *, task: str = TASK_IP, published_port: int = PUBLISHED_PORT,
                 sbox_ip: str = SBOX_OVERLAY_IP, dport: int = CLIENT_PORT, task_mac: str | None = None,
                 sbox_mac: str | None = None, ttl: int = 64) -> Packet:
    """Reply hop on the overlay: task -> sbox, the REDIRECT already undone (sport = published port)."""
    return _frame(task_mac or swarm_mac(task), sbox_mac or swarm_mac(sbox_ip), seg, task, published_port, sbox_ip,
                  dport, ttl)


def sbox_to_node(seg: TcpSegment = EXAMPLE_SYNACK, *, sbox_gw: str = SBOX_GW_IP, published_port: int = PUBLISHED_PORT,
                 client: str = CLIENT_IP, client_port: int = CLIENT_PORT, sbox_gw_mac: str = SBOX_GW_MAC,
                 gwbridge_mac: str = GWBRIDGE_MAC, ttl: int = 63) -> Packet:
    """Reply hop on docker_gwbridge: sbox eth1 -> client (un-SNAT/IPVS done, un-DNAT not yet)."""
    return _frame(sbox_gw_mac, gwbridge_mac, seg, sbox_gw, published_port, client, client_port, ttl)


def node_to_client(seg: TcpSegment = EXAMPLE_SYNACK, *, node: str = NODE_IP, published_port: int = PUBLISHED_PORT,
                   client: str = CLIENT_IP, client_port: int = CLIENT_PORT, node_mac: str = NODE_MAC,
                   client_mac: str = CLIENT_MAC, ttl: int = 62) -> Packet:
    """Last reply hop, on the node's NIC: node address : published port -> client."""
    return _frame(node_mac, client_mac, seg, node, published_port, client, client_port, ttl)


# --- the whole path ----------------------------------------------------------------------
@dataclass(frozen=True)
class IngressTopology:
    """Addresses of one ingress path (defaults: the reference capture, request entering centos7-10,
    served by the task 10.0.0.20 on centos7-18). ``task_node=None`` means the task runs on
    the entry node (no underlay hop)."""

    client: str = CLIENT_IP
    client_port: int = CLIENT_PORT
    client_mac: str = CLIENT_MAC
    node: str = NODE_IP
    node_mac: str = NODE_MAC
    published_port: int = PUBLISHED_PORT
    target_port: int = TARGET_PORT
    gwbridge_mac: str = GWBRIDGE_MAC
    sbox_gw: str = SBOX_GW_IP
    sbox_gw_mac: str = SBOX_GW_MAC
    sbox_ip: str = SBOX_OVERLAY_IP
    snat_port: int | None = None  # None: IPVS keeps the client's port
    task: str = TASK_IP
    task_node: str | None = TASK_NODE_IP
    task_node_mac: str = TASK_NODE_MAC
    vni: int = VNI
    vxlan_port: int = VXLAN_PORT
    underlay_sport: int | None = UNDERLAY_SPORT
    underlay_reply_sport: int | None = UNDERLAY_REPLY_SPORT


EXAMPLE_TOPOLOGY = IngressTopology()


@dataclass(frozen=True)
class Hop:
    """One packet of the path: where it is seen (``point``), the frame, and what changed."""

    point: str
    packet: Packet
    note: str


def _request_builders(seg: TcpSegment, topo: IngressTopology, ttl: int) -> dict[str, Callable[[], tuple[Packet, str]]]:
    """Frame builders of the request, by the name of the :mod:`meshpkt.mesh.path` stage they are seen at."""
    snat_port = topo.client_port if topo.snat_port is None else topo.snat_port
    sbox_mac, task_mac = swarm_mac(topo.sbox_ip), swarm_mac(topo.task)
    overlay = sbox_to_task(seg, sbox_ip=topo.sbox_ip, sport=snat_port, task=topo.task,
                           published_port=topo.published_port, sbox_mac=sbox_mac, task_mac=task_mac, ttl=ttl - 1)
    return {
        "node_eth0": lambda: (client_to_node(
            seg, client=topo.client, client_port=topo.client_port, node=topo.node, published_port=topo.published_port,
            client_mac=topo.client_mac, node_mac=topo.node_mac, ttl=ttl), "client -> node:published"),
        "gwbridge": lambda: (node_to_sbox(
            seg, client=topo.client, client_port=topo.client_port, sbox_gw=topo.sbox_gw,
            published_port=topo.published_port, gwbridge_mac=topo.gwbridge_mac, sbox_gw_mac=topo.sbox_gw_mac,
            ttl=ttl - 1), "DNAT to the ingress_sbox (host nat DOCKER-INGRESS)"),
        "sbox_eth0": lambda: (overlay, "IPVS picks the task, SNAT to the sbox overlay address"),
        "underlay": lambda: (vxlan_underlay(
            overlay.copy(), topo.node, topo.task_node or topo.node, topo.vni, topo.vxlan_port, topo.underlay_sport,
            src_mac=topo.node_mac, dst_mac=topo.task_node_mac), "VXLAN between the nodes"),
        "task_eth0": lambda: (overlay.copy(), "bridged/decapsulated unchanged to the task"),
        "task_socket": lambda: (task_redirected(
            seg, sbox_ip=topo.sbox_ip, sport=snat_port, task=topo.task, target_port=topo.target_port,
            sbox_mac=sbox_mac, task_mac=task_mac, ttl=ttl - 1), "REDIRECT to the target port"),
    }


def _reply_builders(seg: TcpSegment, topo: IngressTopology, ttl: int) -> dict[str, Callable[[], tuple[Packet, str]]]:
    """Frame builders of the reply, by the name of the stage they are seen at."""
    snat_port = topo.client_port if topo.snat_port is None else topo.snat_port
    sbox_mac, task_mac = swarm_mac(topo.sbox_ip), swarm_mac(topo.task)
    overlay = task_to_sbox(seg, task=topo.task, published_port=topo.published_port, sbox_ip=topo.sbox_ip,
                           dport=snat_port, task_mac=task_mac, sbox_mac=sbox_mac, ttl=ttl)
    return {
        "task_socket": lambda: (_frame(task_mac, sbox_mac, seg, topo.task, topo.target_port, topo.sbox_ip, snat_port,
                                       ttl), "sent by the server socket (target port)"),
        "task_eth0": lambda: (overlay, "un-REDIRECT: source port back to the published port"),
        "underlay": lambda: (vxlan_underlay(
            overlay.copy(), topo.task_node or topo.node, topo.node, topo.vni, topo.vxlan_port,
            topo.underlay_reply_sport, src_mac=topo.task_node_mac, dst_mac=topo.node_mac, ip_id=31402),
            "VXLAN back to the entry node"),
        "sbox_eth0": lambda: (overlay.copy(), "arrives at the ingress_sbox"),
        "gwbridge": lambda: (sbox_to_node(
            seg, sbox_gw=topo.sbox_gw, published_port=topo.published_port, client=topo.client,
            client_port=topo.client_port, sbox_gw_mac=topo.sbox_gw_mac, gwbridge_mac=topo.gwbridge_mac, ttl=ttl - 1),
            "IPVS/un-SNAT: back to the client's address"),
        "node_eth0": lambda: (node_to_client(
            seg, node=topo.node, published_port=topo.published_port, client=topo.client,
            client_port=topo.client_port, node_mac=topo.node_mac, client_mac=topo.client_mac, ttl=ttl - 2),
            "un-DNAT: from the node's address"),
    }


def ingress_path(seg: TcpSegment | None = None, topo: IngressTopology = EXAMPLE_TOPOLOGY,
                 direction: Literal["request", "reply"] = "request", ttl: int = 64) -> list[Hop]:
    """Every hop of one TCP segment across the ingress routing mesh, in the order of the ingress stages of
    :mod:`meshpkt.mesh.path` (one hop per stage where the frame is built).

    ``direction="request"``: client -> task (points ``node_eth0``, ``gwbridge``,
    ``sbox_eth0``, ``underlay``, ``task_eth0``, ``task_socket``); ``"reply"``: task -> client
    (``task_socket``, ``task_eth0``, ``underlay``, ``sbox_eth0``, ``gwbridge``, ``node_eth0``).
    ``ttl`` is the TTL the sender sets. Seq/ack/options/IP id/payload are identical on every
    hop; only addresses, ports, MACs, TTL (and the checksums) change, as NAT does.
    """
    if direction not in ("request", "reply"):
        raise UsageError(f"direction must be 'request' or 'reply', got {direction!r}")
    local = topo.task_node is None or topo.task_node == topo.node
    if direction == "request":
        builders = _request_builders(EXAMPLE_SYN if seg is None else seg, topo, ttl)
    else:
        builders = _reply_builders(EXAMPLE_SYNACK if seg is None else seg, topo, ttl)
    hops = []
    for stage in stages(PathKind.INGRESS, local=local, direction=direction):
        build = builders.get(stage.name)
        if build is not None:
            packet, note = build()
            hops.append(Hop(stage.name, packet, note))
    return hops


def with_segment(seg: TcpSegment, **changes: Any) -> TcpSegment:
    """A copy of ``seg`` with some fields changed (``dataclasses.replace``)."""
    return replace(seg, **changes)
