"""``meshpkt.engine.analyze``: captures in, :class:`~meshpkt.flows.Analysis` out, on an engine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshpkt.errors import UsageError

if TYPE_CHECKING:
    from meshpkt.engine.decode import CaptureArg, Progress
    from meshpkt.flows import Analysis, Topology

ENGINES = ("local", "dask")


def analyze(captures: Iterable[CaptureArg], *, topology: Topology | dict[str, Any] | str | Path | None = None,
            vxlan_ports: Sequence[int] = (4789,), problems: list[Any] | None = None,
            progress: Progress | None = None, correct_clocks: bool = True, engine: str = "local",
            workers: int | None = None, client: Any = None, scheduler: str | None = None) -> Analysis:
    """Decode ``captures`` and reconstruct every connection (see ``meshpkt.flows.analyze``).

    ``engine="local"`` decodes here (several files at once on ``workers`` processes);
    ``progress(bytes_done, bytes_total, packets_done)`` is called while decoding.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    from meshpkt.flows import analyze as flows_analyze

    caps = list(captures)
    if engine == "dask":
        from meshpkt.engine.dask import read_captures_dask

        packets = read_captures_dask(caps, vxlan_ports=vxlan_ports, problems=problems, workers=workers,
                                     client=client, scheduler=scheduler)
    else:
        from meshpkt.engine.decode import read_captures

        packets = read_captures(caps, vxlan_ports=vxlan_ports, problems=problems, progress=progress,
                                workers=workers)
    return flows_analyze(caps, packets=packets, topology=topology, problems=problems,
                         correct_clocks=correct_clocks)
