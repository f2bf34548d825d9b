"""Mutation fuzzing: the columnar fast path and the exact per-packet path must agree on every
packet, however damaged, and neither may raise."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from decode_helpers import T0, equal_tables, frames_bytes, l3_bytes, packet_set, sll, sll2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpkt.capture import open_capture, write_pcap
from meshpkt.decode.api import decode_buffer

LINKTYPES = [1, 113, 276, 101, 0, 108]


@pytest.fixture(scope="module")
def bases() -> dict[int, list[bytes]]:
    frames = frames_bytes(packet_set())
    l3 = [(et, b) for et, b in l3_bytes(frames) if et in (0x800, 0x86DD)]
    return {
        1: frames,
        113: [sll(et, b) for et, b in l3],
        276: [sll2(et, b) for et, b in l3],
        101: [b for _, b in l3],
        0: [struct.pack("<I", 2 if et == 0x800 else 10) + b for et, b in l3],
        108: [struct.pack(">I", 2 if et == 0x800 else 28) + b for et, b in l3],
    }


def _mutate(rng: np.random.Generator, f: bytes) -> bytes:
    b = bytearray(f)
    for _ in range(int(rng.integers(0, 4))):
        if not b:
            break
        pos = int(rng.integers(0, min(len(b), 140)))
        choice = rng.integers(0, 4)
        if choice == 0:
            b[pos] = int(rng.integers(0, 256))
        elif choice == 1:  # header-length / version nibbles are the interesting bytes
            b[pos] = (b[pos] & 0xF0) | int(rng.integers(0, 16))
        elif choice == 2:
            b[pos] = int(rng.choice([0x00, 0x06, 0x08, 0x11, 0x2C, 0x32, 0x3A, 0x45, 0x46, 0x4F, 0x60, 0x81,
                                     0x86, 0x88, 0xDD, 0xFF]))
        else:
            del b[pos:pos + int(rng.integers(1, 8))]
    cut = int(rng.integers(0, len(b) + 1)) if rng.random() < 0.4 else len(b)
    return bytes(b[:cut])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), lt=st.sampled_from(LINKTYPES),
       ports=st.sampled_from([(4789,), (4789, 4790), (53, 4789)]))
def test_fast_equals_exact_on_mutated_packets(tmp_path_factory: pytest.TempPathFactory,
                                              bases: dict[int, list[bytes]], seed: int, lt: int,
                                              ports: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    pk = [_mutate(rng, f) for f in bases[lt]]
    pk = [p for p in pk if p]
    if not pk:
        return
    # caplen < wirelen for some: the writer's snaplen cuts, the record keeps the length
    snap = int(rng.integers(10, 200)) if rng.random() < 0.3 else 262144
    p = tmp_path_factory.mktemp("fz") / "f.pcap"
    write_pcap(p, [(T0 + i, f) for i, f in enumerate(pk)], linktype=lt, snaplen=snap)
    cap = open_capture(p)
    a = decode_buffer(cap, vxlan_ports=ports)
    b = decode_buffer(cap, vxlan_ports=ports, force_slow=True)
    equal_tables(a, b)
    assert ((a["decoded"] == 2) == (b["decoded"] == 2)).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), lt=st.sampled_from(LINKTYPES + [228, 229, 12, 14]))
def test_random_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, seed: int, lt: int) -> None:
    rng = np.random.default_rng(seed)
    pk = [rng.integers(0, 256, int(rng.integers(1, 120)), dtype=np.uint8).tobytes() for _ in range(40)]
    p = tmp_path_factory.mktemp("rb") / "r.pcap"
    write_pcap(p, [(T0 + i, f) for i, f in enumerate(pk)], linktype=lt)
    cap = open_capture(p)
    a = decode_buffer(cap)
    equal_tables(a, decode_buffer(cap, force_slow=True))
    assert len(a) == 40


def test_payload_hash_is_fnv1a64_of_the_first_64_bytes(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from meshpkt.decode.slow import HASH_BYTES, fnv1a64

    # published FNV-1a 64 test vectors
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    assert HASH_BYTES == 64
    base = bytes(range(256)) * 5
    payloads = [b"a", b"foobar", base, b"x" * 3, b"y" * 1001, base[:63], base[:64], base[:65],
                base[:64] + b"different tail"]
    pk = [bytes(Ether() / IP() / UDP(sport=1, dport=2) / pl) for pl in payloads]
    p = tmp_path / "h.pcap"
    write_pcap(p, [(T0 + i, f) for i, f in enumerate(pk)])
    cap = open_capture(p)
    for df in (decode_buffer(cap), decode_buffer(cap, force_slow=True)):
        assert df["payload_hash"].tolist() == [fnv1a64(pl[:64]) for pl in payloads]
        assert df["payload_hash"].iloc[0] == 0xAF63DC4C8601EC8C
        h = df["payload_hash"].tolist()
        # only the first 64 payload bytes count: longer payloads sharing them hash alike
        assert h[2] == h[6] == h[7] == h[8] != h[5]
        assert df["payload_len"].tolist() == [len(pl) for pl in payloads]
