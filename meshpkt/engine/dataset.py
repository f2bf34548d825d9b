"""Decoded captures as a Parquet dataset: ``meshpkt decode CAPTURE... --out DIR``.

Run where the pcaps live, so that only compact Parquet travels. Layout::

    DIR/_meshpkt_dataset.json           marker: format, points, packets, problems, source files
    DIR/point=<capture point>/<file stem>-<first record>.parquet   packet table rows (no point column)
    DIR/status.json                     the lab status found beside the captures, if any

Every column of the packet table (``meshpkt.decode.schema``) is kept, so ``meshpkt analyze DIR``
(any engine) gives the same analysis as on the pcaps, topology inference included.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from meshpkt.capture.reader import CaptureProblem
from meshpkt.decode import api
from meshpkt.decode.schema import COLUMNS
from meshpkt.engine.decode import CaptureArg, Progress, _items

MARKER = "_meshpkt_dataset.json"
FORMAT = 1


def is_dataset(path: str | Path) -> bool:
    """True for a directory written by :func:`write_dataset`."""
    p = Path(path)
    return p.is_dir() and (p / MARKER).is_file()


def split_inputs(captures: Sequence[CaptureArg]) -> tuple[list[CaptureArg], list[Path]]:
    """(capture arguments, dataset directories)."""
    caps: list[CaptureArg] = []
    sets: list[Path] = []
    for c in captures:
        if not isinstance(c, tuple) and is_dataset(c):
            sets.append(Path(c))
        else:
            caps.append(c)
    return caps, sets


def dataset_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(capture point, Parquet file) of a dataset, in point then file order."""
    for d in sorted(root.glob("point=*")):
        for f in sorted(d.glob("*.parquet")):
            yield unquote(d.name[len("point="):]), f


def read_part(point: str, path: Path) -> pd.DataFrame:
    """One Parquet file of a dataset as packet-table rows (schema dtypes, ``point`` column first)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    data: dict[str, Any] = {}
    for name, (dtype, _absent, _d) in COLUMNS.items():
        if name == "point":
            data[name] = pd.Categorical.from_codes(np.zeros(table.num_rows, np.int32), categories=[point])
        elif dtype == "object":
            data[name] = pd.Series(table.column(name).to_pylist(), dtype=object)
        else:
            data[name] = table.column(name).to_numpy().astype(dtype, copy=False)
    df = pd.DataFrame(data)
    df.attrs["problems"] = []
    return df


def write_dataset(captures: Sequence[CaptureArg], out: str | Path, *, vxlan_ports: Sequence[int] = (4789,),
                  problems: list[CaptureProblem] | None = None, progress: Progress | None = None,
                  chunk_records: int | None = None) -> dict[str, Any]:
    """Decode ``captures`` into a Parquet dataset at ``out`` (see the module docstring); returns
    the marker document."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from meshpkt.engine.partitioned import CHUNK_RECORDS, iter_chunks

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    files = _items(list(captures), problems)
    ports = api._ports(vxlan_ports)
    found: list[CaptureProblem] = []
    counts: dict[str, int] = {}
    done = 0
    for f, cap, start, _n in iter_chunks(files, problems, chunk_records or CHUNK_RECORDS):
        packets = api.decode_buffer(cap, point=f.point, vxlan_ports=ports)
        packets["record"] = packets["record"].to_numpy() + start
        found.extend(packets.attrs.get("problems", []))
        codes = packets["point"].cat.codes.to_numpy()
        for code, name in enumerate(packets["point"].cat.categories):
            rows = packets[codes == code].drop(columns=["point"])
            if len(rows) == 0 and start > 0:
                continue
            target = root / f"point={quote(str(name), safe='')}"
            target.mkdir(exist_ok=True)
            pq.write_table(pa.Table.from_pandas(rows, preserve_index=False),
                           target / f"{api.capture_stem(f.path)}-{start:012d}.parquet")
            counts[str(name)] = counts.get(str(name), 0) + len(rows)
        done += len(packets)
        if progress is not None:
            progress(0, 1, done)
    if problems is not None:
        problems.extend(found)
    _copy_status(captures, root)
    doc = {"format": FORMAT, "points": counts, "packets": sum(counts.values()),
           "vxlan_ports": list(ports), "sources": [str(f.path) for f in files],
           "problems": [str(p) for p in found]}
    (root / MARKER).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _copy_status(captures: Sequence[CaptureArg], root: Path) -> None:
    from meshpkt.engine.run import resolve_status

    status = resolve_status(list(captures))
    if status is not None and status.resolve() != (root / "status.json").resolve():
        shutil.copyfile(status, root / "status.json")


def read_datasets(roots: list[Path]) -> list[pd.DataFrame]:
    """Every file of the datasets as packet tables."""
    return [read_part(point, path) for root in roots for point, path in dataset_files(root)]
