"""physkit: the shared core of SHAPER and FINDER.

Event data model and HDF5 I/O, optimal transport (exact and batched Sinkhorn), batched
gradient flows, scale-out. Submodules load lazily, so ``import physkit`` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Events": "physkit.events",
    "EventFileError": "physkit.errors",
    "wrap_angle": "physkit.angles",
    "read_events": "physkit.io",
    "read_labels": "physkit.io",
    "write_events": "physkit.io",
    "count_events": "physkit.io",
    "read_constituents": "physkit.io",
    "read_dataset": "physkit.io",
    "detect_format": "physkit.io",
}
_SUBMODULES = {"ot", "flow", "io", "events", "parallel", "pipeline", "angles", "errors", "images",
               "status", "kinematics", "cores", "h5files"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"physkit.{name}")
    raise AttributeError(f"module 'physkit' has no attribute {name!r}")
