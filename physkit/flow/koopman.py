"""Koopman (DMD) jump-ahead for batched flows (Dogra & Redman, NeurIPS 2020, "Optimizing neural
networks via Koopman operator theory").

The idea: near convergence an optimizer's iterates ``z_t`` (all parameters of a row, flattened)
evolve almost linearly, ``z_{t+1} - z_t ~ A (z_t - z_{t-1})``. A linear model fitted to a short
window of recent iterates -- dynamic mode decomposition (DMD) -- predicts where the flow is
heading, and the row jumps there instead of stepping.

:func:`dmd_jump`, per row, from the last ``W`` iterates ``z_0 .. z_{W-1}`` ``(W, b, P)``:

1. differences ``d_j = z_{j+1} - z_j``; snapshot matrices ``X = [d_0 .. d_{W-3}]``,
   ``Y = [d_1 .. d_{W-2}]`` ``(P, W-2)``;
2. exact DMD: thin SVD ``X = U S V^T`` (singular values below ``rtol * S_max`` dropped), reduced
   operator ``A = U^T Y V S^+`` ``(r, r)``;
3. a row whose operator has an eigenvalue of modulus ``>= max_radius`` (growing or undamped
   modes) does not jump; the others jump ``horizon`` steps ahead:
   ``z_{W-1} + U (sum_{k=1..h} A^k) U^T d_{W-2}``, with
   ``sum_{k=1..h} A^k = A (I - A)^{-1} (I - A^h)``.

:class:`Koopman` holds the settings :func:`physkit.flow.minimize` takes as ``koopman=``: after
every ``window`` steps of a row (counted since its last jump) the row jumps; the loss at the
next evaluation decides: a jump that raised the loss above the last evaluation before it is
undone (the row goes back to where it was and steps from there). Rows stay independent (every
linear-algebra call is per row).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch

__all__ = ["Koopman", "dmd_jump", "flatten_params", "unflatten_params"]


@dataclass(frozen=True)
class Koopman:
    """DMD jump-ahead settings for :func:`physkit.flow.minimize`.

    window : iterates per fit (>= 3); a row jumps after every ``window`` steps of its own.
    horizon : steps predicted ahead (>= 1); large values jump to the fitted fixed point.
    max_radius : rows whose fitted operator has an eigenvalue of modulus >= this do not jump.
    rtol : relative cut-off of the snapshot matrix's singular values.
    """

    window: int = 6
    horizon: int = 100
    max_radius: float = 0.99
    rtol: float = 1e-8

    def __post_init__(self):
        if int(self.window) != self.window or self.window < 3:
            raise ValueError(f"Koopman: window must be an integer >= 3, got {self.window!r}")
        if int(self.horizon) != self.horizon or self.horizon < 1:
            raise ValueError(f"Koopman: horizon must be an integer >= 1, got {self.horizon!r}")
        if not 0 < self.max_radius <= 1:
            raise ValueError(f"Koopman: max_radius must be in (0, 1], got {self.max_radius!r}")
        if not 0 <= self.rtol < 1:
            raise ValueError(f"Koopman: rtol must be in [0, 1), got {self.rtol!r}")


def dmd_jump(history: torch.Tensor, horizon: int, max_radius: float = 0.99,
             rtol: float = 1e-8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Predicted iterate ``(b, P)`` ``horizon`` steps after the last of ``history (W, b, P)``
    (``W >= 3`` iterates per row, oldest first), and ``ok (b,)`` bool: the fit is usable (finite,
    every eigenvalue of modulus below ``max_radius``). Rows where ``ok`` is False get their last
    iterate back. Float64 internally."""
    z = history.to(torch.float64)
    W, b, P = z.shape
    d = (z[1:] - z[:-1]).permute(1, 2, 0)  # (b, P, W-1)
    X, Y, last = d[..., :-1], d[..., 1:], d[..., -1]
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)  # (b, P, r), (b, r), (b, r, m)
    keep = S > rtol * S[:, :1]
    Sinv = torch.where(keep, 1.0 / torch.where(keep, S, torch.ones_like(S)), torch.zeros_like(S))
    U = U * keep[:, None, :]
    A = U.transpose(1, 2) @ Y @ Vh.transpose(1, 2) * Sinv[:, None, :]  # (b, r, r)
    radius = torch.linalg.eigvals(A).abs().amax(dim=1)
    ok = torch.isfinite(radius) & (radius < max_radius) & keep.any(1)
    eye = torch.eye(A.shape[1], dtype=A.dtype, device=A.device).expand_as(A)
    safe = torch.where(ok[:, None, None], A, torch.zeros_like(A))
    geometric = safe @ torch.linalg.solve(eye - safe,
                                          eye - torch.linalg.matrix_power(safe, int(horizon)))
    coef = U.transpose(1, 2) @ last[..., None]  # (b, r, 1)
    target = z[-1] + (U @ (geometric @ coef))[..., 0]
    ok = ok & torch.isfinite(target).all(1)
    target = torch.where(ok[:, None], target, z[-1])
    return target.to(history.dtype), ok


def flatten_params(params: Dict[str, torch.Tensor]) -> torch.Tensor:
    """``{name: (B, ...)}`` -> ``(B, P)`` float64 (names in dict order)."""
    B = next(iter(params.values())).shape[0]
    return torch.cat([v.reshape(B, -1).to(torch.float64) for v in params.values()], dim=1)


def unflatten_params(flat: torch.Tensor, like: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_params`: ``(b, P)`` -> ``{name: (b, ...)}`` shaped and typed
    like the rows of ``like``."""
    out, lo = {}, 0
    b = flat.shape[0]
    for k, v in like.items():
        size = v[0].numel()
        out[k] = flat[:, lo:lo + size].reshape((b,) + v.shape[1:]).to(v.dtype)
        lo += size
    return out
