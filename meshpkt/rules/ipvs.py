"""Parsers for ``ipvsadm -Ln``, ``ipvsadm -Sn`` and ``ipvsadm -Lnc`` (connection table)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address

_VALUE_OPTS = {"-t": "-t", "--tcp-service": "-t", "-u": "-u", "--udp-service": "-u", "--sctp-service": "--sctp-service",
               "-f": "-f", "--fwmark-service": "-f", "-s": "-s", "--scheduler": "-s", "-r": "-r",
               "--real-server": "-r", "-w": "-w", "--weight": "-w", "-p": "-p", "--persistent": "-p",
               "-M": "-M", "--netmask": "-M", "-b": "-b", "--sched-flags": "-b", "-x": "-x", "--u-threshold": "-x",
               "-y": "-y", "--l-threshold": "-y", "--pe": "--pe"}
_FORWARD = {"-m": "Masq", "--masquerading": "Masq", "-g": "Route", "--gatewaying": "Route",
            "-i": "Tunnel", "--ipip": "Tunnel"}


@dataclass
class IpvsDest:
    """A real server: ``addr:port`` (port 0 = keep the packet's port), forwarding method
    (Masq / Route / Tunnel / Local) and weight; connection counts when listed."""

    addr: IPv4Address
    port: int
    forward: str
    weight: int
    active: int | None = None
    inactive: int | None = None
    text: str = ""


@dataclass
class IpvsService:
    """A virtual service: ``kind`` FWM (``fwmark`` set) or TCP/UDP/SCTP (``addr``/``port`` set)."""

    kind: str
    scheduler: str
    fwmark: int | None = None
    addr: IPv4Address | None = None
    port: int | None = None
    flags: list[str] = field(default_factory=list)
    dests: list[IpvsDest] = field(default_factory=list)
    text: str = ""

    def key(self) -> str:
        """``"FWM 258"`` or ``"TCP 10.0.0.5:80"``."""
        return f"FWM {self.fwmark}" if self.kind == "FWM" else f"{self.kind} {self.addr}:{self.port}"


@dataclass
class IpvsTable:
    """Services of one namespace and the lines not understood."""

    services: list[IpvsService] = field(default_factory=list)
    version: str | None = None
    unparsed: list[str] = field(default_factory=list)


@dataclass
class IpvsConn:
    """One entry of the IPVS connection table (``ipvsadm -Lnc``)."""

    proto: str
    expire: str
    state: str
    source: tuple[IPv4Address, int]
    virtual: tuple[IPv4Address, int] | None
    dest: tuple[IPv4Address, int]
    text: str = ""


def _hostport(text: str) -> tuple[IPv4Address, int] | None:
    m = re.fullmatch(r"\[?([\d.]+)\]?:(\d+)", text)
    if not m:
        return None
    try:
        return IPv4Address(m.group(1)), int(m.group(2))
    except ValueError:
        return None


def parse_ipvsadm_list(text: str) -> IpvsTable:
    """Parse ``ipvsadm -L -n`` (also ``--stats``-less variants with ``persistent``/``ops`` flags)."""
    tbl = IpvsTable()
    svc: IpvsService | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = re.match(r"IP Virtual Server version (\S+)", line)
        if m:
            tbl.version = m.group(1)
            continue
        if line.startswith("Prot LocalAddress") or line.startswith("-> RemoteAddress"):
            continue
        m = re.match(r"^FWM\s+(\d+)\s+(\S+)\s*(.*)$", line)
        if m:
            svc = IpvsService(kind="FWM", fwmark=int(m.group(1)), scheduler=m.group(2),
                              flags=m.group(3).split(), text=line)
            tbl.services.append(svc)
            continue
        m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)\s+(\S+)\s*(.*)$", line)
        if m and _hostport(m.group(2)):
            hp = _hostport(m.group(2))
            assert hp is not None
            svc = IpvsService(kind=m.group(1), addr=hp[0], port=hp[1], scheduler=m.group(3),
                              flags=m.group(4).split(), text=line)
            tbl.services.append(svc)
            continue
        m = re.match(r"^->\s+(\S+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", line)
        if m and svc is not None and _hostport(m.group(1)):
            hp = _hostport(m.group(1))
            assert hp is not None
            svc.dests.append(IpvsDest(addr=hp[0], port=hp[1], forward=m.group(2), weight=int(m.group(3)),
                                      active=int(m.group(4)), inactive=int(m.group(5)), text=line))
            continue
        tbl.unparsed.append(raw)
    return tbl


def parse_ipvsadm_save(text: str) -> IpvsTable:
    """Parse ``ipvsadm -S -n`` (``-A -f 258 -s rr`` / ``-a -f 258 -r 10.0.0.17:0 -m -w 1``)."""
    tbl = IpvsTable()
    by_key: dict[str, IpvsService] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            toks = shlex.split(line)
        except ValueError:
            toks = line.split()
        if not toks or toks[0] not in ("-A", "-a", "--add-service", "--add-server"):
            tbl.unparsed.append(raw)
            continue
        opts: dict[str, str] = {}
        flags: list[str] = []
        i = 1
        while i < len(toks):
            t = toks[i]
            if t in _VALUE_OPTS and i + 1 < len(toks):
                opts[_VALUE_OPTS[t]] = toks[i + 1]
                i += 2
                continue
            flags.append(t)
            i += 1
        kind = key = None
        svc_addr: tuple[IPv4Address, int] | None = None
        fwmark: int | None = None
        for opt, k in (("-t", "TCP"), ("-u", "UDP"), ("--sctp-service", "SCTP"), ("-f", "FWM")):
            if opt in opts:
                kind = k
                if k == "FWM":
                    try:
                        fwmark = int(opts[opt], 0)
                    except ValueError:
                        kind = None
                    key = f"FWM {fwmark}"
                else:
                    svc_addr = _hostport(opts[opt])
                    key = f"{k} {opts[opt]}" if svc_addr else None
                break
        if kind is None or key is None:
            tbl.unparsed.append(raw)
            continue
        if toks[0] in ("-A", "--add-service"):
            svc = IpvsService(kind=kind, scheduler=opts.get("-s", "wlc"), fwmark=fwmark,
                              addr=svc_addr[0] if svc_addr else None, port=svc_addr[1] if svc_addr else None,
                              flags=flags + ([f"persistent {opts['-p']}"] if "-p" in opts else []), text=line)
            by_key[key] = svc
            tbl.services.append(svc)
            continue
        target = by_key.get(key)
        real = _hostport(opts.get("-r", ""))
        if target is None or real is None:
            tbl.unparsed.append(raw)
            continue
        fwd = next((_FORWARD[f] for f in flags if f in _FORWARD), "Masq")
        try:
            weight = int(opts.get("-w", "1"))
        except ValueError:
            weight = 1
        target.dests.append(IpvsDest(addr=real[0], port=real[1], forward=fwd, weight=weight, text=line))
    return tbl


def parse_ipvsadm_conns(text: str) -> tuple[list[IpvsConn], list[str]]:
    """Parse ``ipvsadm -L -n -c``; returns (connections, unparsed lines)."""
    conns: list[IpvsConn] = []
    unparsed: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("IPVS connection entries") or line.startswith("pro expire"):
            continue
        toks = line.split()
        if len(toks) == 6:
            src, virt, dst = _hostport(toks[3]), _hostport(toks[4]), _hostport(toks[5])
        elif len(toks) == 5:  # some versions omit the virtual column for FWM templates
            src, virt, dst = _hostport(toks[3]), None, _hostport(toks[4])
        else:
            unparsed.append(raw)
            continue
        if src is None or dst is None:
            unparsed.append(raw)
            continue
        conns.append(IpvsConn(proto=toks[0], expire=toks[1], state=toks[2], source=src, virtual=virt, dest=dst,
                              text=line))
    return conns, unparsed
