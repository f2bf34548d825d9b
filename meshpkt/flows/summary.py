"""Summary of a packet table: what a capture holds, before any reconstruction (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from meshpkt.capture.linktypes import name as linktype_name
from meshpkt.decode.addr import ip4_str

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 58: "icmp6"}


def summarize(packets: pd.DataFrame, top: int = 10) -> dict[str, Any]:
    """Counts, span, link types, points, VNIs, top talkers and inner flows, as plain data."""
    n = len(packets)
    out: dict[str, Any] = {"packets": int(n)}
    if n == 0:
        out.update(first_ts_ns=None, last_ts_ns=None, duration_s=0.0, bytes=0, points={}, linktypes={},
                   vnis={}, top_talkers=[], inner_flows=[], truncated=0, decoded={}, esp_spis={})
        return out
    ts = packets["ts_ns"].to_numpy()
    out["first_ts_ns"] = int(ts.min())
    out["last_ts_ns"] = int(ts.max())
    out["duration_s"] = round((int(ts.max()) - int(ts.min())) / 1e9, 6)
    out["bytes"] = int(packets["wirelen"].to_numpy().astype(np.int64).sum())
    out["points"] = {str(k): int(v) for k, v in packets["point"].value_counts().items() if v}
    out["points"] = dict(sorted(out["points"].items()))
    lt = packets["linktype"].value_counts().sort_index()
    out["linktypes"] = {f"{linktype_name(int(k)).split(' ')[0]}({int(k)})": int(v) for k, v in lt.items()}
    vni = packets["vni"].to_numpy()
    vc = pd.Series(vni[vni >= 0]).value_counts().sort_index()
    out["vnis"] = {str(int(k)): int(v) for k, v in vc.items()}
    spi = packets["esp_spi"].to_numpy()
    sc = pd.Series(spi[spi >= 0]).value_counts().sort_index()
    out["esp_spis"] = {f"0x{int(k):08x}": int(v) for k, v in sc.items()}
    out["truncated"] = int(packets["truncated"].sum())
    out["decoded"] = {name: int((packets["decoded"] == code).sum()) for code, name in
                      ((0, "fast"), (1, "exact"), (2, "partial"))}
    v4 = packets[packets["outer_ipver"] == 4]
    talk = (v4.assign(b=v4["wirelen"].astype(np.int64))
              .groupby(["outer_src", "outer_dst", "outer_proto"], observed=True)["b"].agg(["size", "sum"])
              .sort_values("sum", ascending=False).head(top).reset_index())
    out["top_talkers"] = [
        {"src": s, "dst": d, "proto": PROTO_NAMES.get(int(p), str(int(p))), "packets": int(c), "bytes": int(b)}
        for s, d, p, c, b in zip(ip4_str(talk["outer_src"]), ip4_str(talk["outer_dst"]),
                                 talk["outer_proto"], talk["size"], talk["sum"], strict=True)]
    inner = packets[(packets["vni"] >= 0) & (packets["inner_src"] != 0)]
    flows = (inner.groupby(["vni", "inner_src", "inner_sport", "inner_dst", "inner_dport", "inner_proto"],
                           observed=True).size().sort_values(ascending=False).head(top).reset_index(name="packets"))
    out["inner_flows"] = [
        {"vni": int(r_vni), "src": f"{s}:{sp}" if sp >= 0 else s, "dst": f"{d}:{dp}" if dp >= 0 else d,
         "proto": PROTO_NAMES.get(int(pr), str(int(pr))), "packets": int(c)}
        for r_vni, s, sp, d, dp, pr, c in zip(flows["vni"], ip4_str(flows["inner_src"]), flows["inner_sport"],
                                             ip4_str(flows["inner_dst"]), flows["inner_dport"],
                                             flows["inner_proto"], flows["packets"], strict=True)]
    return out
