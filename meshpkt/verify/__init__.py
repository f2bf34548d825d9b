"""meshpkt.verify: prove each rule of the routing mesh hop by hop with crafted probes.

For every rule on an expected path (host DNAT, sbox MARK, LB, SNAT, each overlay fdb entry, each
underlay link, each task REDIRECT, each task server, the unpublished-port RETURN, VIP MARKs, path MTU)
``verify`` crafts a probe that must exercise it, injects it inside the lab's namespaces, captures on
both sides of the rule and decides PASS/FAIL/UNTESTED from what was seen plus the rule's counter delta::

    from meshpkt.verify import verify
    report = verify("mesh")                 # needs root and a lab (`meshpkt lab up`)
    for c in report.failures:
        print(c.message)                    # "<netns> <table chain>: <rule text>: <why>"
    report.exit_code()                      # 0 all pass, 1 otherwise

Modules: :mod:`~meshpkt.verify.plan` (pure: checks and probes), :mod:`~meshpkt.verify.judge` (pure:
verdicts from the packet table and counters), :mod:`~meshpkt.verify.run` (collect, capture, inject),
:mod:`~meshpkt.verify.inject` (the stdlib-only injector run inside a namespace).
"""

from __future__ import annotations

from meshpkt.verify.types import FAIL, PASS, UNTESTED, Check, Evidence, Probe, VerifyReport

__all__ = ["FAIL", "PASS", "UNTESTED", "Check", "Evidence", "Probe", "VerifyReport", "verify"]


def verify(*args: object, **kwargs: object) -> VerifyReport:
    """See :func:`meshpkt.verify.run.verify` (imported lazily: scapy/pandas load only when used)."""
    from meshpkt.verify.run import verify as _verify

    return _verify(*args, **kwargs)  # type: ignore[arg-type]
