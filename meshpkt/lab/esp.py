"""Userspace ESP for encrypted overlays on kernels without ``CONFIG_INET_ESP`` (stdlib only; started as
``python3 -I esp.py CONFIG.json`` inside a node's host namespace, like the task agents).

Docker's own pieces stay as Docker writes them: the mangle OUTPUT rule marks the VXLAN datagrams of an
encrypted VNI with ``0xd0c4e3``; here a policy route (``ip rule fwmark 0xd0c4e3 lookup 53444``, default
dev ``esp0``) hands those marked datagrams to this process through the TUN device ``esp0`` instead of the
kernel's xfrm output. This process holds the node's security policies and associations (what
``ip xfrm policy``/``ip xfrm state`` would list; the table is the JSON file named in the config, reloaded
on SIGHUP) and applies them like the kernel does:

- a datagram matching a policy (src, dst, udp dport) with an outbound state is sent as ESP in transport
  mode (RFC 4303: SPI, sequence number, the UDP datagram, padding, pad length, next header 17, ICV),
  IP protocol 50 between the node addresses;
- a matching policy without its state: dropped (``XfrmOutNoStates``);
- no policy: sent unchanged, in cleartext (what the kernel does when the policy is missing);
- an ESP packet for this node with a known inbound state and a valid ICV is decapsulated and written
  back into ``esp0`` as the plain UDP datagram, which the kernel delivers to the VXLAN socket; unknown SPI
  or bad ICV: dropped.

Transform: ESP with NULL encryption (RFC 2410) and HMAC-SHA-256-128 integrity (RFC 4868), keyed per lab;
the kernel's ``rfc4106(gcm(aes))`` needs ``CONFIG_CRYPTO_GCM`` too, which such kernels lack. The wire format
(SPI, sequence numbers, lengths, protocol 50) is the same; only the payload is authenticated, not hidden.
Counters are written to ``<table>.stats`` (JSON), at most every 0.2 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
IPPROTO_ESP = 50
ICV_LEN = 16


def _csum(hdr: bytes) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int, ttl: int, df: bool) -> bytes:
    """A 20-byte IPv4 header with its checksum."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0x4000 if df else 0, ttl, proto, 0,
                      src, dst)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]


def esp_wrap(transport: bytes, next_header: int, spi: int, seq: int, key: bytes) -> bytes:
    """The ESP part of a transport-mode packet: header, payload, padding, trailer, ICV."""
    pad = (-(len(transport) + 2)) % 4
    body = (struct.pack("!II", spi, seq) + transport + bytes(range(1, pad + 1))
            + struct.pack("!BB", pad, next_header))
    return body + hmac.new(key, body, hashlib.sha256).digest()[:ICV_LEN]


def esp_unwrap(esp: bytes, key: bytes) -> tuple[bytes, int] | None:
    """(transport payload, next header) of a valid ESP part, else None."""
    if len(esp) < 8 + 2 + ICV_LEN:
        return None
    body, icv = esp[:-ICV_LEN], esp[-ICV_LEN:]
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest()[:ICV_LEN], icv):
        return None
    pad, nh = body[-2], body[-1]
    end = len(body) - 2 - pad
    if end < 8:
        return None
    return body[8:end], nh


class Esp:
    """The policy/state tables of one node and the two directions of traffic."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.local = socket.inet_aton(cfg["local"])
        self.lock = threading.Lock()
        self.seq: dict[int, int] = {}
        self.stats = {"out_esp": 0, "out_clear": 0, "out_nostate": 0, "in_esp": 0, "in_nostate": 0,
                      "in_badicv": 0}
        self.load()

    def load(self) -> None:
        with open(self.cfg["table"]) as fh:
            t = json.load(fh)
        with self.lock:
            self.key = bytes.fromhex(t["key"])
            self.policies = {(p["src"], p["dst"], int(p["dport"])): int(p["spi"]) for p in t["policies"]}
            self.states = {(s["src"], s["dst"], int(s["spi"])) for s in t["states"]}

    def save_stats(self) -> None:
        tmp = self.cfg["table"] + ".stats.tmp"
        with open(tmp, "w") as fh:
            json.dump(self.stats, fh)
        os.replace(tmp, self.cfg["table"] + ".stats")

    def outbound(self, pkt: bytes) -> tuple[bytes, str] | None:
        """(packet to send, destination) for a datagram read from esp0; None to drop it."""
        if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
        dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
        with self.lock:
            spi = self.policies.get((src, dst, dport))
            if spi is None:
                self.stats["out_clear"] += 1
                return pkt, dst
            if (src, dst, spi) not in self.states:
                self.stats["out_nostate"] += 1
                return None
            seq = self.seq.get(spi, 0) + 1
            self.seq[spi] = seq
            self.stats["out_esp"] += 1
            esp = esp_wrap(pkt[ihl:], 17, spi, seq, self.key)
        ident, ttl, df = struct.unpack("!H", pkt[4:6])[0], pkt[8], bool(pkt[6] & 0x40)
        return ipv4_header(pkt[12:16], pkt[16:20], IPPROTO_ESP, len(esp), ident, ttl, df) + esp, dst

    def inbound(self, pkt: bytes) -> bytes | None:
        """The plain datagram to write into esp0 for an ESP packet received here; None to drop it."""
        ihl = (pkt[0] & 0x0F) * 4
        if len(pkt) < ihl + 8 or pkt[16:20] != self.local:
            return None
        src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
        spi = struct.unpack("!I", pkt[ihl:ihl + 4])[0]
        with self.lock:
            if (src, dst, spi) not in self.states:
                self.stats["in_nostate"] += 1
                return None
            res = esp_unwrap(pkt[ihl:], self.key)
            if res is None:
                self.stats["in_badicv"] += 1
                return None
            self.stats["in_esp"] += 1
        transport, nh = res
        ident, ttl = struct.unpack("!H", pkt[4:6])[0], pkt[8]
        return ipv4_header(pkt[12:16], pkt[16:20], nh, len(transport), ident, ttl, bool(pkt[6] & 0x40)) + transport


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _raw_sockets(dev: str) -> tuple[socket.socket, socket.socket]:
    """(sender with our own IP headers, bound to the underlay device; receiver of protocol 50)."""
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    return tx, rx


def serve(esp: Esp, tun: int, tx: socket.socket, rx: socket.socket) -> None:
    """Move packets between esp0 and the underlay until killed (counters saved at most every 0.2 s)."""
    dirty, saved = False, 0.0
    while True:
        ready, _, _ = select.select([tun, rx.fileno()], [], [], 0.2)
        changed = False
        if tun in ready:
            out = esp.outbound(os.read(tun, 65535))
            changed = True
            if out is not None:
                try:
                    tx.sendto(out[0], (out[1], 0))
                except OSError:
                    pass
        if rx.fileno() in ready:
            plain = esp.inbound(rx.recv(65535))
            changed = True
            if plain is not None:
                try:
                    os.write(tun, plain)
                except OSError:
                    pass
        dirty = dirty or changed
        if dirty and time.monotonic() - saved >= 0.2:
            esp.save_stats()
            dirty, saved = False, time.monotonic()


def main(argv: list[str]) -> int:
    """Run the ESP emulation described by the JSON file ``argv[0]``."""
    with open(argv[0]) as fh:
        cfg = json.load(fh)
    esp = Esp(cfg)
    tun = _open_tun(cfg["tun"])
    tx, rx = _raw_sockets(cfg["dev"])
    signal.signal(signal.SIGHUP, lambda *_: esp.load())
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    esp.save_stats()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    serve(esp, tun, tx, rx)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
