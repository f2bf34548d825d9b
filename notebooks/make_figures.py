"""Render the README's figures into ``notebooks/figures/``.

    python3 notebooks/make_figures.py [--out DIR] [--dpi 100] [--only NAME ...]

- ``flow-cross-node.png``: sequence diagram of the shipped captures' first connection that crosses
  the underlay (client -> node1:9090 -> DNAT -> IPVS masq + SNAT -> VXLAN vni 4096 -> my-web.2).
- ``topology.png``: the lab of the shipped captures, drawn from ``captures/ingress-3node/status.json``.
- ``balance.png``: requests per backend per entry node in the shipped captures.
- ``flow-lost.png``: a connection whose VXLAN packets are dropped between node1 and node2. As root
  (network namespaces) it comes from a live lab run with ``Lab.drop_vxlan("node1", "node2")``; without
  root, from the crafted ingress captures of ``tests/flows/conftest.py`` with the same drop.

Only the public API is used (``meshpkt.analyze``, ``meshpkt.plot``, ``meshpkt.lab``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "captures" / "ingress-3node"
FIGURES = Path(__file__).resolve().parent / "figures"
NAMES = ("flow-cross-node", "flow-lost", "topology", "balance")


def _save(fig: Any, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def _shipped() -> Any:
    import meshpkt

    return meshpkt.analyze([SHIPPED])


def cross_node(analysis: Any) -> int:
    """Id of the first connection whose backend is on another node than its entry node."""
    c = analysis.connections
    cross = c[(c["entry_node"] != c["backend_node"]) & c["backend_node"].notna()]
    if cross.empty:
        raise SystemExit("no cross-node connection in the shipped captures")
    return int(cross.sort_values("first_ts_ns").iloc[0]["conn_id"])


def lost_connection(analysis: Any) -> int:
    """Id of the first connection that did not close (where a packet was lost)."""
    c = analysis.connections
    dead = c[(c["status"] != "closed") & c["client"].str.startswith("10.211.55.2:")]
    if dead.empty:
        raise SystemExit("the drop run produced no broken connection")
    return int(dead.sort_values("first_ts_ns").iloc[0]["conn_id"])


def _live_drop_captures(out: Path) -> Path:
    """A fresh lab, VXLAN node1 -> node2 dropped on the underlay switch, three requests to node1
    (round robin: my-web.1 local, my-web.2 across the dropped link, my-web.3)."""
    from meshpkt.lab import Lab

    lab = Lab("fig" + uuid.uuid4().hex[:6])
    lab.up()
    try:
        lab.drop_vxlan("node1", "node2")
        script = "; ".join(["curl -s -m 2 http://10.211.55.10:9090/ ; sleep 0.2"] * 3)
        lab.capture(None, out, ["sh", "-c", script], all_points=True, run_in="client", grace=0.5,
                    stdout=subprocess.DEVNULL)
    finally:
        lab.down()
    return out


def _crafted_drop_captures(out: Path) -> Path:
    """The crafted captures of tests/flows/conftest.py: node1 -> my-web on node2, dropped after
    node1's eth0 (the VXLAN datagrams never reach node2)."""
    path = ROOT / "tests" / "flows" / "conftest.py"
    name = "meshpkt_figures_flows_synth"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    conns = [mod.Conn("node1", "10.0.0.5", 40001, 40001),
             mod.Conn("node1", "10.0.0.6", 40002, 40002, drop_after="node1.host.eth0")]
    return Path(mod.build(conns, out))


def _can_lab() -> bool:
    if os.geteuid() != 0:
        return False
    probe = f"mpk-fig-{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True


def make(out_dir: Path, dpi: int = 100, only: tuple[str, ...] = NAMES, live: bool | None = None,
         say: Callable[[str], None] = print) -> dict[str, Path]:
    """Render the figures named in ``only`` into ``out_dir``; return {name: path}."""
    import meshpkt
    from meshpkt.plot import balance_plot, sequence_diagram, topology_diagram

    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    analysis: Any = _shipped() if {"flow-cross-node", "balance"} & set(only) else None
    if "flow-cross-node" in only:
        cid = cross_node(analysis)
        done["flow-cross-node"] = _save(sequence_diagram(analysis, cid), out_dir / "flow-cross-node.png", dpi)
        say(f"flow-cross-node.png: connection {cid} of {SHIPPED.relative_to(ROOT)}")
    if "topology" in only:
        status = json.loads((SHIPPED / "status.json").read_text())
        done["topology"] = _save(topology_diagram(status), out_dir / "topology.png", dpi)
        say("topology.png: captures/ingress-3node/status.json")
    if "balance" in only:
        done["balance"] = _save(balance_plot(analysis), out_dir / "balance.png", dpi)
        say("balance.png: captures/ingress-3node")
    if "flow-lost" in only:
        use_lab = _can_lab() if live is None else live
        with tempfile.TemporaryDirectory(prefix="meshpkt-fig-") as tmp:
            caps = (_live_drop_captures if use_lab else _crafted_drop_captures)(Path(tmp) / "cap")
            lost = meshpkt.analyze([caps])
            cid = lost_connection(lost)
            fig = sequence_diagram(lost, cid)
            done["flow-lost"] = _save(fig, out_dir / "flow-lost.png", dpi)
        say(f"flow-lost.png: connection {cid} of a {'live lab run' if use_lab else 'crafted capture'} "
            "with VXLAN node1 -> node2 dropped")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=FIGURES, help="output directory (default notebooks/figures)")
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--live", dest="live", action="store_true", default=None,
                   help="flow-lost from a live lab run (needs root)")
    g.add_argument("--crafted", dest="live", action="store_false", help="flow-lost from crafted captures")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    done = make(args.out, args.dpi, tuple(args.only), args.live)
    for path in done.values():
        print(f"  {path} {path.stat().st_size // 1024} KB")
    print(f"{len(done)} figure(s) in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
