"""Log-domain soft-min reductions of the Sinkhorn iterations.

With ``K = -C / eps`` ``(B, N, M)`` and log-weighted potentials ``h``, the soft-min over the
columns is ``-eps log sum_j exp(K_ij + h_j)`` ``(B, N)`` and over the rows
``-eps log sum_i exp(K_ij + h_i)`` ``(B, M)``. :class:`MovingSoftmin` is the same reduction,
differentiable in the moving points only (envelope theorem), with a closed-form gradient.
"""
from __future__ import annotations

import torch

from ..angles import wrap_angle


def softmin_rows(K: torch.Tensor, h: torch.Tensor, eps) -> torch.Tensor:
    """``-eps * logsumexp_j (h_j + K_ij)`` for ``K (B, N, M) = -C / eps``, ``h (B, M)`` -> ``(B, N)``."""
    return -eps * torch.logsumexp(K + h[:, None, :], dim=2)


def softmin_cols(K: torch.Tensor, h: torch.Tensor, eps) -> torch.Tensor:
    """``-eps * logsumexp_i (h_i + K_ij)`` for ``K (B, N, M)``, ``h (B, N)`` -> ``(B, M)``."""
    return -eps * torch.logsumexp(K + h[:, :, None], dim=1)


class MovingSoftmin(torch.autograd.Function):
    """Soft-min ``-eps log sum_k exp(K_jk + h_k)`` over fixed points ``w_k``, differentiable in
    the moving points ``z_j`` only (``K``, ``h`` and ``w`` are held fixed: envelope theorem).

    ``K = -C(z, w) / eps`` (detached), laid out ``(B, Z, W)`` (``red=2``) or ``(B, W, Z)``
    (``red=1``, the reduction then runs over dim 1). Forward value bit-identical to
    :func:`softmin_rows` / :func:`softmin_cols`; the gradient
    ``dv_j/dz_j = sum_k P_jk dC_jk/dz_j`` with ``dC/dz = -beta (C / s) (w - z) / R^2``
    (``s = |w - z|^2 / R^2``, ``C / s = C^(1 - 2 / beta)``, 0 where ``C = 0``) is formed
    directly, without an autograd graph through the cost."""

    @staticmethod
    def forward(ctx, z, w, K, h, eps, R, beta, red):  # type: ignore[override]
        L = K + (h[:, None, :] if red == 2 else h[:, :, None])
        lse = torch.logsumexp(L, dim=red)
        ctx.save_for_backward(z, w, K, L, lse)
        ctx.consts = (eps, R, beta, red)
        return -eps * lse

    @staticmethod
    def backward(ctx, go):  # type: ignore[override]
        z, w, K, L, lse = ctx.saved_tensors
        eps, R, beta, red = ctx.consts
        P = torch.exp(L - lse.unsqueeze(red))
        if red == 2:  # (B, Z, W)
            d0 = w[:, None, :, 0] - z[:, :, None, 0]
            d1 = wrap_angle(w[:, None, :, 1] - z[:, :, None, 1])
        else:  # (B, W, Z)
            d0 = w[:, :, None, 0] - z[:, None, :, 0]
            d1 = wrap_angle(w[:, :, None, 1] - z[:, None, :, 1])
        # C / s = C ** (1 - 2 / beta) (1 when beta = 2); 0 where the points coincide
        scale = -beta / (R * R)
        if beta == 2:
            coef = P * scale
        else:
            C = K * -eps
            pos = C > 0
            Cs = torch.where(pos, C, torch.ones_like(C))
            ratio = Cs.reciprocal() if beta == 1 else Cs.pow(1.0 - 2.0 / beta)
            coef = torch.where(pos, P * ratio, torch.zeros_like(C)) * scale
        gz = torch.stack([(coef * d0).sum(red), (coef * d1).sum(red)], dim=-1)
        return gz * go[..., None], None, None, None, None, None, None, None
