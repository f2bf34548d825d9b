"""Protocol numbers and names, TCP flag bits and letters, and Swarm's well-known ports: defined once."""

from __future__ import annotations

from meshpkt.errors import UsageError

VXLAN_PORT = 4789
"""Default UDP port of Swarm's data path (``docker swarm init --data-path-port`` changes it)."""
SWARM_MANAGEMENT_PORT = 2377
SWARM_GOSSIP_PORT = 7946
DOCKER_MAC_PREFIX = 0x0242
"""First two bytes of the MAC Docker derives from an endpoint's IPv4 address."""

ICMP, TCP, GRE, UDP, ESP, ICMP6, SCTP = 1, 6, 47, 17, 50, 58, 132
PROTO_NAMES: dict[int, str] = {
    ICMP: "icmp",
    TCP: "tcp",
    UDP: "udp",
    GRE: "gre",
    ESP: "esp",
    ICMP6: "icmp6",
    SCTP: "sctp",
}
PROTO_NUMBERS: dict[str, int] = {name: num for num, name in PROTO_NAMES.items()} | {"icmpv6": ICMP6}

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
TCP_FLAGS: dict[str, int] = {
    "fin": FIN,
    "syn": SYN,
    "rst": RST,
    "psh": PSH,
    "ack": ACK,
    "urg": URG,
    "ece": ECE,
    "cwr": CWR,
}
"""Flag names (as pcap-filter spells them, ``tcp-syn`` without the prefix) -> bit."""
TCP_FLAG_LETTERS: dict[int, str] = {
    FIN: "F",
    SYN: "S",
    RST: "R",
    PSH: "P",
    ACK: "A",
    URG: "U",
    ECE: "E",
    CWR: "C",
}


def proto_number(value: str | int) -> int:
    """``"tcp"``/``"TCP"``/``"6"``/``6`` -> 6; UsageError for an unknown name or a number out of range."""
    if isinstance(value, int) or str(value).strip().isdigit():
        num = int(value)
        if 0 <= num <= 255:
            return num
        raise UsageError(f"IP protocol number out of range: {value!r}")
    num_of = PROTO_NUMBERS.get(str(value).strip().lower())
    if num_of is None:
        raise UsageError(f"unknown protocol {value!r} (use {', '.join(PROTO_NUMBERS)} or a number)")
    return num_of


def proto_name(num: int) -> str:
    """6 -> ``"tcp"``; an unnamed number as its decimal text."""
    return PROTO_NAMES.get(int(num), str(int(num)))


def flag_letters(flags: int) -> str:
    """TCP flags as letters in bit order (``0x12`` -> ``"SA"``), ``""`` for none."""
    return "".join(letter for bit, letter in TCP_FLAG_LETTERS.items() if flags & bit)


def tcpdump_flags(flags: int) -> str:
    """tcpdump's form: ``S``, ``S.``, ``R``, ``P.``, ``F.`` (``.`` = ACK); ``"none"`` for no flag."""
    out = "".join(letter for bit, letter in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P")) if flags & bit)
    if flags & ACK:
        out += "."
    return out or "none"
