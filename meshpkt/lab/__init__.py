"""meshpkt.lab: a Swarm-faithful routing mesh built from Linux network namespaces, with capture at
every hop.

- :class:`LabSpec` (``LabSpec.load(path)`` from YAML/TOML) describes nodes, networks and services;
- :class:`Lab` builds (``up``), describes (``status``), uses (``exec``, ``capture``), breaks (fault hooks)
  and removes (``down``) one lab;
- :func:`status` returns the JSON-able status document documented in :mod:`meshpkt.lab.status`.
"""

from __future__ import annotations

from meshpkt.lab.build import Lab, down, status, up
from meshpkt.lab.spec import LabSpec, NetworkSpec, PortSpec, ServiceSpec

__all__ = ["Lab", "LabSpec", "NetworkSpec", "PortSpec", "ServiceSpec", "down", "status", "up"]
