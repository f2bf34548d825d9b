"""Encrypted overlays without a lab: Docker's SPI function, the VNI match, the ESP wire format (checked by
tshark), the userspace ESP's policy/state logic, and reading `ip xfrm` output (the policy part from a real
namespace: this kernel can hold policies, not ESP states)."""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from meshpkt.lab.esp import Esp, esp_unwrap, esp_wrap, ipv4_header
from meshpkt.lab.plan import iptables_restore_text, plan
from meshpkt.lab.spec import LabSpec, NetworkSpec, ServiceSpec
from meshpkt.lab.xfrm import MARK, build_spi, encrypted_mtu, fnv1a32, pair_sas, vni_match
from meshpkt.rules.collect import redact_xfrm_keys
from meshpkt.verify.run import parse_xfrm


def test_fnv1a32_vectors_and_docker_spi_layout() -> None:
    # published FNV-1a 32 test vectors (Go's hash/fnv agrees)
    assert [fnv1a32(x) for x in (b"", b"a", b"foobar")] == [0x811C9DC5, 0xE40C292C, 0xBF9CF968]
    # buildSPI hashes netip.Addr.As16 (IPv4-mapped), the tag big endian, then the remote address
    raw = bytes(10) + b"\xff\xff" + bytes([10, 211, 55, 10]) + (7).to_bytes(4, "big") + bytes(10) + b"\xff\xff" \
        + bytes([10, 211, 55, 18])
    assert build_spi("10.211.55.10", "10.211.55.18", 7) == fnv1a32(raw)
    assert build_spi("10.211.55.10", "10.211.55.18", 7) != build_spi("10.211.55.18", "10.211.55.10", 7)
    states, pol = pair_sas("10.211.55.10", "10.211.55.18", 4789, 7)
    assert pol.spi == states[1].spi == build_spi("10.211.55.10", "10.211.55.18", 7)  # forward SA
    assert states[0].spi == build_spi("10.211.55.18", "10.211.55.10", 7)  # reverse SA
    assert encrypted_mtu(1450) == 1424 and encrypted_mtu(1500) == 1472


def test_vni_match_is_dockers() -> None:
    assert vni_match(4789, 4097) == ["-p", "udp", "-m", "udp", "--dport", "4789", "-m", "u32", "--u32",
                                     "0>>22&0x3C@12&0xFFFFFF00=1048832"]
    bpf = vni_match(4789, 4097, "bpf")
    # Docker's vniMatchBPF: ld poff; tax; ld [x+4]; rsh #8; jeq vni; ret 0; ret -1
    assert bpf[-1] == "7,32 0 0 4294963252,7 0 0 0,64 0 0 4,116 0 0 8,21 1 0 4097,6 0 0 0,6 0 0 4294967295"


def test_plan_of_an_encrypted_overlay() -> None:
    spec = LabSpec(name="enc", overlays=(NetworkSpec(encrypted=True),),
                   services=(ServiceSpec("a", 3, networks=("my-overlay",)),))
    p = plan(spec, esp="userspace")
    host = p.find("node1", "host")
    assert len(host.xfrm_policies) == 2 and len(host.xfrm_states) == 4  # peers node2, node3
    text = iptables_restore_text(host)
    assert text.index("--pol none") < text.index("-A INPUT -i esp0")  # the DROP is first in INPUT
    assert f"-j MARK --set-xmark {MARK:#x}/0xffffffff" in text
    assert "rule add fwmark 0xd0c4e3 lookup 53444" in host.ip_extra
    ov = next(n for n in p.networks if n["name"] == "my-overlay")
    assert ov["encrypted"] and ov["mtu"] == 1424
    assert all(i.mtu == 1424 for ns in p.namespaces for i in ns.interfaces if i.network == "my-overlay")
    kernel = iptables_restore_text(plan(spec).find("node1", "host"))
    assert "esp0" not in kernel and "--pol ipsec" in kernel


def _udp_datagram(src: str, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    return ipv4_header(ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed, 17, len(udp), 1, 64,
                       True) + udp


def test_esp_format_read_by_tshark(tmp_path: Path) -> None:
    key = bytes(range(16))
    inner = _udp_datagram("10.211.55.10", "10.211.55.18", 4789, b"\x08\x00\x00\x00\x00\x10\x01\x00" + bytes(50))
    esp = esp_wrap(inner[20:], 17, 0xDE800D59, 5, key)
    assert len(esp) % 4 == 0 and esp_unwrap(esp, key) == (inner[20:], 17)
    assert esp_unwrap(esp[:-1] + bytes([esp[-1] ^ 1]), key) is None  # a bad ICV is refused
    pkt = ipv4_header(inner[12:16], inner[16:20], 50, len(esp), 1, 64, True) + esp
    pcap = tmp_path / "esp.pcap"
    eth = b"\x00\x1c\x42\xd3\x37\x12\x00\x1c\x42\xd3\x37\x0a\x08\x00"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack("<IIII", 1, 0, len(eth + pkt), len(eth + pkt)) + eth + pkt)
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.proto", "-e", "esp.spi",
                          "-e", "esp.sequence", "-e", "ip.checksum.status"], capture_output=True, text=True, check=True)
    proto, spi, seq, _ = out.stdout.strip().split("\t")
    assert (proto, int(spi, 16), int(seq)) == ("50", 0xDE800D59, 5)


def test_userspace_esp_applies_policy_and_state(tmp_path: Path) -> None:
    a, b = "10.211.55.10", "10.211.55.18"
    states, pol = pair_sas(a, b, 4789, 7)
    table = tmp_path / "t.json"
    key = bytes(16)

    def write(policies: bool, out_state: bool) -> None:
        table.write_text(json.dumps({"key": key.hex(),
                                     "states": [{"src": s.src, "dst": s.dst, "spi": s.spi} for s in states
                                                if out_state or s.src != a],
                                     "policies": [{"src": a, "dst": b, "dport": 4789, "spi": pol.spi}] if policies
                                     else []}))

    write(True, True)
    node_a = Esp({"table": str(table), "local": a})
    dgram = _udp_datagram(a, b, 4789, b"vxlan")
    sent = node_a.outbound(dgram)
    assert sent is not None and sent[1] == b and sent[0][9] == 50  # ESP to the peer
    assert struct.unpack("!I", sent[0][20:24])[0] == pol.spi
    node_b = Esp({"table": str(table), "local": b})
    assert node_b.inbound(sent[0]) == dgram  # decrypted back to the same datagram
    write(False, True)
    node_a.load()
    assert node_a.outbound(dgram) == (dgram, b)  # no policy: cleartext, like the kernel
    write(True, False)
    node_a.load()
    assert node_a.outbound(dgram) is None and node_a.stats["out_nostate"] == 1  # policy without state: dropped


@pytest.mark.root
def test_parse_xfrm_and_redaction() -> None:
    name = f"mpx{uuid.uuid4().hex[:6]}"
    pol = pair_sas("10.211.55.10", "10.211.55.18", 4789, 7)[1]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "xfrm", "policy", "add", *pol.add_line().split()[3:]], check=True)
        real = subprocess.run(["ip", "-n", name, "xfrm", "policy"], capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    states = ("src 10.211.55.10 dst 10.211.55.18\n\tproto esp spi 0xde800d59 reqid 13681891 mode transport\n"
              "\treplay-window 0 \n\taead rfc4106(gcm(aes)) 0x000102030405060708090a0b0c0d0e0fde800d59 64\n")
    got = parse_xfrm(states, real)
    assert got["policies"] == [{"src": "10.211.55.10", "dst": "10.211.55.18", "dport": 4789}]
    assert got["states"] == [{"src": "10.211.55.10", "dst": "10.211.55.18", "spi": 0xDE800D59}]
    assert "0x0001020304" not in redact_xfrm_keys(states) and "(redacted) 64" in redact_xfrm_keys(states)
