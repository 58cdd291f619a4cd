"""Ground cost between weighted point clouds in the (rapidity, azimuth) plane.

Convention (energyflow's): ``C_ij = (theta_ij / R) ** beta`` with ``theta_ij`` the Euclidean
distance in ``(y, phi)`` and the azimuthal difference wrapped into ``(-pi, pi]``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..angles import differences_in_range, wrap_angle


def _check_params(R: float, beta: float) -> None:
    if not (R > 0):
        raise ValueError(f"R must be > 0, got {R!r}")
    if not (beta > 0):
        raise ValueError(f"beta must be > 0, got {beta!r}")


def cost_matrix(x, y, R: float = 1.0, beta: float = 1.0, *, periodic_phi: bool = True):
    """Batched ground cost ``(theta_ij / R) ** beta`` with periodic azimuth.

    Parameters
    ----------
    x : torch.Tensor or np.ndarray, shape ``(B, N, 2)`` (or ``(N, 2)``)
        Points as ``(y, phi)``.
    y : same kind as ``x``, shape ``(B, M, 2)`` (or ``(M, 2)``)
    R : float
        Jet radius; distances are measured in units of ``R``.
    beta : float
        Angular exponent, any ``beta > 0``.
    periodic_phi : bool
        Wrap azimuthal differences into ``(-pi, pi]`` (default); ``False`` takes them as
        they are (energyflow's ``periodic_phi=False``).

    Returns
    -------
    Cost of shape ``(B, N, M)`` (or ``(N, M)``), same kind, dtype and device as ``x``.

    Gradients (torch) are finite everywhere: at ``theta = 0`` the gradient is set to 0
    (the true value for ``beta > 1``, the symmetric subgradient for ``beta <= 1``).
    ``beta == 2`` skips the square root entirely.
    """
    _check_params(R, beta)
    is_torch = isinstance(x, torch.Tensor)
    if not is_torch:
        x = np.asarray(x)
        y = np.asarray(y)
    dy = x[..., :, None, 0] - y[..., None, :, 0]
    dphi = x[..., :, None, 1] - y[..., None, :, 1]
    if periodic_phi and not differences_in_range(x[..., 1], y[..., 1]):
        dphi = wrap_angle(dphi)
    d2 = (dy * dy + dphi * dphi) / (R * R)
    if beta == 2:
        return d2
    if is_torch:
        pos = d2 > 0
        safe = torch.where(pos, d2, torch.ones_like(d2))
        powd = safe.sqrt() if beta == 1 else safe.pow(0.5 * beta)
        return torch.where(pos, powd, torch.zeros_like(d2))
    return np.sqrt(d2) if beta == 1 else np.power(d2, 0.5 * beta)
