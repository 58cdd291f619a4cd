"""Deterministic quadrature nodes for shapes with extent (unit ring, unit disk).

SHAPER samples a shape's uniform energy distribution to transport it. We use fixed
quadrature nodes instead of random samples, so the loss is a smooth function of the
parameters and a fit is reproducible bit for bit:

- ring: ``K`` equally spaced angles ``2 pi (k + 1/2) / K``;
- disk: the sunflower (Fibonacci / Vogel) lattice ``r_k = sqrt((k + 1/2) / K)``,
  ``theta_k = k * golden_angle`` -- equal-area cells, uniform density;
- ellipses use the affine image of the disk lattice.

Each node carries weight ``1 / K``.
"""
from __future__ import annotations

import math

import torch

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def ring_nodes(k: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """``(k, 2)`` points on the unit circle at angles ``2 pi (i + 1/2) / k``."""
    t = 2.0 * math.pi * (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return torch.stack([torch.cos(t), torch.sin(t)], dim=-1).to(dtype=dtype, device=device)


def disk_nodes(k: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """``(k, 2)`` sunflower-lattice points filling the unit disk with uniform density."""
    i = torch.arange(k, dtype=torch.float64)
    r = torch.sqrt((i + 0.5) / k)
    t = i * GOLDEN_ANGLE
    return torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=-1).to(dtype=dtype, device=device)
