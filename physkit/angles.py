"""Periodic coordinates: wrapping azimuths and orientation angles."""
from __future__ import annotations

import math

import numpy as np
import torch

TWO_PI = 2.0 * math.pi


def wrap_angle(x, period: float = TWO_PI):
    """Wrap ``x`` into ``(-period/2, period/2]``.

    Works on torch tensors and numpy arrays (returns the same kind). An angle that is
    already in range is returned bit-for-bit unchanged (the shift is an exact ``0 * period``).
    """
    half = 0.5 * period
    if isinstance(x, torch.Tensor):
        return x - period * torch.ceil((x - half) / period)
    x = np.asarray(x)
    return x - period * np.ceil((x - half) / period)


def wrap_yphi(d: torch.Tensor) -> torch.Tensor:
    """Displacements ``(..., 2)`` in (y, phi) with the phi column wrapped into ``(-pi, pi]``."""
    return torch.stack([d[..., 0], wrap_angle(d[..., 1])], dim=-1)


def delta_phi(phi0, phi1):
    """Azimuthal difference ``phi0 - phi1`` wrapped into ``(-pi, pi]``."""
    return wrap_angle(phi0 - phi1)
