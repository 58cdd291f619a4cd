"""FINDER: eigenspace-residual classification and anomaly detection.

- :class:`FINDER` — binary classifier on eigenspace-residual features (ACA-S / ACA-L).
- :class:`ResidualDetector` — one-class residual-energy anomaly detector with conformal p-values.
- :mod:`finder.kl` — Karhunen–Loève bases without ``P x P`` matrices for wide data.
"""
from .classifier import FINDER
from .detector import ResidualDetector

__all__ = ["FINDER", "ResidualDetector"]
