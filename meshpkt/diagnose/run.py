"""``diagnose``: the analysis, then every detector of the catalogue, ranked findings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from meshpkt.diagnose.context import Context
from meshpkt.diagnose.finding import Diagnosis, Finding, rank
from meshpkt.diagnose.frames import Frames
from meshpkt.diagnose.registry import DETECTORS
from meshpkt.errors import UsageError

CaptureArg = str | Path | tuple[str, str | Path]


def diagnose_analysis(analysis: Any, model: Any = None, *, frames: Frames | None = None,
                      status: dict[str, Any] | None = None, encrypted_vnis: Iterable[int] = (),
                      lb_timeout_s: float = 900.0, kinds: Sequence[str] | None = None) -> Diagnosis:
    """Run the catalogue over an :class:`~meshpkt.flows.Analysis` (and a rule model from dumps) (pure)."""
    from meshpkt.diagnose import detectors  # noqa: F401 - registers the catalogue

    mesh = _mesh(status)
    vnis = set(encrypted_vnis) | _encrypted_from(model, mesh)
    ctx = Context(analysis, model, frames or Frames(), encrypted_vnis=vnis, lb_timeout_s=lb_timeout_s, mesh=mesh)
    findings: list[Finding] = []
    broken: list[str] = []
    for kind, cls in DETECTORS.items():
        if kinds is not None and kind not in kinds:
            continue
        try:
            findings.extend(cls().run(ctx))
        except Exception as exc:  # one detector's bug must not hide the others' findings
            broken.append(f"{kind}: {type(exc).__name__}: {exc}")
    ranked = rank(findings)
    explained = {c for f in ranked for c in f.connections}
    unexplained = sorted(int(c) for c in ctx.failed.index if int(c) not in explained)
    summary = _summary(analysis, model, vnis)
    summary["detector_errors"] = broken
    return Diagnosis(ranked, summary, analysis, unexplained)


def _mesh(status: dict[str, Any] | None) -> Any:
    if not status:
        return None
    from meshpkt.mesh import load_status

    try:
        return load_status(status)
    except Exception:  # a partial or foreign status document: the flows topology still uses what it can
        return None


def _encrypted_from(model: Any, mesh: Any) -> set[int]:
    out: set[int] = set()
    if model is not None:
        for net in model.networks():
            if "encrypted" in net.options:
                out |= set(net.vnis)
    for net in mesh.networks if mesh is not None else ():
        if net.encrypted and net.vni is not None:
            out.add(int(net.vni))
    return out


def _summary(analysis: Any, model: Any, vnis: set[int]) -> dict[str, Any]:
    s = analysis.summary
    out = {k: s.get(k) for k in ("packets", "connections", "status", "topology", "points", "problems")}
    out["failed_connections"] = int(sum(v for k, v in (s.get("status") or {}).items()
                                        if k not in ("established", "closed", "udp", "icmp")))
    out["dumps"] = None if model is None else {"nodes": sorted(model.nodes),
                                              "namespaces": len(model.namespaces())}
    out["encrypted_vnis"] = sorted(vnis)
    return out


def diagnose(captures: Iterable[CaptureArg], *, dumps: Iterable[str | Path] = (),
             topology: str | Path | dict[str, Any] | None = None, encrypted_vnis: Iterable[int] = (),
             lb_timeout_s: float = 900.0, progress: Callable[..., None] | None = None,
             problems: list[Any] | None = None) -> Diagnosis:
    """Decode ``captures``, load ``dumps`` (directories or transcripts, see ``meshpkt collect``), and name
    the failures. ``topology``: lab status JSON (path or dict); default a ``status.json`` next to the
    captures."""
    from meshpkt.decode import read
    from meshpkt.decode.api import expand_captures
    from meshpkt.flows import analyze

    caps = list(captures)
    if not caps:
        raise UsageError("no captures given")
    status = _status(caps, topology)
    packets = read(caps, progress=progress, problems=problems)  # problems=None: the first bad file raises
    if len(packets) == 0:
        raise UsageError(f"nothing to diagnose: {problems[0]}" if problems else "the captures hold no packets")
    analysis = analyze(caps, packets=packets, topology=status if status is not None else topology,
                       problems=problems)
    files = {str(pt) if pt else Path(f).name.split(".pcap")[0]: f for pt, f in expand_captures(caps)}
    model = _model(list(dumps))
    return diagnose_analysis(analysis, model, frames=Frames(files), status=status, encrypted_vnis=encrypted_vnis,
                             lb_timeout_s=lb_timeout_s)


def _status(caps: list[CaptureArg], topology: str | Path | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(topology, dict):
        return topology
    path: Path | None = Path(topology) if topology is not None else None
    if path is None:
        from meshpkt.flows import _find_status

        path = _find_status(caps)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such topology file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a topology JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a topology JSON (expected an object)")
    return data


def _model(dumps: list[str | Path]) -> Any:
    if not dumps:
        return None
    from meshpkt.rules.model import MeshModel, load_dumps

    merged = MeshModel()
    for d in dumps:
        m = load_dumps(d)
        merged.nodes.update(m.nodes)
        merged.notes.extend(m.notes)
    return merged
