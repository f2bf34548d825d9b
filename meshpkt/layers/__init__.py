"""meshpkt.layers: Scapy layers and hop builders for Docker Swarm's routing mesh.

- :class:`VXLAN` (RFC 7348) builds ``UDP()/VXLAN()`` with dport 4789 and dissects UDP/4789
  (and every port given to :func:`bind_vxlan_port`) as itself.
- Hop builders: :func:`client_to_node`, :func:`node_to_sbox`, :func:`sbox_to_task`,
  :func:`vxlan_underlay`, :func:`task_redirected`, replies :func:`task_to_sbox`,
  :func:`sbox_to_node`, :func:`node_to_client`; the whole chain :func:`ingress_path`.
"""

from meshpkt.layers.swarm import (
    EXAMPLE_SYN,
    EXAMPLE_SYNACK,
    EXAMPLE_TOPOLOGY,
    Hop,
    IngressTopology,
    TcpSegment,
    client_to_node,
    ingress_path,
    node_to_client,
    node_to_sbox,
    sbox_to_node,
    sbox_to_task,
    swarm_mac,
    task_redirected,
    task_to_sbox,
    vxlan_src_port,
    vxlan_underlay,
    with_segment,
)
from meshpkt.layers.vxlan import VXLAN, VXLAN_PORT, bind_vxlan_port, bound_vxlan_ports

__all__ = [
    "VXLAN", "VXLAN_PORT", "bind_vxlan_port", "bound_vxlan_ports",
    "EXAMPLE_SYN", "EXAMPLE_SYNACK", "EXAMPLE_TOPOLOGY", "Hop", "IngressTopology", "TcpSegment",
    "client_to_node", "ingress_path", "node_to_client", "node_to_sbox", "sbox_to_node", "sbox_to_task",
    "swarm_mac", "task_redirected", "task_to_sbox", "vxlan_src_port", "vxlan_underlay", "with_segment",
]
