"""Detectors over the rule model alone (dumps)."""

from __future__ import annotations

from meshpkt.diagnose.context import Context
from meshpkt.diagnose.finding import Finding
from meshpkt.diagnose.registry import Detector, register


def _counts(rulesets: list) -> dict[str, int]:  # type: ignore[type-arg]
    out: dict[str, int] = {}
    for rs in rulesets:
        for table, chains in rs.tables.items():
            n = sum(len(ch.rules) for ch in chains.values())
            if n:
                out[table] = out.get(table, 0) + n
    return out


@register
class IptablesSplitBrain(Detector):
    kind = "iptables-split-brain"
    detects = ("Rules live in both iptables backends of one namespace: Docker writes through iptables-nft "
               "while another tool (an old firewall script, kube-proxy, a distro default) writes through "
               "iptables-legacy, or the other way round. Both sets are evaluated by the kernel, but each "
               "tool sees only its own: a DROP or a missing ACCEPT in the other backend breaks the mesh, "
               "invisibly to `iptables -L`.")
    evidence = ("For the namespace: rule counts per table in the legacy dump (iptables-legacy-save) and in the "
                "nf_tables dump (iptables-nft-save / nft list ruleset), with sample rules of the legacy side.")
    check = ("iptables-legacy-save and iptables-nft-save on the node; switch everything to one backend "
             "(update-alternatives --set iptables ...), flush the other (iptables-legacy -F; -t nat -F), "
             "restart docker.")

    def run(self, ctx: Context) -> list[Finding]:
        if ctx.model is None:
            return []
        out = []
        for ns in ctx.model.namespaces():
            legacy = _counts([rs for rs in ns.rulesets if rs.source == "iptables-save" and rs.backend == "legacy"])
            nft = _counts([rs for rs in ns.rulesets if rs.source == "iptables-save" and rs.backend != "legacy"])
            if not legacy or not nft:
                continue
            shared = sorted(set(legacy) & set(nft))
            sample = [r.text for rs in ns.rulesets if rs.backend == "legacy"
                      for ch in (c for t in rs.tables.values() for c in t.values()) for r in ch.rules][:3]
            ev = ["iptables-legacy: " + ", ".join(f"{t} {n} rule(s)" for t, n in sorted(legacy.items())),
                  "iptables-nft: " + ", ".join(f"{t} {n} rule(s)" for t, n in sorted(nft.items())),
                  *(f"legacy rule: {s}" for s in sample)]
            out.append(Finding(self.kind, "error" if shared else "warning",
                               f"{ns.node}/{ns.name} has rules in both iptables-legacy and iptables-nft"
                               + (f" (both in {', '.join(shared)})" if shared else ""),
                               node=ns.node, points=[], addresses=[], evidence=ev, check=self.check))
        return out
