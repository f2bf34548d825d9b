"""A real Docker Swarm from a lab spec: ``meshpkt lab up --docker`` / :class:`DockerLab`.

Per node a network namespace ``<name>-<node>`` on the lab's underlay (same addresses and MACs as the
namespace lab), a real ``dockerd`` in it (:mod:`meshpkt.lab.dockerd`), ``swarm init``/``join``, the spec's
overlay networks and services. The image is ``busybox-static`` put into a tarball and ``docker import``-ed
on every node (no registry is needed); each task answers HTTP with
``Host IP is <node underlay IP>, task <task name> <task address>`` like the lab's tasks.

Docker's own namespaces (``ingress_sbox``, ``1-<netid>``, ``lb_<netid>``, task sandboxes) live in
dockerd's mount namespace; after the services converge they are bind-mounted to
``/run/netns/<name>-<node>-<docker name>``, so ``ip netns exec``, ``lab capture``, ``collect --lab`` and
everything else that takes a lab namespace name work on them too.

Routing mesh: when the kernel has no ``ip_vs``, Docker (libnetwork ``service_linux.go``) silently skips
its whole load-balancer block: no ``DOCKER-INGRESS`` chain, no mangle ``MARK``, no VIP alias, no IPVS
service. :meth:`DockerLab.complete_mesh` runs those exact commands in Docker's namespaces , with the lab's nftables emulation of the IPVS service; ``lab status`` then
reports the mesh as ``completed by meshpkt``. Where Docker programmed IPVS itself nothing is touched.

Teardown (:meth:`DockerLab.down`, also after a crash, from the state file): ``swarm leave --force``, the
daemons stopped by pid, every process left in the nodes' namespaces or cgroups killed, the namespaces
and bind mounts removed, the cgroup directories and the data directories deleted.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import meshpkt.lab.plan as _plan
from meshpkt.errors import LabError, MeshpktError
from meshpkt.lab.build import _kill, lab_ns_regex, list_netns, need_root, pids_in_netns, run
from meshpkt.lab.dockerd import Dockerd, docker_cli, dockerd_missing, leftover_cgroups, remove_cgroups
from meshpkt.lab.spec import LabSpec, ServiceSpec

STATE_ROOT = Path("/run/meshpkt/docker")
NETNS_DIR = Path("/run/netns")
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "httpd", "ip", "awk", "cat", "echo", "sleep", "hostname", "ls", "ps", "nc", "wget")
START_SH = r"""#!/bin/sh
# meshpkt task: answer HTTP like the lab's tasks
T=${TASK%.*}
N=$(echo " $NODEIPS " | awk -v n="$NODE" '{for(i=1;i<=NF;i++){split($i,a,"=");if(a[1]==n)print a[2]}}')
A=$(ip -4 -o addr show | awk -v p="$PREFIX" '{split($4,a,"/"); if (index(a[1],p)==1) {print a[1]; exit}}')
mkdir -p /www
echo "Host IP is $N, task $T $A" > /www/index.html
L=""
for p in $PORTS; do L=$p; done
for p in $PORTS; do [ "$p" = "$L" ] || httpd -p "$p" -h /www; done
exec httpd -f -p "$L" -h /www
"""


def _parallel(fn: Any, items: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(items)))) as ex:
        return list(ex.map(fn, items))


def image_tarball() -> bytes:
    """A root filesystem tarball: busybox-static, its applets as symlinks and /start.sh."""
    src = next((b for b in BUSYBOX if Path(b).is_file()), None)
    if src is None:
        raise LabError("busybox-static not installed (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "www", "tmp", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        tar.add(src, arcname="bin/busybox")
        for a in APPLETS:
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        data = START_SH.encode()
        ti = tarfile.TarInfo("start.sh")
        ti.size, ti.mode = len(data), 0o755
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _prefix(subnet: str) -> str:
    """``10.0.0.0/24`` -> ``10.0.0.`` (what every address of the subnet starts with, whole octets)."""
    net = ipaddress.IPv4Network(subnet)
    octets = str(net.network_address).split(".")
    return ".".join(octets[: max(1, net.prefixlen // 8)]) + "."


class DockerLab:
    """A real Docker Swarm lab called ``name`` (namespaces ``<name>-...``)."""

    def __init__(self, name: str = "mesh", state_root: str | Path = STATE_ROOT) -> None:
        LabSpec(name=name).check()
        self.name = name
        self.state_dir = Path(state_root) / name
        self.state_file = self.state_dir / "state.json"

    # ------------------------------------------------------------------ state
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, st: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=1))
        tmp.replace(self.state_file)

    def _state(self) -> dict[str, Any]:
        st = self._load()
        if st.get("phase") != "up":
            raise LabError(f"no docker lab named {self.name!r} is up (`meshpkt lab up --docker --name {self.name}`)")
        return st

    def spec(self) -> LabSpec:
        """The spec the lab was built from."""
        return LabSpec.from_dict(self._state()["spec"])

    def daemons(self, spec: LabSpec | None = None) -> dict[str, Dockerd]:
        """node -> its :class:`Dockerd`."""
        spec = spec or LabSpec.from_dict(self._load()["spec"])
        p = _plan.plan(spec)
        return {nd["name"]: Dockerd(nd["name"], f"{self.name}-{nd['name']}", self.state_dir / nd["name"],
                                    f"meshpkt-{self.name}-{nd['name']}", nd["underlay_ip"])
                for nd in p.nodes}

    def manager(self) -> Dockerd:
        """The swarm manager (node1)."""
        return next(iter(self.daemons().values()))

    # ------------------------------------------------------------------ up
    def up(self, spec: LabSpec | None = None, timeout: float = 120) -> dict[str, Any]:
        """Build the swarm; return its status document. On any failure everything is removed again."""
        spec = replace(spec or LabSpec(), name=self.name)
        spec.check()
        need_root()
        reason = dockerd_missing()
        if reason:
            raise LabError(f"cannot run Docker here: {reason}")
        if self.state_file.exists() or any(lab_ns_regex(self.name).match(n) for n in list_netns()):
            raise LabError(f"lab {self.name!r} already exists; run `meshpkt lab down --docker --name {self.name}`")
        t0 = time.monotonic()
        self._save({"name": self.name, "phase": "building", "spec": spec.to_dict(), "mirrored": []})
        try:
            self._underlay(_plan.plan(spec))
            daemons = self.daemons(spec)
            for d in daemons.values():
                d.start()
            _parallel(lambda d: d.wait_ready(), list(daemons.values()))
            self._swarm(spec, daemons)
            self._deploy(spec, daemons, timeout)
            self._mirror(daemons)
            st = self._load()
            st.update(phase="up", up_seconds=round(time.monotonic() - t0, 2), completed=False)
            self._save(st)
            return self.status()
        except KeyboardInterrupt:
            self.down()
            raise
        except MeshpktError as exc:
            self.down()
            raise LabError(f"docker lab up failed (cleaned up): {exc}") from None
        except Exception as exc:
            self.down()
            raise LabError(f"docker lab up failed (cleaned up): {type(exc).__name__}: {exc}") from None

    def _underlay(self, p: _plan.Plan) -> None:
        """The lab's underlay switch, client and node namespaces (eth0 only; Docker makes the rest)."""
        nss = [ns for ns in p.namespaces if ns.role in ("underlay", "client", "host")]
        run(["ip", "-batch", "-"], input="".join(f"netns add {ns.name}\n" for ns in nss))
        for ns in nss:
            ifs = [i for i in ns.interfaces if i.kind != "bridge" or ns.role == "underlay"]
            ifs = [i for i in ifs if i.network is None]
            lines = ["link set dev lo up"]
            lines += [f"link add {i.name} type bridge" for i in ifs if i.kind == "bridge"]
            lines += [f"link add {i.name} type veth peer name {i.peer[1]} netns {i.peer[0]}"
                      for i in ifs if i.kind == "veth" and i.create_peer and i.peer]
            run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n")
        for ns in nss:
            sysctls = {k: v for k, v in ns.sysctls.items() if "ipv6" in k}
            if sysctls:
                run(["ip", "netns", "exec", ns.name, "sysctl", "-q", "-w", *(f"{k}={v}" for k, v in sysctls.items())])
            lines = []
            for i in sorted(ns.interfaces, key=lambda x: x.kind != "bridge"):
                if i.network is not None or (i.kind == "bridge" and ns.role != "underlay"):
                    continue
                lines.append(f"link set dev {i.name} address {i.mac} mtu {i.mtu}"
                             + (f" master {i.bridge}" if i.bridge else ""))
                lines.append(f"link set dev {i.name} up")
                lines += [f"addr add {a} dev {i.name}" for a in i.addresses]
            run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n")
        st = self._load()
        st["namespaces"] = [ns.name for ns in nss]
        self._save(st)

    def _swarm(self, spec: LabSpec, daemons: dict[str, Dockerd]) -> None:
        """docker_gwbridge with the spec's subnet, swarm init on node1, join the others as workers."""
        gw = ipaddress.IPv4Network(spec.gwbridge_subnet)

        def gwbridge(d: Dockerd) -> None:
            d.cli("network", "create", "--subnet", str(gw), "--gateway", str(gw.network_address + 1),
                  "-o", "com.docker.network.bridge.name=docker_gwbridge",
                  "-o", "com.docker.network.bridge.enable_icc=false",
                  "-o", "com.docker.network.bridge.enable_ip_masquerade=true", "docker_gwbridge")

        _parallel(gwbridge, list(daemons.values()))
        ds = list(daemons.values())
        mgr = ds[0]
        mgr.cli("swarm", "init", "--advertise-addr", mgr.address, "--listen-addr", f"{mgr.address}:2377",
                "--data-path-port", str(spec.data_path_port))
        token = mgr.cli("swarm", "join-token", "-q", "worker").stdout.strip()
        _parallel(lambda d: d.cli("swarm", "join", "--token", token, "--advertise-addr", d.address,
                                  "--listen-addr", f"{d.address}:2377", f"{mgr.address}:2377"), ds[1:])
        if spec.ingress_subnet != "10.0.0.0/24":
            mgr.cli("network", "rm", "ingress", input="y\n")
            mgr.cli("network", "create", "--ingress", "--driver", "overlay", "--subnet", spec.ingress_subnet,
                    "ingress")

    def _deploy(self, spec: LabSpec, daemons: dict[str, Dockerd], timeout: float) -> None:
        """Import the image on every node, create the overlays and services, wait until they run."""
        tar = self.state_dir / "image.tar"
        tar.write_bytes(image_tarball())
        image = f"meshpkt-task:{self.name}"
        _parallel(lambda d: d.cli("import", "-c", 'CMD ["/start.sh"]', str(tar), image, timeout=120),
                  list(daemons.values()))
        mgr = next(iter(daemons.values()))
        for o in spec.overlays:
            mgr.cli("network", "create", "-d", "overlay", "--subnet", o.subnet, o.name)
        node_ips = " ".join(f"{n}={d.address}" for n, d in daemons.items())
        for s in spec.services:
            mgr.cli(*self._service_args(spec, s, image, node_ips))
        self._wait_converged(spec, mgr, timeout)

    @staticmethod
    def _service_args(spec: LabSpec, s: ServiceSpec, image: str, node_ips: str) -> list[str]:
        net = next((o for o in spec.overlays if o.name in s.networks), None)
        prefix = _prefix(spec.ingress_subnet if s.publish or net is None else net.subnet)
        args = ["service", "create", "-d", "--name", s.name, "--replicas", str(s.replicas),
                "--endpoint-mode", s.mode, "--no-resolve-image", "--stop-grace-period", "1s",
                "--env", "TASK={{.Task.Name}}", "--env", "NODE={{.Node.Hostname}}",
                "--env", f"NODEIPS={node_ips}", "--env", f"PREFIX={prefix}",
                "--env", f"PORTS={' '.join(str(p) for p in s.target_ports())}"]
        for p in s.publish:
            args += ["--publish", f"mode=ingress,published={p.published},target={p.target},protocol={p.protocol}"]
        for n in s.networks:
            args += ["--network", n]
        return [*args, image]

    @staticmethod
    def _wait_converged(spec: LabSpec, mgr: Dockerd, timeout: float) -> None:
        want = {s.name: s.replicas for s in spec.services}
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            out = mgr.cli("service", "ls", "--format", "{{.Name}} {{.Replicas}}").stdout
            got = {ln.split()[0]: ln.split()[1] for ln in out.splitlines() if len(ln.split()) >= 2}
            last = out.strip().replace("\n", ", ")
            if all(got.get(n, "").startswith(f"{r}/{r}") for n, r in want.items()):
                return
            time.sleep(0.5)
        errs = mgr.cli("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.Error}}", *want, check=False).stdout
        err = next((ln for ln in errs.splitlines() if len(ln.split()) > 1), "")
        raise LabError(f"services did not converge within {timeout:g} s ({last}) {err}".strip())

    def _mirror(self, daemons: dict[str, Dockerd]) -> list[str]:
        """Bind-mount Docker's namespaces to /run/netns/<name>-<node>-<docker name>."""
        st = self._load()
        made: list[str] = list(st.get("mirrored", []))
        for node, d in daemons.items():
            for f in sorted(p.name for p in d.netns_dir().iterdir()):
                target = NETNS_DIR / f"{self.name}-{node}-{f}"
                if target.name in made or target.exists():
                    continue
                target.touch()
                made.append(target.name)
                st["mirrored"] = made
                self._save(st)
                _bind_mount(d.netns_path(f), target)
        return made

    # ------------------------------------------------------------------ down
    def down(self) -> dict[str, int]:
        """Remove everything of the lab (idempotent, also after a crashed ``up``)."""
        need_root()
        st = self._load()
        if not st.get("spec"):
            st["spec"] = LabSpec(name=self.name).to_dict()
        daemons = self.daemons(LabSpec.from_dict(st["spec"]))
        alive = [d for d in daemons.values() if d.pid()]
        _parallel(_leave, alive[::-1])
        pids: set[int] = set()
        for d in daemons.values():
            pids.update(d.stop())
        names = set(st.get("namespaces", [])) | set(st.get("mirrored", []))
        names |= {n for n in list_netns() if lab_ns_regex(self.name).match(n)}
        names = {n for n in names if (NETNS_DIR / n).exists()}
        for _ in range(3):
            victims = set(pids_in_netns(names)) | _cgroup_pids([d.cgroup_parent for d in daemons.values()])
            if not victims:
                break
            pids |= victims
            _kill(victims)
        order = sorted(names, key=lambda n: (-n.count("-"), n))
        if order:
            run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in order), check=False)
        cgroups = 0
        for d in daemons.values():
            for _ in range(20):
                cgroups += remove_cgroups(d.cgroup_parent)
                if not leftover_cgroups(d.cgroup_parent):
                    break
                time.sleep(0.1)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        try:
            self.state_dir.parent.rmdir()  # only when no other docker lab is up
        except OSError:
            pass
        left = [n for n in list_netns() if lab_ns_regex(self.name).match(n)]
        if left:
            raise LabError(f"could not remove namespace(s): {', '.join(left)}")
        return {"namespaces": len(names), "processes": len(pids), "cgroups": cgroups}

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The status document (lab schema, see :mod:`meshpkt.lab.status`) read from Docker's real state."""
        st = self._state()
        spec = LabSpec.from_dict(st["spec"])
        try:
            self._mirror(self.daemons(spec))  # sandboxes Docker created since (rescheduled tasks)
            st = self._state()
        except (LabError, OSError):
            pass
        return gather_status(self.name, spec, self.daemons(spec), st)

    def complete_mesh(self) -> dict[str, str]:
        """Program Docker's routing mesh where Docker skipped it (no ip_vs); node -> what was done."""
        st = self._state()
        spec = LabSpec.from_dict(st["spec"])
        done = complete(self.name, spec, self.status())
        st["completed"] = any(v == "completed by meshpkt" for v in done.values())
        st["mesh"] = done
        self._save(st)
        return done

    def collect(self, out: str | Path) -> Path:
        """``meshpkt collect`` run on every node as on a real one (inside the node's namespace, Docker's
        netns directory, DOCKER_HOST of its daemon): ``out/<node>/<namespace>/`` + docker inspect."""
        import sys

        out = Path(out)
        for node, d in self.daemons().items():
            env = f"PATH={Path(docker_cli()).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            run(["ip", "netns", "exec", f"{self.name}-{node}", "env", env, f"DOCKER_HOST={d.host}",
                 sys.executable, "-m", "meshpkt", "collect", str(out), "--netns-dir", str(d.netns_dir()),
                 "--node-name", node, "--format", "json"], timeout=120)
        return out

    def capture(self, points: list[str] | None, out: str | Path, cmd: list[str] | None, *,
                all_points: bool = False, run_in: str | None = None, grace: float = 0.5, snaplen: int = 262144,
                bpf: str | None = None, buffer_kib: int | None = 16384,
                stdout: Any = None, stderr: Any = None) -> dict[str, Any]:
        """``lab capture`` on the real swarm: tcpdump at the capture points (Docker's own namespaces)
        while ``cmd`` runs (inside ``run_in``, ``NODE[/NAMESPACE]``, e.g. ``client``)."""
        from meshpkt.lab.capture import run_capture
        from meshpkt.lab.status import resolve_target

        need_root()
        status = self.status()
        ns = resolve_target(status, run_in) if run_in else None
        return run_capture(status, points, Path(out), list(cmd or []), all_points=all_points, run_netns=ns,
                           grace=grace, snaplen=snaplen, bpf=bpf, buffer_kib=buffer_kib,
                           stdout=stdout, stderr=stderr)

    def exec(self, netns: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in one of the lab's namespaces (full name)."""
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)


# ---------------------------------------------------------------------------- real state -> status document
MESH_DOCKER = "programmed by Docker (IPVS)"
MESH_MISSING = "missing (no ip_vs: Docker skipped DOCKER-INGRESS, MARK, VIP alias and IPVS)"
MESH_COMPLETED = "completed by meshpkt"
LB_DETAIL = {
    "ipvs": "real Docker with IPVS: Docker programmed the routing mesh itself",
    "none": "real Docker on a kernel without ip_vs: Docker skipped the routing mesh (published ports refused); "
            "`meshpkt lab mesh --docker` completes it",
    "nftables": "real Docker, routing mesh completed by meshpkt (kernel has no ip_vs): Docker's own DOCKER-INGRESS "
                "DNAT, mangle MARK, VIP alias and SNAT rules (SNAT matching -m conntrack --ctstate DNAT instead of "
                "-m ipvs --ipvs) plus the lab's nftables table meshpkt_ipvs in place of the IPVS service",
}


def _ip_json(netns: str) -> list[dict[str, Any]]:
    r = run(["ip", "-n", netns, "-j", "-d", "addr", "show"], check=False)
    try:
        data = json.loads(r.stdout or "[]")
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _iface(link: dict[str, Any], nets: list[dict[str, Any]], ns_net: str | None) -> dict[str, Any]:
    info = link.get("linkinfo") or {}
    kind = str(info.get("info_kind") or ("loopback" if link.get("link_type") == "loopback" else "unknown"))
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info") or [] if a.get("family") == "inet"]
    network = None
    for a in addrs:
        ip = ipaddress.IPv4Interface(a).ip
        for n in nets:
            if not a.endswith("/32") and ip in ipaddress.IPv4Network(n["subnet"]):
                network = n["name"]
    if kind in ("vxlan", "bridge") and ns_net and link.get("ifname") != "docker_gwbridge":
        network = ns_net
    if link.get("ifname") == "docker_gwbridge" or link.get("master") == "docker_gwbridge":
        network = "docker_gwbridge"
    out: dict[str, Any] = {"name": link.get("ifname"), "kind": kind, "mac": link.get("address"),
                           "mtu": link.get("mtu"), "addresses": addrs, "network": network, "peer": None,
                           "bridge": link.get("master")}
    if kind == "vxlan":
        data = info.get("info_data") or {}
        out["vxlan"] = {"vni": data.get("id"), "port": data.get("port"), "created_in": None}
    return out


def _docker_json(d: Dockerd, *args: str) -> list[dict[str, Any]]:
    r = d.cli(*args, check=False)
    try:
        data = json.loads(r.stdout or "[]")
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _networks(mgr: Dockerd, spec: LabSpec) -> list[dict[str, Any]]:
    names = ["ingress", *(o.name for o in spec.overlays)]
    out = []
    for n in _docker_json(mgr, "network", "inspect", *names):
        cfg = ((n.get("IPAM") or {}).get("Config") or [{}])[0]
        vni = str((n.get("Options") or {}).get("com.docker.network.driver.overlay.vxlanid_list", "")).split(",")[0]
        out.append({"name": n["Name"], "id": n["Id"], "driver": n.get("Driver"), "ingress": bool(n.get("Ingress")),
                    "subnet": cfg.get("Subnet"), "gateway": cfg.get("Gateway"),
                    "vni": int(vni) if vni.isdigit() else None, "port": spec.data_path_port,
                    "mtu": spec.overlay_mtu, "nodes": []})
    out.sort(key=lambda n: names.index(n["name"]))
    gw = ipaddress.IPv4Network(spec.gwbridge_subnet)
    gwid = next((n.get("Id", "") for n in _docker_json(mgr, "network", "inspect", "docker_gwbridge")), "")
    out.append({"name": "docker_gwbridge", "id": gwid, "driver": "bridge", "ingress": False, "subnet": str(gw),
                "gateway": str(gw.network_address + 1), "vni": None, "port": None, "mtu": spec.underlay_mtu,
                "scope": "local"})
    return out


def _containers(d: Dockerd) -> dict[str, dict[str, Any]]:
    """Docker netns file name -> container facts (task, service, addresses) on this node."""
    ids = d.cli("ps", "-q", check=False).stdout.split()
    out: dict[str, dict[str, Any]] = {}
    for c in _docker_json(d, "inspect", *ids) if ids else []:
        labels = (c.get("Config") or {}).get("Labels") or {}
        netset = (c.get("NetworkSettings") or {})
        key = os.path.basename(str(netset.get("SandboxKey") or ""))
        tname = str(labels.get("com.docker.swarm.task.name", c.get("Name", "").lstrip("/")))
        nets = {k: v for k, v in (netset.get("Networks") or {}).items()}
        out[key] = {"name": tname.rsplit(".", 1)[0] if tname.count(".") >= 2 else tname, "docker_name": tname,
                    "service": labels.get("com.docker.swarm.service.name", ""),
                    "task_id": labels.get("com.docker.swarm.task.id", ""), "container_id": c.get("Id", ""),
                    "ips": {k: v.get("IPAddress") for k, v in nets.items()},
                    "macs": {k: v.get("MacAddress") for k, v in nets.items()}, "pid": (c.get("State") or {}).get("Pid")}
    return out


def _node_namespaces(name: str, node: str, mirrored: list[str], nets: list[dict[str, Any]],
                     containers: dict[str, dict[str, Any]], spec: LabSpec) -> list[dict[str, Any]]:
    from meshpkt.rules.model import Role, role_from_name

    out = []
    head = f"{name}-{node}"
    shorts = ["host"] + sorted(m[len(head) + 1:] for m in mirrored if m.startswith(head + "-"))
    for short in shorts:
        full = head if short == "host" else f"{head}-{short}"
        role = "host" if short == "host" else str(role_from_name(short))
        network = None
        if role in (Role.OVERLAY, Role.LB):
            netid = short.split("-", 1)[1] if role == Role.OVERLAY else short[3:]
            network = next((n["name"] for n in nets if n["id"].startswith(netid)), None)
        elif role == Role.INGRESS_SBOX:
            network = "ingress"
        task = None
        if short in containers:
            c = containers[short]
            svc = next((s for s in spec.services if s.name == c["service"]), None)
            task = {k: c[k] for k in ("name", "service", "task_id", "docker_name", "container_id", "ips", "pid")}
            task["slot"] = int(c["name"].rsplit(".", 1)[-1]) if c["name"].rsplit(".", 1)[-1].isdigit() else None
            task["ports"] = svc.target_ports() if svc else []
            role, short = "task", c["name"]
        ifs = [_iface(link, nets, network) for link in _ip_json(full) if link.get("ifname") != "lo"]
        out.append({"name": full, "short": short, "role": role, "network": network, "interfaces": ifs,
                    "task": task})
    return out


def _capture_points(status: dict[str, Any]) -> list[dict[str, Any]]:
    pts = [{"point": "client.host.eth0", "node": "client", "namespace": "host", "netns": f"{status['name']}-client",
            "iface": "eth0", "role": "client", "network": None},
           {"point": "underlay.host.br0", "node": "underlay", "namespace": "host",
            "netns": f"{status['name']}-underlay", "iface": "br0", "role": "underlay", "network": None}]
    order = {"host": 0, "ingress_sbox": 1, "overlay": 2, "lb": 3, "task": 4}
    for nd in status["nodes"]:
        for ns in sorted(nd["namespaces"], key=lambda x: order.get(x["role"], 9)):
            ifs = ns["interfaces"]
            if ns["role"] == "host":
                ifs = [i for i in ifs if i["name"] == "eth0"]
            elif ns["role"] == "ingress_sbox":
                ifs = sorted(ifs, key=lambda i: i["network"] != "docker_gwbridge")
            elif ns["role"] == "overlay":
                ifs = [i for i in ifs if i["kind"] in ("bridge", "vxlan")]
            else:
                ifs = [i for i in ifs if i["network"] not in (None, "docker_gwbridge")]
            pts += [{"point": f"{nd['name']}.{ns['short']}.{i['name']}", "node": nd["name"], "namespace": ns["short"],
                     "netns": ns["name"], "iface": i["name"], "role": ns["role"], "network": i["network"]}
                    for i in ifs]
    return pts


def _ipvs_log(d: Dockerd) -> str | None:
    """dockerd's own word that it found no IPVS (moby/ipvs netlink.go), if it logged it."""
    try:
        with open(d.log, errors="replace") as fh:
            return next((ln.strip()[:300] for ln in fh if "Could not get ipvs family information" in ln), None)
    except OSError:
        return None


def _mesh_state(netns: str, completed: bool) -> str:
    if completed:
        return MESH_COMPLETED
    r = run(["ip", "netns", "exec", netns, "iptables", "-t", "nat", "-S", "DOCKER-INGRESS"], check=False)
    return MESH_DOCKER if r.returncode == 0 else MESH_MISSING


def _services(mgr: Dockerd, spec: LabSpec, nets: list[dict[str, Any]], nodes: list[dict[str, Any]],
              fwmarks: dict[str, Any]) -> list[dict[str, Any]]:
    by_id = {n["id"]: n["name"] for n in nets}
    tasks = [(nd["name"], ns) for nd in nodes for ns in nd["namespaces"] if ns["task"]]
    out = []
    for sv in _docker_json(mgr, "service", "inspect", *(s.name for s in spec.services)):
        name = sv["Spec"]["Name"]
        s = next(x for x in spec.services if x.name == name)
        snets = (["ingress"] if s.publish else []) + list(s.networks)
        vips = {by_id.get(v.get("NetworkID"), v.get("NetworkID")): str(v.get("Addr", "")).split("/")[0]
                for v in (sv.get("Endpoint") or {}).get("VirtualIPs") or []}
        backends = []
        for node, ns in tasks:
            t = ns["task"]
            if t["service"] != name:
                continue
            first = next((n for n in snets if t["ips"].get(n)), "")
            macs = {}
            for i in ns["interfaces"]:
                if i["network"] in snets:
                    macs[i["network"]] = i["mac"]
            backends.append({"task": t["name"], "node": node, "netns": ns["name"], "ip": t["ips"].get(first),
                             "mac": macs.get(first), "ips": dict(t["ips"]), "macs": macs,
                             "container_id": t["container_id"], "task_id": t["task_id"], "alive": True})
        backends.sort(key=lambda b: (b["task"].rsplit(".", 1)[-1].zfill(4), b["task"]))
        out.append({"name": name, "id": sv["ID"], "mode": s.mode, "replicas": s.replicas, "networks": snets,
                    "vips": vips, "fwmarks": {nd: dict(m.get(name, {})) for nd, m in fwmarks.items()},
                    "published": [{"published": p.published, "target": p.target, "protocol": p.protocol}
                                  for p in s.publish],
                    "target_ports": s.target_ports(), "backends": backends})
    return out


def gather_status(name: str, spec: LabSpec, daemons: dict[str, Dockerd], st: dict[str, Any]) -> dict[str, Any]:
    """The lab status document of a Docker lab, read from Docker's real state."""
    mgr = next(iter(daemons.values()))
    nets = _networks(mgr, spec)
    p = _plan.plan(spec)
    completed = bool(st.get("completed"))
    nodes = []
    for node, d in daemons.items():
        nss = _node_namespaces(name, node, list(st.get("mirrored", [])), nets, _containers(d), spec)
        addr = {(ns["role"], ns["network"]): [a for i in ns["interfaces"] if i["network"] == ns["network"]
                                              for a in i["addresses"] if not a.endswith("/32")]
                for ns in nss if ns["role"] in ("ingress_sbox", "lb")}
        host = nss[0]
        eth0: dict[str, Any] = next((i for i in host["interfaces"] if i["name"] == "eth0"), {})
        gwb: dict[str, Any] = next((i for i in host["interfaces"] if i["name"] == "docker_gwbridge"), {})
        nodes.append({"name": node, "underlay_ip": d.address, "mac": eth0.get("mac"),
                      "ingress_ip": (addr.get(("ingress_sbox", "ingress")) or [""])[0].split("/")[0],
                      "gwbridge_ip": (gwb.get("addresses") or [""])[0].split("/")[0],
                      "lb_ips": {n: a[0].split("/")[0] for (r, n), a in addr.items() if r == "lb" and a and n},
                      "routing_mesh": _mesh_state(host["name"], completed), "dockerd_ipvs_log": _ipvs_log(d),
                      "namespaces": nss})
    for n in nets:
        n["nodes"] = [nd["name"] for nd in nodes
                      if any(ns["network"] == n["name"] and ns["role"] == "overlay" for ns in nd["namespaces"])]
    fwmarks = {nd: {s["name"]: s["fwmarks"][nd] for s in p.services} for nd in daemons} if completed else {}
    states = {nd["routing_mesh"] for nd in nodes}
    lb = "nftables" if completed else ("ipvs" if states == {MESH_DOCKER} else "none")
    und = [ns for ns in p.namespaces if ns.role in ("underlay", "client")]
    status: dict[str, Any] = {
        "schema": "meshpkt.lab.status/1", "backend": "docker", "name": name, "prefix": name + "-", "lb": lb,
        "lb_detail": LB_DETAIL[lb], "alive": all((NETNS_DIR / n).exists() for n in st.get("namespaces", [])),
        "state_dir": str(STATE_ROOT / name), "created": st.get("created", ""), "up_seconds": st.get("up_seconds"),
        "data_path_port": spec.data_path_port,
        "underlay": {"subnet": spec.underlay_subnet, "netns": f"{name}-underlay", "bridge": "br0",
                     "mtu": spec.underlay_mtu},
        "clients": [dict(c) for c in p.clients], "networks": nets, "nodes": nodes,
        "underlay_namespaces": [{"name": ns.name, "short": ns.short, "role": ns.role, "network": None,
                                 "interfaces": [i.to_json() for i in ns.interfaces], "task": None} for ns in und],
        "services": [], "faults": [], "spec": spec.to_dict(),
        "routing_mesh": {nd["name"]: nd["routing_mesh"] for nd in nodes},
    }
    status["services"] = _services(mgr, spec, nets, nodes, fwmarks)
    status["capture_points"] = _capture_points(status)
    return status


# ---------------------------------------------------------------------------- completing the routing mesh
def ingress_commands(gw_ip: str, oif: str, ports: list[tuple[str, int]]) -> list[list[str]]:
    """libnetwork ``programIngress`` (service_linux.go, Docker 20.10): the node's iptables commands."""
    cmds = [["-t", "nat", "-N", "DOCKER-INGRESS"], ["-N", "DOCKER-INGRESS"],
            ["-t", "nat", "-A", "DOCKER-INGRESS", "-j", "RETURN"], ["-A", "DOCKER-INGRESS", "-j", "RETURN"]]
    for chain in ("OUTPUT", "PREROUTING"):
        cmds.append(["-t", "nat", "-I", chain, "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS"])
    cmds += [["-I", "FORWARD", "-j", "DOCKER-INGRESS"],
             ["-D", "FORWARD", "-j", "DOCKER-USER"], ["-I", "FORWARD", "-j", "DOCKER-USER"],  # arrangeUserFilterRule
             ["-t", "nat", "-I", "POSTROUTING", "-m", "addrtype", "--src-type", "LOCAL", "-o", oif, "-j", "MASQUERADE"]]
    for proto, port in ports:
        cmds += [["-t", "nat", "-I", "DOCKER-INGRESS", "-p", proto, "--dport", str(port), "-j", "DNAT",
                  "--to-destination", f"{gw_ip}:{port}"],
                 ["-I", "DOCKER-INGRESS", "-m", "state", "-p", proto, "--sport", str(port), "--state",
                  "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                 ["-I", "DOCKER-INGRESS", "-p", proto, "--dport", str(port), "-j", "ACCEPT"]]
    return cmds


def fwmarker_commands(vip: str, mark: int, ports: list[tuple[str, int]], eip: str, snat: bool) -> list[list[str]]:
    """libnetwork ``fwMarker``: the LB namespace's mangle MARKs and SNAT. The SNAT matches
    ``-m conntrack --ctstate DNAT`` where Docker writes ``-m ipvs --ipvs`` (no ip_vs: the nftables
    emulation DNATs instead of IPVS)."""
    cmds = [["-t", "mangle", "-A", "PREROUTING", "-p", proto, "--dport", str(port), "-j", "MARK", "--set-mark",
             str(mark)] for proto, port in ports]
    if snat:
        subnet = str(ipaddress.IPv4Interface(eip).network)
        cmds.append(["-t", "nat", "-A", "POSTROUTING", "-m", "conntrack", "--ctstate", "DNAT", "-d", subnet,
                     "-j", "SNAT", "--to-source", eip.split("/")[0]])
    cmds.append(["-t", "mangle", "-A", "INPUT", "-d", f"{vip}/32", "-j", "MARK", "--set-mark", str(mark)])
    return cmds


def _iptables(netns: str, cmds: list[list[str]]) -> None:
    for c in cmds:
        r = run(["ip", "netns", "exec", netns, "iptables", "--wait", *c], check=False)
        if r.returncode != 0 and c[:2] != ["-D", "FORWARD"] and "-N" not in c:
            raise LabError(f"`iptables {' '.join(c)}` in {netns} failed: {r.stderr.strip()[:200]}")


def _lb_nft(ns: dict[str, Any], network: str, spec: LabSpec, status: dict[str, Any], node: str) -> str:
    """The lab's nftables emulation of the IPVS FWM service (plan._lb_balancer) for one LB namespace."""
    svcs = [s for s in status["services"] if s["mode"] == "vip" and network in s["networks"]]
    specs = [next(x for x in spec.services if x.name == s["name"]) for s in svcs]
    vips = {s["name"]: s["vips"] for s in svcs}
    marks = {s["name"]: s["fwmarks"][node] for s in svcs}
    tasks = [_plan.Task(service=s["name"], slot=0, node=b["node"], name=b["task"], task_id=b["task_id"],
                        container_id=b["container_id"], netns=b["netns"], ips=dict(b["ips"]))
             for s in svcs for b in s["backends"]]
    tmp = _plan.Netns(ns["name"], node, ns["short"], ns["role"])
    _plan._lb_balancer(tmp, network, specs, vips, marks, tasks, "nftables")
    return tmp.nft


def _complete_node(nd: dict[str, Any], spec: LabSpec, status: dict[str, Any]) -> None:
    node = nd["name"]
    nss = {(ns["role"], ns["network"]): ns for ns in nd["namespaces"]}
    sbox = nss[("ingress_sbox", "ingress")]
    gw_ip = next(a for i in sbox["interfaces"] if i["network"] == "docker_gwbridge" for a in i["addresses"])
    published = [s for s in status["services"] if s["published"]]
    ports = [(p["protocol"], p["published"]) for s in published for p in s["published"]]
    _iptables(nd["namespaces"][0]["name"], ingress_commands(gw_ip.split("/")[0], "docker_gwbridge", ports))
    run(["ip", "netns", "exec", nd["namespaces"][0]["name"], "sysctl", "-q", "-w",
         "net.ipv4.conf.docker_gwbridge.route_localnet=1"])
    for (role, network), ns in nss.items():
        if role not in ("ingress_sbox", "lb") or network is None:
            continue
        eth = next(i for i in ns["interfaces"] if i["network"] == network)
        eip = next(a for a in eth["addresses"] if not a.endswith("/32"))
        svcs = [s for s in status["services"] if s["mode"] == "vip" and network in s["networks"]]
        for k, s in enumerate(svcs):
            vip, mark = s["vips"][network], s["fwmarks"][node][network]
            if f"{vip}/32" not in eth["addresses"]:
                run(["ip", "-n", ns["name"], "addr", "add", f"{vip}/32", "dev", eth["name"]])
            sports = [(p["protocol"], p["published"]) for p in s["published"]] if network == "ingress" else []
            _iptables(ns["name"], fwmarker_commands(vip, mark, sports, eip, snat=(k == 0)))
        if svcs:
            run(["ip", "netns", "exec", ns["name"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            run(["ip", "netns", "exec", ns["name"], "nft", "-f", "-"], input=_lb_nft(ns, network, spec, status, node))


def complete(name: str, spec: LabSpec, status: dict[str, Any]) -> dict[str, str]:
    """Complete the routing mesh on every node where Docker skipped it; node -> resulting state."""
    p = _plan.plan(spec)
    marks = {s["name"]: s["fwmarks"] for s in p.services}
    for s in status["services"]:
        s["fwmarks"] = marks[s["name"]]
    out = {}
    for nd in status["nodes"]:
        if nd["routing_mesh"] != MESH_MISSING:
            out[nd["name"]] = nd["routing_mesh"]
            continue
        _complete_node(nd, spec, status)
        out[nd["name"]] = MESH_COMPLETED
    return out


def _leave(d: Dockerd) -> None:
    """``docker swarm leave --force`` (best effort: the daemon is stopped by pid next anyway)."""
    try:
        d.cli("swarm", "leave", "--force", check=False, timeout=30)
    except LabError:
        pass


def _bind_mount(src: Path, target: Path) -> None:
    """mount(2) MS_BIND without mount(8), which would canonicalize /proc/<pid>/root/... to the root
    mount namespace's (empty) file instead of Docker's namespace file."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(str(src).encode(), str(target).encode(), None, 4096, None) != 0:  # MS_BIND
        err = ctypes.get_errno()
        raise LabError(f"cannot bind-mount {src} to {target}: {os.strerror(err)}")


# ---------------------------------------------------------------------------- fidelity: lab vs real Docker
@dataclass(frozen=True)
class Difference:
    """One way the namespace lab differs from real Docker for the same spec: ``code`` names the fact
    (``vxlan-flags``, ``rules/host``...), ``lab`` and ``docker`` its value on each side."""

    code: str
    lab: str
    docker: str


_IP_RE = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def _ip_tokens(status: dict[str, Any]) -> dict[str, str]:
    """Address -> placement-independent token (VIPs, tasks, LB endpoints, gateways)."""
    tok: dict[str, str] = {}
    for s in status["services"]:
        for net, vip in s["vips"].items():
            tok[vip] = f"<vip {s['name']} {net}>"
        for b in s["backends"]:
            for net, ip in b["ips"].items():
                tok[ip] = f"<task {s['name']} {net}>"
    for nd in status["nodes"]:
        if nd.get("ingress_ip"):
            tok[nd["ingress_ip"]] = "<ingress endpoint>"
        for net, ip in (nd.get("lb_ips") or {}).items():
            tok[ip] = f"<lb endpoint {net}>"
    return tok


def _norm_rule(line: str, tok: dict[str, str]) -> str:
    line = re.sub(r"^\[\d+:\d+\] ", "", line.strip())
    line = re.sub(r"127\.0\.0\.11:\d+", "127.0.0.11:<dns port>", line)
    line = re.sub(r"--sport \d{5}\b", "--sport <dns port>", line)
    return _IP_RE.sub(lambda m: tok.get(m.group(0), m.group(0)), line)


def _rules(d: Path, tok: dict[str, str]) -> list[str]:
    try:
        text = (d / "iptables-save.txt").read_text()
    except OSError:
        return []
    table = ""
    out = []
    for ln in text.splitlines():
        if ln.startswith("*"):
            table = ln[1:]
        elif ln.startswith(":") and not ln.startswith((":PREROUTING", ":INPUT", ":OUTPUT", ":POSTROUTING")):
            out.append(f"{table} {ln.split()[0]} {ln.split()[1]}")
        elif "-A " in ln:
            out.append(f"{table} {_norm_rule(ln, tok)}")
    return sorted(out)


def _links(d: Path) -> list[dict[str, Any]]:
    data = _load_json(d / "ip-d-link.json")
    return [x for x in data if isinstance(x, dict) and x.get("ifname") != "lo"]


def _addrs(d: Path) -> dict[str, list[str]]:
    return {x["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in x.get("addr_info") or []
                          if a.get("family") == "inet"] for x in _load_json(d / "ip-addr.json") if isinstance(x, dict)}


def _pick(status: dict[str, Any], node: str, role: str, net: str | None = None,
          published: bool | None = None) -> dict[str, Any] | None:
    nd = next(n for n in status["nodes"] if n["name"] == node)
    for ns in nd["namespaces"]:
        if ns["role"] != role or (net is not None and ns["network"] != net):
            continue
        if published is not None and ns["task"]:
            svc = next(s for s in status["services"] if s["name"] == ns["task"]["service"])
            if bool(svc["published"]) != published:
                continue
        return ns
    return None


def _dump_dir(root: Path, node: str, ns: dict[str, Any], prefix: str) -> Path:
    if ns["role"] == "host":
        return root / node / "host"
    name = ns["name"][len(prefix) + len(node) + 1:]
    return root / node / name


def _ns_facts(root: Path, status: dict[str, Any], node: str, key: str, ns: dict[str, Any]) -> dict[str, str]:
    d = _dump_dir(root, node, ns, status["prefix"])
    tok = _ip_tokens(status)
    links = _links(d)
    addrs = _addrs(d)
    f: dict[str, str] = {}
    shape = []
    for lk in links:
        name = re.sub(r"^veth[0-9a-f]{7}$", "veth<7 hex>", lk["ifname"])
        name = re.sub(r"^veth\d+$", "veth<n>", name)
        kind = (lk.get("linkinfo") or {}).get("info_kind", "")
        net = next((i["network"] for i in ns["interfaces"] if i["name"] == lk["ifname"]), None)
        if ns["role"] == "task" and kind == "veth":
            nets = [x.split("/")[0] for x in addrs.get(lk["ifname"], [])]
            net = next((tok.get(a, "docker_gwbridge").split(" ")[-1].rstrip(">") for a in nets), net)
        shape.append(f"{name}:{kind}:{lk.get('mtu')}" + (f":{net}" if net and ns["role"] != "overlay" else ""))
    f[f"interfaces/{key}"] = " ".join(sorted(set(shape)))
    for lk in links:
        info = (lk.get("linkinfo") or {}).get("info_data") or {}
        if (lk.get("linkinfo") or {}).get("info_kind") == "vxlan":
            f["vxlan-flags"] = " ".join(f"{k}={info.get(k)}" for k in
                                        ("port", "learning", "proxy", "l2miss", "l3miss", "udp_csum", "ttl", "ageing"))
        for a in addrs.get(lk["ifname"], []):
            if ns["role"] in ("ingress_sbox", "lb", "task") and not a.endswith("/32"):
                ip = ipaddress.IPv4Interface(a).ip
                ok = lk.get("address") == _plan.docker_mac(str(ip))
                f.setdefault(f"mac/endpoint-02:42-ip/{ns['role']}", "True")
                if not ok:
                    f[f"mac/endpoint-02:42-ip/{ns['role']}"] = "False"
    f[f"rules/{key}"] = "\n".join(_rules(d, tok))
    if ns["role"] == "overlay":
        f.update(_peer_facts(d, status, node, ns))
    return f


def _peer_facts(d: Path, status: dict[str, Any], node: str, ns: dict[str, Any]) -> dict[str, str]:
    """fdb/neighbour entries of vxlan0 against the remote endpoints of the network (each side's own)."""
    net = ns["network"]
    node_ip = {n["name"]: n["underlay_ip"] for n in status["nodes"]}
    want = set()
    for nd in status["nodes"]:
        if nd["name"] == node:
            continue
        for ons in nd["namespaces"]:
            for i in ons["interfaces"]:
                if ons["role"] in ("ingress_sbox", "lb", "task") and i["network"] == net:
                    for a in i["addresses"]:
                        if not a.endswith("/32"):
                            want.add((i["mac"], node_ip[nd["name"]], a.split("/")[0]))
    try:
        fdb = (d / "bridge-fdb.txt").read_text().splitlines()
        neigh = (d / "ip-neigh.txt").read_text().splitlines()
    except OSError:
        return {}
    have_fdb = {(ln.split()[0], ln.split()[ln.split().index("dst") + 1]) for ln in fdb
                if " dst " in ln and "vxlan0" in ln}
    have_neigh = {(ln.split()[4], ln.split()[0]) for ln in neigh if "vxlan0" in ln and "lladdr" in ln}
    flags = sorted({" ".join(w for w in ln.split() if w in ("self", "permanent", "static")) for ln in fdb
                    if " dst " in ln and "vxlan0" in ln})
    nflags = sorted({ln.split()[-1] for ln in neigh if "vxlan0" in ln and "lladdr" in ln})
    return {f"fdb/{net}": f"remote endpoints {'all' if {(m, h) for m, h, _ in want} == have_fdb else 'differ'}; "
                          f"flags {','.join(flags)}",
            f"neigh/{net}": f"remote endpoints {'all' if {(m, ip) for m, _, ip in want} == have_neigh else 'differ'}; "
                            f"state {','.join(nflags)}"}


def _status_facts(status: dict[str, Any]) -> dict[str, str]:
    f: dict[str, str] = {}
    for n in status["networks"]:
        f[f"vni/{n['name']}"] = str(n["vni"])
        f[f"network-id-form/{n['name']}"] = re.sub(r"[0-9a-z]", "x", n["id"]) if n["id"] else ""
    for s in status["services"]:
        f[f"vips/{s['name']}"] = " ".join(f"{k}={v}" for k, v in sorted(s["vips"].items()))
        f[f"task-addresses/{s['name']}"] = " ".join(sorted(ip for b in s["backends"] for ip in b["ips"].values()))
        f[f"published/{s['name']}"] = json.dumps(s["published"])
    f["ingress-endpoints"] = " ".join(sorted(nd["ingress_ip"] for nd in status["nodes"]))
    f["lb-endpoints"] = " ".join(sorted(ip for nd in status["nodes"] for ip in (nd.get("lb_ips") or {}).values()))
    for nd in status["nodes"]:
        roles = sorted({f"{ns['role']}:{ns['network']}" if ns["role"] in ("overlay", "lb") else ns["role"]
                        for ns in nd["namespaces"]})
        f[f"namespaces/{nd['name']}"] = " ".join(roles)
        for ns in nd["namespaces"]:
            base = ns["name"][len(status["prefix"]) + len(nd["name"]) + 1:]
            if ns["role"] != "host":
                form = re.sub(r"[0-9a-z]", "x", base) if ns["role"] != "ingress_sbox" else base
                f[f"namespace-name/{ns['role']}"] = form
    return f


def _bridge_macs(root: Path, status: dict[str, Any]) -> str:
    """How br0 of every overlay namespace gets its MAC: the kernel's lowest port MAC, or pinned to vxlan0's
    (namespaces where both hold are ambiguous and skipped)."""
    kinds = set()
    for nd in status["nodes"]:
        for ns in nd["namespaces"]:
            if ns["role"] != "overlay":
                continue
            links = _links(_dump_dir(root, nd["name"], ns, status["prefix"]))
            br = next((x for x in links if x["ifname"] == "br0"), {})
            vx = next((x for x in links if x["ifname"] == "vxlan0"), {})
            ports = [x.get("address", "") for x in links if x.get("master") == "br0"]
            lowest, pinned = bool(ports) and br.get("address") == min(ports), br.get("address") == vx.get("address")
            if lowest != pinned:
                kinds.add("lowest port MAC" if lowest else "pinned to vxlan0's MAC" if pinned else "other")
            elif not lowest:
                kinds.add("other")
    return ", ".join(sorted(kinds))


def fidelity_facts(dumps: str | Path, status: dict[str, Any]) -> dict[str, str]:
    """Placement-independent facts of one cluster (lab or Docker): namespaces, interfaces, MACs, MTUs,
    VNIs, vxlan flags, fdb/neighbour entries, rules (addresses as roles), VIPs and endpoint addresses."""
    root = Path(dumps)
    node = status["nodes"][0]["name"]
    f = _status_facts(status)
    picks = [("host", _pick(status, node, "host")), ("ingress_sbox", _pick(status, node, "ingress_sbox")),
             ("overlay-ingress", _pick(status, node, "overlay", "ingress"))]
    for n in status["networks"][1:-1]:
        for nd in status["nodes"]:
            if (ov := _pick(status, nd["name"], "overlay", n["name"])) is not None:
                picks += [(f"overlay-{n['name']}", ov), (f"lb-{n['name']}", _pick(status, nd["name"], "lb", n["name"]))]
                break
    for nd in status["nodes"]:
        for key, pub in (("task-published", True), ("task-internal", False)):
            if not any(k == key for k, _ in picks) and (t := _pick(status, nd["name"], "task", None, pub)):
                picks.append((key, t))
    f["mac/overlay-bridge"] = _bridge_macs(root, status)
    for key, ns in picks:
        if ns is not None:
            nd = next(n["name"] for n in status["nodes"] if ns in n["namespaces"])
            f.update(_ns_facts(root, status, nd, key, ns))
    return f


def fidelity_differences(lab_dumps: str | Path, lab_status: dict[str, Any], docker_dumps: str | Path,
                         docker_status: dict[str, Any]) -> list[Difference]:
    """Every fact where the namespace lab and real Docker differ for the same spec (rules line by line)."""
    a = fidelity_facts(lab_dumps, lab_status)
    b = fidelity_facts(docker_dumps, docker_status)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "(absent)"), b.get(key, "(absent)")
        if va == vb:
            continue
        if key.startswith("rules/"):
            la, lb_ = set(va.splitlines()), set(vb.splitlines())
            out += [Difference(f"{key}: {line}", "present" if line in la else "absent",
                               "present" if line in lb_ else "absent") for line in sorted(la ^ lb_)]
        else:
            out.append(Difference(key, va, vb))
    return out


def docker_up(spec: LabSpec, complete_mesh: bool = False) -> dict[str, Any]:
    """``meshpkt lab up --docker [--complete-mesh]``: build the swarm (and complete its routing mesh)."""
    lab = DockerLab(spec.name)
    status = lab.up(spec)
    if complete_mesh:
        lab.complete_mesh()
        status = lab.status()
    return status


def _cgroup_pids(parents: list[str]) -> set[int]:
    """Pids in any cgroup directory called one of ``parents`` (containers Docker started)."""
    out: set[int] = set()
    for parent in parents:
        for top in leftover_cgroups(parent):
            for sub, _dirs, files in os.walk(top):
                if "cgroup.procs" in files:
                    try:
                        out |= {int(x) for x in (Path(sub) / "cgroup.procs").read_text().split()}
                    except (OSError, ValueError):
                        pass
    return out
