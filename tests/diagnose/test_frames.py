"""Raw-frame helpers of diagnose: TCP/UDP checksum states checked against tshark's own validation, and
ARP fields against the frames scapy built."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

from meshpkt.decode import read
from meshpkt.diagnose.frames import Frames, arp_table, checksums
from meshpkt.layers.swarm import vxlan_underlay


def _frames(n: int, seed: int = 3) -> list[tuple[bytes, str]]:
    """Frames with known checksum state: ok, bad, partial (pseudo-header only), none (UDP 0); plain,
    802.1Q-tagged and VXLAN-encapsulated; odd and even payload lengths."""
    rnd = random.Random(seed)
    out = []
    for k in range(n):
        proto = rnd.choice(("tcp", "udp"))
        payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 301)))
        l4 = TCP(sport=1000 + k, dport=80, seq=k, flags="PA") if proto == "tcp" else UDP(sport=1000 + k, dport=53)
        ip = IP(src=f"10.0.0.{rnd.randrange(1, 250)}", dst="10.0.0.7", id=k) / l4 / Raw(payload)
        raw = IP(bytes(ip))  # checksums computed
        state = rnd.choice(("ok", "bad", "partial", "none" if proto == "udp" else "ok"))
        if state != "ok":
            good = raw[TCP if proto == "tcp" else UDP].chksum
            if state == "bad":
                value = (good + 1 + rnd.randrange(100)) & 0xFFFF
            elif state == "none":
                value = 0
            else:
                s, d = int.from_bytes(bytes(map(int, raw.src.split("."))), "big"), int.from_bytes(
                    bytes(map(int, raw.dst.split("."))), "big")
                value = (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF) + raw.proto + len(raw.payload)
                while value >> 16:
                    value = (value & 0xFFFF) + (value >> 16)
            raw[TCP if proto == "tcp" else UDP].chksum = value
        eth = Ether(src="02:42:0a:00:00:05", dst="02:42:0a:00:00:07")
        shape = rnd.choice(("plain", "vlan", "vxlan"))
        if shape == "vlan":
            frame = eth / Dot1Q(vlan=7) / raw
        elif shape == "vxlan":
            frame = vxlan_underlay(eth / raw)
        else:
            frame = eth / raw
        out.append((bytes(frame), state))
    return out


def _write(path: Path, frames: list[bytes]) -> None:
    w = PcapWriter(str(path), linktype=1, sync=True)
    for k, f in enumerate(frames):
        p = Ether(f)
        p.time = 1_700_000_000 + k / 1000
        w.write(p)
    w.close()


def test_checksum_states_match_what_was_built(tmp_path: Path) -> None:
    built = _frames(300)
    path = tmp_path / "node1.host.eth0.pcap"
    _write(path, [f for f, _ in built])
    pk = read([path])
    st = checksums(pk, Frames({"node1.host.eth0": path}))
    assert st["state"].tolist() == [s for _, s in built]


def test_checksum_states_agree_with_tshark(tmp_path: Path) -> None:
    built = _frames(200, seed=11)
    path = tmp_path / "p.pcap"
    _write(path, [f for f, _ in built])
    r = subprocess.run(["tshark", "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o",
                        "udp.check_checksum:TRUE", "-d", "udp.port==4789,vxlan", "-T", "fields",
                        "-e", "tcp.checksum.status", "-e", "udp.checksum.status"], capture_output=True, text=True,
                       check=True)
    # tshark: 1 good, 0 bad, 3 not present (UDP checksum 0); TCP's status when there is one (the outer UDP
    # of VXLAN carries none), else the innermost UDP's
    theirs = []
    for line in r.stdout.splitlines():
        tcp, _, udp = line.partition("\t")
        theirs.append(tcp if tcp else udp.split(",")[-1])
    pk = read([path])
    ours = checksums(pk, Frames({"p": path}))["state"].tolist()
    mapped = [{"ok": "1", "bad": "0", "partial": "0", "none": "3"}[s] for s in ours]
    assert mapped == theirs


def test_arp_fields(tmp_path: Path) -> None:
    frames = [Ether(src="02:42:0a:00:00:02", dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.0.2", pdst="10.0.0.7",
                                                                          hwsrc="02:42:0a:00:00:02"),
              Ether(src="02:42:0a:00:00:07") / ARP(op=2, psrc="10.0.0.7", pdst="10.0.0.2", hwsrc="02:42:0a:00:00:07"),
              Ether() / Dot1Q(vlan=5) / ARP(op=1, psrc="10.0.0.3", pdst="10.0.0.9")]
    path = tmp_path / "node1.ingress_sbox.eth0.pcap"
    _write(path, [bytes(f) for f in frames])
    a = arp_table(read([path]), Frames({"node1.ingress_sbox.eth0": path}))
    assert a["op"].tolist() == [1, 2, 1]
    assert a["target_ip"].tolist() == [0x0A000007, 0x0A000002, 0x0A000009]
    assert a["sender_ip"].tolist() == [0x0A000002, 0x0A000007, 0x0A000003]
    assert a["sender_mac"].tolist()[:2] == [0x02420A000002, 0x02420A000007]


def test_unreadable_or_unknown_points_give_unknown_not_errors(tmp_path: Path) -> None:
    built = _frames(5)
    path = tmp_path / "x.pcap"
    _write(path, [f for f, _ in built])
    pk = read([path])
    assert set(checksums(pk, Frames({}))["state"]) == {"unknown"}
    bad = tmp_path / "garbage.pcap"
    bad.write_bytes(b"not a pcap at all")
    assert set(checksums(pk, Frames({"x": bad}))["state"]) == {"unknown"}
    assert np.all(arp_table(pk, Frames({})).empty)
