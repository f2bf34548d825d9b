"""Exports: absent values are empty/null, zeros that were read are values."""

from __future__ import annotations

import io
import json
from pathlib import Path

from decode_helpers import T0
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from meshpkt.capture import write_pcap
from meshpkt.decode import decode_file
from meshpkt.decode.export import packets_for_export
from meshpkt.decode.schema import PRESENT_BITS, valid


def _capture(tmp_path: Path) -> Path:
    zero_mac = "00:00:00:00:00:00"
    frames = [
        # DHCP discover: source 0.0.0.0
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67) / BOOTP() / DHCP(options=[("message-type", "discover"), "end"]),
        # all-zero MACs, port 0, VXLAN with VNI 0 and an inner 0.0.0.0 destination
        Ether(src=zero_mac, dst=zero_mac) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=0, dport=4789)
        / VXLAN(vni=0) / Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:03")
        / IP(src="10.1.0.1", dst="0.0.0.0") / TCP(sport=0, dport=80, flags="S"),
        # no IP at all
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(),
    ]
    p = tmp_path / "zeros.pcap"
    write_pcap(p, [(T0 + i, bytes(f)) for i, f in enumerate(frames)])
    return p


def test_zeros_are_values_and_absent_is_null(tmp_path: Path) -> None:
    df = decode_file(_capture(tmp_path))
    assert valid(df, "outer_src").tolist() == [True, True, False]
    assert df["outer_src"].tolist() == [0, 0x0A000001, 0]
    assert valid(df, "eth_src").all() and df["eth_src"].iloc[1] == 0
    assert valid(df, "inner_dst").tolist() == [False, True, False]
    assert df["vni"].tolist() == [-1, 0, -1] and df["outer_sport"].tolist() == [68, 0, -1]
    assert (df["present"] & PRESENT_BITS["ts_ns"]).all()
    out = packets_for_export(df)
    assert out["outer_src"].tolist() == ["0.0.0.0", "10.0.0.1", ""]
    assert out["inner_dst"].tolist() == ["", "0.0.0.0", ""]
    assert out["eth_src"].tolist()[1] == "00:00:00:00:00:00"
    assert out["vni"].tolist()[1] == 0 and out["vni"].isna().tolist() == [True, False, True]
    assert out["outer_df"].isna().tolist() == [False, False, True]
    assert out["ethertype"].tolist() == [0x800, 0x800, 0x806]
    records = json.loads(out.to_json(orient="records"))
    assert records[2]["outer_sport"] is None and records[1]["outer_sport"] == 0
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    lines = buf.getvalue().splitlines()
    header = lines[0].split(",")
    row2 = lines[3].split(",")
    assert row2[header.index("outer_sport")] == "" and lines[2].split(",")[header.index("outer_sport")] == "0"
