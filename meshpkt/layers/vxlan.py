"""VXLAN as Docker Swarm's overlay driver uses it (Linux ``vxlan`` link, UDP 4789).

Virtual eXtensible Local Area Network, RFC 7348, section 5::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |R|R|R|R|I|R|R|R|            Reserved                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                VXLAN Network Identifier (VNI) |   Reserved    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

followed by the inner Ethernet frame. The I flag (0x08) says the VNI is valid.

Why not ``scapy.layers.vxlan.VXLAN``: its class declares destination port 8472 (the pre-IANA
Linux default) for ``UDP()/VXLAN()``; depending on the scapy version, a later binding turns
that into source *and* destination 4789. Swarm uses dport 4789 (or ``--data-path-port``) with
a flow-hash source port, and that is what ours builds. Ours
builds with 4789 and is placed *first* in UDP's dissection table for every port bound
through :func:`bind_vxlan_port`, so UDP/4789 dissects as this class whether or not
scapy's own module was imported before or after this one.

All layer bindings live in one block at the end of this module; nothing else in scapy's
global configuration is touched.
"""

from __future__ import annotations

from scapy.fields import FlagsField, ThreeBytesField, X3BytesField, XByteField
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, bind_layers, bind_top_down

from meshpkt.mesh.proto import VXLAN_PORT  # IANA VXLAN port, Docker's default data-path port

__all__ = ["VXLAN", "VXLAN_FLAG_I", "VXLAN_PORT", "bind_vxlan_port", "bound_vxlan_ports"]

VXLAN_FLAG_I = 0x08
"""The "VNI valid" flag of RFC 7348."""

_FLAG_NAMES = ["R0", "R1", "R2", "I", "R4", "R5", "R6", "R7"]


class VXLAN(Packet):
    """VXLAN header (RFC 7348): 8 bytes, then the inner Ethernet frame.

    Fields: ``flags`` (8 bits, default 0x08 = I, "VNI valid"), ``reserved1`` (24 bits),
    ``vni`` (24 bits), ``reserved2`` (8 bits). ``UDP()/VXLAN()`` sets UDP dport 4789.
    """

    name = "VXLAN"
    fields_desc = [
        FlagsField("flags", VXLAN_FLAG_I, 8, _FLAG_NAMES),
        X3BytesField("reserved1", 0),
        ThreeBytesField("vni", 0),
        XByteField("reserved2", 0),
    ]

    def mysummary(self) -> str:
        return str(self.sprintf("VXLAN (vni=%VXLAN.vni%)"))

    def default_payload_class(self, payload: bytes) -> type[Packet]:
        """The payload of VXLAN is always an Ethernet frame (RFC 7348)."""
        return Ether


_BOUND_PORTS: set[int] = set()


def bind_vxlan_port(port: int) -> None:
    """Dissect UDP datagrams to ``port`` as :class:`VXLAN` (for ``--data-path-port``).

    The binding is put first in UDP's dissection table, so it wins over any other layer
    bound to the same port (scapy's own VXLAN included). Building still defaults to 4789;
    set ``UDP(dport=port)`` explicitly (or use ``vxlan_underlay(..., port=port)``).
    Calling it again for the same port is harmless.
    """
    if not 0 < port < 65536:
        from meshpkt.errors import UsageError

        raise UsageError(f"VXLAN port must be in 1..65535, got {port}")
    entry = ({"dport": port}, VXLAN)
    UDP.payload_guess = [entry] + [g for g in UDP.payload_guess if g != entry]
    _BOUND_PORTS.add(port)


def bound_vxlan_ports() -> frozenset[int]:
    """The UDP destination ports this module dissects as VXLAN."""
    return frozenset(_BOUND_PORTS)


# --- layer bindings (the only global scapy state this package changes) -------------------
bind_top_down(UDP, VXLAN, dport=VXLAN_PORT)
bind_vxlan_port(VXLAN_PORT)
bind_layers(VXLAN, Ether)
