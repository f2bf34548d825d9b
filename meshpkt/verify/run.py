"""Running ``verify`` against a lab: model the lab's rules (collect + load_dumps), plan the checks,
snapshot counters, capture at every hop while the probes are injected (rate-limited), snapshot the
counters again, decode the pcaps and judge. The only module of :mod:`meshpkt.verify` that touches
processes, namespaces and files.

Safety: every namespace a probe is sent from or a capture runs in must be one of the lab's (named
``<lab>-...`` and existing); real clusters are refused unless explicitly named with
``target_cluster`` (and even then not implemented yet).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from meshpkt.errors import LabError, NeedRootError, ToolMissingError, UsageError
from meshpkt.verify.capture import CaptureSession
from meshpkt.verify.judge import judge
from meshpkt.verify.plan import KIND_ORDER, VerifyPlan, needed_probes, plan_verify, select_checks
from meshpkt.verify.types import Check, Probe, VerifyReport

INJECTOR = Path(__file__).with_name("inject.py")
MAX_RATE = 200.0
GROUP_ORDER = ["server", "ingress", "unpublished", "vip", "dnsrr", "host"]

Progress = Callable[[str], None]


# ---------------------------------------------------------------------- lab / safety


def running_labs(state_root: Path | None = None) -> list[str]:
    """Names of the labs that are up (``/run/meshpkt/lab/<name>/state.json`` with phase up)."""
    from meshpkt.lab.build import STATE_ROOT

    root = state_root or STATE_ROOT
    out = []
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    for n in entries:
        try:
            st = json.loads((Path(root) / n / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(st, dict) and st.get("phase") == "up":
            out.append(n)
    return out


def resolve_lab(name: str | None) -> str:
    """``name``, or the only lab that is up (UsageError/LabError when none or several)."""
    if name:
        return name
    labs = running_labs()
    if not labs:
        raise LabError("no lab is up: start one with `meshpkt lab up` or name it with --lab")
    if len(labs) > 1:
        raise UsageError(f"several labs are up ({', '.join(labs)}): choose one with --lab")
    return labs[0]


def parse_cluster(addrs: Sequence[str] | str) -> list[str]:
    """``"10.0.0.1,10.0.0.2"`` (or a list) -> addresses; UsageError on a bad one."""
    items = [addrs] if isinstance(addrs, str) else list(addrs)
    out: list[str] = []
    for item in items:
        for a in str(item).replace(" ", ",").split(","):
            if not a:
                continue
            try:
                out.append(str(ipaddress.IPv4Address(a)))
            except ValueError:
                raise UsageError(f"--target-cluster: {a!r} is not an IPv4 address") from None
    if not out:
        raise UsageError("--target-cluster needs the addresses of the nodes to probe")
    return out


def check_safety(lab: str, plan: VerifyPlan, probes: Iterable[Probe], existing: set[str]) -> None:
    """Refuse (UsageError) any probe or capture outside the lab's existing namespaces."""
    from meshpkt.lab.build import lab_ns_regex

    rx = lab_ns_regex(lab)
    where = [(p.netns, f"probe {p.id}") for p in probes] + [(pt["netns"], f"capture {pt['point']}")
                                                            for pt in plan.points]
    for netns, what in where:
        if not rx.match(netns) or netns not in existing:
            raise UsageError(f"refusing {what} in namespace {netns!r}: not a namespace of lab {lab!r} "
                             "(verify only sends inside namespaces meshpkt created)")


# ---------------------------------------------------------------------- processes


def _run(argv: list[str], timeout: float = 20.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError:
        raise ToolMissingError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv[:6])}` timed out") from None


def snapshot_counters(netns: Iterable[str]) -> dict[tuple[str, str, str, str], int]:
    """(netns, table, chain, rule text) -> packet counter, from ``iptables-save -c`` in each netns."""
    from meshpkt.rules.iptables import parse_iptables_save

    def one(ns: str) -> dict[tuple[str, str, str, str], int]:
        r = _run(["ip", "netns", "exec", ns, "iptables-save", "-c"])
        out: dict[tuple[str, str, str, str], int] = {}
        if r.returncode != 0:
            return out
        for rule in parse_iptables_save(r.stdout).rules():
            if rule.pkts is not None:
                out.setdefault((ns, rule.table, rule.chain, rule.text), rule.pkts)
        return out

    names = sorted(set(netns))
    merged: dict[tuple[str, str, str, str], int] = {}
    if not names:
        return merged
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as ex:
        for d in ex.map(one, names):
            merged.update(d)
    return merged


def underlay_rules(netns: str) -> list[dict[str, Any]]:
    """The nftables rules of the underlay switch namespace with their packet counters."""
    from meshpkt.rules.nft import parse_nft_json

    r = _run(["ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset"])
    if r.returncode != 0:
        return []
    out = []
    for rule in parse_nft_json(r.stdout).rules():
        fam, _, tbl = rule.table.partition(" ")
        out.append({"family": fam, "table": tbl, "chain": rule.chain, "text": rule.text, "pkts": rule.pkts})
    return out


def link_mtus(netns: str) -> dict[str, int]:
    """iface -> MTU in ``netns`` (``ip -j link``)."""
    r = _run(["ip", "-n", netns, "-j", "link", "show"])
    try:
        return {x["ifname"]: int(x["mtu"]) for x in json.loads(r.stdout or "[]")}
    except (ValueError, KeyError, TypeError):
        return {}


def ipsec_tables(lab: Any, status: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Per node with an encrypted overlay, the IPsec policies and states installed now: ``ip xfrm`` in its
    host namespace, or the table of its userspace ESP process. None when no overlay is encrypted."""
    if not any(n.get("encrypted") for n in status["networks"]):
        return None
    out: dict[str, dict[str, Any]] = {}
    for nd in status["nodes"]:
        if status.get("esp") == "userspace":
            t = lab.esp_table(nd["name"])
            out[nd["name"]] = {"states": t.get("states", []), "policies": t.get("policies", []),
                               "stats": t.get("stats", {})}
            continue
        host = f"{status['prefix']}{nd['name']}"
        out[nd["name"]] = parse_xfrm(_run(["ip", "-n", host, "xfrm", "state"]).stdout,
                                     _run(["ip", "-n", host, "xfrm", "policy"]).stdout)
    return out


def parse_xfrm(states: str, policies: str) -> dict[str, Any]:
    """``ip xfrm state`` / ``ip xfrm policy`` text -> {"states": [{src, dst, spi}], "policies": [{src, dst,
    dport}]} (out policies only; keys are never read)."""
    import re

    st = [{"src": m.group(1), "dst": m.group(2), "spi": int(m.group(3), 16)}
          for m in re.finditer(r"^src (\S+) dst (\S+)\n\s+proto esp spi 0x([0-9a-f]+)", states, re.M)]
    pol = [{"src": m.group(1), "dst": m.group(2), "dport": int(m.group(3))}
           for m in re.finditer(r"^src (\S+)/32 dst (\S+)/32 proto udp dport (\d+)\s*\n\s+dir out", policies, re.M)]
    return {"states": st, "policies": pol}


class Injectors:
    """One injector process per namespace (``ip netns exec NS python3 -I inject.py``); all killed on
    error or Ctrl-C."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []

    def run(self, jobs: dict[str, dict[str, Any]], timeout: float) -> dict[str, dict[str, Any]]:
        """Run ``jobs`` (netns -> job) in parallel; netns -> result."""
        results: dict[str, dict[str, Any]] = {}
        try:
            for ns in jobs:
                pr = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-I", str(INJECTOR)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)
                self.procs.append((ns, pr))

            def talk(item: tuple[str, subprocess.Popen[str]]) -> tuple[str, str, str, int | None]:
                ns, pr = item
                try:
                    out, err = pr.communicate(json.dumps(jobs[ns]), timeout=timeout)
                except subprocess.TimeoutExpired:
                    return ns, "", f"did not finish in {timeout:.0f} s", None
                return ns, out, err, pr.returncode

            with ThreadPoolExecutor(max_workers=max(1, len(self.procs))) as ex:
                done = list(ex.map(talk, list(self.procs)))
            for ns, out, err, rc in done:
                if rc != 0:
                    last = (err or "").strip().splitlines()
                    raise LabError(f"probe injector in {ns} failed: {last[-1] if last else rc}")
                try:
                    results[ns] = json.loads(out)
                except ValueError:
                    raise LabError(f"probe injector in {ns} printed no result") from None
        finally:
            self.kill()
        return results

    def kill(self) -> None:
        """Kill every injector still running."""
        for _ns, pr in self.procs:
            if pr.poll() is None:
                try:
                    os.killpg(pr.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                pr.wait()
        self.procs = []


def schedule(probes: list[Probe], rate: float, start: float) -> dict[str, dict[str, Any]]:
    """netns -> injector job; probe ``i`` (in group order) is sent at ``start + i / rate``."""
    order = sorted(probes, key=lambda p: (GROUP_ORDER.index(p.group) if p.group in GROUP_ORDER else 9,
                                          int(p.id.lstrip("pm") or 0)))
    jobs: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(order):
        job = jobs.setdefault(p.netns, {"start": start, "frames": [], "conns": []})
        at = round(i / rate, 4)
        if p.kind == "frame":
            job["frames"].append({"id": p.id, "at": at, "iface": p.iface, "hex": p.frame.hex()})
        else:
            job["conns"].append({"id": p.id, "at": at, "src": p.src, "sport": p.sport, "dst": p.dst,
                                 "port": p.dport, "size": p.size, "timeout": 1.0})
    return jobs


# ---------------------------------------------------------------------- verify


def verify(lab: str | None = None, *, keep: str | Path | None = None, rules: Sequence[str] | None = None,
           target_cluster: Sequence[str] | str | None = None, rate: float = 50.0, timeout: float = 1.0,
           max_probes: int = 500, seed: int | None = None, progress: Progress | None = None,
           ssh_config: str | Path | None = None, dry_run: bool = False,
           show: Callable[[str], None] | None = None) -> VerifyReport:
    """Verify every rule on the expected paths of lab ``lab`` (default: the only lab that is up) with
    crafted probes, captures on both sides of each rule and counter deltas.

    ``keep``: directory for the dumps, pcaps and report (default: a temporary directory, removed).
    ``rules``: only the checks matching these patterns (and what they depend on). ``rate``: probes per
    second (<= 200), ``max_probes``: refuse plans with more. ``target_cluster``: explicit opt-in to probe
    a real cluster: its nodes ``[USER@]HOST[:PORT]`` reached over SSH (``ssh_config``; ``dry_run`` lists the
    probes and sends nothing; see :mod:`meshpkt.verify.remote`). Raises NeedRootError without root (labs).
    """
    if target_cluster:  # a real cluster over SSH: meshpkt.verify.remote (docs/remote.md)
        from meshpkt.verify.remote import verify_cluster

        nodes = [target_cluster] if isinstance(target_cluster, str) else list(target_cluster)
        return verify_cluster(nodes, ssh_config=ssh_config, dry_run=dry_run, keep=keep, rate=min(rate, 100.0),
                              seed=seed, progress=progress, show=show)
    if not 0 < rate <= MAX_RATE:
        raise UsageError(f"rate must be in (0, {MAX_RATE:g}] probes/s")
    if os.geteuid() != 0:
        raise NeedRootError("meshpkt verify needs root (network namespaces, raw sockets, tcpdump): run it with sudo")
    for tool in ("ip", "tcpdump", "iptables-save", "nft"):
        if shutil.which(tool) is None:
            raise ToolMissingError(f"{tool} is not installed (needed by meshpkt verify)")
    say = progress or (lambda _msg: None)
    from meshpkt.lab import Lab, LabSpec
    from meshpkt.lab.build import lab_namespaces
    from meshpkt.lab.plan import plan as lab_plan_of

    name = resolve_lab(lab)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    L = Lab(name)
    status = L.status()
    existing = set(lab_namespaces(name))
    if keep is not None:
        work = Path(keep)
        work.mkdir(parents=True, exist_ok=True)
        cleanup = False
    else:
        work = Path(tempfile.mkdtemp(prefix=f"meshpkt-verify-{name}-"))
        cleanup = True
    try:
        return _verify(L, status, existing, work, rules, rate, timeout, max_probes, seed, say, t0, timings,
                       lab_plan_of, LabSpec, keep is not None)
    finally:
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)


def _verify(L: Any, status: dict[str, Any], existing: set[str], work: Path, rules: Sequence[str] | None,
            rate: float, timeout: float, max_probes: int, seed: int | None, say: Progress, t0: float,
            timings: dict[str, float], lab_plan_of: Any, LabSpec: Any, keeping: bool) -> VerifyReport:
    from meshpkt.rules import collect, load_dumps

    name = L.name
    # 1. the rule model of what is installed
    say(f"collecting the rules of lab {name}")
    t = time.monotonic()
    dumps = work / "dumps"
    if dumps.exists():
        shutil.rmtree(dumps)
    collect(dumps, lab=name)
    model = load_dumps(dumps)
    timings["collect"] = time.monotonic() - t
    # 2. plan
    t = time.monotonic()
    expected = lab_plan_of(LabSpec.from_dict(status["spec"]), status["lb"], status.get("esp", "xfrm"))
    vp = plan_verify(status, expected, model, existing=existing, seed=seed, xfrm=ipsec_tables(L, status))
    rows, need = select_checks(vp.checks, rules)
    checks = [c for c in vp.checks if c.id in need]
    probes = needed_probes(vp, need)
    if len(probes) > max_probes:
        raise UsageError(f"{len(probes)} probes needed, more than the limit of {max_probes}: narrow with --rule")
    check_safety(name, vp, probes, existing)
    timings["plan"] = time.monotonic() - t
    by_id = {p.id: p for p in probes}
    # 3. counters before, captures, probes, counters after
    counter_ns = sorted({c.counter_key[0] for c in checks if c.counter_key})
    und = f"{status['prefix']}underlay"
    t = time.monotonic()
    before = snapshot_counters(counter_ns)
    und_before = underlay_rules(und) if und in existing else []
    files, conns = _probe(vp, probes, work, rate, timeout, say, timings, t)
    after = snapshot_counters(counter_ns)
    und_after = underlay_rules(und) if und in existing else []
    for r in und_after:
        old = next((x for x in und_before if x["text"] == r["text"] and x["chain"] == r["chain"]), None)
        r["delta"] = (r["pkts"] or 0) - ((old or {}).get("pkts") or 0) if r["pkts"] is not None else None
    # 4. decode + judge
    say("decoding captures and judging")
    t = time.monotonic()
    from meshpkt.decode import read

    table = read([(pt, path) for pt, path in files if path.exists()], vxlan_ports=(int(status["data_path_port"]),))
    timings["decode"] = time.monotonic() - t
    t = time.monotonic()
    mtus = _mtus(status, vp, model, und, existing)
    judge(checks, by_id, table, before, after, conns=conns, mtus=mtus, underlay_rules=und_after)
    timings["judge"] = time.monotonic() - t
    row_ids = {c.id for c in rows}
    shown = [c for c in checks if c.id in row_ids]
    shown.sort(key=lambda c: (KIND_ORDER.index(c.kind), 0))
    report = VerifyReport(lab=name, lb=str(status["lb"]), checks=_path_order(shown), probes=len(probes),
                          seconds=time.monotonic() - t0, timings=timings,
                          keep=str(work) if keeping else None, notes=list(vp.notes))
    if keeping:
        (work / "verify.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        (work / "conns.json").write_text(json.dumps(conns, indent=1) + "\n")
    return report


def _probe(vp: VerifyPlan, probes: list[Probe], work: Path, rate: float, timeout: float, say: Progress,
           timings: dict[str, float], t: float) -> tuple[list[tuple[str, Path]], dict[str, dict[str, Any]]]:
    """Capture at every point of ``vp`` while the frames, then the MTU connections, are injected.
    Returns the pcap files and the connections' results."""
    conns: dict[str, dict[str, Any]] = {}
    frames = [p for p in probes if p.kind == "frame"]
    conn_probes = [p for p in probes if p.kind == "conn"]
    say(f"probing: {len(frames)} crafted SYNs/datagrams + {len(conn_probes)} MTU connections, "
        f"captures at {len(vp.points)} points")
    inj = Injectors()
    with CaptureSession(vp.points, work / "pcap") as cap:
        timings["capture_start"] = time.monotonic() - t
        t = time.monotonic()
        try:
            if frames:
                jobs = schedule(frames, rate, time.monotonic() + 0.3)
                inj.run(jobs, timeout=30 + len(frames) / rate)
                time.sleep(max(0.2, min(timeout, 1.0) * 0.4))
            if conn_probes:
                # forget path MTUs the client learned earlier: measure the path as it is now
                for ns in sorted({p.netns for p in conn_probes}):
                    _run(["ip", "-n", ns, "route", "flush", "cache"])
                jobs = schedule(conn_probes, rate, time.monotonic() + 0.3)
                for res in inj.run(jobs, timeout=30 + len(conn_probes) / rate).values():
                    for c in res.get("conns", []):
                        conns[c["id"]] = c
                time.sleep(0.2)
        finally:
            inj.kill()
        timings["probes"] = time.monotonic() - t
        return list(cap.files()), conns


def _path_order(checks: list[Check]) -> list[Check]:
    """Rows in path order: dnat, unpublished, mark, lb, snat, fdb, link, redirect, server, vipmark ..., mtu."""
    order = ["dnat", "hostdnat", "unpublished", "mark", "vipmark", "lb", "snat", "fdb", "link", "xfrm", "redirect",
             "server", "dnsrr", "mtu"]
    return sorted(checks, key=lambda c: (order.index(c.kind) if c.kind in order else 99,
                                         c.node, c.namespace, c.id))


def _mtus(status: dict[str, Any], vp: VerifyPlan, model: Any, und: str,
          existing: set[str]) -> dict[str, list[tuple[str, str, str, int]]]:
    """capture point -> [(netns, short, iface, mtu)] of its interface and of its veth peer, as dumped
    (underlay side read live)."""
    from meshpkt.verify.plan import LabView

    v = LabView(status, existing)
    und_mtu = link_mtus(und) if und in existing else {}
    ns_index: dict[str, tuple[str, dict[str, Any]]] = {}
    for nd in status["nodes"]:
        for ns in nd["namespaces"]:
            ns_index[ns["name"]] = (nd["name"], ns)
    for ns in status.get("underlay_namespaces", []):
        ns_index[ns["name"]] = (ns["role"], ns)

    def mtu_of(netns: str, iface: str) -> int | None:
        if netns == und:
            return und_mtu.get(iface)
        node, nsd = ns_index.get(netns, ("", None))
        if nsd is None:
            return None
        mns = model.nodes.get(node).namespaces.get(v.model_ns_name(node, netns)) if model.nodes.get(node) else None
        if mns is not None:
            lk = next((x for x in mns.links if x.name == iface), None)
            if lk is not None and lk.mtu is not None:
                return int(lk.mtu)
        i = LabView.iface(nsd, iface)
        return int(i["mtu"]) if i else None

    out: dict[str, list[tuple[str, str, str, int]]] = {}
    for pt in vp.points:
        node, nsd = ns_index.get(pt["netns"], ("", None))
        if nsd is None:
            continue
        lst: list[tuple[str, str, str, int]] = []
        m = mtu_of(pt["netns"], pt["iface"])
        if m is not None:
            lst.append((pt["netns"], nsd["short"], pt["iface"], m))
        i = LabView.iface(nsd, pt["iface"])
        peer = (i or {}).get("peer")
        if peer:
            pm = mtu_of(peer["netns"], peer["iface"])
            pshort = ns_index.get(peer["netns"], ("", {"short": peer["netns"]}))[1]["short"]
            if pm is not None:
                lst.append((peer["netns"], pshort, peer["iface"], pm))
        out[pt["point"]] = lst
    return out

