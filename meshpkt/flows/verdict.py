"""Verdicts as data: a code per connection plus its evidence; the sentence is rendered from them.

The codes (``VERDICT_CODES``) are documented in ``docs/reconstruction.md``. Evidence columns of the
connections table: ``ev_from``/``ev_to`` (the two capture points around the problem), ``ev_dir``
(``forward`` or ``reply``), ``ev_count`` (segments), ``ev_bytes``, ``ev_packets`` (the packet as
the last point saw it), ``no_data_at`` (points on the expected path whose captures hold nothing
while the connection ran), ``ev_missed_at`` (taps of one node skipped in placing a loss: they
missed packets), ``ev_capture_drops`` (taps around a loss whose tcpdump dropped packets, with
their drop counts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

VERDICT_CODES: dict[str, str] = {
    "ok": "the connection crossed every captured hop of its expected path; nothing lost",
    "lost-between": "segments were lost between two consecutive capture points and recovered by retransmission",
    "never-reached": "forward packets (or some of them, every retransmission included) reached one point "
                     "and never the next one",
    "no-reply": "requests reached the end of the path; no reply was seen there",
    "reply-lost": "replies left the backend but never reached the next point back",
    "reset-by": "the connection was reset (RST), by the client or the server side",
    "incomplete-capture": "the captures do not show the whole connection (no SYN: started mid-connection; "
                          "a point on its path has no data while it ran; or a loss next to a tap whose "
                          "tcpdump dropped packets); nothing wrong seen otherwise",
    "unfinished": "the connection did not complete (e.g. syn-acked) and nothing more precise can be said",
    "off-path": "the connection was not seen on the path its entry node and backend imply",
    "unknown-path": "no topology to name the next hop; the last point the connection was seen at is given",
}

EVIDENCE_COLUMNS = ("ev_from", "ev_to", "ev_dir", "ev_count", "ev_bytes", "ev_packets", "no_data_at",
                    "ev_missed_at", "ev_capture_drops")


def empty_evidence(n: int) -> dict[str, np.ndarray]:
    obj = {c: np.full(n, None, dtype=object) for c in ("ev_from", "ev_to", "ev_dir", "ev_packets", "no_data_at",
                                                       "ev_missed_at", "ev_capture_drops")}
    return {"verdict_code": np.full(n, "ok", dtype=object), **obj,
            "ev_count": np.zeros(n, np.int64), "ev_bytes": np.zeros(n, np.int64)}


def _s(values: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)).astype(str)


def render_verdicts(c: pd.DataFrame) -> np.ndarray:
    """The sentence of every connection (``"ok"`` for ``ok``), from ``verdict_code``, the evidence
    columns, ``status`` and ``last_seen_point``."""
    code = c["verdict_code"].to_numpy(dtype=object)
    out = np.full(len(c), "ok", dtype=object)
    st, fr, to = _s(c["status"].to_numpy()), _s(c["ev_from"].to_numpy()), _s(c["ev_to"].to_numpy())
    way, n, nb = _s(c["ev_dir"].to_numpy()), _s(c["ev_count"].to_numpy()), _s(c["ev_bytes"].to_numpy())
    pk = _s(c["ev_packets"].to_numpy())
    nodata = c["no_data_at"].to_numpy(dtype=object)
    has_nd = pd.notna(nodata)
    missed = c["ev_missed_at"].to_numpy(dtype=object) if "ev_missed_at" in c else np.full(len(c), None)
    miss_txt = pd.Series(np.where(pd.notna(missed), "; " + _s(missed) + " missed packets", ""))
    drops = c["ev_capture_drops"].to_numpy(dtype=object) if "ev_capture_drops" in c else np.full(len(c), None)
    has_drops = pd.notna(drops)
    counted = c["ev_count"].to_numpy() > 0
    big = c["ev_bytes"].to_numpy() >= 1200 * np.maximum(c["ev_count"].to_numpy(), 1)
    rules = [
        (code == "unknown-path", st + ": last seen at " + _s(c["last_seen_point"].to_numpy())
         + "; no topology to name the next hop"),
        (code == "off-path", pd.Series("not on the expected path", index=st.index)),
        ((code == "never-reached") & counted, st + ": " + n + " " + way + " packets reached " + fr
         + " but never arrived at " + to + " while others of the connection did"
         + pd.Series(np.where(big, " (too big for the path?)", ""))),
        ((code == "never-reached") & ~counted, st + ": " + way + " packets (" + pk + ") reached " + fr
         + " but never arrived at " + to),
        (code == "no-reply", st + ": requests reached " + fr + " but no reply was seen there"),
        (code == "reply-lost", st + ": replies reached " + fr + " but never arrived at " + to),
        (code == "lost-between", st + ": " + n + " " + way + " segments (" + nb + " bytes) lost between " + fr
         + " and " + to + ", recovered by retransmission" + miss_txt),
        (code == "reset-by", st + ": RST sent by the " + way + " side, first seen at " + fr),
        ((code == "incomplete-capture") & ~has_nd, st + ": capture started mid-connection (no SYN seen)"),
        ((code == "incomplete-capture") & has_nd, st + ": no data from " + _s(nodata)
         + " (no packets there while the connection ran)"),
        ((code == "incomplete-capture") & has_drops, st + ": " + n + " " + way + " segments (" + nb
         + " bytes) missing between " + fr + " and " + to + miss_txt + "; tcpdump dropped packets at "
         + _s(drops) + ": a capture drop, not necessarily a loss"),
        (code == "unfinished", st),
    ]
    for mask, text in rules:
        out[mask] = text.to_numpy(dtype=object)[mask]
    return out
