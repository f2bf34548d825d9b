"""Load-balancing view: which backend each entry node chose, and whether it is round-robin."""

from __future__ import annotations

from typing import Any

import pandas as pd


def is_round_robin(sequence: list[str]) -> bool:
    """True when the sequence cycles through its distinct values in a fixed order."""
    k = len(set(sequence))
    if k <= 1 or len(sequence) < 2:
        return True
    return all(sequence[i] == sequence[i - k] for i in range(k, len(sequence))) and len(set(sequence[:k])) == k


def balance(connections: pd.DataFrame) -> dict[str, Any]:
    """Requests per backend per entry node and the round-robin verdict per entry node."""
    c = connections[connections["backend"].notna() & connections["entry_node"].notna()]
    c = c.sort_values("first_ts_ns")
    out: dict[str, Any] = {"per_entry": {}, "round_robin": {}}
    for node, grp in c.groupby("entry_node", sort=True):
        seq = [b.rsplit(":", 1)[0] for b in grp["backend"]]
        out["per_entry"][str(node)] = {b: seq.count(b) for b in sorted(set(seq))}
        out["round_robin"][str(node)] = {"sequence": seq, "round_robin": is_round_robin(seq)}
    return out


def balance_table(connections: pd.DataFrame) -> pd.DataFrame:
    """Entry node x backend counts."""
    c = connections[connections["backend"].notna() & connections["entry_node"].notna()]
    if c.empty:
        return pd.DataFrame()
    ip = c["backend"].str.rsplit(":", n=1).str[0]
    return pd.crosstab(c["entry_node"], ip)
