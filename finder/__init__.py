"""FINDER: eigenspace-residual classification and anomaly detection.

- :class:`FINDER` — binary classifier on eigenspace-residual features (ACA-S / ACA-L), an
  ensemble over random splits of the reference class, with data-driven defaults.
- :class:`ResidualDetector` — one-class residual-energy anomaly detector with conformal p-values.
- :class:`AnomalySearch` — weakly supervised (CWoLa-style) data-vs-reference search with
  k-fold cross-fitting: every event scored out of fold, selections at fixed data efficiencies.
- :mod:`finder.kl` — Karhunen–Loève bases without ``P x P`` matrices for wide data;
  :mod:`finder.filter` — the residual filter; :mod:`finder.heads` — the classifier heads.
"""
from .classifier import FINDER
from .detector import ResidualDetector
from .search import AnomalySearch

__all__ = ["FINDER", "ResidualDetector", "AnomalySearch"]
