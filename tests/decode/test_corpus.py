"""The decoder on captures from the wild: >= 100 public captures from the test suites of
packet tools (tcpdump, libpcap, zeek, gopacket, scapy, dpkt), vendored under ``corpus/``
(``MANIFEST.tsv``: repository, commit, path, sha256), compared with tshark field by field.

Zero wrong values and zero hidden absences: every difference is either fixed or listed in
``DOCUMENTED`` (and in docs/decoder.md) with the reason it is tshark's, not ours. A listed
difference that no longer occurs fails the test too, so the list stays true.
"""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from decode_helpers import equal_tables
from tshark_compare import Diff, compare_capture

from meshpkt.capture import open_capture
from meshpkt.decode.api import decode_buffer

CORPUS = Path(__file__).resolve().parent / "corpus"

#: (capture, field, kind) -> why the difference is tshark's (docs/decoder.md, "Differences from tshark")
DOCUMENTED: dict[tuple[str, str, str], str] = {
    ("zeek__testing_btest_Traces_cisco-fabric-path.pcap", "eth_src", "wrong"):
        "tshark hands Cisco FabricPath (EtherType 0x8903) frames to its cfp dissector, whose outer "
        "addresses are cfp.* fields: its first eth.src is the inner frame's; meshpkt's eth_src is "
        "the frame's own source address (and decoded=2: FabricPath is not decoded)",
    ("zeek__testing_btest_Traces_cisco-fabric-path.pcap", "eth_dst", "wrong"):
        "as eth_src (FabricPath outer header)",
}


def _manifest() -> list[tuple[str, str, str, str, str, int]]:
    rows = []
    for line in (CORPUS / "MANIFEST.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, repo, commit, path, sha, n = line.split("\t")
        rows.append((name, repo, commit, path, sha, int(n)))
    return rows


def test_manifest_pins_every_capture() -> None:
    rows = _manifest()
    assert len(rows) >= 100
    assert len({r[1] for r in rows}) >= 5  # sources
    listed = {r[0] for r in rows}
    on_disk = {p.name for p in CORPUS.iterdir() if p.name not in ("MANIFEST.tsv", "LICENSES.md")}
    assert listed == on_disk
    for name, _repo, commit, _path, sha, _n in rows:
        assert len(commit) == 40
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == sha, name
    assert sum(r[5] for r in rows) >= 5000


def test_fast_path_equals_exact_path_on_the_corpus() -> None:
    for name, *_ in _manifest():
        cap = open_capture(CORPUS / name)
        equal_tables(decode_buffer(cap), decode_buffer(cap, force_slow=True), skip=())


@pytest.mark.slow
def test_corpus_matches_tshark() -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is required (apt install tshark)")
    names = [r[0] for r in _manifest()]

    def one(name: str) -> tuple[list[Diff], int]:
        path = CORPUS / name
        return compare_capture(decode_buffer(open_capture(path)), path, name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, names))
    diffs = [d for ds, _ in results for d in ds]
    values = sum(n for _, n in results)
    assert values > 20000
    undocumented = [d for d in diffs if (d.capture, d.field, d.kind) not in DOCUMENTED]
    assert not undocumented, "\n".join(str(d) for d in undocumented[:30])
    seen = {(d.capture, d.field, d.kind) for d in diffs}
    assert not set(DOCUMENTED) - seen, f"documented but no longer seen: {sorted(set(DOCUMENTED) - seen)}"
    assert not [d for d in diffs if d.kind == "hidden"]
