"""Flow diagnostics: the Lojasiewicz exponent from a flow's history, and the NTK floor ``mu(w)``.

API::

    lojasiewicz_exponent(loss_history, grad_norm_history, loss_star=None, *, min_points=5,
                         tail_factor=100.0, fit_fraction=0.5) -> Tensor (B,)
    predicted_rate(alpha, *, atol=0.02) -> PredictedRate(kind, loss_exponent, grad_exponent, distance_exponent)
    ntk_mu(jacobian, rtol=None, *, return_rank=False) -> Tensor (B,)  [, rank (B,)]
    architecture_jacobian(arch_fn, params, idx=None, *, method="auto") -> Tensor (b, P_out, M)
    ntk_mu_fn(arch_fn, rtol=None, *, method="auto") -> mu_fn(params, idx) -> (b,)   # for minimize(mu_fn=...)

Lojasiewicz: near a critical value ``L*``, ``|L - L*|^alpha <= C ||grad L||``. Along a trajectory that
saturates the inequality, ``log|L - L*| = (1/alpha) log||grad L|| + const``, so a least-squares fit of
``log|L - L*|`` against ``log||grad L||`` has slope ``1/alpha``. For the gradient flow
``dL/dt = -||grad L||^2 <= -C^-2 |L - L*|^(2 alpha)``: ``alpha = 1/2`` gives exponential decay; ``alpha > 1/2``
gives ``|L - L*| ~ t^(-1/(2 alpha - 1))``, ``||grad L|| ~ |L - L*|^alpha ~ t^(-alpha/(2 alpha - 1))`` and
``||w - w*|| ~ t^(-(1 - alpha)/(2 alpha - 1))``. (The design brief's ``t^(-alpha/(2 alpha-1))`` is the
gradient-norm rate; :func:`predicted_rate` reports all three.) Example: ``L = w^4`` has ``alpha = 3/4``:
``L ~ t^-2``, ``|L'| ~ t^-1.5``, ``w ~ t^-0.5``.

NTK: for an architecture ``A: R^M -> R^P`` with Jacobian ``A_w`` (``P x M``), ``Theta = A_w A_w^T`` and
``mu(w)`` = its smallest nonzero eigenvalue. ``A_w A_w^T`` and ``A_w^T A_w`` share the nonzero spectrum, so
the smaller Gram matrix is diagonalised. An eigenvalue counts as nonzero when ``lambda > rtol * lambda_max``
(default ``rtol = max(P, M) * eps(dtype)``, the Gram matrix's round-off level); ``mu = 0`` when ``A_w = 0``.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional

import torch

__all__ = [
    "lojasiewicz_exponent",
    "predicted_rate",
    "PredictedRate",
    "ntk_mu",
    "architecture_jacobian",
    "ntk_mu_fn",
]


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t.to(torch.float64)


def lojasiewicz_exponent(
    loss_history,
    grad_norm_history,
    loss_star=None,
    *,
    min_points: int = 5,
    tail_factor: float = 100.0,
    fit_fraction: float = 0.5,
) -> torch.Tensor:
    """Per-row Lojasiewicz exponent ``alpha`` from a flow's history.

    loss_history, grad_norm_history: ``(T, B)`` (``FlowResult.history`` / ``.grad_norm_history``; NaN
    entries are ignored). loss_star: ``L*`` as a scalar or ``(B,)``; ``None`` estimates it per row by the
    smallest recorded loss and then keeps only points with ``L - L* > tail_factor * (smallest positive
    gap)``, which drops the tail where the estimate biases the gap (pass the true ``L*`` when known).
    The exponent describes the behaviour near ``L*``, so only the last ``fit_fraction`` of each row's
    usable points enter the fit (the early transient of, e.g., a quadratic with several curvatures
    does not saturate the inequality). Returns ``alpha = 1 / slope`` of the least-squares fit of
    ``log|L - L*|`` on ``log||grad L||``, ``(B,)`` float64, NaN where fewer than ``min_points`` points.
    """
    L = _as_tensor(loss_history)
    G = _as_tensor(grad_norm_history).to(L.device)
    if L.dim() == 1:
        L, G = L[:, None], G[:, None]
    if L.shape != G.shape:
        raise ValueError(f"lojasiewicz_exponent: shapes differ, {tuple(L.shape)} vs {tuple(G.shape)}")
    ok = torch.isfinite(L) & torch.isfinite(G) & (G > 0)
    if loss_star is None:
        Lstar = torch.where(ok, L, torch.full_like(L, math.inf)).amin(dim=0)
        gap = (L - Lstar).abs()
        pos = ok & (gap > 0)
        smallest = torch.where(pos, gap, torch.full_like(gap, math.inf)).amin(dim=0)
        ok = pos & (gap > tail_factor * smallest)
    else:
        Lstar = _as_tensor(loss_star).to(L.device)
        gap = (L - Lstar).abs()
        ok = ok & (gap > 0)
    if not (0.0 < fit_fraction <= 1.0):
        raise ValueError("lojasiewicz_exponent: fit_fraction must be in (0, 1]")
    cum = ok.to(torch.int64).cumsum(dim=0)
    total = cum[-1:].to(L.dtype) if L.shape[0] else cum
    ok = ok & (cum.to(L.dtype) > (1.0 - fit_fraction) * total)
    x = torch.where(ok, G.clamp_min(1e-300).log(), torch.zeros_like(G))
    y = torch.where(ok, gap.clamp_min(1e-300).log(), torch.zeros_like(G))
    w = ok.to(L.dtype)
    n = w.sum(dim=0)
    nz = n.clamp_min(1.0)
    mx = (w * x).sum(dim=0) / nz
    my = (w * y).sum(dim=0) / nz
    cov = (w * (x - mx) * (y - my)).sum(dim=0)
    var = (w * (x - mx) ** 2).sum(dim=0)
    slope = cov / var
    alpha = 1.0 / slope
    bad = (n < min_points) | ~(var > 0) | ~torch.isfinite(alpha)
    return torch.where(bad, torch.full_like(alpha, math.nan), alpha)


class PredictedRate(NamedTuple):
    """Convergence rate implied by a Lojasiewicz exponent (gradient flow, near ``L*``).

    kind: ``"exponential"`` (``alpha <= 1/2``) or ``"power"``. For ``"power"``:
    ``|L - L*| ~ t^-loss_exponent``, ``||grad L|| ~ t^-grad_exponent``, ``||w - w*|| ~ t^-distance_exponent``.
    (For ``"exponential"`` the exponents are ``inf``.)
    """

    kind: str
    loss_exponent: float
    grad_exponent: float
    distance_exponent: float

    def __str__(self) -> str:
        if self.kind == "exponential":
            return "exponential"
        return f"t^-{self.grad_exponent:.4g} (gradient norm), t^-{self.loss_exponent:.4g} (loss gap)"


def predicted_rate(alpha: float, *, atol: float = 0.02) -> PredictedRate:
    """Rate class for a Lojasiewicz exponent ``alpha`` (``"exponential"`` for ``alpha <= 1/2 + atol``;
    the default ``atol`` is the resolution of a fitted exponent -- pass ``atol=0`` for an exact alpha).

    For ``1/2 < alpha < 1``: gradient norm ``t^(-alpha/(2alpha-1))``, loss gap ``t^(-1/(2alpha-1))``,
    distance ``t^(-(1-alpha)/(2alpha-1))``.
    """
    a = float(alpha)
    if not math.isfinite(a) or a <= 0:
        raise ValueError(f"predicted_rate: alpha must be finite and positive, got {alpha}")
    if a <= 0.5 + atol:
        return PredictedRate("exponential", math.inf, math.inf, math.inf)
    d = 2.0 * a - 1.0
    return PredictedRate("power", 1.0 / d, a / d, (1.0 - a) / d)


def ntk_mu(jacobian: torch.Tensor, rtol: Optional[float] = None, *, return_rank: bool = False):
    """Smallest nonzero eigenvalue of ``Theta = J J^T`` per row.

    jacobian: ``(B, P_out, M)`` (or ``(P_out, M)``). Uses ``J J^T`` ``(P, P)`` if ``P <= M`` else
    ``J^T J`` ``(M, M)`` (same nonzero spectrum), ``torch.linalg.eigvalsh``, and the relative threshold
    ``lambda > rtol * lambda_max`` (default ``rtol = max(P, M) * eps``). Returns ``(B,)`` (and the rank
    ``(B,)`` int64 if ``return_rank``); ``mu = 0`` (rank 0) where ``J = 0``.
    """
    J = jacobian
    single = J.dim() == 2
    if single:
        J = J[None]
    if J.dim() != 3:
        raise ValueError(f"ntk_mu: jacobian must be (B, P_out, M), got {tuple(jacobian.shape)}")
    _, P, M = J.shape
    Gm = J @ J.transpose(1, 2) if P <= M else J.transpose(1, 2) @ J
    Gm = 0.5 * (Gm + Gm.transpose(1, 2))
    eig = torch.linalg.eigvalsh(Gm)  # ascending
    lam_max = eig[:, -1]
    if rtol is None:
        rtol = max(P, M) * torch.finfo(J.dtype).eps
    nonzero = eig > (rtol * lam_max.clamp_min(0.0))[:, None]
    nonzero = nonzero & (lam_max > 0)[:, None]
    mu = torch.where(nonzero, eig, torch.full_like(eig, math.inf)).amin(dim=1)
    mu = torch.where(nonzero.any(dim=1), mu, torch.zeros_like(mu))
    rank = nonzero.sum(dim=1)
    if single:
        mu, rank = mu[0], rank[0]
    return (mu, rank) if return_rank else mu


def _flat_cat(jac: Dict[str, torch.Tensor], names, b: int, P: int) -> torch.Tensor:
    return torch.cat([jac[k].reshape(b, P, -1) for k in names], dim=2)


def architecture_jacobian(
    arch_fn: Callable[[Dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    params: Dict[str, torch.Tensor],
    idx: Optional[torch.Tensor] = None,
    *,
    method: str = "auto",
) -> torch.Tensor:
    """Batched Jacobian ``(b, P_out, M)`` of an architecture, one ``P_out x M`` block per row.

    ``arch_fn(params, idx) -> (b, ...)``: the model of each row (flattened to ``P_out``), rows independent.
    ``M`` is the per-row parameter count, in ``params`` order, each parameter flattened (C order).
    method: ``"vmap"`` (``torch.func.vmap(jacrev(.))`` over rows; ``arch_fn`` must be vmap-compatible),
    ``"autograd"`` (one backward pass per output ``P_out``), ``"auto"`` (vmap, falling back to autograd).
    """
    names = list(params)
    b = next(iter(params.values())).shape[0]
    dev = next(iter(params.values())).device
    if idx is None:
        idx = torch.arange(b, device=dev)
    params = {k: v.detach() for k, v in params.items()}
    if method not in ("auto", "vmap", "autograd"):
        raise ValueError(f"architecture_jacobian: unknown method {method!r}")
    if method in ("auto", "vmap"):
        try:
            from torch.func import jacrev, vmap

            def single(prow, i):
                out = arch_fn({k: v.unsqueeze(0) for k, v in prow.items()}, i.unsqueeze(0))
                return out.reshape(-1)

            jac = vmap(jacrev(single, argnums=0))(params, idx)
            P = next(iter(jac.values())).shape[1]
            return _flat_cat(jac, names, b, P)
        except Exception:
            if method == "vmap":
                raise
    with torch.enable_grad():
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        out = arch_fn(p, idx).reshape(b, -1)
        P = out.shape[1]
        rows = []
        for j in range(P):
            gr = torch.autograd.grad(out[:, j].sum(), [p[k] for k in names], retain_graph=j < P - 1,
                                     allow_unused=True)
            gr = [torch.zeros_like(p[k]) if x is None else x for k, x in zip(names, gr)]
            rows.append(torch.cat([x.reshape(b, -1) for x in gr], dim=1))
    return torch.stack(rows, dim=1)


def ntk_mu_fn(arch_fn, rtol: Optional[float] = None, *, method: str = "auto"):
    """A ``mu_fn(params, idx) -> (b,)`` for :func:`physkit.flow.minimize` (``mu_fn=..., mu_stride=...``)."""

    def mu_fn(params, idx):
        return ntk_mu(architecture_jacobian(arch_fn, params, idx, method=method), rtol)

    return mu_fn
