"""Real `tcpdump -i any` captures (Linux cooked v1 and v2) inside a throw-away namespace."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from decode_helpers import equal_tables

from meshpkt.capture import open_capture
from meshpkt.decode import decode_file
from meshpkt.decode.api import decode_buffer

TRAFFIC = """
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 9999))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    s.sendto(bytes([65 + i]) * 100, ("127.0.0.1", 9999)); u.recv(200)
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 9998)); l.listen()
c = socket.create_connection(("127.0.0.1", 9998)); a, _ = l.accept()
c.sendall(b"hello over tcp"); a.recv(100); a.sendall(b"bye"); c.recv(100)
c.close(); a.close(); l.close()
"""



def _capture(netns: str, path: Path, linktype: str) -> None:
    ns = ["ip", "netns", "exec", netns]
    subprocess.run(ns + ["ip", "link", "set", "lo", "up"], check=True)
    td = subprocess.Popen(ns + ["tcpdump", "-Z", "root", "--immediate-mode", "-s", "2048", "-i", "any", "-y", linktype, "-U",
                                "-w", str(path),
                                "udp port 9999 or tcp port 9998"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not (path.exists() and path.stat().st_size >= 24):
            time.sleep(0.05)
        time.sleep(0.3)
        r = subprocess.run(ns + [sys.executable, "-c", TRAFFIC], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        # (-s 2048: in immediate mode the ring has buffer/snaplen slots; a small snaplen keeps it
        # from dropping packets on a busy machine) let tcpdump write everything: wait until the file stops growing
        size, stable = -1, 0
        for _ in range(60):
            time.sleep(0.1)
            now = path.stat().st_size
            stable = stable + 1 if now == size else 0
            size = now
            if stable >= 8:
                break
    finally:
        td.terminate()
        try:
            _, err = td.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            td.kill()
            _, err = td.communicate()
        assert b"listening on any" in err, err


@pytest.mark.root
@pytest.mark.parametrize("linktype,code", [("LINUX_SLL", 113), ("LINUX_SLL2", 276)])
def test_tcpdump_any(netns: str, tmp_path: Path, linktype: str, code: int, tshark_check: Callable[..., int]) -> None:
    p = tmp_path / f"any-{code}.pcap"
    _capture(netns, p, linktype)
    df = decode_file(p)
    assert (df["linktype"] == code).all()
    udp = df[df["outer_proto"] == 17]
    assert len(udp) == 3 and (udp["payload_len"] == 100).all() and (udp["outer_dport"] == 9999).all()
    assert udp["payload_hash"].nunique() == 3
    tcp = df[df["outer_proto"] == 6]
    syn = tcp[tcp["tcp_flags"] == 0x02]
    assert len(syn) == 1 and syn["tcp_mss"].iloc[0] > 0 and syn["tcp_tsval"].iloc[0] >= 0
    assert sorted(tcp["payload_len"][tcp["payload_len"] > 0]) == [3, 14]
    assert (df["outer_src"] == 0x7F000001).all()
    assert (df["decoded"] == 0).all() and not df["truncated"].any()
    tshark_check(df, p)
    cap = open_capture(p)
    assert not cap.problems
    equal_tables(df, decode_buffer(cap, force_slow=True))
