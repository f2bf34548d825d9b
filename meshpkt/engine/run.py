"""``meshpkt.engine.analyze``: captures in, :class:`~meshpkt.flows.Analysis` out, on an engine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.engine.decode import CaptureArg, Progress
    from meshpkt.flows import Analysis, Topology

ENGINES = ("local", "partitioned", "dask")


def resolve_status(captures: list[Any]) -> Path | None:
    """The ``status.json`` in a capture directory or beside a capture file, if any."""
    for c in captures:
        path = Path(c[1] if isinstance(c, tuple) else c)
        cand = path / "status.json" if path.is_dir() else path.parent / "status.json"
        if cand.is_file():
            return cand
    return None


def resolve_topology(captures: list[Any], topology: Any) -> Topology:
    """The topology argument as a :class:`Topology`: a ``status.json`` beside the captures when
    none is given (as ``meshpkt.flows.analyze`` does), else an empty one to infer."""
    from meshpkt.flows.topology import Topology, from_lab_status, load_topology

    if topology is None:
        topology = resolve_status(captures)
    if isinstance(topology, (str, Path)):
        return load_topology(topology)
    if isinstance(topology, dict):
        return from_lab_status(topology)
    return topology if topology is not None else Topology()


def analyze(captures: Iterable[CaptureArg], *, topology: Topology | dict[str, Any] | str | Path | None = None,
            vxlan_ports: Sequence[int] = (4789,), problems: list[Any] | None = None,
            progress: Progress | None = None, correct_clocks: bool = True, engine: str = "local",
            workers: int | None = None, client: Any = None, scheduler: str | None = None,
            packets_out: tuple[str, Any] | None = None, chunk_records: int | None = None,
            partition_rows: int | None = None, on_stage: Any = None) -> Analysis:
    """Decode ``captures`` and reconstruct every connection (see ``meshpkt.flows.analyze``).

    ``engine="local"`` decodes here (several files at once on ``workers`` processes);
    ``progress(bytes_done, bytes_total, packets_done)`` is called while decoding.
    ``engine="partitioned"`` analyses in bounded memory and holds no packet table: the per-packet
    export goes to ``packets_out=(format, path)`` as it is produced. ``chunk_records`` and
    ``partition_rows`` size the chunks and partitions of the partitioned and Dask engines;
    ``on_stage(name, client)`` is the Dask engine's stage hook.
    """
    sizes: dict[str, Any] = {k: v for k, v in (("chunk_records", chunk_records), ("partition_rows", partition_rows))
                             if v}
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    from meshpkt.flows import analyze as flows_analyze

    caps = list(captures)
    if engine == "partitioned":
        from meshpkt.engine.partitioned import analyze_partitioned

        result: Analysis = analyze_partitioned(caps, topology=topology, vxlan_ports=vxlan_ports, problems=problems,
                                               progress=progress, correct_clocks=correct_clocks,
                                               packets_out=packets_out, **sizes)
        return result
    if engine == "dask":
        from meshpkt.engine.dask import analyze_dask

        dresult: Analysis = analyze_dask(caps, topology=topology, vxlan_ports=vxlan_ports, problems=problems,
                                         correct_clocks=correct_clocks, workers=workers, client=client,
                                         scheduler=scheduler, on_stage=on_stage, **sizes)
        return dresult
    from meshpkt.engine.decode import read_captures

    packets = read_captures(caps, vxlan_ports=vxlan_ports, problems=problems, progress=progress, workers=workers)
    if len(packets) == 0:
        from meshpkt.flows.summary import summarize

        return empty_analysis(summarize(packets), resolve_topology(caps, topology), problems)
    return flows_analyze(caps, packets=packets, topology=topology, problems=problems,
                         correct_clocks=correct_clocks)


def empty_analysis(summary: dict[str, Any], topology: Topology, problems: list[Any] | None) -> Analysis:
    """The analysis of captures without a single packet (all unreadable, or empty)."""
    import pandas as pd

    from meshpkt.decode import empty_table
    from meshpkt.flows import Analysis, _empty_connections

    bal: dict[str, Any] = {"per_entry": {}, "round_robin": {}}
    summary.update(topology="inferred" if topology.inferred else topology.source, connections=0, status={},
                   clock_offsets={}, balance=bal,
                   problems=[str(getattr(p, "message", p)) for p in (problems or [])])
    none = pd.DataFrame({"conn_id": pd.Series([], dtype="int64")})
    return Analysis(empty_table(), none.assign(stray=pd.Series([], dtype=bool)), _empty_connections(), none,
                    summary, {}, bal, topology, list(problems or []), none)
