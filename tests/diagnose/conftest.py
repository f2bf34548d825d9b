"""Helpers for the diagnose tests live in diagnose_lab.py (live lab) and diagnose_craft.py (crafted)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
