"""Step 1 of the reconstruction: packet identities and per-(point, local flow) summaries.

A *local flow* is what one capture point saw of one connection: one encapsulation (VNI or none),
one 5-tuple and one *epoch* (the ISN of the latest SYN of that 5-tuple at that point, so that a
5-tuple reused after TIME_WAIT gives two local flows).

A *packet key* identifies a packet across NAT and across segmentation offload. For TCP it is
``(seq, ack, TSval, TSecr, SYN, RST)``: DNAT/SNAT/IPVS/REDIRECT/VXLAN leave them alone, and a
TSO/GSO super-segment and the first MSS segment cut from it (or the GRO aggregate and the first
segment merged into it) share all of them, while payload length, PSH/FIN, IP id and the payload
digest do not. Nothing in a TCP key depends on how many bytes a tap captured. UDP and ICMP keys
are ``(IP id, length, ICMP type/code, digest)`` where the digest is left out of the key for the
packets whose digest does not cover the same bytes at every tap (cut by a snaplen).

:func:`local_flow_summaries` reduces a packet table (or a chunk of one) to small tables that
:func:`merge_summaries` combines and :func:`meshpkt.flows.match.match_connections` links.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from meshpkt.decode.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from meshpkt.flows.view import transport_view

#: keys kept as matching anchors: every SYN/SYN-ACK/RST, plus keys whose hash is 0 modulo this
ANCHOR_MODULO = 8
#: and the first packets of each (local flow, direction)
ANCHOR_FIRST = 4
HASHED_BYTES = 64  # payload bytes the decoder's payload_hash covers at most

LFLOW_COLUMNS = ("point", "vni", "proto", "lo_ip", "lo_port", "hi_ip", "hi_port", "epoch")


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _hash(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row of integer columns (splitmix64 finaliser over the columns)."""
    h = np.full(len(frame), np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in frame.columns:
            h ^= np.asarray(frame[col].to_numpy(), dtype=np.int64).view(np.uint64)
            h ^= h >> np.uint64(30)
            h *= _M1
            h ^= h >> np.uint64(27)
            h *= _M2
            h ^= h >> np.uint64(31)
    return h


@dataclass
class PacketIds:
    """Per-packet identities of the rows of the table that carry an IPv4 transport (``rows``)."""

    rows: np.ndarray  # positions into the packet table
    point: np.ndarray  # point code (into ``point_names``)
    point_names: list[str]
    lflow: np.ndarray  # local-flow number (into ``lflows``)
    lflows: pd.DataFrame  # LFLOW_COLUMNS, one row per local flow
    key: np.ndarray  # uint64 packet key
    dir_lo: np.ndarray  # packet goes lo -> hi
    dup: np.ndarray  # the same packet again at the same local flow (`-i any`, bridge in and out)


def _tcp_key(p: pd.DataFrame, proto: np.ndarray) -> np.ndarray:
    fl = p["tcp_flags"].to_numpy().astype(np.int64)
    return _hash(pd.DataFrame({
        "pr": proto, "seq": p["tcp_seq"].to_numpy(), "ack": p["tcp_ack"].to_numpy(),
        "tv": p["tcp_tsval"].to_numpy(), "te": p["tcp_tsecr"].to_numpy(),
        "sr": np.where(fl >= 0, fl & (TCP_SYN | TCP_RST), -1),
    }))


def _datagram_key(p: pd.DataFrame, proto: np.ndarray) -> np.ndarray:
    """UDP/ICMP: IP id, length, ICMP type/code, and the digest where every copy hashed the same bytes."""
    plen = p["payload_len"].to_numpy().astype(np.int64)
    missing = np.maximum(p["wirelen"].to_numpy().astype(np.int64) - p["caplen"].to_numpy().astype(np.int64), 0)
    full = (plen - missing) >= np.minimum(plen, HASHED_BYTES)
    base = pd.DataFrame({"pr": proto, "id": p["ip_id"].to_numpy(), "len": plen,
                         "it": p["icmp_type"].to_numpy(), "ic": p["icmp_code"].to_numpy()})
    base_key = _hash(base)
    cut = pd.Series(~full).groupby(base_key).transform("any").to_numpy()
    digest = np.where(cut, np.uint64(0), p["payload_hash"].to_numpy().astype(np.uint64))
    return _hash(pd.DataFrame({"b": base_key, "d": digest}))


def packet_keys(p: pd.DataFrame, proto: np.ndarray) -> np.ndarray:
    """The NAT- and segmentation-invariant key of each packet (see the module docstring)."""
    tcp = proto == 6
    key = np.zeros(len(p), dtype=np.uint64)
    if tcp.any():
        key[tcp] = _tcp_key(p[tcp], proto[tcp])
    if (~tcp).any():
        key[~tcp] = _datagram_key(p[~tcp], proto[~tcp])
    return key


def _epochs(tuple_id: np.ndarray, ts: np.ndarray, seq: np.ndarray, ack: np.ndarray,
            flags: np.ndarray) -> np.ndarray:
    """ISN of the latest connection opening (SYN, or SYN-ACK's ack - 1) of each packet's 5-tuple at
    its point, by time; -1 before the first one (a capture started mid-connection)."""
    fl = flags.astype(np.int64)
    syn = (fl >= 0) & ((fl & TCP_SYN) != 0)
    isn = np.where(syn & ((fl & TCP_ACK) != 0), (ack - 1) % (1 << 32), seq)
    order = np.lexsort((ts, tuple_id))
    marks = pd.Series(np.where(syn[order], isn[order], np.nan))
    filled = marks.groupby(tuple_id[order]).ffill().fillna(-1).to_numpy().astype(np.int64)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = filled
    return out


def _duplicates(lflow: np.ndarray, p: pd.DataFrame, key: np.ndarray) -> np.ndarray:
    """The same packet (key, flags, IP id, length) seen again in one local flow (`tcpdump -i any`, a
    bridge seen in and out): every copy after the first in capture order."""
    ident = _hash(pd.DataFrame({"lf": lflow, "k": key.view(np.int64), "f": p["tcp_flags"].to_numpy(),
                                "id": p["ip_id"].to_numpy(), "len": p["payload_len"].to_numpy()}))
    return pd.Series(ident).duplicated().to_numpy()


def packet_ids(packets: pd.DataFrame) -> PacketIds:
    """Local flow, packet key, direction and duplicate flag of every IPv4 transport packet."""
    view = transport_view(packets)
    proto = view["proto"].to_numpy()
    rows = np.flatnonzero((view["src"].to_numpy() != 0) & np.isin(proto, (1, 6, 17)))
    v = view.iloc[rows]
    cols = ["vni", "ts_ns", "caplen", "wirelen", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_tsval", "tcp_tsecr",
            "ip_id", "payload_len", "payload_hash", "icmp_type", "icmp_code"]
    p = packets.iloc[rows, packets.columns.get_indexer(cols)]
    point_cat = packets["point"].astype("category")
    point = point_cat.cat.codes.to_numpy()[rows].astype(np.int32)
    src, dst = v["src"].to_numpy().astype(np.int64), v["dst"].to_numpy().astype(np.int64)
    sport, dport = v["sport"].to_numpy(), v["dport"].to_numpy()
    swap = (src > dst) | ((src == dst) & (sport > dport))
    tup = pd.DataFrame({
        "point": point, "vni": np.where(v["enc"].to_numpy(), p["vni"].to_numpy(), -1), "proto": proto[rows],
        "lo_ip": np.where(swap, dst, src), "lo_port": np.where(swap, dport, sport),
        "hi_ip": np.where(swap, src, dst), "hi_port": np.where(swap, sport, dport)})
    ts = p["ts_ns"].to_numpy().astype(np.int64)
    tuple_id = pd.factorize(_hash(tup))[0]
    tup["epoch"] = _epochs(tuple_id, ts, p["tcp_seq"].to_numpy(), p["tcp_ack"].to_numpy(),
                           p["tcp_flags"].to_numpy())
    lflow, uniq = pd.factorize(_hash(tup))
    first = np.unique(lflow, return_index=True)[1]
    lflows = tup.iloc[first].reset_index(drop=True)
    key = packet_keys(p, proto[rows])
    return PacketIds(rows=rows, point=point, point_names=[str(c) for c in point_cat.cat.categories],
                     lflow=lflow.astype(np.int64), lflows=lflows, key=key, dir_lo=~swap,
                     dup=_duplicates(lflow, p, key))


@dataclass
class Summaries:
    """What matching needs, per (point, local flow): small, mergeable tables.

    ``lflows``: one row per local flow (LFLOW_COLUMNS + first/last ts, packets, bytes, flags);
    ``anchors``: one row per (local flow, anchor key): key, ts (first), dir_lo, seq, syn;
    ``points``: per capture point (empty captures included), its first/last timestamp and packets.
    """

    point_names: list[str]
    lflows: pd.DataFrame
    anchors: pd.DataFrame
    points: pd.DataFrame  # per point of the capture (empty ones included): first_ts_ns, last_ts_ns, packets


def local_flow_summaries(packets: pd.DataFrame, ids: PacketIds | None = None) -> Summaries:
    """Step (a): summarise a packet table (or one chunk/file of it) per (point, local flow)."""
    ids = ids if ids is not None else packet_ids(packets)
    p = packets.iloc[ids.rows]
    ts = p["ts_ns"].to_numpy().astype(np.int64)
    fl = p["tcp_flags"].to_numpy().astype(np.int64)
    keep = ~ids.dup
    obs = pd.DataFrame({"lflow": ids.lflow, "key": ids.key, "ts": ts, "dir_lo": ids.dir_lo,
                        "seq": p["tcp_seq"].to_numpy(),
                        "syn": (fl >= 0) & ((fl & TCP_SYN) != 0),
                        "fin": (fl >= 0) & ((fl & TCP_FIN) != 0), "rst": (fl >= 0) & ((fl & TCP_RST) != 0),
                        "wl": p["wirelen"].to_numpy().astype(np.int64)})[keep]
    agg = obs.groupby("lflow").agg(first_ts_ns=("ts", "min"), last_ts_ns=("ts", "max"), packets=("ts", "size"),
                                   bytes=("wl", "sum"), syn=("syn", "any"), rst=("rst", "any"))
    lflows = ids.lflows.join(agg)
    lflows["point"] = pd.Categorical.from_codes(lflows["point"].to_numpy(), categories=ids.point_names)
    return Summaries(ids.point_names, lflows, _anchors(obs), point_spans(packets))


def point_spans(packets: pd.DataFrame) -> pd.DataFrame:
    """First/last timestamp and packet count of every capture point (all packets; empty captures
    keep a row with NaN times), indexed by point name."""
    cat = packets["point"].astype("category")
    g = pd.DataFrame({"point": cat, "ts": packets["ts_ns"].to_numpy().astype(np.int64)}).groupby(
        "point", observed=False)["ts"]
    out = pd.DataFrame({"first_ts_ns": g.min(), "last_ts_ns": g.max(), "packets": g.size()})
    out.index = out.index.astype(str)
    return out


def _anchors(obs: pd.DataFrame) -> pd.DataFrame:
    obs = obs.sort_values(["lflow", "ts"], kind="stable")
    rank = obs.groupby(["lflow", "dir_lo"]).cumcount().to_numpy()
    chosen = obs["syn"].to_numpy() | obs["rst"].to_numpy() | (rank < ANCHOR_FIRST)
    chosen |= (obs["key"].to_numpy() % np.uint64(ANCHOR_MODULO)) == 0
    out = obs[chosen]
    out = out[~pd.Series(_hash(out[["lflow"]].assign(k=out["key"].to_numpy().view(np.int64)))).duplicated().to_numpy()]
    return out[["lflow", "key", "ts", "dir_lo", "seq", "syn"]].reset_index(drop=True)


def merge_summaries(parts: list[Summaries]) -> Summaries:
    """Combine the summaries of chunks (e.g. one per file or per time slice) into one.

    Local flows are identified by LFLOW_COLUMNS (point by name); their counts add up, first/last
    timestamps take the min/max, flags OR, and anchors are the union (first observation kept).
    """
    names = sorted({n for s in parts for n in s.point_names})
    frames, anchors = [], []
    offset = 0
    for s in parts:
        lf = s.lflows.reset_index(drop=True).copy()
        lf["point"] = lf["point"].astype(str)
        lf["_old"] = np.arange(len(lf)) + offset
        frames.append(lf)
        anchors.append(s.anchors.assign(lflow=s.anchors["lflow"].to_numpy() + offset))
        offset += len(lf)
    allf = pd.concat(frames, ignore_index=True)
    ident = list(LFLOW_COLUMNS)
    codes = pd.Categorical(allf["point"], categories=names).codes
    new_id, _ = pd.factorize(_hash(allf[ident].assign(point=codes)))
    allf["_new"] = new_id
    merged = allf.groupby("_new").agg(
        **{c: (c, "first") for c in ident}, first_ts_ns=("first_ts_ns", "min"), last_ts_ns=("last_ts_ns", "max"),
        packets=("packets", "sum"), bytes=("bytes", "sum"), syn=("syn", "any"), rst=("rst", "any"))
    merged["point"] = pd.Categorical(merged["point"], categories=names)
    anc = pd.concat(anchors, ignore_index=True)
    anc["lflow"] = new_id[anc["lflow"].to_numpy()]
    anc = anc.sort_values("ts", kind="stable").drop_duplicates(["lflow", "key"]).reset_index(drop=True)
    spans = pd.concat([s.points for s in parts]).groupby(level=0).agg(
        first_ts_ns=("first_ts_ns", "min"), last_ts_ns=("last_ts_ns", "max"), packets=("packets", "sum"))
    return Summaries(names, merged.reset_index(drop=True), anc, spans)
