"""The capture summary (``meshpkt.flows.summary.summarize``) from chunks: partial counts per chunk,
added up at the end, so that no step needs the whole packet table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from meshpkt.capture.linktypes import name as linktype_name
from meshpkt.decode.addr import ip4_str
from meshpkt.flows.summary import PROTO_NAMES

_TALK = ["outer_src", "outer_dst", "outer_proto"]
_INNER = ["vni", "inner_src", "inner_sport", "inner_dst", "inner_dport", "inner_proto"]


def _counts(values: np.ndarray) -> pd.Series:
    return pd.Series(values).value_counts()


@dataclass
class PartialSummary:
    """Additive counts of some packets; ``add`` a chunk, ``merge`` two, ``result`` the summary."""

    packets: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    bytes: int = 0
    truncated: int = 0
    series: dict[str, pd.Series] = field(default_factory=dict)

    def _add_series(self, name: str, s: pd.Series) -> None:
        old = self.series.get(name)
        self.series[name] = s if old is None else old.add(s, fill_value=0)

    def add(self, chunk: pd.DataFrame) -> None:
        """Count a chunk of the packet table."""
        n = len(chunk)
        if n == 0:
            return
        ts = chunk["ts_ns"].to_numpy()
        self.packets += n
        lo, hi = int(ts.min()), int(ts.max())
        self.first_ts_ns = lo if self.first_ts_ns is None else min(self.first_ts_ns, lo)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(self.last_ts_ns, hi)
        self.bytes += int(chunk["wirelen"].to_numpy().astype(np.int64).sum())
        self.truncated += int(chunk["truncated"].sum())
        self._add_series("points", chunk["point"].astype(str).value_counts())
        self._add_series("linktypes", _counts(chunk["linktype"].to_numpy()))
        vni, spi = chunk["vni"].to_numpy(), chunk["esp_spi"].to_numpy()
        self._add_series("vnis", _counts(vni[vni >= 0]))
        self._add_series("esp_spis", _counts(spi[spi >= 0]))
        self._add_series("decoded", _counts(chunk["decoded"].to_numpy()))
        v4 = chunk[chunk["outer_ipver"].to_numpy() == 4]
        g = v4.assign(b=v4["wirelen"].astype(np.int64)).groupby(_TALK, observed=True)["b"]
        self._add_series("talk_size", g.size())
        self._add_series("talk_sum", g.sum())
        inner = chunk[(chunk["vni"].to_numpy() >= 0) & (chunk["inner_src"].to_numpy() != 0)]
        self._add_series("inner", inner.groupby(_INNER, observed=True).size())

    def merge(self, other: PartialSummary) -> None:
        """Add another partial summary's counts to this one."""
        self.packets += other.packets
        for attr, pick in (("first_ts_ns", min), ("last_ts_ns", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        self.bytes += other.bytes
        self.truncated += other.truncated
        for name, s in other.series.items():
            self._add_series(name, s)

    def result(self, top: int = 10) -> dict[str, Any]:
        """The same document as ``summarize`` on all the packets counted."""
        out: dict[str, Any] = {"packets": self.packets}
        if self.packets == 0 or self.first_ts_ns is None or self.last_ts_ns is None:
            out.update(first_ts_ns=None, last_ts_ns=None, duration_s=0.0, bytes=0, points={}, linktypes={},
                       vnis={}, top_talkers=[], inner_flows=[], truncated=0, decoded={}, esp_spis={})
            return out
        s = {k: v.astype(np.int64) for k, v in self.series.items()}
        out.update(first_ts_ns=self.first_ts_ns, last_ts_ns=self.last_ts_ns,
                   duration_s=round((self.last_ts_ns - self.first_ts_ns) / 1e9, 6), bytes=self.bytes)
        out["points"] = dict(sorted((str(k), int(v)) for k, v in s["points"].items() if v))
        out["linktypes"] = {f"{linktype_name(int(k)).split(' ')[0]}({int(k)})": int(v)
                            for k, v in s["linktypes"].sort_index().items()}
        out["vnis"] = {str(int(k)): int(v) for k, v in s["vnis"].sort_index().items()}
        out["esp_spis"] = {f"0x{int(k):08x}": int(v) for k, v in s["esp_spis"].sort_index().items()}
        out["truncated"] = self.truncated
        out["decoded"] = {name: int(s["decoded"].get(code, 0)) for code, name in
                          ((0, "fast"), (1, "exact"), (2, "partial"))}
        out["top_talkers"] = _talkers(s["talk_size"], s["talk_sum"], top)
        out["inner_flows"] = _inner_flows(s["inner"], top)
        return out


def _talkers(size: pd.Series, total: pd.Series, top: int) -> list[dict[str, Any]]:
    if size.empty:
        return []
    talk = pd.DataFrame({"size": size, "sum": total}).sort_index()
    talk = talk.sort_values("sum", ascending=False).head(top).reset_index()
    return [{"src": s, "dst": d, "proto": PROTO_NAMES.get(int(p), str(int(p))), "packets": int(c), "bytes": int(b)}
            for s, d, p, c, b in zip(ip4_str(talk["outer_src"]), ip4_str(talk["outer_dst"]),
                                     talk["outer_proto"], talk["size"], talk["sum"], strict=True)]


def _inner_flows(counts: pd.Series, top: int) -> list[dict[str, Any]]:
    if counts.empty:
        return []
    flows = counts.sort_index().sort_values(ascending=False).head(top).reset_index(name="packets")
    return [{"vni": int(r_vni), "src": f"{s}:{sp}" if sp >= 0 else s, "dst": f"{d}:{dp}" if dp >= 0 else d,
             "proto": PROTO_NAMES.get(int(pr), str(int(pr))), "packets": int(c)}
            for r_vni, s, sp, d, dp, pr, c in zip(flows["vni"], ip4_str(flows["inner_src"]), flows["inner_sport"],
                                                 ip4_str(flows["inner_dst"]), flows["inner_dport"],
                                                 flows["inner_proto"], flows["packets"], strict=True)]
