"""Entropic OT with few points on one side: Newton's method on the semi-dual.

For ``OT_eps(a, b)`` with ``M`` (few) points on ``y``, the semi-dual in ``g`` ``(B, M)``

    F(g) = <b, g> + <a, f(g)>,   f(g)_i = -eps log sum_j b_j exp((g_j - C_ij) / eps)

is concave; its gradient is the y-marginal error ``b - P^T a`` and its Hessian
``-(diag(P^T a) - P^T diag(a) P) / eps`` is ``(B, M, M)``, cheap when ``M`` is small.
Sinkhorn converges slowly on such semi-discrete problems (mass must shift between the few
cells); Newton with backtracking (Armijo) converges in a handful of steps. Unconverged rows
are worked on only; a row whose line search fails stops (reported not converged).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .batch_mode import BatchMode

#: Armijo backtracking halvings per Newton step
_LINE_SEARCH_STEPS = 30


@dataclass
class _SemiDual:
    """The semi-dual of a batch: ``K = -C / eps`` ``(B, N, M)``, log-weights ``lb`` ``(B, M)``,
    weights ``wa`` ``(B, N)``, ``wb`` ``(B, M)``."""

    K: torch.Tensor
    lb: torch.Tensor
    wa: torch.Tensor
    wb: torch.Tensor
    eps: float
    mode: BatchMode

    def at(self, g: torch.Tensor, rows: torch.Tensor | None = None):
        """``(f (b, N), P (b, N, M), F (b,), grad (b, M), P^T a (b, M))`` at ``g`` ``(b, M)``
        for the batch rows ``rows`` ``(b,)`` (``None``: all rows, no gathers)."""
        K, lb, wa, wb = ((self.K, self.lb, self.wa, self.wb) if rows is None
                         else (self.K[rows], self.lb[rows], self.wa[rows], self.wb[rows]))
        eps = self.eps
        L = K + (lb + g / eps)[:, None, :]
        lse = torch.logsumexp(L, 2)
        P = torch.exp(L.sub_(lse[:, :, None]))
        f = -eps * lse
        colm = self.mode.matmul(wa[:, None, :], P)[:, 0, :]
        return f, P, (wb * g).sum(1) + (wa * f).sum(1), wb - colm, colm


@dataclass
class _Iterate:
    """Newton iterate of every row: potentials ``f`` ``(B, N)``, ``g`` ``(B, M)``, semi-dual
    value ``F`` ``(B,)`` and gradient ``grad`` ``(B, M)``; the plan ``P`` ``(B, N, M)`` and
    ``colm = P^T a`` ``(B, M)`` at ``g`` (for the next Hessian)."""

    f: torch.Tensor
    g: torch.Tensor
    F: torch.Tensor
    grad: torch.Tensor
    P: torch.Tensor
    colm: torch.Tensor


def _direction(P, colm, wa, grad, eps, mode: BatchMode) -> torch.Tensor:
    """Newton direction ``(b, M)``: ``H d = grad`` with the (ridged) negated Hessian, the step
    capped at 1 in normalised-cost units (near-singular Hessians give huge steps)."""
    dt, M = P.dtype, P.shape[2]
    ridge = 1e-10 if dt == torch.float64 else 1e-5
    max_step = 1.0
    H = (torch.diag_embed(colm) - mode.matmul((P * wa[:, :, None]).transpose(1, 2), P)) / eps
    diag_max = H.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1.0)
    H = H + (ridge * diag_max)[:, None, None] * torch.eye(M, dtype=dt, device=P.device)
    d = torch.linalg.solve(H, grad)
    return d * (max_step / d.abs().amax(1).clamp_min(max_step))[:, None]


def _line_search(sd: _SemiDual, it: _Iterate, r: torch.Tensor, d: torch.Tensor,
                 keep_plan: bool) -> torch.Tensor:
    """Backtracking (Armijo) along ``d`` ``(b, M)`` for the rows ``r`` ``(b,)``; accepted
    points are written into ``it`` (the plan too when ``keep_plan``). Returns ``(b,)`` bool,
    the rows that found a step."""
    gr, Fr = it.g[r], it.F[r]
    slope = (it.grad[r] * d).sum(1)
    t = torch.ones(r.numel(), dtype=d.dtype, device=d.device)
    done = torch.zeros(r.numel(), dtype=torch.bool, device=d.device)
    for _ in range(_LINE_SEARCH_STEPS):
        s_ = torch.nonzero(~done).squeeze(1)
        gt = gr[s_] + t[s_, None] * d[s_]
        f2, P2, F2, grad2, colm2 = sd.at(gt, r[s_])
        ok = F2 >= Fr[s_] + 1e-4 * t[s_] * slope[s_] - 1e-13 * Fr[s_].abs()
        acc = r[s_][ok]
        it.g[acc], it.f[acc], it.F[acc], it.grad[acc] = gt[ok], f2[ok], F2[ok], grad2[ok]
        if keep_plan:
            it.P[acc], it.colm[acc] = P2[ok], colm2[ok]
        done[s_[ok]] = True
        if bool(done.all()):
            break
        t = torch.where(done, t, 0.5 * t)
    return done


def newton_semidual(K: torch.Tensor, la: torch.Tensor, lb: torch.Tensor, eps: float,
                    tol: float, max_iter: int, g: torch.Tensor, row_ok: torch.Tensor,
                    mode: BatchMode):
    """Solve ``OT_eps(a, b)`` by Newton's method on the semi-dual in ``g`` (few points on y).

    ``K = -C / eps`` ``(B, N, M)`` (a transposed view is fine), log-weights ``la`` ``(B, N)``,
    ``lb`` ``(B, M)``, start ``g`` ``(B, M)``, ``row_ok`` ``(B,)`` rows with mass. Returns
    ``(f (B, N), g (B, M), n_iter (B,), converged (B,))``; ``f`` is the soft-min of ``g``.
    """
    B = K.shape[0]
    dt, dev = K.dtype, K.device
    K = K.contiguous()  # (the caller may pass a transposed view) row-major reductions
    wa, wb = torch.exp(la), torch.exp(lb)
    # rebalance in this dtype: the semi-dual is unbounded along g + c unless sum a = sum b
    ok = row_ok & (wb.sum(1) > 0)
    lb = lb + torch.where(ok, mode.log(wa.sum(1) / torch.where(ok, wb.sum(1), 1.0)), 0.0)[:, None]
    wb = torch.exp(lb)
    mass = wb.sum(1).clamp_min(torch.finfo(dt).tiny)
    sd = _SemiDual(K, lb, wa, wb, eps, mode)
    f, P, F, grad, colm = sd.at(g)  # P, colm kept for the Hessians
    it = _Iterate(f.clone(), g.clone(), F, grad, P, colm)
    live = row_ok.clone()
    n_it = torch.zeros(B, dtype=torch.long, device=dev)
    for step in range(1, max_iter + 1):
        err = it.grad.abs().sum(1) / mass
        live = live & ~(err < tol)
        if not bool(live.any()):
            break
        n_it[live] = step
        r = torch.nonzero(live).squeeze(1)  # work on unconverged rows only
        # the plan at the current g (row-wise, same as re-evaluating)
        d = _direction(it.P[r], it.colm[r], wa[r], it.grad[r], eps, mode)
        done = _line_search(sd, it, r, d, keep_plan=step < max_iter)
        live[r[~done]] = False  # a row whose line search fails stops (reported not converged)
    err = it.grad.abs().sum(1) / mass
    return it.f, it.g, n_it, (err < tol) | ~row_ok


def solve_few_points(C: torch.Tensor, la: torch.Tensor, lb: torch.Tensor, f: torch.Tensor,
                     g: torch.Tensor, eps: float, tol: float, max_iter: int,
                     row_ok: torch.Tensor, mode: BatchMode):
    """:func:`newton_semidual` in the potential of the side with fewer points, in float64
    whatever the dtype of ``C`` ``(B, N, M)`` (float32 line searches stall), from ``f``
    ``(B, N)``, ``g`` ``(B, M)``. Returns ``(f, g, n_iter (B,), converged (B,))`` in the
    dtype of ``C``; the many-point side's potential is the soft-min of the other one."""
    dt, d64 = C.dtype, torch.float64
    K64, la64, lb64 = (-C.to(d64) / eps), la.to(d64), lb.to(d64)
    if C.shape[2] <= C.shape[1]:
        f, g, n_it, conv = newton_semidual(K64, la64, lb64, eps, tol, max_iter, g.to(d64),
                                           row_ok, mode)
    else:
        g, f, n_it, conv = newton_semidual(K64.transpose(1, 2), lb64, la64, eps, tol,
                                           max_iter, f.to(d64), row_ok, mode)
    return f.to(dt), g.to(dt), n_it, conv
