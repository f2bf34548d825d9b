"""The lab's topology spec: :class:`LabSpec` (nodes, networks, services), loadable from YAML or TOML.

Example (YAML; TOML takes the same keys)::

    name: mesh
    nodes: 3
    data_path_port: 4789
    services:
      - name: my-web
        replicas: 3
        publish: ["9090:80"]
        networks: [my-overlay]
      - name: backend
        replicas: 2
        networks: [my-overlay]

Everything has a Docker-like default; :meth:`LabSpec.with_overrides` applies the CLI flags.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from meshpkt.errors import UsageError

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9-]{0,20}$")
DEFAULT_NODE_IPS = ("10.211.55.10", "10.211.55.18", "10.211.55.22")


@dataclass(frozen=True)
class PortSpec:
    """One published port: ``published`` on every node -> ``target`` inside each task.

    ``mode`` is ``ingress`` (the routing mesh: every node DNATs to ingress_sbox) or ``host`` (only the
    nodes running a task publish it, DNAT straight to the task's docker_gwbridge address)."""

    published: int
    target: int
    protocol: str = "tcp"
    mode: str = "ingress"

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        """Parse ``P:T``, ``P:T/udp`` or Docker's long syntax ``mode=host,published=P,target=T,protocol=udp``."""
        if "=" in str(text):
            return cls._parse_long(str(text))
        m = re.fullmatch(r"\s*(\d+):(\d+)(?:/(tcp|udp))?\s*", str(text))
        if not m:
            raise UsageError(f"bad published port {text!r}: expected PUBLISHED:TARGET[/udp], e.g. 9090:80")
        port = cls(int(m.group(1)), int(m.group(2)), m.group(3) or "tcp")
        port.check()
        return port

    @classmethod
    def _parse_long(cls, text: str) -> PortSpec:
        kv: dict[str, str] = {}
        for item in text.split(","):
            k, sep, v = item.strip().partition("=")
            if not sep or k not in ("mode", "published", "target", "protocol"):
                raise UsageError(f"bad published port {text!r}: expected mode=,published=,target=,protocol=")
            kv[k] = v
        try:
            port = cls(int(kv["published"]), int(kv["target"]), kv.get("protocol", "tcp"), kv.get("mode", "ingress"))
        except (KeyError, ValueError):
            raise UsageError(f"bad published port {text!r}: published= and target= must be numbers") from None
        port.check()
        return port

    def check(self) -> None:
        """Raise UsageError if a port is out of range or the protocol/mode is unsupported."""
        for p in (self.published, self.target):
            if not isinstance(p, int) or not 1 <= p <= 65535:
                raise UsageError(f"port {p} out of range 1-65535")
        if self.protocol not in ("tcp", "udp"):
            raise UsageError(f"published {self.protocol} ports are not supported by the lab (tcp or udp)")
        if self.mode not in ("ingress", "host"):
            raise UsageError(f"publish mode {self.mode!r}: choose ingress or host")

    def __str__(self) -> str:
        return f"{self.published}:{self.target}/{self.protocol}" + ("" if self.mode == "ingress" else " (host)")


@dataclass(frozen=True)
class NetworkSpec:
    """A user overlay network (the ``ingress`` network is configured on :class:`LabSpec`)."""

    name: str = "my-overlay"
    subnet: str = "10.0.1.0/24"
    vni: int = 4097
    encrypted: bool = False
    """``--opt encrypted``: IPsec ESP (transport mode) between every pair of nodes for this VNI."""
    subnet6: str = ""
    """``--ipv6 --subnet <v6>``: a dual-stack overlay; tasks get an IPv6 address too (no IPv6 VIPs: the
    routing mesh and the load balancers stay IPv4, as in Swarm)."""


@dataclass(frozen=True)
class ServiceSpec:
    """A replicated service. Published services are attached to ``ingress`` as well as ``networks``."""

    name: str
    replicas: int = 1
    publish: tuple[PortSpec, ...] = ()
    networks: tuple[str, ...] = ()
    mode: str = "vip"
    port: int = 80
    """Port the task's HTTP server listens on when nothing is published (internal services)."""

    def ingress_ports(self) -> list[PortSpec]:
        """Ports published through the routing mesh (the service joins ``ingress``)."""
        return [p for p in self.publish if p.mode == "ingress"]

    def host_ports(self) -> list[PortSpec]:
        """Ports published in host mode (on the nodes running a task only)."""
        return [p for p in self.publish if p.mode == "host"]

    def target_ports(self) -> list[int]:
        """The TCP ports the task's HTTP servers listen on (``port`` when no TCP port is published)."""
        ports = sorted({p.target for p in self.publish if p.protocol == "tcp"})
        return ports or [self.port]

    def udp_ports(self) -> list[int]:
        """The UDP ports the task answers datagrams on (its published UDP targets)."""
        return sorted({p.target for p in self.publish if p.protocol == "udp"})


def _default_services() -> tuple[ServiceSpec, ...]:
    return (
        ServiceSpec("my-web", replicas=3, publish=(PortSpec(9090, 80),), networks=("my-overlay",)),
        ServiceSpec("backend", replicas=2, networks=("my-overlay",)),
    )


@dataclass(frozen=True)
class LabSpec:
    """Everything ``lab up`` builds. Defaults reproduce seed 001's 3-node cluster."""

    name: str = "mesh"
    nodes: int = 3
    underlay_subnet: str = "10.211.55.0/24"
    node_ips: tuple[str, ...] = ()
    """Underlay address per node; default 10.211.55.10/.18/.22, then .30, .31, ..."""
    client_ip: str = "10.211.55.2"
    underlay_mtu: int = 1500
    data_path_port: int = 4789
    ingress_subnet: str = "10.0.0.0/24"
    ingress_vni: int = 4096
    gwbridge_subnet: str = "172.18.0.0/16"
    overlay_mtu: int = 1450
    fwmark_base: int = 0x100
    vni_match: str = "u32"
    """How the encrypted-overlay rules match a VNI: ``u32`` (Docker <= 23) or ``bpf`` (Docker >= 24)."""
    overlays: tuple[NetworkSpec, ...] = (NetworkSpec(),)
    services: tuple[ServiceSpec, ...] = field(default_factory=_default_services)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabSpec:
        """Build a spec from plain data (parsed YAML/TOML); unknown keys are an error."""
        if not isinstance(data, dict):
            raise UsageError("lab spec must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown lab spec key(s): {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = dict(data)
        try:
            if "node_ips" in kw:
                kw["node_ips"] = tuple(str(x) for x in kw["node_ips"])
            if "overlays" in kw:
                kw["overlays"] = tuple(NetworkSpec(**o) for o in kw["overlays"])
            if "services" in kw:
                svcs = []
                for s in kw["services"]:
                    s = dict(s)
                    pub = s.get("publish", ())
                    if isinstance(pub, str | int):
                        pub = [pub]
                    s["publish"] = tuple(
                        PortSpec(**p) if isinstance(p, dict) else PortSpec.parse(str(p)) for p in pub)
                    s["networks"] = tuple(s.get("networks", ()))
                    svcs.append(ServiceSpec(**s))
                kw["services"] = tuple(svcs)
            spec = cls(**kw)
        except TypeError as exc:
            raise UsageError(f"bad lab spec: {exc}") from None
        spec.check()
        return spec

    @classmethod
    def load(cls, path: str | Path) -> LabSpec:
        """Load a spec from a ``.yaml``/``.yml`` or ``.toml`` file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read lab spec {p}: {exc.strerror}") from None
        try:
            if p.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except Exception as exc:  # yaml/toml parse errors
            raise UsageError(f"cannot parse lab spec {p}: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(data)

    def with_overrides(self, *, name: str | None = None, nodes: int | None = None,
                       replicas: int | None = None, publish: list[str] | None = None,
                       data_path_port: int | None = None) -> LabSpec:
        """Apply CLI flags: ``replicas``/``publish`` change the first published service (or the first one)."""
        spec = self
        if name is not None:
            spec = replace(spec, name=name)
        if nodes is not None:
            spec = replace(spec, nodes=nodes, node_ips=spec.node_ips[:nodes])
        if data_path_port is not None:
            spec = replace(spec, data_path_port=data_path_port)
        if replicas is not None or publish:
            svcs = list(spec.services)
            if not svcs:
                svcs = [ServiceSpec("my-web", networks=tuple(o.name for o in spec.overlays[:1]))]
            idx = next((i for i, s in enumerate(svcs) if s.publish), 0)
            s = svcs[idx]
            if replicas is not None:
                s = replace(s, replicas=replicas)
            if publish:
                s = replace(s, publish=tuple(PortSpec.parse(p) for p in publish))
            svcs[idx] = s
            spec = replace(spec, services=tuple(svcs))
        spec.check()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-able) of this spec."""
        d = asdict(self)
        for s in d["services"]:
            s["publish"] = [dict(p) for p in s["publish"]]
            s["networks"] = list(s["networks"])
        d["overlays"] = [dict(o) for o in d["overlays"]]
        d["node_ips"] = list(d["node_ips"])
        return d

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Raise UsageError on an inconsistent spec (one line)."""
        if not _NAME_RE.match(self.name):
            raise UsageError(f"bad lab name {self.name!r}: 1-10 lowercase letters/digits, starting with a letter")
        if not 1 <= self.nodes <= 32:
            raise UsageError(f"nodes must be 1..32, got {self.nodes}")
        if not 1024 <= self.data_path_port <= 49151:
            raise UsageError(f"data path port must be 1024-49151 (like --data-path-port), got {self.data_path_port}")
        if not 576 <= self.underlay_mtu <= 9000 or not 576 <= self.overlay_mtu <= self.underlay_mtu:
            raise UsageError("MTUs must satisfy 576 <= overlay_mtu <= underlay_mtu <= 9000")
        try:
            under = ipaddress.IPv4Network(self.underlay_subnet)
            nets = [ipaddress.IPv4Network(self.ingress_subnet), ipaddress.IPv4Network(self.gwbridge_subnet)]
            nets += [ipaddress.IPv4Network(o.subnet) for o in self.overlays]
            addrs = [ipaddress.IPv4Address(self.client_ip)] + [ipaddress.IPv4Address(a) for a in self.node_ips]
        except ValueError as exc:
            raise UsageError(f"bad address in lab spec: {exc}") from None
        for a in addrs:
            if a not in under:
                raise UsageError(f"{a} is not in the underlay subnet {under}")
        if len(set(addrs)) != len(addrs):
            raise UsageError("underlay addresses must be distinct")
        for i, na in enumerate(nets):
            for nb in nets[i + 1:] + [under]:
                if na.overlaps(nb):
                    raise UsageError(f"subnets {na} and {nb} overlap")
        try:
            v6 = [ipaddress.IPv6Network(o.subnet6) for o in self.overlays if o.subnet6]
        except ValueError as exc:
            raise UsageError(f"bad IPv6 subnet in lab spec: {exc}") from None
        if any(n.prefixlen > 120 for n in v6) or any(a.overlaps(b) for i, a in enumerate(v6) for b in v6[i + 1:]):
            raise UsageError("IPv6 subnets must be at most /120 and must not overlap")
        vnis = [self.ingress_vni] + [o.vni for o in self.overlays]
        if len(set(vnis)) != len(vnis) or not all(1 <= v < 1 << 24 for v in vnis):
            raise UsageError("VNIs must be distinct and in 1..16777215")
        if self.vni_match not in ("u32", "bpf"):
            raise UsageError(f"vni_match must be u32 or bpf, got {self.vni_match!r}")
        onames = [o.name for o in self.overlays]
        if len(set(onames)) != len(onames) or {"ingress", "docker_gwbridge"} & set(onames):
            raise UsageError("overlay network names must be distinct and not ingress/docker_gwbridge")
        self._check_services(onames)

    def _check_services(self, onames: list[str]) -> None:
        snames = [s.name for s in self.services]
        if len(set(snames)) != len(snames):
            raise UsageError("service names must be distinct")
        published: set[tuple[int, str]] = set()
        for s in self.services:
            if not _SERVICE_RE.match(s.name):
                raise UsageError(f"bad service name {s.name!r}")
            if not 0 <= s.replicas <= 64:
                raise UsageError(f"service {s.name}: replicas must be 0..64")
            if s.mode not in ("vip", "dnsrr"):
                raise UsageError(f"service {s.name}: mode must be vip or dnsrr")
            if s.mode == "dnsrr" and s.ingress_ports():
                raise UsageError(f"service {s.name}: dnsrr cannot be combined with ingress-published ports")
            if not s.publish and not s.networks:
                raise UsageError(f"service {s.name}: needs a published port or a network")
            if s.host_ports() and s.replicas > self.nodes:
                raise UsageError(f"service {s.name}: host-mode ports need replicas <= nodes (one task per node)")
            for n in s.networks:
                if n not in onames:
                    raise UsageError(f"service {s.name}: unknown network {n!r}")
            for p in s.publish:
                p.check()
                if (p.published, p.protocol) in published:
                    raise UsageError(f"published port {p.published}/{p.protocol} used twice")
                published.add((p.published, p.protocol))
