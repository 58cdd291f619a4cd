"""Calling fastjet from physkit: one import, one lock, massless four-vectors.

fastjet's Python layer has process-wide side effects: a C++ banner printed on stdout at the
first clustering, and warnings machinery it swaps while it warns (``warnings.formatwarning``).
Every fastjet call in physkit and its clients goes through :func:`fastjet_call`, which holds
one process-wide lock, so threads that cluster at the same time (jet clustering, SHAPER's kT
seeds) cannot interleave those swaps.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable, Sequence, TypeVar

import numpy as np

__all__ = ["load_fastjet", "fastjet_call", "massless_four_vectors", "massless_momenta"]

T = TypeVar("T")

_LOCK = threading.Lock()
_BANNER_OFF = False


def load_fastjet():
    """The ``fastjet`` module, with its C++ banner silenced (a library keeps stdout clean; a null
    banner stream is fastjet's documented way to silence it)."""
    global _BANNER_OFF
    import fastjet

    if not _BANNER_OFF:
        try:
            fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
        except Exception:  # pragma: no cover - other fastjet builds: the banner is cosmetic
            pass
        _BANNER_OFF = True
    return fastjet


def fastjet_call(fn: Callable[[], T], ignore: Sequence[str] = ()) -> T:
    """``fn()`` under the process-wide fastjet lock, with the warnings whose message starts
    with one of ``ignore`` silenced for this call only; ``warnings.formatwarning`` (which
    fastjet replaces when it warns) is restored afterwards."""
    with _LOCK:
        fmt = warnings.formatwarning
        try:
            with warnings.catch_warnings():
                for message in ignore:
                    warnings.filterwarnings("ignore", message=message)
                return fn()
        finally:
            warnings.formatwarning = fmt


def massless_momenta(pt: np.ndarray, y: np.ndarray, phi: np.ndarray) -> dict:
    """Four-momenta of massless particles ``{"px", "py", "pz", "E"}`` (arrays shaped like
    ``pt, y, phi``; GeV, rapidity, radians): ``px = pT cos phi``, ``py = pT sin phi``,
    ``pz = pT sinh y``, ``E = pT cosh y``."""
    return {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(y),
            "E": pt * np.cosh(y)}


def massless_four_vectors(counts: np.ndarray, pt: np.ndarray, y: np.ndarray, phi: np.ndarray):
    """Jagged awkward records ``(px, py, pz, E)`` of massless particles, one list per row
    (:func:`massless_momenta`).

    ``counts``: ``(B,)`` particles per row; ``pt, y, phi``: ``(P,)`` flat, row after row.
    """
    import awkward as ak

    cols = massless_momenta(pt, y, phi)
    return ak.zip({k: ak.unflatten(v, counts) for k, v in cols.items()})
