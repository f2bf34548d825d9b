"""The install-time warm-up decodes every kind of capture it writes (and survives the damaged one)."""

from __future__ import annotations

from meshpkt.decode import read
from meshpkt.engine.warm import warm


def test_warm_decodes_every_capture_it_writes(tmp_path):
    n = warm(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["a.pcap", "b.pcap", "c.pcap.gz", "d.pcapng", "e.pcap"]
    assert n == 16 * 4 + 15  # four whole captures and the damaged one up to its cut record
    table = read([tmp_path / "d.pcapng"])
    assert set(table["point"].astype(str)) == {"eth0", "eth1"}
    assert (read([tmp_path / "a.pcap"])["vni"] == 4096).sum() == 4
