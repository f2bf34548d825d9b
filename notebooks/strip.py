"""Strip outputs from the notebooks before committing them (commit policy: no outputs).

    python3 notebooks/strip.py            # strip every notebooks/*.ipynb in place
    python3 notebooks/strip.py --check    # exit 1 and name the notebooks that still carry outputs
    python3 notebooks/strip.py A.ipynb B.ipynb

Removes code cells' outputs and execution counts, and the per-cell/notebook metadata Jupyter adds
while running (``execution`` timings, ``collapsed``, ``scrolled``, widget state). The kernelspec and
language info stay.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_CELL_META_DROP = ("execution", "collapsed", "scrolled", "ExecuteTime")
_NB_META_DROP = ("widgets", "varInspector", "toc")


def dirty_cells(nb: Any) -> list[int]:
    """Indexes of the cells that carry outputs, execution counts or run-time metadata."""
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {})
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            out.append(i)
        elif any(k in meta for k in _CELL_META_DROP):
            out.append(i)
    return out


def strip(nb: Any) -> bool:
    """Strip ``nb`` (an nbformat NotebookNode) in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.get("metadata", {})
        for k in _CELL_META_DROP:
            if k in meta:
                del meta[k]
                changed = True
    for k in _NB_META_DROP:
        if k in nb.metadata:
            del nb.metadata[k]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    import nbformat

    p = argparse.ArgumentParser(description="Strip outputs from notebooks (commit without outputs).")
    p.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    p.add_argument("--check", action="store_true", help="only report notebooks with outputs; exit 1 if any")
    args = p.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    bad = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            cells = dirty_cells(nb)
            if cells:
                bad += 1
                print(f"{path}: outputs or execution counts in cell(s) {', '.join(map(str, cells))}")
        elif strip(nb):
            nbformat.write(nb, path)
            print(f"stripped {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
