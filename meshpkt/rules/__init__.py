"""meshpkt.rules: parsers for the dumps operators have (iptables, nft, ipvsadm, iproute2, bridge,
docker inspect), a typed model of the routing mesh, expected paths and inconsistencies.

Pure except :func:`collect` (which runs the dump commands in each namespace)::

    from meshpkt.rules import load_dumps, explain
    model = load_dumps("seed001.txt")            # or a directory written by `meshpkt collect`
    print(explain(model, "10.211.55.10:9090").summary)
"""

from __future__ import annotations

from meshpkt.rules.collect import CollectReport, collect, map_netns_names
from meshpkt.rules.explain import Explanation, Finding, Hop, RuleRef, check, explain, reach
from meshpkt.rules.model import (
    Backend,
    DumpText,
    LbService,
    MarkRule,
    MeshModel,
    Namespace,
    Node,
    Overlay,
    PublishedPort,
    Role,
    SnatRule,
    TaskRedirect,
    build_model,
    dumps_from_transcript,
    load_dumps,
)
from meshpkt.rules.transcript import Chunk, classify_command, split_transcript
from meshpkt.rules.types import Chain, Rule, Ruleset
from meshpkt.rules.walk import Pkt, WalkResult, walk_chain, walk_hook

__all__ = [
    "Backend", "Chain", "Chunk", "CollectReport", "DumpText", "Explanation", "Finding", "Hop", "LbService",
    "MarkRule", "MeshModel", "Namespace", "Node", "Overlay", "Pkt", "PublishedPort", "Role", "Rule", "RuleRef",
    "Ruleset", "SnatRule", "TaskRedirect", "WalkResult", "build_model", "check", "classify_command", "collect",
    "dumps_from_transcript", "explain", "load_dumps", "map_netns_names", "reach", "split_transcript", "walk_chain",
    "walk_hook",
]
