"""Cheap lower bounds of the exact EMD, to skip exact solves that cannot win.

For a batch of padded problems (jets ``x (B, N, 2)``, weights ``a (B, N)``; shapes
``y (B, M, 2)``, ``b (B, M)``; both normalised to unit mass, cost ``(theta / R)^beta`` with
periodic azimuth), :func:`emd_lower_bound` returns the largest of

- the two **semi-relaxed** bounds (one marginal dropped): ``sum_i a_i min_k C_ik`` and
  ``sum_k b_k min_i C_ik`` (any ``beta``);
- for ``beta >= 1``, **1-D projection** bounds: a 1-Lipschitz map ``f`` of the (y, phi)
  cylinder (the rapidity, and the distance to each given centre) pushes both sides to the line,
  where ``|f(x) - f(y)|^beta <= theta^beta`` and the optimal plan is the monotone one, so
  ``EMD >= W_beta^beta(f(jet), f(shape)) / R^beta`` (quantile functions, sorting only).

Each is a lower bound of the exact EMD up to float rounding (relative ~1e-15).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..angles import differences_in_range, wrap_angle, wrap_yphi

__all__ = ["emd_lower_bound", "line_wasserstein"]


def line_wasserstein(p: torch.Tensor, a: torch.Tensor, q: torch.Tensor, b: torch.Tensor,
                     beta: float = 1.0) -> torch.Tensor:
    """``W_beta^beta`` ``(B,)`` between the 1-D weighted samples ``p (B, N)``, ``a (B, N)`` and
    ``q (B, M)``, ``b (B, M)`` (weights >= 0, 0 = padding, each row normalised here), for
    ``beta >= 1``: ``int_0^1 |F^-1(t) - G^-1(t)|^beta dt`` over the merged quantile levels."""
    pa, ia = torch.sort(p, dim=1, stable=True)
    qb, ib = torch.sort(q, dim=1, stable=True)
    Fa = torch.cumsum(torch.gather(a, 1, ia), 1)
    Fb = torch.cumsum(torch.gather(b, 1, ib), 1)
    Fa, Fb = Fa / Fa[:, -1:], Fb / Fb[:, -1:]
    t, _ = torch.sort(torch.cat([Fa, Fb], 1), dim=1)
    t = torch.cat([torch.zeros_like(t[:, :1]), t], 1).clamp(0.0, 1.0)
    dt = t[:, 1:] - t[:, :-1]
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    ja = torch.searchsorted(Fa.contiguous(), mid.contiguous()).clamp_max(p.shape[1] - 1)
    jb = torch.searchsorted(Fb.contiguous(), mid.contiguous()).clamp_max(q.shape[1] - 1)
    gap = (torch.gather(pa, 1, ja) - torch.gather(qb, 1, jb)).abs()
    return (dt * (gap if beta == 1.0 else gap.pow(beta))).sum(1)


def _cost(x: torch.Tensor, y: torch.Tensor, R: float, beta: float) -> torch.Tensor:
    """``(theta / R)^beta`` ``(B, N, M)``, azimuth wrapped only where a difference can reach
    pi (wrapping is the identity below)."""
    dy = x[:, :, None, 0] - y[:, None, :, 0]
    dphi = x[:, :, None, 1] - y[:, None, :, 1]
    if not differences_in_range(x[..., 1], y[..., 1]):
        dphi = wrap_angle(dphi)
    sq = dy * dy
    sq += dphi * dphi
    d = sq.sqrt_().mul_(1.0 / R)
    return d if beta == 1.0 else d.pow_(beta)


def _masked_min(C: torch.Tensor, real: torch.Tensor, dim: int) -> torch.Tensor:
    """``min`` of ``C (B, N, M)`` over ``dim`` (2: columns, 1: rows) among the entries where
    ``real`` (``(B, M)`` or ``(B, N)``) holds (inf where none does)."""
    if bool(real.all()):
        return C.amin(dim)
    pen = torch.where(real, 0.0, float("inf")).to(C.dtype)
    return (C + pen.unsqueeze(1 if dim == 2 else 2)).amin(dim)


def emd_lower_bound(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor,
                    R: float = 1.0, beta: float = 1.0,
                    centers: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A lower bound ``(B,)`` of the exact normalised EMD between ``x (B, N, 2)``, ``a (B, N)``
    and ``y (B, M, 2)``, ``b (B, M)`` (see the module docstring); ``centers (B, n, 2)``: points
    whose distance maps give the projection bounds (e.g. a shape's centres)."""
    a = a / a.sum(1, keepdim=True)
    b = b / b.sum(1, keepdim=True)
    C = _cost(x, y, R, beta)  # (B, N, M)
    to_nodes = _masked_min(C, b > 0, 2)
    to_parts = _masked_min(C, a > 0, 1)
    bound = torch.maximum((a * torch.where(a > 0, to_nodes, 0.0)).sum(1),
                          (b * torch.where(b > 0, to_parts, 0.0)).sum(1))
    if beta < 1.0:
        return bound
    maps = [(x[..., 0], y[..., 0])]
    if centers is not None:
        for j in range(centers.shape[1]):
            c = centers[:, j:j + 1, :]
            maps.append((wrap_yphi(x - c).norm(dim=-1), wrap_yphi(y - c).norm(dim=-1)))
    for fx, fy in maps:
        bound = torch.maximum(bound, line_wasserstein(fx, a, fy, b, beta) / R ** beta)
    return bound
