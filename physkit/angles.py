"""Periodic coordinates: wrapping azimuths and orientation angles."""
from __future__ import annotations

import math

import numpy as np
import torch

TWO_PI = 2.0 * math.pi


def _into_half_open(w, bound: float, period: float, where):
    """``w`` in ``[-period, period]`` moved into ``(-bound, bound]`` (one shift at most)."""
    return where(w > bound, w - period, where(w <= -bound, w + period, w))


def _exact(x64, period: float, bound: float, where, fmod):
    """float64 ``x64`` reduced by ``fmod`` (exact) into ``(-bound, bound]``."""
    return _into_half_open(fmod(x64, period), bound, period, where)


def wrap_angle(x, period: float = TWO_PI, *, exact: bool = False):
    """Wrap ``x`` into ``(-period/2, period/2]``.

    Works on torch tensors and numpy arrays (returns the same kind and dtype). An angle
    that is already in range is returned bit-for-bit unchanged.

    Numpy arrays, and tensors with ``exact=True``, are reduced exactly: ``fmod`` in
    float64 whatever their dtype, so a float32 azimuth of any size is wrapped exactly up
    to the float32 rounding of the result (which lies in ``(-p, p]``, ``p`` the float32
    value of ``period/2``), a float64 one exactly with respect to the float64 ``period``.
    That is how data enter (:mod:`physkit.io`, :meth:`physkit.events.Events.from_padded`).
    Tensors otherwise take the in-dtype formula ``x - period * ceil((x - period/2) /
    period)`` (what the flows use, on values a few turns at most from the range).
    """
    half = 0.5 * period
    if isinstance(x, torch.Tensor):
        if not exact:
            return x - period * torch.ceil((x - half) / period)
        if x.dtype == torch.float64:
            return _exact(x, period, half, torch.where, torch.fmod)
        bound = float(torch.tensor(half, dtype=x.dtype))
        w = _exact(x.double(), period, bound, torch.where, torch.fmod).to(x.dtype)
        lo, p = torch.tensor(-bound, dtype=x.dtype), torch.tensor(period, dtype=x.dtype)
        return torch.where(w <= lo, w + p, w)  # rounding may land on the low end
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.dtype.itemsize >= 8:
        return _exact(x, period, half, np.where, np.fmod)
    bound = float(x.dtype.type(half))
    w = _exact(x.astype(np.float64), period, bound, np.where, np.fmod).astype(x.dtype)
    return np.where(w <= x.dtype.type(-bound), w + x.dtype.type(period), w).astype(x.dtype)


def differences_in_range(phi_a, phi_b) -> bool:
    """Whether every difference between azimuths ``phi_a`` and ``phi_b`` (arrays or tensors of
    any shapes) certainly lies inside ``(-pi, pi)``, so that :func:`wrap_angle` of it is the
    identity, bit for bit: ``max |phi_a| + max |phi_b| < pi`` with a margin for rounding."""
    if any(len(t.reshape(-1)) == 0 for t in (phi_a, phi_b)):
        return True
    reach = abs(phi_a).max() + abs(phi_b).max()
    return bool(reach < math.pi - 1e-6)


def wrap_yphi(d: torch.Tensor) -> torch.Tensor:
    """Displacements ``(..., 2)`` in (y, phi) with the phi column wrapped into ``(-pi, pi]``."""
    return torch.stack([d[..., 0], wrap_angle(d[..., 1])], dim=-1)


def delta_phi(phi0, phi1):
    """Azimuthal difference ``phi0 - phi1`` wrapped into ``(-pi, pi]``."""
    return wrap_angle(phi0 - phi1)
