"""meshpkt.mesh.addr and meshpkt.mesh.proto: scalar forms against socket/ipaddress and known values."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshpkt.errors import UsageError
from meshpkt.mesh.addr import (
    Endpoint,
    docker_mac,
    in_network,
    ip4_int,
    ip4_str,
    mac_int,
    mac_str,
    parse_cidr,
    parse_network,
    try_ip4,
)
from meshpkt.mesh.proto import flag_letters, proto_name, proto_number, tcpdump_flags


@pytest.mark.parametrize("text", ["10.0.0.2", "0.0.0.0", "255.255.255.255", "172.18.0.2"])
def test_ip4_round_trip_matches_inet_aton(text: str) -> None:
    value = ip4_int(text)
    assert value == int.from_bytes(socket.inet_aton(text), "big")
    assert ip4_str(value) == text
    assert ip4_int(IPv4Address(text)) == value == ip4_int(value)


@pytest.mark.parametrize("bad", ["10.0.0", "10.0.0.256", "fd00::1", "", "node1", -1, 1 << 32])
def test_ip4_rejects_non_ipv4(bad: object) -> None:
    with pytest.raises(UsageError):
        ip4_int(bad)  # type: ignore[arg-type]


def test_try_ip4_accepts_cidr_and_rejects_junk() -> None:
    assert try_ip4("10.0.0.2/24") == IPv4Address("10.0.0.2")
    assert try_ip4(None) is None and try_ip4("") is None and try_ip4("x") is None


def test_mac_forms() -> None:
    assert mac_int("02:42:0a:00:00:14") == 0x02420A000014
    assert mac_int("2-42-a-0-0-14") == 0x02420A000014
    assert mac_int(bytes.fromhex("02420a000014")) == 0x02420A000014
    assert mac_str(0x02420A000014) == "02:42:0a:00:00:14"
    assert mac_str(b"\x00\x1c\x42\xd3\x37\x02") == "00:1c:42:d3:37:02"
    for bad in ("02:42:0a:00:00", "zz:42:0a:00:00:14", b"\x01"):
        with pytest.raises(UsageError):
            mac_int(bad)


def test_docker_mac_is_0242_plus_the_address() -> None:
    # reference: task MAC addresses are 02:42: + the IPv4 bytes (10.0.0.20 -> 02:42:0a:00:00:14)
    assert mac_str(docker_mac("10.0.0.20")) == "02:42:0a:00:00:14"


def test_endpoint_parse_and_render() -> None:
    ep = Endpoint.parse("10.0.0.2:57786")
    assert ep == Endpoint(ip4_int("10.0.0.2"), 57786)
    assert str(ep) == "10.0.0.2:57786" and ep.address == IPv4Address("10.0.0.2")
    assert Endpoint.parse("10.0.0.2") == Endpoint(ip4_int("10.0.0.2"), 0)
    assert sorted([Endpoint.parse("10.0.0.3:1"), Endpoint.parse("10.0.0.2:9")])[0].port == 9
    for bad in ("10.0.0.2:x", "10.0.0.2:70000", "host:80"):
        with pytest.raises(UsageError):
            Endpoint.parse(bad)


def test_cidr_helpers() -> None:
    iface = parse_cidr("10.0.0.2/24")
    assert iface.network == IPv4Network("10.0.0.0/24") and str(iface) == "10.0.0.2/24"
    assert parse_network("10.0.0.7/24") == IPv4Network("10.0.0.0/24")
    assert in_network("10.0.0.200", IPv4Network("10.0.0.0/24"))
    assert not in_network("10.0.1.2", IPv4Network("10.0.0.0/24"))
    with pytest.raises(UsageError):
        parse_cidr("10.0.0.2/33")


def test_protocols_and_flags() -> None:
    assert proto_number("TCP") == socket.IPPROTO_TCP and proto_number("17") == socket.IPPROTO_UDP
    assert proto_number(50) == 50 and proto_name(132) == "sctp" and proto_name(200) == "200"
    with pytest.raises(UsageError):
        proto_number("bogus")
    with pytest.raises(UsageError):
        proto_number(300)
    assert flag_letters(0x12) == "SA" and flag_letters(0) == ""
    assert tcpdump_flags(0x12) == "S." and tcpdump_flags(0x18) == "P." and tcpdump_flags(0) == "none"
