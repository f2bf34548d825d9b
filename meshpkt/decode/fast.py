"""The columnar fast path.

Packets are processed in chunks of ``CHUNK``; for each protocol layer the per-packet layer
offsets, limits and presence masks are numpy arrays, and one call of the
``_kernels.read_fields`` gather reads that layer's fields for every packet of the chunk
(-1 = the field is not inside the captured bytes / the enclosing IP packet). Everything
else -- tag handling, header lengths, fragment and VXLAN tests, choosing the innermost
transport, payload lengths -- is numpy array arithmetic. TCP options and the payload
digest (of the first ``slow.HASH_BYTES`` payload bytes) are numba loops. Rows whose shape
is not covered (IPv4 options, IPv6 extension headers) are returned for the exact slow path (``slow.decode_packet``), which has the
same semantics; the tests run both on the same packets and compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meshpkt.decode.slow import HASH_BYTES

CHUNK = 16384
#: bytes of each packet copied into the compact header matrix (deeper fields read the buffer)
HDR_WIDTH = 128
TAGS = (0x8100, 0x88A8, 0x9100)
V6_EXT = (0, 43, 44, 51, 60, 135, 139, 140, 253, 254)
L4_KNOWN = (1, 6, 17, 50, 58, 59)
I64 = np.int64


def _spec(rows: list[tuple[int, int]]) -> np.ndarray:
    return np.array(rows, dtype=I64).reshape(-1, 2)


# link layers: dst, src, aux (SLL address length), type0, tci0, type1, tci1, type2
SPEC_L2 = {
    1: _spec([(0, 6), (6, 6), (0, 0), (12, 2), (14, 2), (16, 2), (18, 2), (20, 2)]),
    113: _spec([(0, 0), (6, 6), (4, 2), (14, 2), (16, 2), (18, 2), (20, 2), (22, 2)]),
    276: _spec([(0, 0), (12, 6), (11, 1), (0, 2), (20, 2), (22, 2), (24, 2), (26, 2)]),
}
#: offset of the first VLAN tag's TCI (= L3 offset when untagged) per link type
TAG_REGION = {1: 14, 113: 16, 276: 20}
SPEC_RAW = _spec([(0, 1), (0, 4)])
# b0, total length, id (IPv6: payload length), flags+fragment, ttl, proto, src, dst, nh6, hlim6
SPEC_IP4 = _spec([(0, 1), (2, 2), (4, 2), (6, 2), (8, 1), (9, 1), (12, 4), (16, 4)])
SPEC_IP6 = _spec([(6, 1), (7, 1)])
# sport, dport, VXLAN flags, VNI; ESP SPI
SPEC_L4 = _spec([(0, 2), (2, 2), (8, 1), (12, 3)])
SPEC_ESP = _spec([(0, 4)])
# inner Ethernet: dst, src, type; tci, type after the tag
SPEC_IETH = _spec([(0, 6), (6, 6), (12, 2)])
SPEC_IETH_TAG = _spec([(14, 2), (16, 2)])
# transport: sport, dport, seq, ack, data offset byte, flags, window; icmp type, icmp code
SPEC_T = _spec([(0, 2), (2, 2), (4, 4), (8, 4), (12, 1), (13, 1), (14, 2)])
SPEC_ICMP = _spec([(0, 1), (1, 1)])


def _isin(a: np.ndarray, values: Sequence[int]) -> np.ndarray:
    m = a == values[0]
    for v in values[1:]:
        m |= a == v
    return m


def decode_chunk(buf: np.ndarray, off: np.ndarray, cap: np.ndarray, wire: np.ndarray, lt: np.ndarray,
                 ports: Sequence[int], out: dict[str, np.ndarray], s: int) -> np.ndarray:
    """Decode packets ``s .. s+len(off)`` into the ``out`` columns; returns the chunk-relative
    indices of rows that need the exact slow path."""
    from meshpkt.decode._kernels import copy_headers, fnv1a64, read_fields, tcp_options

    n = off.shape[0]
    sl = slice(s, s + n)
    end = off + cap
    frame_end = off + wire
    short = np.zeros(n, bool)
    bad = np.zeros(n, bool)

    def put(name: str, mask: np.ndarray, value: np.ndarray | int) -> None:
        """Write ``value`` where ``mask`` into the column (pre-filled with its absent value)."""
        if mask.all():  # common: a uniform chunk (a plain copy is much cheaper than a masked one)
            np.copyto(out[name][sl], value, casting="unsafe")
        elif mask.any():
            np.copyto(out[name][sl], value, casting="unsafe", where=mask)

    hdr = np.empty((n, HDR_WIDTH), np.uint8)
    copy_headers(buf, off, cap, HDR_WIDTH, hdr)

    def fields(spec: np.ndarray, base: np.ndarray, ok: np.ndarray, lim: np.ndarray) -> np.ndarray:
        if not ok.any():
            return np.full((spec.shape[0], n), -1, I64)
        res = np.empty((spec.shape[0], n), I64)
        read_fields(buf, off, hdr, base, ok, lim, spec, res, True)
        return res

    # ------------------------------------------------------------------ link layer
    is_eth = lt == 1
    is_sll = lt == 113
    is_sll2 = lt == 276
    has_et = is_eth | is_sll | is_sll2
    present = [(code, spec, m) for code, spec in SPEC_L2.items() if (m := lt == code).any()]
    if len(present) == 1 and present[0][2].all():  # common: one link type
        tr: np.ndarray | int = TAG_REGION[present[0][0]]
        short |= off + tr > end
    else:
        tr = np.zeros(n, I64)
        for code, _sp, m in present:
            tr[m] = TAG_REGION[code]
            short |= m & (off + TAG_REGION[code] > end)
    L = np.full((4, n), -1, I64)
    for _code, spec, m in present:
        read_fields(buf, off, hdr, off, m, end, spec[:4], L, False)
    dst, src, aux, t0 = L
    put("eth_dst", dst > 0, dst)
    put("eth_src", (src > 0) & (is_eth | (aux == 6)), src)
    tag1 = _isin(t0, TAGS)
    if tag1.any():  # VLAN tags: read the tag fields
        LT = np.full((4, n), -1, I64)
        for _code, spec, m in present:
            read_fields(buf, off, hdr, off, m, end, spec[4:], LT, False)
        tci0, t1, tci1, t2 = LT
        tag2 = tag1 & _isin(t1, TAGS)
        put("vlan", tag1 & (tci0 >= 0), tci0 & 0xFFF)
        put("vlan2", tag2 & (tci1 >= 0), tci1 & 0xFFF)
        etype = np.where(tag2, t2, np.where(tag1, t1, t0))
        l3 = off + tr + 4 * (tag1.astype(I64) + tag2)
    else:
        etype = t0
        l3 = off + tr
    short |= has_et & (etype < 0)

    is_raw = _isin(lt, (101, 12, 14))
    is_null = (lt == 0) | (lt == 108)
    no_l2 = is_raw | is_null | (lt == 228) | (lt == 229)
    if no_l2.any():
        b0r, fam_be = fields(SPEC_RAW, off, no_l2, end)
        nib = b0r >> 4
        raw_et = np.where(b0r < 0, -1, np.where(nib == 4, 0x800, np.where(nib == 6, 0x86DD, 0)))
        fam_le = ((fam_be & 0xFF) << 24) | ((fam_be & 0xFF00) << 8) | ((fam_be >> 8) & 0xFF00) | (fam_be >> 24)
        fam = np.where((lt == 0) & (fam_be > 0xFF), fam_le, fam_be)
        fam_et = np.where(fam == 2, 0x800, np.where(_isin(fam, (10, 24, 28, 30)), 0x86DD, 0))
        fam_et = np.where(fam_be < 0, -1, fam_et)
        etype = np.where(is_raw, raw_et, etype)
        etype = np.where(lt == 228, 0x800, np.where(lt == 229, 0x86DD, etype))
        etype = np.where(is_null, fam_et, etype)
        short |= no_l2 & (etype < 0)
        l3 = np.where(is_null, off + 4, np.where(no_l2, off, l3))
    bad |= ~(has_et | no_l2)  # link type without a decoder (open_capture refuses those)
    put("ethertype", etype > 0, etype)

    # ------------------------------------------------------------------ outer IP
    is_ipt = (etype == 0x800) | (etype == 0x86DD)
    bad |= (etype >= 0) & ~is_ipt
    b0, tot, ipid, ff, ttl4, proto4, src4, dst4 = fields(SPEC_IP4, l3, is_ipt, end)
    ver = b0 >> 4
    ip4 = is_ipt & (etype == 0x800) & (ver == 4)
    ip6 = is_ipt & (etype == 0x86DD) & (ver == 6)
    any6 = bool(ip6.any())
    if any6:
        nh, hlim = fields(SPEC_IP6, l3, ip6, end)
    bad |= is_ipt & (b0 >= 0) & ~(ip4 | ip6)
    short |= is_ipt & (b0 < 0)
    ihl = b0 & 0xF
    ok_ff = ip4 & (ff >= 0)
    foff = np.where(ok_ff, ff & 0x1FFF, 0)
    out["outer_df"][sl] = ok_ff & ((ff & 0x4000) != 0)
    out["outer_frag"][sl] = ok_ff & ((ff & 0x3FFF) != 0)
    ip4_id = np.where(ip4, ipid, -1)
    out["outer_ip_id"][sl] = ip4_id
    put("outer_src", ip4 & (src4 > 0), src4)
    put("outer_dst", ip4 & (dst4 > 0), dst4)
    put("outer_ttl", ip4, ttl4)
    if any6:
        put("outer_ttl", ip6, hlim)
        proto = np.where(ip4, proto4, np.where(ip6, nh, -1))
    else:
        proto = np.where(ip4, proto4, -1)
    out["outer_proto"][sl] = proto
    put("outer_ipver", ip4, 4)
    bad |= ip4 & (ihl < 5)
    slow = ip4 & (ihl > 5)
    l4 = l3 + np.where(ip6, 40, ihl * 4) if any6 else l3 + ihl * 4
    short |= ip4 & (ihl >= 5) & (l4 > end)
    if any6:
        put("outer_ipver", ip6, 6)
        slow |= ip6 & _isin(nh, V6_EXT)
        short |= ip6 & (l3 + 40 > end)
        _v6(buf, l3 + 8, ip6 & (l3 + 24 <= end), out["outer_src6"], s)
        _v6(buf, l3 + 24, ip6 & (l3 + 40 <= end), out["outer_dst6"], s)
    ip_end = np.where(ip4 & (tot > 0), l3 + tot, frame_end)  # total length 0 (TSO): the frame's end
    if any6:
        ip_end = np.where(ip6 & (ipid >= 0), l3 + 40 + ipid, ip_end)
    bad |= (ip4 & (ihl >= 5) | ip6) & (l4 <= end) & (ip_end < l4)
    lim = np.minimum(end, ip_end)
    l4ok = ((ip4 & (ihl == 5)) | ip6) & (l4 <= end) & ~slow & (foff == 0) & (ip_end >= l4)
    bad |= l4ok & ~_isin(proto, L4_KNOWN)

    # ------------------------------------------------------------------ outer L4, VXLAN
    sport, dport, vflags, vni = fields(SPEC_L4, l4, l4ok, lim)
    o_tu = l4ok & ((proto == 6) | (proto == 17))
    put("outer_sport", o_tu, sport)
    put("outer_dport", o_tu, dport)
    esp = l4ok & (proto == 50)
    if esp.any():
        (spi,) = fields(SPEC_ESP, l4, esp, lim)
        put("esp_spi", esp, spi)
    vx_c = l4ok & (proto == 17) & (_isin(dport, ports) | _isin(sport, ports)) & (vflags >= 0)
    put("vxlan_flags", vx_c, vflags)
    vx = vx_c & ((vflags & 0x08) != 0)
    put("vni", vx, vni)
    ie = l4 + 16
    short |= vx & (ie > end)
    bad |= vx & (ie <= end) & (ie > lim)

    # ------------------------------------------------------------------ inner (VXLAN) frame
    T4, TP, Tend, Tlim, Tok = l4, proto, ip_end, lim, l4ok
    ip_id = ip4_id
    any_vx = bool(vx.any())
    if any_vx:
        vxh = vx & (ie <= lim)
        idst, isrc, it = fields(SPEC_IETH, ie, vxh, lim)
        put("inner_eth_dst", idst > 0, idst)
        put("inner_eth_src", isrc > 0, isrc)
        itag = it == 0x8100
        if itag.any():
            itci, it2 = fields(SPEC_IETH_TAG, ie, itag, lim)
            put("inner_vlan", itag & (itci >= 0), itci & 0xFFF)
            iet = np.where(itag, it2, it)
            il3 = ie + 14 + 4 * itag.astype(I64)
        else:
            iet = it
            il3 = ie + 14
        iet_ok = vxh & (iet >= 0)
        short |= vxh & (il3 > end)
        bad |= vxh & (il3 <= end) & (il3 > lim)
        put("inner_ethertype", iet > 0, iet)
        is4 = iet_ok & (iet == 0x800)
        ib0, itot, iid, iff, ittl, iproto, isrc4, idst4 = fields(SPEC_IP4, il3, is4, lim)
        iip4 = is4 & ((ib0 >> 4) == 4)
        bad |= iet_ok & ~iip4 & ~(is4 & (il3 + 1 > end))
        short |= is4 & (il3 + 1 > end)
        iihl = ib0 & 0xF
        ifoff = np.where(iip4 & (iff >= 0), iff & 0x1FFF, 0)
        ip_id = np.where(vx, np.where(iip4, iid, -1), ip_id)
        put("inner_ttl", iip4, ittl)
        iproto = np.where(iip4, iproto, -1)
        out["inner_proto"][sl] = iproto
        put("inner_src", iip4 & (isrc4 > 0), isrc4)
        put("inner_dst", iip4 & (idst4 > 0), idst4)
        bad |= iip4 & (iihl < 5)
        slow |= iip4 & (iihl > 5)
        il4 = il3 + iihl * 4
        ih5 = iip4 & (iihl >= 5)
        short |= ih5 & (il4 > end)
        bad |= ih5 & (il4 <= end) & (il4 > lim)
        iip_end = np.where(iip4 & (itot > 0), il3 + itot, lim)
        bad |= ih5 & (il4 <= lim) & (iip_end < il4)
        iok = iip4 & (iihl == 5) & (il4 <= lim) & (ifoff == 0) & (iip_end >= il4)
        iknown = _isin(iproto, (1, 6, 17))
        bad |= iok & ~iknown
        iok &= iknown
        if vx.all():  # common: a chunk of VXLAN packets only
            T4, TP, Tend, Tlim, Tok = il4, iproto, iip_end, np.minimum(lim, iip_end), iok
        else:
            T4 = np.where(vx, il4, T4)
            TP = np.where(vx, iproto, TP)
            Tend = np.where(vx, iip_end, Tend)
            Tlim = np.where(vx, np.minimum(lim, iip_end), Tlim)
            Tok = np.where(vx, iok, Tok)
    out["ip_id"][sl] = ip_id

    # ------------------------------------------------------------------ innermost transport
    tcp = Tok & (TP == 6)
    udp = Tok & (TP == 17)
    icmp = Tok & ((TP == 1) | (TP == 58))
    tesp = Tok & (TP == 50)
    tsp, tdp, seq, ack, doffb, flags, win = fields(SPEC_T, T4, tcp | udp, Tlim)
    if any_vx:
        itu = vx & (tcp | udp)
        put("inner_sport", itu, tsp)
        put("inner_dport", itu, tdp)
    put("tcp_seq", tcp, seq)
    put("tcp_ack", tcp, ack)
    put("tcp_flags", tcp, flags)
    put("tcp_win", tcp, win)
    doff_ok = tcp & (doffb >= 0)
    doff = np.where(doff_ok, doffb >> 4, 0)
    bad |= doff_ok & (doff < 5)
    if icmp.any():
        ity, ico = fields(SPEC_ICMP, T4, icmp, Tlim)
        put("icmp_type", icmp, ity)
        put("icmp_code", icmp, ico)
    thl = np.where(tcp, doff * 4, 8)
    has_hl = (doff_ok & (doff >= 5)) | udp | icmp | tesp
    pstart = T4 + thl
    plen = Tend - pstart
    short |= has_hl & (pstart > end)
    short |= tcp & ~doff_ok & (T4 + 13 > end)
    bad |= has_hl & (plen < 0)
    okp = has_hl & (plen >= 0)
    put("payload_len", okp, plen)

    ro = np.nonzero(doff_ok & (doff > 5))[0]
    if ro.size:
        tcp_options(buf, off, hdr, T4, doff, Tlim, ro, out["tcp_mss"][sl], out["tcp_wscale"][sl],
                    out["tcp_tsval"][sl], out["tcp_tsecr"][sl])

    rp = np.nonzero(okp & (plen > 0) & (pstart < end))[0]
    if rp.size:
        hs = np.empty(rp.size, np.uint64)
        ps = pstart[rp]
        pe = np.minimum(np.minimum(Tend[rp], end[rp]), ps + HASH_BYTES)
        base = off[rp]
        if (pe - base).max() <= HDR_WIDTH:  # common: every digest lies in the header copy
            rel = rp * HDR_WIDTH - base
            fnv1a64(hdr.reshape(-1), ps + rel, pe + rel, hs)
        else:
            fnv1a64(buf, ps, pe, hs)
        out["payload_hash"][rp + s] = hs

    out["truncated"][sl] = (cap < wire) | short
    out["decoded"][sl] = bad.view(np.uint8) * 2
    return np.nonzero(slow)[0]


def _v6(buf: np.ndarray, at: np.ndarray, mask: np.ndarray, col: np.ndarray, s: int) -> None:
    idx = np.nonzero(mask)[0]
    if not idx.size:
        return
    mat = buf[at[idx][:, None] + np.arange(16)]
    col[idx + s] = mat.view("V16").ravel().astype(object)
