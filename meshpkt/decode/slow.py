"""The exact slow path: one packet at a time, plain Python with a bounds check per field.

Used for the shapes the columnar fast path leaves out (IPv4 options on the outer or inner
header, IPv6 extension headers -- walked with dpkt's extension-header classes) and as an
independent reference implementation in the tests: ``decode_packet`` fills exactly the
same columns with exactly the same meaning as ``fast.decode_chunk``.

Semantics shared with the fast path:

- a field is filled only when all its bytes lie inside the captured bytes *and* inside the
  enclosing IP packet (IP total length / IPv6 payload length); otherwise it stays absent;
- ``truncated`` when caplen < wirelen or a header runs past the captured bytes;
- ``decoded`` 2 when the packet holds something not decoded (non-IP EtherType, a transport
  other than TCP/UDP/ICMP/ICMPv6/ESP, a non-IPv4 frame inside VXLAN, malformed lengths);
- VXLAN = UDP with either port in ``vxlan_ports`` and the I flag (0x08) set; the inner
  frame is Ethernet (one optional 802.1Q tag) carrying IPv4;
- the ``ip_id``/``tcp_*``/``icmp_*``/``payload_*`` columns describe the innermost transport;
- ``payload_hash`` is FNV-1a 64 of the first ``HASH_BYTES`` captured payload bytes (an
  identity key used together with seq/ack/TS/IP id/payload_len, not a digest of the payload).
"""

from __future__ import annotations

from collections.abc import Sequence

from meshpkt.decode.schema import ABSENT

TAGS = (0x8100, 0x88A8, 0x9100)
V6_EXT = (0, 43, 44, 51, 60, 135, 139, 140, 253, 254)
L4_KNOWN = (1, 6, 17, 50, 58, 59)
#: ``payload_hash`` covers at most this many leading captured payload bytes
HASH_BYTES = 64

#: columns the per-packet decoders fill (the rest come from the capture records)
PACKET_COLUMNS: tuple[str, ...] = tuple(
    k for k in ABSENT if k not in ("point", "record", "ts_ns", "caplen", "wirelen", "linktype"))


class _Pkt:
    __slots__ = ("d", "end", "short", "bad")

    def __init__(self, data: bytes) -> None:
        self.d = data
        self.end = len(data)
        self.short = False
        self.bad = False

    def u(self, o: int, n: int, lim: int | None = None) -> int | None:
        """Big-endian unsigned of n bytes at o, or None when it does not lie below lim."""
        lim = self.end if lim is None else min(lim, self.end)
        if o < 0 or o + n > lim:
            return None
        return int.from_bytes(self.d[o:o + n], "big")


def decode_packet(data: bytes, wirelen: int, linktype: int,
                  vxlan_ports: Sequence[int] = (4789,)) -> dict[str, object]:
    """Decode one captured packet into the per-packet columns of the packet table."""
    r: dict[str, object] = {k: ABSENT[k] for k in PACKET_COLUMNS}
    p = _Pkt(bytes(data))
    end = p.end
    l3, etype = _link(p, r, linktype)
    if l3 is not None and etype is not None:
        r["ethertype"] = etype
        if etype in (0x800, 0x86DD):
            _outer_ip(p, r, l3, etype, end + (wirelen - end), tuple(vxlan_ports))
        else:
            p.bad = True
    r["truncated"] = end < wirelen or p.short
    r["decoded"] = 2 if p.bad else 1
    return r


def _link(p: _Pkt, r: dict[str, object], lt: int) -> tuple[int | None, int | None]:
    """(offset of L3, EtherType) or (None, None) when the link header is not captured."""
    if lt in (1, 113, 276):
        # (position of the first type field, position of the first tag's TCI = L3 when untagged)
        if lt == 1:
            dst, src = p.u(0, 6), p.u(6, 6)
            r["eth_dst"] = dst if dst is not None else 0
            r["eth_src"] = src if src is not None else 0
            tp, tr = 12, 14
        elif lt == 113:
            if p.u(4, 2) == 6 and (a := p.u(6, 6)) is not None:
                r["eth_src"] = a
            tp, tr = 14, 16
        else:
            if p.u(11, 1) == 6 and (a := p.u(12, 6)) is not None:
                r["eth_src"] = a
            tp, tr = 0, 20
        if p.end < tr:
            p.short = True
        t = p.u(tp, 2)
        for k in range(2):
            if t is None or t not in TAGS:
                break
            tci = p.u(tr, 2)
            if tci is not None:
                r["vlan" if k == 0 else "vlan2"] = tci & 0xFFF
            t = p.u(tr + 2, 2)
            tr += 4
        if t is None:
            p.short = True
            return None, None
        return tr, t  # a third tag ends up as a non-IP EtherType (decoded 2)
    if lt in (101, 12, 14):
        b = p.u(0, 1)
        if b is None:
            p.short = True
            return None, None
        return 0, {4: 0x800, 6: 0x86DD}.get(b >> 4, 0)
    if lt == 228:
        return 0, 0x800
    if lt == 229:
        return 0, 0x86DD
    if lt in (0, 108):
        fam = p.u(0, 4)
        if fam is None:
            p.short = True
            return None, None
        if lt == 0 and fam > 0xFF:
            fam = int.from_bytes(fam.to_bytes(4, "big"), "little")
        return 4, 0x800 if fam == 2 else (0x86DD if fam in (10, 24, 28, 30) else 0)
    p.bad = True
    return None, None


def _outer_ip(p: _Pkt, r: dict[str, object], l3: int, etype: int, frame_end: int,
              ports: tuple[int, ...]) -> None:
    b0 = p.u(l3, 1)
    if b0 is None:
        p.short = True
        return
    ver = b0 >> 4
    if (etype == 0x800 and ver != 4) or (etype == 0x86DD and ver != 6):
        p.bad = True
        return
    end = p.end
    foff = 0
    if ver == 4:
        r["outer_ipver"] = 4
        ihl = b0 & 0xF
        tot = p.u(l3 + 2, 2)
        ip_id = p.u(l3 + 4, 2)
        ff = p.u(l3 + 6, 2)
        ttl = p.u(l3 + 8, 1)
        proto = p.u(l3 + 9, 1)
        src = p.u(l3 + 12, 4)
        dst = p.u(l3 + 16, 4)
        if ip_id is not None:
            r["outer_ip_id"] = ip_id
            r["ip_id"] = ip_id
        if ff is not None:
            r["outer_df"] = bool(ff & 0x4000)
            r["outer_frag"] = bool(ff & 0x3FFF)
            foff = ff & 0x1FFF
        if ttl is not None:
            r["outer_ttl"] = ttl
        if proto is not None:
            r["outer_proto"] = proto
        r["outer_src"] = src if src is not None else 0
        r["outer_dst"] = dst if dst is not None else 0
        if ihl < 5:
            p.bad = True
            return
        l4 = l3 + ihl * 4
        if l4 > end:
            p.short = True
            return
        ip_end = frame_end if tot is None or tot == 0 else l3 + tot
        if ip_end < l4:
            p.bad = True
            return
    else:
        r["outer_ipver"] = 6
        plen = p.u(l3 + 4, 2)
        nh = p.u(l3 + 6, 1)
        hlim = p.u(l3 + 7, 1)
        if hlim is not None:
            r["outer_ttl"] = hlim
        if nh is not None:
            r["outer_proto"] = nh
        if l3 + 24 <= end:
            r["outer_src6"] = p.d[l3 + 8:l3 + 24]
        if l3 + 40 <= end:
            r["outer_dst6"] = p.d[l3 + 24:l3 + 40]
        if l3 + 40 > end:
            p.short = True
            return
        assert nh is not None and plen is not None
        # payload length 0 with a hop-by-hop header: a jumbogram, the frame gives the length
        ip_end = frame_end if plen == 0 and nh == 0 else l3 + 40 + plen
        l4_6, proto, foff = _v6_ext(p, r, l3 + 40, nh, min(end, ip_end))
        if l4_6 is None:
            return
        l4 = l4_6
        if ip_end < l4:
            p.bad = True
            return
    if foff:
        return  # a non-first fragment: no transport header
    lim = min(end, ip_end)
    if proto not in L4_KNOWN:
        p.bad = True
        return
    if proto in (6, 17):
        sp, dp = p.u(l4, 2, lim), p.u(l4 + 2, 2, lim)
        if sp is not None:
            r["outer_sport"] = sp
        if dp is not None:
            r["outer_dport"] = dp
        if proto == 17 and (sp in ports or dp in ports):
            flags = p.u(l4 + 8, 1, lim)
            if flags is not None:
                r["vxlan_flags"] = flags
                if flags & 0x08:
                    vni = p.u(l4 + 12, 3, lim)
                    if vni is not None:
                        r["vni"] = vni
                    r["ip_id"] = ABSENT["ip_id"]
                    _inner(p, r, l4 + 16, lim)
                    return
    if proto == 50:
        spi = p.u(l4, 4, lim)
        if spi is not None:
            r["esp_spi"] = spi
    _transport(p, r, l4, proto, ip_end, lim, inner=False)


def _v6_ext(p: _Pkt, r: dict[str, object], pos: int, nh: int, lim: int) -> tuple[int | None, int, int]:
    """Walk IPv6 extension headers with dpkt; (transport offset or None, protocol, frag offset)."""
    import dpkt

    foff = 0
    for _ in range(16):
        if nh not in V6_EXT:
            r["outer_proto"] = nh
            return pos, nh, foff
        if nh not in dpkt.ip6.EXT_HDRS_CLS:
            p.bad = True  # mobility / HIP / shim6 / experimental: not decoded
            r["outer_proto"] = nh
            return None, nh, foff
        try:
            ext = dpkt.ip6.EXT_HDRS_CLS[nh](p.d[pos:lim])
        except (dpkt.NeedData, dpkt.UnpackError):
            if lim >= p.end:
                p.short = True
            else:
                p.bad = True
            return None, nh, foff
        if pos + ext.length > lim:
            if lim >= p.end:
                p.short = True
            else:
                p.bad = True
            return None, nh, foff
        if nh == 44:
            foff = ext.frag_off
            r["outer_frag"] = True
        pos += ext.length
        nh = ext.nxt
    p.bad = True
    return None, nh, foff


def _inner(p: _Pkt, r: dict[str, object], ie: int, lim: int) -> None:
    end = p.end
    if ie > end:
        p.short = True
        return
    if ie > lim:
        p.bad = True
        return
    dst, src = p.u(ie, 6, lim), p.u(ie + 6, 6, lim)
    if dst is not None:
        r["inner_eth_dst"] = dst
    if src is not None:
        r["inner_eth_src"] = src
    t = p.u(ie + 12, 2, lim)
    hdr = ie + 14
    if t == 0x8100:
        tci = p.u(ie + 14, 2, lim)
        if tci is not None:
            r["inner_vlan"] = tci & 0xFFF
        t = p.u(ie + 16, 2, lim)
        hdr = ie + 18
    if t is None:
        if hdr > end:
            p.short = True
        else:
            p.bad = True
        return
    r["inner_ethertype"] = t
    b0 = p.u(hdr, 1, lim)
    if t != 0x800 or b0 is None or b0 >> 4 != 4:
        if t == 0x800 and b0 is None and hdr + 1 > end:
            p.short = True
        else:
            p.bad = True
        return
    ihl = b0 & 0xF
    tot = p.u(hdr + 2, 2, lim)
    ip_id = p.u(hdr + 4, 2, lim)
    ff = p.u(hdr + 6, 2, lim)
    ttl = p.u(hdr + 8, 1, lim)
    proto = p.u(hdr + 9, 1, lim)
    isrc = p.u(hdr + 12, 4, lim)
    idst = p.u(hdr + 16, 4, lim)
    if ip_id is not None:
        r["ip_id"] = ip_id
    if ttl is not None:
        r["inner_ttl"] = ttl
    if proto is not None:
        r["inner_proto"] = proto
    if isrc is not None:
        r["inner_src"] = isrc
    if idst is not None:
        r["inner_dst"] = idst
    if ihl < 5:
        p.bad = True
        return
    l4 = hdr + ihl * 4
    if l4 > end:
        p.short = True
        return
    if l4 > lim:
        p.bad = True
        return
    ip_end = lim if tot is None or tot == 0 else hdr + tot
    if ip_end < l4:
        p.bad = True
        return
    if ff is not None and ff & 0x1FFF:
        return
    if proto not in (1, 6, 17):
        p.bad = True
        return
    _transport(p, r, l4, proto, ip_end, min(lim, ip_end), inner=True)


def _transport(p: _Pkt, r: dict[str, object], t4: int, proto: int, t_end: int, lim: int,
               inner: bool) -> None:
    end = p.end
    hl: int | None = None
    if proto in (6, 17) and inner:
        sp, dp = p.u(t4, 2, lim), p.u(t4 + 2, 2, lim)
        if sp is not None:
            r["inner_sport"] = sp
        if dp is not None:
            r["inner_dport"] = dp
    if proto == 6:
        seq, ack = p.u(t4 + 4, 4, lim), p.u(t4 + 8, 4, lim)
        doff_b, flags, win = p.u(t4 + 12, 1, lim), p.u(t4 + 13, 1, lim), p.u(t4 + 14, 2, lim)
        if seq is not None:
            r["tcp_seq"] = seq
        if ack is not None:
            r["tcp_ack"] = ack
        if flags is not None:
            r["tcp_flags"] = flags
        if win is not None:
            r["tcp_win"] = win
        if doff_b is None:
            if t4 + 13 > end:
                p.short = True
            return
        doff = doff_b >> 4
        if doff < 5:
            p.bad = True
            return
        hl = doff * 4
        _tcp_opts(p, r, t4 + 20, min(t4 + hl, lim))
    elif proto in (17, 50):
        hl = 8
    elif proto in (1, 58):
        ty, co = p.u(t4, 1, lim), p.u(t4 + 1, 1, lim)
        if ty is not None:
            r["icmp_type"] = ty
        if co is not None:
            r["icmp_code"] = co
        hl = 8
    else:
        return
    start = t4 + hl
    if start > end:
        p.short = True
    plen = t_end - start
    if plen < 0:
        p.bad = True
        return
    r["payload_len"] = plen
    stop = min(t_end, end, start + HASH_BYTES)
    if plen > 0 and stop > start:
        r["payload_hash"] = fnv1a64(p.d[start:stop])


def _tcp_opts(p: _Pkt, r: dict[str, object], pos: int, stop: int) -> None:
    d = p.d
    while pos < stop:
        kind = d[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= stop:
            break
        ln = d[pos + 1]
        if ln < 2 or pos + ln > stop:
            break
        if kind == 2 and ln == 4:
            r["tcp_mss"] = int.from_bytes(d[pos + 2:pos + 4], "big")
        elif kind == 3 and ln == 3:
            r["tcp_wscale"] = d[pos + 2]
        elif kind == 8 and ln == 10:
            r["tcp_tsval"] = int.from_bytes(d[pos + 2:pos + 6], "big")
            r["tcp_tsecr"] = int.from_bytes(d[pos + 6:pos + 10], "big")
        pos += ln


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit digest of ``data`` (pure Python; the decoder uses a numba kernel)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h
