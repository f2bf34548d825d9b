"""The CLI entry: fast help (no heavy imports), one-line errors."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "scapy", "matplotlib", "numba", "numpy", "pyarrow", "dpkt")


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from meshpkt.cli.main import main\n"
        "for args in (['--help'], ['analyze', '--help'], ['lab', '--help'], ['filter', '--help'],"
        " ['rules', '--help'], ['diagram', '--help'], ['verify', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (args, e.code)\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = r.stdout.rsplit("HEAVY:", 1)[1].strip()
    assert heavy == "", f"--help imported: {heavy}"


def test_help_lists_every_command():
    r = subprocess.run([sys.executable, "-m", "meshpkt", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("analyze", "filter", "lab", "rules", "collect", "verify", "diagram"):
        assert cmd in r.stdout, cmd


def test_unknown_file_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meshpkt", "analyze", str(tmp_path / "nope.pcap")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "nope.pcap" in r.stderr and "Traceback" not in r.stderr
