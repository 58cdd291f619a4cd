"""Coarse graining compiled: :func:`shaper.lloyd.coarse_grain`'s numbers in one nogil numba
call per batch (CPU, float64), by the exact point path's Lloyd / Weiszfeld row
(:func:`shaper.point_kernel.lloyd_row`: float64 sums, plain and over-relaxed steps,
``tol = 0``).

Per jet: ``max_iter`` iterations from the seeds (a proposal kept where the value does not
rise), then the mass of the particles nearest to each point (ties to the first point) and the
exact distance ``sum_i z_i (min_j theta_ij / R)^beta`` between the jet and its cloud.
Differences to the torch version are summation order only (a particle equally near two
points counts in the first's sums here, in both there: measure zero): on the bench jets the
points agree to ~1e-15 relative (``tests/shaper/test_coarse_kernel.py`` checks 1e-12).
Each jet is computed alone: its numbers do not depend on the other jets of the call.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from . import point_kernel as _pk

__all__ = ["coarse_grain_compiled"]


@_pk.jit
def _coarse_rows(x, z, seeds, R, beta, max_iter, c, w, v):
    """Jets ``x (B, M, 2)``, ``z (B, M)`` (0 on padding), seeds ``(B, n, 2)`` -> points
    ``c (B, n, 2)``, weights ``w (B, n)`` and distances ``v (B,)`` (written in place)."""
    B, M = z.shape
    n = seeds.shape[1]
    work = _pk._work(M, n, 1, 1, 1)
    for b in range(B):
        m = 0
        for i in range(M):
            if z[b, i] != 0.0:
                m = i + 1
        for j in range(n):
            c[b, j, 0], c[b, j, 1] = seeds[b, j, 0], seeds[b, j, 1]
            w[b, j] = 0.0
        v[b] = 0.0
        if m == 0:
            continue
        _pk._load(work, x[b], z[b], m)
        _pk.lloyd_row(x[b], z[b], m, c[b], beta, max_iter, 0.0, _pk.PLAIN, work)
        total = 0.0
        for i in range(m):
            j, d = _pk._nearest(x[b, i], c[b], n)
            w[b, j] += z[b, i]
            total += z[b, i] * _pk._power(d / R, beta)
        v[b] = total


def coarse_grain_compiled(x: torch.Tensor, z: torch.Tensor, seeds: torch.Tensor, *, R: float,
                          beta: float, max_iter: int
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`shaper.lloyd.coarse_grain` for CPU float64 jets ``x (B, M, 2)`` (y, phi, radians),
    ``z (B, M)`` (0 on padding), seeds ``(B, n, 2)``: points ``(B, n, 2)``, weights
    ``(B, n)`` (rows sum as ``z``'s), mask ``(B, n)`` (weight > 0), distance ``(B,)``
    (``EMD_{beta,R}`` between each jet and its cloud)."""
    xn = np.ascontiguousarray(x.detach().numpy(), dtype=np.float64)
    zn = np.ascontiguousarray(z.detach().numpy(), dtype=np.float64)
    sn = np.ascontiguousarray(seeds.detach().to(torch.float64).numpy())
    B, n = sn.shape[0], sn.shape[1]
    c, w, v = np.empty((B, n, 2)), np.empty((B, n)), np.empty(B)
    _coarse_rows(xn, zn, sn, float(R), float(beta), int(max_iter), c, w, v)
    ct, wt = torch.from_numpy(c), torch.from_numpy(w)
    return ct, wt, wt > 0, torch.from_numpy(v)
