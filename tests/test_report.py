"""Export shapes of the packet table (``meshpkt.report``) on the shipped lab capture."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from meshpkt.decode import decode_file
from meshpkt.report import PACKET_EXPORT_COLUMNS, packets_for_export

CAP = Path(__file__).resolve().parents[1] / "captures" / "ingress-3node" / "node1.host.eth0.pcap"


def test_packets_export_formats_every_row_like_python():
    df = decode_file(CAP)
    out = packets_for_export(df)
    assert list(out.columns) == [c for c in PACKET_EXPORT_COLUMNS if c in df.columns]
    for raw, shown in zip(df["payload_hash"], out["payload_hash"], strict=True):
        assert shown == ("" if raw == 0 else f"{int(raw):016x}")
    for col in ("outer_src", "inner_dst"):
        for raw, shown in zip(df[col], out[col], strict=True):
            assert shown == ("" if raw == 0 else str(ipaddress.IPv4Address(int(raw))))
    for raw, shown in zip(df["eth_src"], out["eth_src"], strict=True):
        assert shown == ":".join(f"{b:02x}" for b in int(raw).to_bytes(6, "big"))
    vx = out[out["vni"].notna()]
    assert len(vx) and (vx["vni"] == 4096).all()
