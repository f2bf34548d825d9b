"""The columnar decoder's numba kernel: every packet of a chunk walked layer by layer.

``decode_rows`` runs one compiled loop over the packets and writes straight into the packet
table's columns (one tuple of arrays per dtype, see ``_layout``). Each layer is a small
function: the link layer (Ethernet / SLL / SLL2 / raw / null, VLAN tags, 802.3 LLC/SNAP),
IPv4 (options skipped by IHL) and IPv6 (the extension-header chain walked), the UDP
tunnels (VXLAN on any port, VXLAN-GPE, Geneve with options, nested up to ``MAX_DEPTH``),
ESP (also in UDP 4500) and the innermost transport (TCP options included). Every field is
read through ``_u``, which returns -1 for bytes outside the captured packet or the
enclosing IP packet, so a field is filled only when all its bytes are there.

Each layer function returns flag bits: the low 16 are ``schema.PROBLEM_BITS``, ``BAD``
marks a claimed layer that was not decoded and ``CHAIN`` an option/extension chain. The
same semantics are implemented independently, in plain Python, by ``slow.decode_packet``
(the reference the tests compare this kernel with).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from meshpkt.decode._layout import at, present_bit, problem_bit

# ---------------------------------------------------------------- constants (compile-time)
BAD = 1 << 16
CHAIN = 1 << 17
CUT = problem_bit("header_cut")
LENGTH = problem_bit("length")
LFF = problem_bit("length_from_frame")
FRAG1 = problem_bit("frag_first")
FRAGN = problem_bit("frag_later")
MALF = problem_bit("malformed")
DEEP = problem_bit("tunnel_depth")
#: tunnels decoded inside each other at most
MAX_DEPTH = 2
#: payload digest covers this many leading payload bytes (slow.HASH_BYTES)
HASH_BYTES = 64
TOUCH_AHEAD = 4096
#: packets decoded into the staging matrix at a time (55 rows x 512 int64: 225 kB, in L2)
BLOCK = 512

P_ETH_SRC = present_bit("eth_src")
P_ETH_DST = present_bit("eth_dst")
P_ETHERTYPE = present_bit("ethertype")
P_OUTER_SRC = present_bit("outer_src")
P_OUTER_DST = present_bit("outer_dst")
P_IETH_SRC = present_bit("inner_eth_src")
P_IETH_DST = present_bit("inner_eth_dst")
P_IETHERTYPE = present_bit("inner_ethertype")
P_INNER_SRC = present_bit("inner_src")
P_INNER_DST = present_bit("inner_dst")
P_DF = present_bit("outer_df")
P_FRAG = present_bit("outer_frag")

TCP_SEQ, TCP_ACK, TCP_TSVAL, TCP_TSECR, ESP_SPI = (at(n) for n in (
    "tcp_seq", "tcp_ack", "tcp_tsval", "tcp_tsecr", "esp_spi"))
VLAN, VLAN2, OUTER_IP_ID, OUTER_SPORT, OUTER_DPORT, VNI, INNER_VLAN = (at(n) for n in (
    "vlan", "vlan2", "outer_ip_id", "outer_sport", "outer_dport", "vni", "inner_vlan"))
INNER_SPORT, INNER_DPORT, IP_ID, TCP_WIN, TCP_MSS, PAYLOAD_LEN = (at(n) for n in (
    "inner_sport", "inner_dport", "ip_id", "tcp_win", "tcp_mss", "payload_len"))
TUNNEL_PROTO, VNI_INNER, OUTER_FRAG_OFF, OUTER_FRAG_LEN = (at(n) for n in (
    "tunnel_proto", "vni_inner", "outer_frag_off", "outer_frag_len"))
OUTER_PROTO, OUTER_TTL, VXLAN_FLAGS, INNER_PROTO, INNER_TTL = (at(n) for n in (
    "outer_proto", "outer_ttl", "vxlan_flags", "inner_proto", "inner_ttl"))
TCP_FLAGS, TCP_WSCALE, ICMP_TYPE, ICMP_CODE = (at(n) for n in ("tcp_flags", "tcp_wscale", "icmp_type", "icmp_code"))
ETH_SRC, ETH_DST, INNER_ETH_SRC, INNER_ETH_DST = (at(n) for n in (
    "eth_src", "eth_dst", "inner_eth_src", "inner_eth_dst"))
OUTER_SRC, OUTER_DST, INNER_SRC, INNER_DST = (at(n) for n in ("outer_src", "outer_dst", "inner_src", "inner_dst"))
ETHERTYPE, INNER_ETHERTYPE, PRESENT, PROBLEMS = (at(n) for n in (
    "ethertype", "inner_ethertype", "present", "problems"))
DECODED, OUTER_IPVER, TUNNEL, TUNNEL_DEPTH, INNER_IPVER = (at(n) for n in (
    "decoded", "outer_ipver", "tunnel", "tunnel_depth", "inner_ipver"))
TRUNCATED, OUTER_DF, OUTER_FRAG, OUTER_MF = (at(n) for n in ("truncated", "outer_df", "outer_frag", "outer_mf"))


# ---------------------------------------------------------------- byte access


@njit(cache=True, inline="always")
def _u(buf, p, nb, lim):  # pragma: no cover - numba
    """Big-endian unsigned of ``nb`` bytes at ``p``, or -1 when they do not end by ``lim``."""
    if p < 0 or p + nb > lim:
        return np.int64(-1)
    v = np.int64(0)
    for k in range(nb):
        v = (v << 8) | np.int64(buf[p + k])
    return v


@njit(cache=True, inline="always")
def _set_present(res, i, bit):  # pragma: no cover - numba
    res[PRESENT, i] |= bit


@njit(cache=True, inline="always")
def _missing(p, nb, end):  # pragma: no cover - numba
    """Flags for a header that does not fit: cut by the capture, or by an enclosing length."""
    if p + nb > end:
        return CUT | BAD
    return LENGTH | BAD


# ---------------------------------------------------------------- link layer


@njit(cache=True)
def _llc(buf, p, end):  # pragma: no cover - numba
    """(L3 offset, EtherType, flags) of an 802.2 LLC header at p: SNAP with OUI 0 gives its
    type; any other LLC payload is not decoded (no EtherType)."""
    dsap, ssap, ctrl = _u(buf, p, 1, end), _u(buf, p + 1, 1, end), _u(buf, p + 2, 1, end)
    if ctrl < 0:
        return -1, -1, CUT | BAD
    if dsap == 0xAA and ssap == 0xAA and ctrl == 3:
        oui, typ = _u(buf, p + 3, 3, end), _u(buf, p + 6, 2, end)
        if typ < 0:
            return -1, -1, CUT | BAD
        if oui == 0:
            return p + 8, typ, 0
    return -1, -1, BAD


@njit(cache=True)
def _link(buf, o, end, frame_end, lt, i, res):  # pragma: no cover - numba
    """(L3 offset, EtherType, flags); L3 offset -1 when there is no decodable L3."""
    if lt == 1 or lt == 113 or lt == 276:
        return _link_typed(buf, o, end, frame_end, lt, i, res)
    if lt == 101 or lt == 12 or lt == 14:
        b = _u(buf, o, 1, end)
        if b < 0:
            return -1, -1, CUT | BAD
        v = b >> 4
        return o, 0x800 if v == 4 else (0x86DD if v == 6 else -1), 0
    if lt == 228:
        return o, 0x800, 0
    if lt == 229:
        return o, 0x86DD, 0
    if lt == 0 or lt == 108:
        fam = _u(buf, o, 4, end)
        if fam < 0:
            return -1, -1, CUT | BAD
        if lt == 0 and fam > 0xFF:
            fam = ((fam & 0xFF) << 24) | ((fam & 0xFF00) << 8) | ((fam >> 8) & 0xFF00) | (fam >> 24)
        et = 0x800 if fam == 2 else (0x86DD if fam == 10 or fam == 24 or fam == 28 or fam == 30 else -1)
        return o + 4, et, 0
    return -1, -1, BAD


@njit(cache=True)
def _link_typed(buf, o, end, frame_end, lt, i, res):  # pragma: no cover - numba
    """Ethernet, SLL, SLL2: addresses, up to two VLAN tags, EtherType or 802.3 LLC."""
    f = 0
    if lt == 1:
        d, s = _u(buf, o, 6, end), _u(buf, o + 6, 6, end)
        if d >= 0:
            res[ETH_DST, i] = d
            _set_present(res, i, P_ETH_DST)
        if s >= 0:
            res[ETH_SRC, i] = s
            _set_present(res, i, P_ETH_SRC)
        tp, tr = o + 12, o + 14
    else:
        if lt == 113:
            alen, apos, tp, tr = _u(buf, o + 4, 2, end), o + 6, o + 14, o + 16
        else:
            alen, apos, tp, tr = _u(buf, o + 11, 1, end), o + 12, o, o + 20
        a = _u(buf, apos, 6, end)
        if alen == 6 and a >= 0:
            res[ETH_SRC, i] = a
            _set_present(res, i, P_ETH_SRC)
    if tr > end:
        f |= CUT
    t = _u(buf, tp, 2, end)
    for k in range(2):
        if not (t == 0x8100 or t == 0x88A8 or t == 0x9100):
            break
        tci = _u(buf, tr, 2, end)
        if tci >= 0:
            if k == 0:
                res[VLAN, i] = tci & 0xFFF
            else:
                res[VLAN2, i] = tci & 0xFFF
        t = _u(buf, tr + 2, 2, end)
        tr += 4
    if t < 0:
        return -1, -1, f | CUT | BAD
    if t < 0x600:
        if lt == 1:  # 802.3: a length, then LLC
            if t > frame_end - tr:
                f |= LENGTH
            l3, et, g = _llc(buf, tr, end)
            return l3, et, f | g
        if t == 4:  # cooked 802.2 LLC
            l3, et, g = _llc(buf, tr, end)
            return l3, et, f | g
        return -1, -1, f | BAD
    return tr, t, f


@njit(cache=True)
def _inner_eth(buf, ie, end, lim, i, res):  # pragma: no cover - numba
    """The Ethernet frame carried by a tunnel (one optional 802.1Q tag)."""
    if ie > end:
        return -1, -1, CUT | BAD
    if ie > lim:
        return -1, -1, LENGTH | BAD
    d, s = _u(buf, ie, 6, lim), _u(buf, ie + 6, 6, lim)
    if d >= 0:
        res[INNER_ETH_DST, i] = d
        _set_present(res, i, P_IETH_DST)
    if s >= 0:
        res[INNER_ETH_SRC, i] = s
        _set_present(res, i, P_IETH_SRC)
    t = _u(buf, ie + 12, 2, lim)
    hdr = ie + 14
    if t == 0x8100:
        tci = _u(buf, ie + 14, 2, lim)
        if tci >= 0:
            res[INNER_VLAN, i] = tci & 0xFFF
        t = _u(buf, ie + 16, 2, lim)
        hdr = ie + 18
    if t < 0:
        return -1, -1, _missing(hdr - 2, 2, end)
    res[INNER_ETHERTYPE, i] = t
    _set_present(res, i, P_IETHERTYPE)
    return hdr, t, 0


# ---------------------------------------------------------------- IP


@njit(cache=True)
def _ip4(buf, pos, end, lim, enc_end, level, in_frag, i, res):  # pragma: no cover - numba
    """IPv4 at pos: (transport offset or -1, protocol, IP end, flags). ``lim``: where readable
    bytes end; ``enc_end``: the end the enclosing layer claims (the frame for the outer IP)."""
    b0 = _u(buf, pos, 1, lim)
    if b0 < 0:
        return -1, -1, -1, _missing(pos, 1, end)
    if b0 >> 4 != 4:
        return -1, -1, -1, BAD | MALF
    ihl = b0 & 0xF
    tot, ipid, ff = _u(buf, pos + 2, 2, lim), _u(buf, pos + 4, 2, lim), _u(buf, pos + 6, 2, lim)
    ttl, proto = _u(buf, pos + 8, 1, lim), _u(buf, pos + 9, 1, lim)
    src, dst = _u(buf, pos + 12, 4, lim), _u(buf, pos + 16, 4, lim)
    f = CHAIN if ihl > 5 else 0
    if ipid >= 0:
        res[IP_ID, i] = ipid
    if level == 0:
        _ip4_outer(ipid, ff, ttl, proto, src, dst, i, res)
    else:
        _ip4_inner(ttl, proto, src, dst, i, res)
    if ihl < 5:
        return -1, proto, -1, f | BAD | MALF
    l4 = pos + ihl * 4
    if l4 > end:
        return -1, proto, -1, f | CUT | BAD
    if l4 > lim:
        return -1, proto, -1, f | LENGTH | BAD
    if tot == 0:
        ip_end, f = enc_end, f | LFF
    else:
        ip_end = pos + tot
    if ip_end < l4:
        return -1, proto, -1, f | BAD | LENGTH
    if level == 0 and ff & 0x3FFF and tot > 0:
        res[OUTER_FRAG_LEN, i] = tot - ihl * 4
    if ip_end > enc_end:
        ip_end = enc_end
        if not in_frag:
            f |= LENGTH
    if ff & 0x1FFF:
        return -1, proto, ip_end, f | FRAGN
    if ff & 0x2000:
        f |= FRAG1
    return l4, proto, ip_end, f


@njit(cache=True)
def _ip4_outer(ipid, ff, ttl, proto, src, dst, i, res):  # pragma: no cover - numba
    res[OUTER_IPVER, i] = 4
    if ipid >= 0:
        res[OUTER_IP_ID, i] = ipid
    if ff >= 0:
        _set_present(res, i, P_DF | P_FRAG)
        res[OUTER_DF, i] = (ff & 0x4000) != 0
        res[OUTER_FRAG, i] = (ff & 0x3FFF) != 0
        res[OUTER_MF, i] = (ff & 0x2000) != 0
        if ff & 0x3FFF:
            res[OUTER_FRAG_OFF, i] = (ff & 0x1FFF) * 8
    if ttl >= 0:
        res[OUTER_TTL, i] = ttl
    if proto >= 0:
        res[OUTER_PROTO, i] = proto
    if src >= 0:
        res[OUTER_SRC, i] = src
        _set_present(res, i, P_OUTER_SRC)
    if dst >= 0:
        res[OUTER_DST, i] = dst
        _set_present(res, i, P_OUTER_DST)


@njit(cache=True)
def _ip4_inner(ttl, proto, src, dst, i, res):  # pragma: no cover - numba
    res[INNER_IPVER, i] = 4
    if ttl >= 0:
        res[INNER_TTL, i] = ttl
    if proto >= 0:
        res[INNER_PROTO, i] = proto
    if src >= 0:
        res[INNER_SRC, i] = src
        _set_present(res, i, P_INNER_SRC)
    if dst >= 0:
        res[INNER_DST, i] = dst
        _set_present(res, i, P_INNER_DST)


@njit(cache=True)
def _ip6(buf, pos, end, lim, enc_end, level, in_frag, i, res, v6off):  # pragma: no cover - numba
    """IPv6 at pos and its extension-header chain (see ``_ip4`` for the arguments/result)."""
    b0 = _u(buf, pos, 1, lim)
    if b0 < 0:
        return -1, -1, -1, _missing(pos, 1, end)
    if b0 >> 4 != 6:
        return -1, -1, -1, BAD | MALF
    plen, nh, hlim = _u(buf, pos + 4, 2, lim), _u(buf, pos + 6, 1, lim), _u(buf, pos + 7, 1, lim)
    ttl_col, proto_col = (OUTER_TTL, OUTER_PROTO) if level == 0 else (INNER_TTL, INNER_PROTO)
    ver_col, k6 = (OUTER_IPVER, 0) if level == 0 else (INNER_IPVER, 2)
    res[ver_col, i] = 6
    if hlim >= 0:
        res[ttl_col, i] = hlim
    if nh >= 0:
        res[proto_col, i] = nh
    if pos + 24 <= lim:
        v6off[k6] = pos + 8
    if pos + 40 <= lim:
        v6off[k6 + 1] = pos + 24
    if pos + 40 > lim:
        return -1, nh, -1, _missing(pos, 40, end)
    if plen == 0:
        ip_end, f = enc_end, LFF
    else:
        ip_end, f = pos + 40 + plen, 0
    if ip_end > enc_end:
        ip_end = enc_end
        if not in_frag:
            f |= LENGTH
    l4, proto, g = _v6_chain(buf, pos + 40, nh, end, min(end, ip_end), level, i, res)
    f |= g
    res[proto_col, i] = proto
    if l4 < 0:
        return -1, proto, ip_end, f
    if ip_end < l4:
        return -1, proto, ip_end, f | BAD | LENGTH
    if f & FRAGN:
        return -1, proto, ip_end, f
    return l4, proto, ip_end, f


@njit(cache=True)
def _v6_chain(buf, p, nh, end, lim, level, i, res):  # pragma: no cover - numba
    """Walk the extension headers from p: (transport offset or -1, protocol, flags)."""
    f = 0
    for _ in range(16):
        if not (nh == 0 or nh == 43 or nh == 44 or nh == 51 or nh == 60 or nh == 135 or nh == 139
                or nh == 140 or nh == 253 or nh == 254):
            if level == 0:
                _set_present(res, i, P_FRAG)
            return p, nh, f
        f |= CHAIN
        if not (nh == 0 or nh == 43 or nh == 44 or nh == 51 or nh == 60):
            return -1, nh, f | BAD  # mobility / HIP / shim6 / experimental: not decoded
        need = 2 if nh == 0 or nh == 60 else (8 if nh == 43 or nh == 44 else 12)
        if p + need > lim:
            return -1, nh, f | (CUT | BAD if lim >= end else LENGTH | BAD)
        ln = np.int64(buf[p + 1])
        size = 8 if nh == 44 else ((ln + 2) * 4 if nh == 51 else (ln + 1) * 8)
        if p + size > lim:
            return -1, nh, f | (CUT | BAD if lim >= end else LENGTH | BAD)
        if nh == 44:
            fo = _u(buf, p + 2, 2, lim)
            if level == 0:
                _set_present(res, i, P_FRAG)
                res[OUTER_FRAG, i] = True
                res[OUTER_MF, i] = (fo & 1) != 0
                res[OUTER_FRAG_OFF, i] = (fo >> 3) * 8
            if fo >> 3:
                f |= FRAGN
            elif fo & 1:
                f |= FRAG1
        nh = np.int64(buf[p])
        p += size
    return -1, nh, f | BAD | MALF


# ---------------------------------------------------------------- UDP tunnels


@njit(cache=True, inline="always")
def _is_port(ports, sp, dp):  # pragma: no cover - numba
    for k in range(ports.shape[0]):
        if ports[k] == sp or ports[k] == dp:
            return True
    return False


@njit(cache=True)
def _plausible_vxlan(buf, h, lim):  # pragma: no cover - numba
    """A VXLAN header (flags 0x08, reserved zero) followed by a plausible Ethernet frame:
    unicast non-zero source MAC, an IPv4/IPv6 (version nibble checked), ARP or 802.1Q type."""
    if _u(buf, h, 4, lim) != 0x08000000 or _u(buf, h + 7, 1, lim) != 0:
        return False
    ie = h + 8
    src, t, b = _u(buf, ie + 6, 6, lim), _u(buf, ie + 12, 2, lim), _u(buf, ie + 14, 1, lim)
    if src <= 0 or (src >> 40) & 1 or b < 0:
        return False
    return (t == 0x800 and b >> 4 == 4) or (t == 0x86DD and b >> 4 == 6) or t == 0x806 or t == 0x8100


@njit(cache=True)
def _tunnel(buf, u, lim, sp, dp, hints):  # pragma: no cover - numba
    """The tunnel in the UDP datagram at u: (kind, vni, flags byte, protocol, inner offset,
    inner EtherType (-1: an Ethernet frame), found). kind 0: not a tunnel."""
    h = u + 8
    b0 = _u(buf, h, 1, lim)
    if b0 < 0:
        return 0, -1, -1, -1, -1, -1
    if _is_port(hints, sp, dp) or sp == 4789 or dp == 4789 or sp == 8472 or dp == 8472:
        if b0 & 0x08:
            return 1, _u(buf, h + 4, 3, lim), b0, -1, h + 8, -1
        return 0, -1, b0, -1, -1, -1
    if (sp == 4790 or dp == 4790) and b0 & 0x04:
        nxt = _u(buf, h + 3, 1, lim)
        vni = _u(buf, h + 4, 3, lim) if b0 & 0x08 else -1
        et = -1 if nxt == 3 else (0x800 if nxt == 1 else (0x86DD if nxt == 2 else 0))
        return 2, vni, b0, nxt, h + 8, et
    if sp == 6081 or dp == 6081:
        if b0 >> 6 != 0:
            return 0, -1, -1, -1, -1, -1
        pt = _u(buf, h + 2, 2, lim)
        et = -1 if pt == 0x6558 else (pt if pt == 0x800 or pt == 0x86DD else 0)
        return 3, _u(buf, h + 4, 3, lim), -1, pt, h + 8 + (b0 & 0x3F) * 4, et
    if _plausible_vxlan(buf, h, lim):
        return 1, _u(buf, h + 4, 3, lim), b0, -1, h + 8, -1
    return 0, -1, -1, -1, -1, -1


@njit(cache=True)
def _enter_tunnel(kind, vni, vflags, tproto, depth, i, res):  # pragma: no cover - numba
    """Record tunnel level ``depth`` (1: outermost) and forget what an outer level put in the
    inner columns."""
    res[TUNNEL_DEPTH, i] = depth
    res[IP_ID, i] = -1
    if depth == 1:
        res[TUNNEL, i] = kind
        if vni >= 0:
            res[VNI, i] = vni
        if vflags >= 0:
            res[VXLAN_FLAGS, i] = vflags
        if tproto >= 0:
            res[TUNNEL_PROTO, i] = tproto
        return
    if vni >= 0:
        res[VNI_INNER, i] = vni
    res[INNER_ETH_SRC, i] = 0
    res[INNER_ETH_DST, i] = 0
    res[INNER_ETHERTYPE, i] = 0
    res[INNER_SRC, i] = 0
    res[INNER_DST, i] = 0
    res[PRESENT, i] &= ~(P_IETH_SRC | P_IETH_DST | P_IETHERTYPE | P_INNER_SRC | P_INNER_DST)
    res[INNER_VLAN, i] = -1
    res[INNER_IPVER, i] = 0
    res[INNER_TTL, i] = -1
    res[INNER_PROTO, i] = -1
    res[INNER_SPORT, i] = -1
    res[INNER_DPORT, i] = -1


# ---------------------------------------------------------------- transport


@njit(cache=True)
def _ports(buf, t4, lim, level, i, res):  # pragma: no cover - numba
    sp, dp = _u(buf, t4, 2, lim), _u(buf, t4 + 2, 2, lim)
    scol, dcol = (OUTER_SPORT, OUTER_DPORT) if level == 0 else (INNER_SPORT, INNER_DPORT)
    if sp >= 0:
        res[scol, i] = sp
    if dp >= 0:
        res[dcol, i] = dp
    return sp, dp


@njit(cache=True)
def _esp_in_udp(buf, h, lim, i, res):  # pragma: no cover - numba
    """UDP 4500 (NAT-T): an ESP SPI unless it is IKE (non-ESP marker 0) or a keepalive."""
    spi = _u(buf, h, 4, lim)
    if spi > 0:
        res[ESP_SPI, i] = spi


@njit(cache=True)
def _tcp(buf, t4, lim, end, i, res):  # pragma: no cover - numba
    """TCP header fields and options: (header length or -1, flags)."""
    seq, ack = _u(buf, t4 + 4, 4, lim), _u(buf, t4 + 8, 4, lim)
    doff_b, fl, win = _u(buf, t4 + 12, 1, lim), _u(buf, t4 + 13, 1, lim), _u(buf, t4 + 14, 2, lim)
    if seq >= 0:
        res[TCP_SEQ, i] = seq
    if ack >= 0:
        res[TCP_ACK, i] = ack
    if fl >= 0:
        res[TCP_FLAGS, i] = fl
    if win >= 0:
        res[TCP_WIN, i] = win
    if doff_b < 0:
        return -1, _missing(t4 + 12, 1, end)
    doff = doff_b >> 4
    if doff < 5:
        return -1, BAD | MALF
    _tcp_options(buf, t4 + 20, min(t4 + doff * 4, lim), i, res)
    return doff * 4, 0


@njit(cache=True)
def _tcp_options(buf, p, e, i, res):  # pragma: no cover - numba
    while p < e:
        kind = buf[p]
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= e:
            break
        ln = np.int64(buf[p + 1])
        if ln < 2 or p + ln > e:
            break
        if kind == 2 and ln == 4:
            res[TCP_MSS, i] = _u(buf, p + 2, 2, e)
        elif kind == 3 and ln == 3:
            res[TCP_WSCALE, i] = buf[p + 2]
        elif kind == 8 and ln == 10:
            res[TCP_TSVAL, i] = _u(buf, p + 2, 4, e)
            res[TCP_TSECR, i] = _u(buf, p + 6, 4, e)
        p += ln


@njit(cache=True)
def _transport(buf, t4, proto, t_end, end, i, res, pay):  # pragma: no cover - numba
    """The innermost transport header: its fields, payload length and digest range."""
    lim = min(end, t_end)
    f = 0
    if proto == 6:
        hl, f = _tcp(buf, t4, lim, end, i, res)
        if hl < 0:
            return f
    elif proto == 17 or proto == 50:
        hl = 8
        if proto == 50:
            spi = _u(buf, t4, 4, lim)
            if spi >= 0:
                res[ESP_SPI, i] = spi
    elif proto == 1 or proto == 58:
        ty, co = _u(buf, t4, 1, lim), _u(buf, t4 + 1, 1, lim)
        if ty >= 0:
            res[ICMP_TYPE, i] = ty
        if co >= 0:
            res[ICMP_CODE, i] = co
        hl = 8
    elif proto == 59:
        return 0
    else:
        return BAD
    start = t4 + hl
    if start > end:
        f |= CUT | BAD
    plen = t_end - start
    if plen < 0:
        return f | BAD | LENGTH
    res[PAYLOAD_LEN, i] = plen
    stop = min(t_end, end, start + HASH_BYTES)
    if plen > 0 and stop > start:
        pay[0] = start
        pay[1] = stop
    return f


# ---------------------------------------------------------------- one packet, all packets


@njit(cache=True)
def _packet(buf, o, end, frame_end, lt, hints, i, res, v6off, pay):  # pragma: no cover - numba
    """Decode one packet; returns its flags."""
    pos, et, f = _link(buf, o, end, frame_end, lt, i, res)
    if et >= 0:
        res[ETHERTYPE, i] = et
        _set_present(res, i, P_ETHERTYPE)
    if pos < 0:
        return f
    lim, enc, level, in_frag = end, frame_end, 0, False
    while True:
        if et == 0x800:
            l4, proto, ip_end, g = _ip4(buf, pos, end, lim, enc, level, in_frag, i, res)
        elif et == 0x86DD:
            l4, proto, ip_end, g = _ip6(buf, pos, end, lim, enc, level, in_frag, i, res, v6off)
        else:
            return f | BAD
        f |= g
        if l4 < 0:
            return f
        in_frag = in_frag or (g & FRAG1) != 0
        llim = min(end, ip_end)
        if proto == 6 or proto == 17:
            sp, dp = _ports(buf, l4, llim, level, i, res)
            if proto == 17 and sp >= 0 and dp >= 0:
                if sp == 4500 or dp == 4500:
                    _esp_in_udp(buf, l4 + 8, llim, i, res)
                kind, vni, vflags, tproto, nxt, net = _tunnel(buf, l4, llim, sp, dp, hints)
                if vflags >= 0 and level == 0 and kind == 0:
                    res[VXLAN_FLAGS, i] = vflags
                if kind > 0 and level == MAX_DEPTH:
                    f |= DEEP | BAD
                elif kind > 0:
                    level += 1
                    _enter_tunnel(kind, vni, vflags, tproto, level, i, res)
                    if level > 1:
                        v6off[2] = -1
                        v6off[3] = -1
                    if nxt > end:
                        return f | CUT | BAD
                    if nxt > llim:
                        return f | LENGTH | BAD
                    if net == 0:
                        return f | BAD
                    if net < 0:
                        nxt, net, g = _inner_eth(buf, nxt, end, llim, i, res)
                        f |= g
                        if nxt < 0:
                            return f
                    else:
                        res[INNER_ETHERTYPE, i] = net
                        _set_present(res, i, P_IETHERTYPE)
                    pos, et, lim, enc = nxt, net, llim, ip_end
                    continue
        return f | _transport(buf, l4, proto, ip_end, end, i, res, pay)


@njit(cache=True)
def _scatter(res, row, group, at, m):  # pragma: no cover - numba
    """Copy staging rows row.. into the columns of one dtype group (rows at .. at+m)."""
    for j in range(len(group)):
        col = group[j]
        for q in range(m):
            col[at + q] = res[row + j, q]
    return row + len(group)


@njit(cache=True)
def decode_rows(buf, off, cap, wire, lt, hints, absent, groups, base, v6off, pay):  # pragma: no cover - numba
    """Decode packets k = 0..len(off)-1 into rows base + k of the output columns.

    ``groups``: the columns as one tuple per dtype (``_layout.GROUPS`` without the digest, in
    ``_layout.STAGED`` order). Packets are decoded in blocks of ``BLOCK`` into a small int64
    staging matrix (rows ``STAGED``, pre-filled with ``absent``) that stays in cache, then
    scattered into the typed columns. ``v6off[j, k]``: buffer offset of IPv6 address j
    (``_layout.V6_COLUMNS``) or -1 (pre-filled); ``pay[:, k]``: [start, stop) of the payload
    digest or -1 (pre-filled). Returns a meaningless checksum of the prefetch reads."""
    n = off.shape[0]
    nbuf = buf.shape[0]
    pf = off[0] if n else 0
    acc = np.int64(0)
    res = np.empty((absent.shape[0], BLOCK), np.int64)
    for k0 in range(0, n, BLOCK):
        m = min(BLOCK, n - k0)
        for r in range(absent.shape[0]):
            res[r, :m] = absent[r]
        for q in range(m):
            k = k0 + q
            upto = min(off[k] + TOUCH_AHEAD, nbuf)  # a sequential stream the prefetcher follows
            while pf < upto:
                acc ^= np.int64(buf[pf])
                pf += 64
            o = off[k]
            f = _packet(buf, o, o + cap[k], o + wire[k], lt[k], hints, q, res, v6off[:, k], pay[:, k])
            res[PROBLEMS, q] = f & 0xFFFF
            res[TRUNCATED, q] = 1 if cap[k] < wire[k] or (f & CUT) != 0 else 0
            res[DECODED, q] = 2 if f & BAD else (1 if f & CHAIN else 0)
        row = _scatter(res, 0, groups[0], base + k0, m)
        row = _scatter(res, row, groups[1], base + k0, m)
        row = _scatter(res, row, groups[2], base + k0, m)
        row = _scatter(res, row, groups[3], base + k0, m)
        row = _scatter(res, row, groups[4], base + k0, m)
        row = _scatter(res, row, groups[5], base + k0, m)
        row = _scatter(res, row, groups[6], base + k0, m)
        row = _scatter(res, row, groups[7], base + k0, m)
    return acc
