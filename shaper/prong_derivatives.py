"""Analytic derivatives of the built-in prong samplers (points, rings, disks, ellipses).

A prong family's nodes are ``[c_j (points, when present), c_j + L_j u_i (shape nodes)]``
with fixed quadrature nodes ``u (k, 2)`` and ``L_j`` the prong's radius (ring, disk) or
``rotate(angle) diag(semi_axes)`` (ellipse); its masses are ``[w_j, w_{n+j} / k]``. Node
positions are affine in centres and radii and masses linear in the weights, so their
derivatives are constant tables (ellipses: closed forms in the axes and angle). The exact
flow (:mod:`shaper.exact_flow`) uses them instead of autograd through the sampler; they
agree with autograd (tests/shaper/test_prong_derivatives.py).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple

import torch

from physkit.simd import aligned

from .quadrature import disk_nodes, ring_nodes

Params = Dict[str, torch.Tensor]


def unit_nodes(kind: str, k: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The unit shape's ``k`` quadrature nodes ``(k, 2)`` (ring: circle; disk, ellipse: disk)."""
    return ring_nodes(k, dtype=dtype, device=device) if kind == "ring" else \
        disk_nodes(k, dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _constant_columns(kind: str, n: int, with_points: bool, k: int, name: str,
                      dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``d nodes / d name`` ``(K, 2, P)`` for the parameters whose derivative is constant
    (``centers``; ``radii`` of rings and disks). Cached: callers must not modify it."""
    off = n if with_points else 0
    K = off + n * k
    if name == "centers":
        out = torch.zeros(K, 2, n, 2, dtype=dtype, device=device)
        eye = torch.eye(2, dtype=dtype, device=device)
        for j in range(n):
            if with_points:
                out[j, :, j, :] = eye
            out[off + j * k:off + (j + 1) * k, :, j, :] = eye
        return out.reshape(K, 2, 2 * n)
    u = unit_nodes(kind, k, dtype, device)  # radii
    out = torch.zeros(K, 2, n, dtype=dtype, device=device)
    for j in range(n):
        out[off + j * k:off + (j + 1) * k, :, j] = u
    return out


def _ellipse_columns(name: str, params: Params, n: int, with_points: bool, k: int
                     ) -> torch.Tensor:
    """``d nodes / d name`` ``(B, K, 2, P)`` of an ellipse's ``semi_axes`` or ``angles``."""
    a, ang = params["semi_axes"], params["angles"]
    B = a.shape[0]
    u = disk_nodes(k, dtype=a.dtype, device=a.device)
    ct = aligned(torch.cos, ang)[:, :, None]  # (B, n, 1)
    st = aligned(torch.sin, ang)[:, :, None]
    u0, u1 = u[:, 0], u[:, 1]  # (k,)
    if name == "semi_axes":  # (B, n, k, 2 coords, 2 axes)
        d0 = torch.stack([u0 * ct, u0 * st], dim=-1)
        d1 = torch.stack([-(u1 * st), u1 * ct], dim=-1)
        local, P = torch.stack([d0, d1], dim=-1), 2
    else:
        lx, ly = a[:, :, None, 0] * u0, a[:, :, None, 1] * u1  # (B, n, k)
        local = torch.stack([-(lx * st) - ly * ct, lx * ct - ly * st], dim=-1)[..., None]
        P = 1
    off = n if with_points else 0
    out = torch.zeros(B, off + n * k, 2, n, P, dtype=a.dtype, device=a.device)
    for j in range(n):
        out[:, off + j * k:off + (j + 1) * k, :, j, :] = local[:, j]
    return out.reshape(B, off + n * k, 2, n * P)


def prong_derivatives(kind: str, n: int, with_points: bool
                      ) -> Tuple[Callable, Callable]:
    """``(jacobian, mass_vjp)`` of the ``n``-prong ``kind`` sampler (see
    :class:`shaper.observables.Observable`)."""
    constant = ("centers", "radii")

    def jacobian(params: Params, k: int, R: float, names: List[str]
                 ) -> Optional[torch.Tensor]:
        c = params["centers"]
        B = c.shape[0]
        cols = []
        for name in names:
            if name in constant:
                t = _constant_columns(kind, n, with_points, k, name, c.dtype, c.device)
                cols.append(t.expand(B, *t.shape))
            elif kind == "ellipse" and name in ("semi_axes", "angles"):
                cols.append(_ellipse_columns(name, params, n, with_points, k))
            else:
                return None
        return torch.cat(cols, dim=-1)

    def mass_vjp(params: Params, k: int, R: float, v: torch.Tensor, names: List[str]
                 ) -> Optional[List[torch.Tensor]]:
        if any(name != "weights" for name in names):
            return None
        B = v.shape[0]
        off = n if with_points else 0
        shapes = v[:, off:].reshape(B, n, k).sum(-1) / k
        g = torch.cat([v[:, :n], shapes], dim=1) if with_points else shapes
        return [g for _ in names]

    return jacobian, mass_vjp


__all__: List[str] = ["prong_derivatives", "unit_nodes"]
