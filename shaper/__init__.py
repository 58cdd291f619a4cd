"""SHAPER: jet-shape observables by optimal transport.

Ba, Dogra, Gambhir, Tasissa, Thaler, "SHAPER: Can You Hear the Shape of a Jet?",
arXiv:2302.12266. An observable is a manifold of energy distributions; its value on a jet is
the smallest EMD between the jet and the manifold, reported exactly (an exact transport
solve) at the fitted parameters::

    from shaper import Shaper
    res = Shaper(["2-subjettiness", "3-subjettiness", "1-diskiness+pileup"]).compute(events)
    res["3-subjettiness"].value, res["3-subjettiness"].params["centers"]
"""
from __future__ import annotations

from . import observables
from .observables import Observable, ParamSpec, from_name
from .plot import plot_event
from .results import ObservableResult, Results
from .shaper import Shaper

__all__ = ["Shaper", "Results", "ObservableResult", "Observable", "ParamSpec", "from_name",
           "observables", "plot_event"]
