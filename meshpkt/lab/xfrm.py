"""Encrypted overlays as Docker programs them (``daemon/libnetwork/drivers/overlay/encryption.go``).

Per pair of nodes sharing an encrypted overlay, each node gets (in its host namespace):

- two ESP security associations in transport mode, ``reqid 0xd0c4e3``: ``local -> remote`` with
  SPI ``buildSPI(local, remote, tag)`` and ``remote -> local`` with ``buildSPI(remote, local, tag)``
  (FNV-1a 32 over the 16-byte addresses and the key tag), AEAD ``rfc4106(gcm(aes))`` with the 16-byte
  swarm key followed by the SPI as 4-byte salt, ICV 64 bits;
- one ``dir out`` policy ``src local/32 dst remote/32 proto udp dport <data path port>`` selecting packets
  marked ``0xd0c4e3``, with a template naming the forward SA;
- per encrypted VNI: mangle OUTPUT ``-p udp --dport 4789 <VNI match> -j MARK --set-mark 13681891`` (the
  mark that selects the policy), filter INPUT (inserted first) ``-m policy --dir in --pol none <VNI match>
  -j DROP`` and (appended) ``-m policy --dir in --pol ipsec <VNI match> -j ACCEPT`` (Docker 23/24).

The VNI match is ``-m u32 --u32 "0>>22&0x3C@12&0xFFFFFF00=<vni << 8>"`` (Docker <= 23) or
``-m bpf --bytecode "<program>"`` (Docker >= 24, ``bpf.go``). Keys are generated per lab at ``up``
(never in the plan or the status document).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MARK = 0xD0C4E3
"""Docker's IPsec mark: selects the policy, and is the reqid of every state and template."""
PKT_EXPANSION = 26
"""SPI(4) + SeqN(4) + IV(8) + PadLength(1) + NextHeader(1) + ICV(8)."""
AEAD = "rfc4106(gcm(aes))"
ICV_BITS = 64


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bits (Go's ``hash/fnv.New32a``)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def build_spi(src: str, dst: str, tag: int) -> int:
    """Docker's ``buildSPI``: FNV-1a 32 over src (``netip.Addr.As16``: IPv4-mapped), the tag (big endian), dst."""
    return fnv1a32(ipaddress.IPv6Address(f"::ffff:{src}").packed + (tag & 0xFFFFFFFF).to_bytes(4, "big")
                   + ipaddress.IPv6Address(f"::ffff:{dst}").packed)


def encrypted_mtu(mtu: int) -> int:
    """Docker's ``maxMTU`` of an encrypted network from the plain overlay MTU (1450 -> 1424)."""
    m = mtu - PKT_EXPANSION
    return m - m % 4


def vni_match(port: int, vni: int, kind: str = "u32") -> list[str]:
    """Docker's ``matchVXLAN``: iptables arguments matching VXLAN datagrams of ``vni``."""
    if kind == "bpf":
        prog = [(0x20, 0, 0, 0xFFFFF000 + 52), (0x07, 0, 0, 0), (0x40, 0, 0, 4), (0x74, 0, 0, 8),
                (0x15, 1, 0, vni), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]
        code = ",".join([str(len(prog))] + [f"{op} {jt} {jf} {k}" for op, jt, jf, k in prog])
        return ["-p", "udp", "-m", "udp", "--dport", str(port), "-m", "bpf", "--bytecode", code]
    return ["-p", "udp", "-m", "udp", "--dport", str(port), "-m", "u32", "--u32", f"0>>22&0x3C@12&0xFFFFFF00={vni << 8}"]


@dataclass(frozen=True)
class XfrmState:
    """One ESP security association (``ip xfrm state``)."""

    src: str
    dst: str
    spi: int

    def add_line(self, key: bytes) -> str:
        """``ip -batch`` line adding it with the 16-byte ``key`` (the SPI is the 4-byte salt)."""
        salt = self.spi.to_bytes(4, "big")
        return (f"xfrm state add src {self.src} dst {self.dst} proto esp spi {self.spi:#010x} reqid {MARK} "
                f"mode transport aead '{AEAD}' 0x{(key + salt).hex()} {ICV_BITS}")

    def text(self) -> str:
        """How ``verify`` names it: ``src A dst B proto esp spi 0x... reqid 13681891 mode transport``."""
        return f"src {self.src} dst {self.dst} proto esp spi {self.spi:#010x} reqid {MARK} mode transport"

    def del_line(self) -> str:
        return f"xfrm state delete src {self.src} dst {self.dst} proto esp spi {self.spi:#010x}"


@dataclass(frozen=True)
class XfrmPolicy:
    """One ``dir out`` IPsec policy (``ip xfrm policy``) for VXLAN from ``src`` to ``dst``."""

    src: str
    dst: str
    dport: int
    spi: int

    def selector(self) -> str:
        return f"src {self.src}/32 dst {self.dst}/32 proto udp dport {self.dport} dir out"

    def add_line(self) -> str:
        return (f"xfrm policy add {self.selector()} mark {MARK:#x} mask 0xffffffff "
                f"tmpl src {self.src} dst {self.dst} proto esp spi {self.spi:#010x} reqid {MARK} mode transport")

    def text(self) -> str:
        return (f"{self.selector()} mark {MARK:#x}/0xffffffff tmpl src {self.src} dst {self.dst} proto esp "
                f"spi {self.spi:#010x} reqid {MARK} mode transport")

    def del_line(self) -> str:
        return f"xfrm policy delete {self.selector()} mark {MARK:#x} mask 0xffffffff"


def pair_sas(local: str, remote: str, port: int, tag: int) -> tuple[list[XfrmState], XfrmPolicy]:
    """What ``setupEncryption(remote)`` programs on ``local``: forward + reverse SA, the out policy."""
    fwd = XfrmState(local, remote, build_spi(local, remote, tag))
    rev = XfrmState(remote, local, build_spi(remote, local, tag))
    return [rev, fwd], XfrmPolicy(local, remote, port, fwd.spi)
