"""``meshpkt diagnose``: name the failure from captures and dumps, with the evidence.

Pure analysis: :func:`diagnose_analysis` takes an :class:`~meshpkt.flows.Analysis`, a rule model
(:mod:`meshpkt.rules.model`) and raw-frame access, and runs the catalogue of detectors
(:data:`DETECTORS`, one class per kind, see ``docs/diagnose.md``). :func:`diagnose` is the
convenience that reads capture files and dump directories first.
"""

import sys as _sys
import types as _types
from typing import Any

from meshpkt.diagnose.finding import Diagnosis, Finding
from meshpkt.diagnose.registry import DETECTORS, Detector, catalogue, register
from meshpkt.diagnose.run import diagnose, diagnose_analysis

__all__ = ["DETECTORS", "Detector", "Diagnosis", "Finding", "catalogue", "diagnose", "diagnose_analysis",
           "register"]


class _CallableModule(_types.ModuleType):
    """``meshpkt.diagnose(...)`` calls :func:`diagnose` even once this package is imported (Python then
    binds the package, not the lazy function, to ``meshpkt.diagnose``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Diagnosis:
        return diagnose(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
