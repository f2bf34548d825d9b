"""The exact slow path: one packet at a time, plain Python with a bounds check per field.

Used for the shapes the columnar fast path leaves out (IPv4 options on the outer or inner
header, IPv6 extension headers -- walked with dpkt's extension-header classes) and as an
independent reference implementation in the tests: ``decode_packet`` fills exactly the
same columns with exactly the same meaning as ``fast.decode_chunk``.

Semantics shared with the fast path:

- a field is filled only when all its bytes lie inside the captured bytes *and* inside the
  enclosing IP packet (IP total length / IPv6 payload length); otherwise it stays absent;
- ``truncated`` when caplen < wirelen or a header runs past the captured bytes;
- ``decoded`` 2 when a layer the packet claims was not decoded (non-IP EtherType, a
  transport other than TCP/UDP/ICMP/ICMPv6/ESP, a header cut short, malformed lengths),
  1 when an IPv4 option or IPv6 extension-header chain was walked, else 0; ``problems``
  says why (``schema.PROBLEM_BITS``), ``present`` which zero-able fields are values;
- UDP tunnels: VXLAN (either port 4789, 8472 or in ``vxlan_ports``, I flag set; on any
  other port when the header is exactly a VXLAN header and an Ethernet frame plausibly
  follows), VXLAN-GPE (4790), Geneve (6081, options skipped), nested up to two deep; the
  inner frame is Ethernet (one optional 802.1Q tag) or, for GPE/Geneve, IPv4/IPv6;
- an IP length larger than what encloses it is clamped to it (``length`` problem, except
  inside a first fragment, whose fields describe only the bytes it holds); IP length 0 means
  "up to the enclosing end" (``length_from_frame``);
- the ``ip_id``/``tcp_*``/``icmp_*``/``payload_*`` columns describe the innermost transport;
- ``payload_hash`` is FNV-1a 64 of the first ``HASH_BYTES`` captured payload bytes (an
  identity key used together with seq/ack/TS/IP id/payload_len, not a digest of the payload).
"""

from __future__ import annotations

from collections.abc import Sequence

from meshpkt.decode.schema import ABSENT, PRESENT_BITS, PROBLEM_BITS

TAGS = (0x8100, 0x88A8, 0x9100)
V6_EXT = (0, 43, 44, 51, 60, 135, 139, 140, 253, 254)
L4_KNOWN = (1, 6, 17, 50, 58, 59)
MAX_DEPTH = 2
INNER_COLUMNS = ("inner_eth_src", "inner_eth_dst", "inner_ethertype", "inner_src", "inner_dst", "inner_vlan",
                 "inner_ipver", "inner_ttl", "inner_proto", "inner_sport", "inner_dport", "inner_src6",
                 "inner_dst6")
#: ``payload_hash`` covers at most this many leading captured payload bytes
HASH_BYTES = 64

#: columns the per-packet decoders fill (the rest come from the capture records)
PACKET_COLUMNS: tuple[str, ...] = tuple(
    k for k in ABSENT if k not in ("point", "record", "ts_ns", "caplen", "wirelen", "linktype"))


class _Stop(Exception):
    """Decoding of this packet ends here (its flags are already recorded)."""


class _Pkt:
    """One packet being decoded: its bytes, the result row, and what went wrong."""

    def __init__(self, data: bytes, r: dict[str, object]) -> None:
        self.d = data
        self.end = len(data)
        self.r = r
        self.problems: set[str] = set()
        self.bad = False
        self.chain = False

    def u(self, o: int, n: int, lim: int | None = None) -> int | None:
        """Big-endian unsigned of n bytes at o, or None when it does not lie below lim."""
        lim = self.end if lim is None else min(lim, self.end)
        if o < 0 or o + n > lim:
            return None
        return int.from_bytes(self.d[o:o + n], "big")

    def put(self, name: str, value: int | bytes | bool | None) -> None:
        """Set a column when the value was read; mark it present."""
        if value is None:
            return
        self.r[name] = value
        if name in PRESENT_BITS:
            self.r["present"] = int(self.r["present"]) | PRESENT_BITS[name]  # type: ignore[call-overload]

    def stop(self, *problems: str, bad: bool = True) -> _Stop:
        self.problems.update(problems)
        self.bad = self.bad or bad
        return _Stop()

    def missing(self, pos: int, n: int) -> _Stop:
        """A header that does not fit: cut by the capture, or by an enclosing length."""
        return self.stop("header_cut" if pos + n > self.end else "length")


def decode_packet(data: bytes, wirelen: int, linktype: int,
                  vxlan_ports: Sequence[int] = (4789,)) -> dict[str, object]:
    """Decode one captured packet into the per-packet columns of the packet table."""
    r: dict[str, object] = {k: ABSENT[k] for k in PACKET_COLUMNS}
    p = _Pkt(bytes(data), r)
    try:
        l3, etype = _link(p, linktype, wirelen)
        p.put("ethertype", etype)
        if l3 is None:
            raise p.stop(bad=False)
        _layers(p, l3, etype, wirelen, tuple(vxlan_ports))
    except _Stop:
        pass
    r["problems"] = sum(PROBLEM_BITS[k] for k in p.problems)
    r["truncated"] = p.end < wirelen or "header_cut" in p.problems
    r["decoded"] = 2 if p.bad or "header_cut" in p.problems else (1 if p.chain else 0)
    return r


# ------------------------------------------------------------------------- link layer

def _link(p: _Pkt, lt: int, wirelen: int) -> tuple[int | None, int | None]:
    """(offset of L3, EtherType); L3 None when there is no decodable L3."""
    if lt in (1, 113, 276):
        return _link_typed(p, lt, wirelen)
    if lt in (101, 12, 14):
        b = p.u(0, 1)
        if b is None:
            raise p.stop("header_cut")
        return 0, {4: 0x800, 6: 0x86DD}.get(b >> 4)
    if lt in (228, 229):
        return 0, 0x800 if lt == 228 else 0x86DD
    if lt in (0, 108):
        fam = p.u(0, 4)
        if fam is None:
            raise p.stop("header_cut")
        if lt == 0 and fam > 0xFF:
            fam = int.from_bytes(fam.to_bytes(4, "big"), "little")
        return 4, 0x800 if fam == 2 else (0x86DD if fam in (10, 24, 28, 30) else None)
    raise p.stop()


def _link_typed(p: _Pkt, lt: int, wirelen: int) -> tuple[int | None, int | None]:
    """Ethernet, SLL, SLL2: addresses, up to two VLAN tags, EtherType or 802.3 LLC."""
    if lt == 1:
        p.put("eth_dst", p.u(0, 6))
        p.put("eth_src", p.u(6, 6))
        tp, tr = 12, 14
    else:
        alen_at, addr_at, tp, tr = (4, 6, 14, 16) if lt == 113 else (11, 12, 0, 20)
        alen = p.u(alen_at, 2 if lt == 113 else 1)
        if alen == 6:
            p.put("eth_src", p.u(addr_at, 6))
    if p.end < tr:
        p.problems.add("header_cut")
    t = p.u(tp, 2)
    for k in range(2):
        if t is None or t not in TAGS:
            break
        tci = p.u(tr, 2)
        if tci is not None:
            p.r["vlan" if k == 0 else "vlan2"] = tci & 0xFFF
        t = p.u(tr + 2, 2)
        tr += 4
    if t is None:
        raise p.stop("header_cut")
    if t >= 0x600:
        return tr, t  # a third tag ends up as a non-IP EtherType (decoded 2)
    if lt == 1 and t > wirelen - tr:
        p.problems.add("length")
    if lt == 1 or t == 4:
        return _llc(p, tr)
    raise p.stop()


def _llc(p: _Pkt, at: int) -> tuple[int | None, int | None]:
    """802.2 LLC: SNAP with OUI 0 gives its EtherType; anything else is not decoded."""
    llc = p.u(at, 3)
    if llc is None:
        raise p.stop("header_cut")
    if llc == 0xAAAA03:
        snap = p.u(at + 3, 5)
        if snap is None:
            raise p.stop("header_cut")
        if snap >> 16 == 0:
            return at + 8, snap & 0xFFFF
    raise p.stop()


# ------------------------------------------------------------------------- IP layers

def _layers(p: _Pkt, pos: int, etype: int | None, frame_end: int, hints: tuple[int, ...]) -> None:
    """IP, tunnels, IP inside, ..., then the innermost transport."""
    lim, enc, depth, in_frag = p.end, frame_end, 0, False
    while True:
        if etype == 0x800:
            l4, proto, ip_end = _ip4(p, pos, lim, enc, depth, in_frag)
        elif etype == 0x86DD:
            l4, proto, ip_end = _ip6(p, pos, lim, enc, depth, in_frag)
        else:
            raise p.stop()
        in_frag = in_frag or "frag_first" in p.problems
        llim = min(p.end, ip_end)
        nxt = _udp_tunnel(p, l4, proto, llim, depth, hints) if proto in (6, 17) else None
        if nxt is None:
            _transport(p, l4, proto, ip_end)
            return
        depth += 1
        pos, etype = nxt
        lim, enc = llim, ip_end


def _ip4(p: _Pkt, pos: int, lim: int, enc: int, depth: int, in_frag: bool) -> tuple[int, int, int]:
    """IPv4 at pos: (transport offset, protocol, IP end); raises _Stop where decoding ends."""
    b0 = p.u(pos, 1, lim)
    if b0 is None:
        raise p.missing(pos, 1)
    if b0 >> 4 != 4:
        raise p.stop("malformed")
    ihl = b0 & 0xF
    tot, ip_id, ff = p.u(pos + 2, 2, lim), p.u(pos + 4, 2, lim), p.u(pos + 6, 2, lim)
    ttl, proto = p.u(pos + 8, 1, lim), p.u(pos + 9, 1, lim)
    p.chain = p.chain or ihl > 5
    p.put("ip_id", ip_id)
    pre = "outer" if depth == 0 else "inner"
    p.put(f"{pre}_ipver", 4)
    p.put(f"{pre}_ttl", ttl)
    p.put(f"{pre}_proto", proto)
    p.put(f"{pre}_src", p.u(pos + 12, 4, lim))
    p.put(f"{pre}_dst", p.u(pos + 16, 4, lim))
    if depth == 0:
        p.put("outer_ip_id", ip_id)
        if ff is not None:
            p.put("outer_df", bool(ff & 0x4000))
            p.put("outer_frag", bool(ff & 0x3FFF))
            p.put("outer_mf", bool(ff & 0x2000))
            if ff & 0x3FFF:
                p.r["outer_frag_off"] = (ff & 0x1FFF) * 8
    if ihl < 5:
        raise p.stop("malformed")
    l4 = pos + ihl * 4
    if l4 > lim:
        raise p.missing(l4, 0)
    assert tot is not None and ff is not None and proto is not None
    ip_end = _ip_end(p, pos + tot if tot else None, enc, in_frag)
    if ip_end < l4:
        raise p.stop("length")
    if depth == 0 and ff & 0x3FFF and tot:
        p.r["outer_frag_len"] = tot - ihl * 4
    if ff & 0x1FFF:
        raise p.stop("frag_later", bad=False)
    if ff & 0x2000:
        p.problems.add("frag_first")
    return l4, proto, ip_end


def _ip_end(p: _Pkt, claimed: int | None, enc: int, in_frag: bool) -> int:
    """The end of an IP packet: its length field, clamped to what encloses it."""
    if claimed is None:
        p.problems.add("length_from_frame")
        return enc
    if claimed > enc:
        if not in_frag:
            p.problems.add("length")
        return enc
    return claimed


def _ip6(p: _Pkt, pos: int, lim: int, enc: int, depth: int, in_frag: bool) -> tuple[int, int, int]:
    """IPv6 at pos and its extension headers (see ``_ip4``)."""
    b0 = p.u(pos, 1, lim)
    if b0 is None:
        raise p.missing(pos, 1)
    if b0 >> 4 != 6:
        raise p.stop("malformed")
    pre = "outer" if depth == 0 else "inner"
    plen, nh = p.u(pos + 4, 2, lim), p.u(pos + 6, 1, lim)
    p.put(f"{pre}_ipver", 6)
    p.put(f"{pre}_ttl", p.u(pos + 7, 1, lim))
    p.put(f"{pre}_proto", nh)
    if pos + 24 <= lim:
        p.put(f"{pre}_src6", p.d[pos + 8:pos + 24])
    if pos + 40 <= lim:
        p.put(f"{pre}_dst6", p.d[pos + 24:pos + 40])
    if pos + 40 > lim:
        raise p.missing(pos, 40)
    assert nh is not None and plen is not None
    ip_end = _ip_end(p, pos + 40 + plen if plen else None, enc, in_frag)
    l4, proto = _v6_ext(p, pos + 40, nh, min(p.end, ip_end), depth)
    p.put(f"{pre}_proto", proto)
    if l4 is None:
        raise p.stop(bad=False)
    if ip_end < l4:
        raise p.stop("length")
    if "frag_later" in p.problems:
        raise p.stop(bad=False)
    return l4, proto, ip_end


def _v6_ext(p: _Pkt, pos: int, nh: int, lim: int, depth: int) -> tuple[int | None, int]:
    """Walk IPv6 extension headers with dpkt: (transport offset or None, protocol)."""
    import dpkt

    for _ in range(16):
        if nh not in V6_EXT:
            if depth == 0:
                p.put("outer_frag", bool(p.r["outer_frag"]))
            return pos, nh
        p.chain = True
        if nh not in dpkt.ip6.EXT_HDRS_CLS:
            p.bad = True  # mobility / HIP / shim6 / experimental: not decoded
            return None, nh
        try:
            ext = dpkt.ip6.EXT_HDRS_CLS[nh](p.d[pos:lim])
        except (dpkt.NeedData, dpkt.UnpackError):
            ext = None
        if ext is None or pos + ext.length > lim:
            p.problems.add("header_cut" if lim >= p.end else "length")
            p.bad = True
            return None, nh
        if nh == 44:
            _v6_fragment(p, ext, depth)
        pos += ext.length
        nh = ext.nxt
    p.problems.add("malformed")
    p.bad = True
    return None, nh


def _v6_fragment(p: _Pkt, ext: object, depth: int) -> None:
    off, more = ext.frag_off, ext.m_flag  # type: ignore[attr-defined]
    if depth == 0:
        p.put("outer_frag", True)
        p.put("outer_mf", bool(more))
        p.r["outer_frag_off"] = off * 8
    if off:
        p.problems.add("frag_later")
    elif more:
        p.problems.add("frag_first")


# ------------------------------------------------------------------------- UDP tunnels

def _udp_tunnel(p: _Pkt, l4: int, proto: int, lim: int, depth: int,
                hints: tuple[int, ...]) -> tuple[int, int] | None:
    """Record the ports; for a tunnel, enter it: (inner L3 offset, its EtherType), else None."""
    sp, dp = p.u(l4, 2, lim), p.u(l4 + 2, 2, lim)
    pre = "outer" if depth == 0 else "inner"
    p.put(f"{pre}_sport", sp)
    p.put(f"{pre}_dport", dp)
    if proto != 17 or sp is None or dp is None:
        return None
    if 4500 in (sp, dp):
        spi = p.u(l4 + 8, 4, lim)
        if spi:
            p.r["esp_spi"] = spi
    found = _tunnel_header(p, l4 + 8, lim, {sp, dp}, hints)
    if found is None:
        return None
    kind, vni, flags, tproto, inner, etype = found
    if depth == MAX_DEPTH:
        p.problems.add("tunnel_depth")
        p.bad = True
        return None
    _enter(p, depth + 1, kind, vni, flags, tproto)
    if inner > lim:
        raise p.missing(inner, 0)
    if etype == 0:
        raise p.stop()
    if etype is None:
        return _inner_eth(p, inner, lim)
    p.put("inner_ethertype", etype)
    return inner, etype


def _tunnel_header(p: _Pkt, h: int, lim: int, ports: set[int], hints: tuple[int, ...]
                   ) -> tuple[int, int | None, int | None, int | None, int, int | None] | None:
    """(kind, VNI, flags, protocol, inner offset, inner EtherType or None for Ethernet)."""
    b0 = p.u(h, 1, lim)
    if b0 is None:
        return None
    if ports & ({4789, 8472} | set(hints)):
        if not b0 & 0x08:
            if p.r["tunnel_depth"] == 0:
                p.r["vxlan_flags"] = b0
            return None
        return 1, p.u(h + 4, 3, lim), b0, None, h + 8, None
    if 4790 in ports and b0 & 0x04:  # the P bit: a next-protocol field (without it Linux drops)
        nxt = p.u(h + 3, 1, lim)
        et = {3: None, 1: 0x800, 2: 0x86DD}.get(nxt, 0)  # type: ignore[arg-type]
        return 2, p.u(h + 4, 3, lim) if b0 & 0x08 else None, b0, nxt, h + 8, et
    if 6081 in ports:
        if b0 >> 6:
            return None
        pt = p.u(h + 2, 2, lim)
        et = None if pt == 0x6558 else (pt if pt in (0x800, 0x86DD) else 0)
        return 3, p.u(h + 4, 3, lim), None, pt, h + 8 + (b0 & 0x3F) * 4, et
    if _plausible_vxlan(p, h, lim):
        return 1, p.u(h + 4, 3, lim), b0, None, h + 8, None
    return None


def _plausible_vxlan(p: _Pkt, h: int, lim: int) -> bool:
    """Exactly a VXLAN header (flags 0x08, reserved zero) and an Ethernet frame with a unicast
    non-zero source MAC carrying IPv4/IPv6 (version checked), ARP or an 802.1Q tag."""
    hdr = p.d[h:h + 8] if h + 8 <= min(lim, p.end) else b""
    if len(hdr) < 8 or hdr[:4] != b"\x08\0\0\0" or hdr[7] != 0:
        return False
    src, t, b = p.u(h + 14, 6, lim), p.u(h + 20, 2, lim), p.u(h + 22, 1, lim)
    if not src or src >> 40 & 1 or b is None:
        return False
    return (t, b >> 4) in ((0x800, 4), (0x86DD, 6)) or t in (0x806, 0x8100)


def _enter(p: _Pkt, depth: int, kind: int, vni: int | None, flags: int | None, tproto: int | None) -> None:
    """Record tunnel level ``depth``; a nested one replaces what the outer put in inner_*."""
    r = p.r
    r["tunnel_depth"] = depth
    r["ip_id"] = ABSENT["ip_id"]
    if depth == 1:
        r["tunnel"] = kind
        p.put("vni", vni)
        p.put("vxlan_flags", flags)
        p.put("tunnel_proto", tproto)
        return
    p.put("vni_inner", vni)
    for c in INNER_COLUMNS:
        r[c] = ABSENT[c]
        if c in PRESENT_BITS:
            r["present"] = int(r["present"]) & ~PRESENT_BITS[c]  # type: ignore[call-overload]


def _inner_eth(p: _Pkt, ie: int, lim: int) -> tuple[int, int]:
    p.put("inner_eth_dst", p.u(ie, 6, lim))
    p.put("inner_eth_src", p.u(ie + 6, 6, lim))
    t = p.u(ie + 12, 2, lim)
    hdr = ie + 14
    if t == 0x8100:
        tci = p.u(ie + 14, 2, lim)
        if tci is not None:
            p.r["inner_vlan"] = tci & 0xFFF
        t = p.u(ie + 16, 2, lim)
        hdr = ie + 18
    if t is None:
        raise p.missing(hdr - 2, 2)
    p.put("inner_ethertype", t)
    return hdr, t


# ------------------------------------------------------------------------- transport

def _transport(p: _Pkt, t4: int, proto: int, t_end: int) -> None:
    lim = min(p.end, t_end)
    r = p.r
    if proto == 6:
        hl = _tcp(p, t4, lim)
    elif proto in (17, 50):
        hl = 8
        if proto == 50:
            p.put("esp_spi", p.u(t4, 4, lim))
    elif proto in (1, 58):
        p.put("icmp_type", p.u(t4, 1, lim))
        p.put("icmp_code", p.u(t4 + 1, 1, lim))
        hl = 8
    elif proto == 59:
        return
    else:
        raise p.stop()
    start = t4 + hl
    if start > p.end:
        p.problems.add("header_cut")
    plen = t_end - start
    if plen < 0:
        raise p.stop("length")
    r["payload_len"] = plen
    stop = min(t_end, p.end, start + HASH_BYTES)
    if plen > 0 and stop > start:
        p.put("payload_hash", fnv1a64(p.d[start:stop]))


def _tcp(p: _Pkt, t4: int, lim: int) -> int:
    """TCP fields and options; the header length."""
    p.put("tcp_seq", p.u(t4 + 4, 4, lim))
    p.put("tcp_ack", p.u(t4 + 8, 4, lim))
    p.put("tcp_flags", p.u(t4 + 13, 1, lim))
    p.put("tcp_win", p.u(t4 + 14, 2, lim))
    doff_b = p.u(t4 + 12, 1, lim)
    if doff_b is None:
        raise p.missing(t4 + 12, 1)
    doff = doff_b >> 4
    if doff < 5:
        raise p.stop("malformed")
    _tcp_opts(p, p.r, t4 + 20, min(t4 + doff * 4, lim))
    return doff * 4


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
