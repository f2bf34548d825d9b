"""Regenerate the real-tool fixtures of ``tests/rules/data`` from a throw-away mini lab (root).

    python3 -m tests.rules.make_fixtures        (from the repository root)

Writes ``data/lab/`` (the output of ``collect --lab``) and ``data/lab_extra/`` (other listings
of the same namespaces: ``iptables -L`` variants, ``iptables -S``).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from meshpkt.rules.collect import collect
from tests.rules import minilab

HERE = Path(__file__).resolve().parent

EXTRA = {
    "host": [("iptables-L-nat-vx-linenumbers.txt", ["iptables", "-L", "-n", "-v", "-x", "--line-numbers", "-t", "nat"]),
             ("iptables-L-filter-v.txt", ["iptables", "-L", "-n", "-v"])],
    "sbox": [("iptables-L-mangle-v.txt", ["iptables", "-L", "-nv", "-t", "mangle"])],
    "task": [("iptables-S.txt", ["iptables", "-S"]),
             ("iptables-L-filter-v.txt", ["iptables", "-L", "-nv"])],
}


def main() -> None:
    lab = f"mpkfix{uuid.uuid4().hex[:4]}"
    data = HERE / "data"
    try:
        ns = minilab.build(lab)
        with tempfile.TemporaryDirectory() as tmp:
            collect(Path(tmp) / "lab", lab=lab)
            shutil.rmtree(data / "lab", ignore_errors=True)
            shutil.copytree(Path(tmp) / "lab", data / "lab")
        extra = data / "lab_extra"
        extra.mkdir(exist_ok=True)
        for role, cmds in EXTRA.items():
            for fname, argv in cmds:
                out = minilab.sh("ip", "netns", "exec", ns[role], *argv).stdout
                (extra / f"{role}-{fname}").write_text(out, encoding="utf-8")
    finally:
        minilab.teardown(lab)


if __name__ == "__main__":
    main()
