"""The detectors of the catalogue; importing this package registers them (in this order)."""

from meshpkt.diagnose.detectors import ingress, overlay, packets, rules  # noqa: F401
