"""fastjet-contrib's N-subjettiness (C++) on physkit jets, the reference for SHAPER's point path.

The scikit-hep ``fastjet`` wheel binds fastjet-contrib's ``Nsubjettiness`` as
``ClusterSequence.njettiness`` (as ``data/make_sample.py`` uses it for the sample's ``tau_kt`` /
``tau_onepass`` columns). :func:`nsubjettiness` runs it on centred jets with the normalised
measure, beta = 1, R0 = R, for the axes definitions

- ``KT_Axes``: exclusive-kT axes (kt, R = 1000, E-scheme), not minimised;
- ``OnePass_KT_Axes``: those axes refined by one pass of fastjet-contrib's minimisation;
- ``MultiPass_Axes`` with ``nPass`` passes: the best of ``nPass`` one-pass minimisations from
  randomly jiggled axes (fastjet-contrib's C ``rand()``, so a run's numbers depend on what
  called ``rand()`` before in the process).

The time of a call is the whole ``ClusterSequence`` + ``njettiness`` call (fastjet's own
clustering included, as physkit's includes its exclusive-kT clustering).
"""
from __future__ import annotations

import time
import warnings

import numpy as np


def awkward_jets(ev):
    """Centred :class:`physkit.events.Events` -> awkward array of massless (px, py, pz, E)."""
    import awkward as ak

    pt, y, phi = (t.detach().cpu().double().numpy() for t in (ev.pt, ev.y, ev.phi))
    mask = ev.mask.detach().cpu().numpy()
    counts = mask.sum(axis=1)

    def col(a):
        return ak.unflatten(a[mask], counts)

    return ak.zip({"px": col(pt * np.cos(phi)), "py": col(pt * np.sin(phi)),
                   "pz": col(pt * np.sinh(y)), "E": col(pt * np.cosh(y))})


def nsubjettiness(ev, axes: str, njets=(2, 3), R: float = 0.8, n_pass=None):
    """tau_n ``(B, len(njets))`` of the jets ``ev`` (centred Events) by fastjet-contrib with the
    axes definition ``axes``; returns (taus, wall seconds, process CPU seconds)."""
    import awkward as ak

    from physkit.fastjet_calls import load_fastjet

    fastjet = load_fastjet()  # banner silenced: keeps stdout clean
    arr = awkward_jets(ev)
    jd = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0, fastjet.E_scheme)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dcut and exclusive jets")
        t0, c0 = time.perf_counter(), time.process_time()
        cs = fastjet.ClusterSequence(arr, jd)
        res = cs.njettiness(measure_definition="NormalizedMeasure", axes_definition=axes,
                            njets=list(njets), beta=1.0, R0=R, nPass=n_pass)
        taus = np.asarray(ak.to_numpy(res), dtype=np.float64).reshape(-1, len(njets))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return taus, wall, cpu
