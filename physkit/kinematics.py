"""Four-momentum conversions shared by the readers, the event model and the seeds."""
from __future__ import annotations

import numpy as np

__all__ = ["rapidity", "rapidity_from_pt_eta_mass", "ptyphi_from_epxpypz"]


def rapidity(e, pz, *, floor=None):
    """Rapidity ``y = 0.5 ln((E + pz) / (E - pz))`` of numpy arrays, elementwise.

    ``floor``: an array ``|p|`` that ``E`` is raised to (the massless limit, for energies
    rounded below ``|p|``). Divisions by zero and logs of zero give +-inf / NaN without a
    warning; callers decide what such entries mean.
    """
    if floor is not None:
        e = np.maximum(e, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log((e + pz) / (e - pz))


def rapidity_from_pt_eta_mass(pt, eta, mass):
    """Rapidity of a particle given as (pT, eta, mass), numpy arrays, elementwise:
    ``y = asinh(pz / mT) = asinh(pT sinh(eta) / sqrt(pT^2 + m^2))`` (``y = eta`` when
    ``m = 0``; stable for large |eta|). Zero pT and mass give 0/0 -> NaN without a warning."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arcsinh(pt * np.sinh(eta) / np.hypot(pt, mass))


def ptyphi_from_epxpypz(e, px, py, pz) -> np.ndarray:
    """``(..., 3)`` float64 (pT, y, phi) from four-momenta (E, px, py, pz), phi in (-pi, pi].

    Entries with zero pT (padding) come out as zeros. An energy below ``|p|`` (rounding in
    massless inputs) is raised to ``|p|``. Computed in float64.
    """
    from .angles import wrap_angle

    e, px, py, pz = (np.asarray(a, dtype=np.float64) for a in (e, px, py, pz))
    pt = np.hypot(px, py)
    real = pt > 0
    y = rapidity(e, pz, floor=np.sqrt(pt ** 2 + pz ** 2))
    phi = np.arctan2(py, px)
    y = np.where(real, y, 0.0)
    phi = np.where(real, wrap_angle(phi), 0.0)
    pt = np.where(real, pt, 0.0)
    return np.stack([pt, y, phi], axis=-1)
