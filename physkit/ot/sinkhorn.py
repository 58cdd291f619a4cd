"""Batched, log-domain, debiased Sinkhorn divergence between weighted point clouds.

For a batch of problems ``(x_b, a_b) -> (y_b, b_b)`` in the (y, phi) plane with ground cost
``C = (theta / R) ** beta`` (periodic phi, :func:`physkit.ot.cost.cost_matrix`), the entropic
OT value in dual form is ``OT_eps(a, b) = <a, f> + <b, g>`` at the fixed point of the
log-domain Sinkhorn iterations

    f_i = -eps log sum_j b_j exp((g_j - C_ij) / eps),   g_j = -eps log sum_i a_i exp((f_i - C_ij) / eps)

and the debiased divergence (Feydy et al. 2019, arXiv:1810.08278) is

    S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2
                = <a, f - p> + <b, g - q>,

with ``p``, ``q`` the symmetric potentials of ``OT_eps(a, a)`` and ``OT_eps(b, b)``.
``eps`` is in units of the normalised cost ``(theta / R) ** beta``. ``S_eps -> EMD_{beta,R}``
as ``eps -> 0``.

Algorithm, ``OT(a, b)``: eps-scaling from the largest cost in the batch down to ``eps`` by a
geometric factor ``scaling`` (one log-domain Sinkhorn iteration per intermediate eps), then
at ``eps`` until each row's L1 marginal error is below ``tol``:

* when one side has at most ``NEWTON_MAX_POINTS`` (32) points (jet vs shape): Newton's method
  with backtracking on the concave semi-dual in that side's potential (``(B, M, M)`` Hessians,
  float64 internally; :mod:`physkit.ot.newton`). Sinkhorn is very slow on these semi-discrete
  problems at small eps (measured: hundreds to thousands of iterations for 1 in 10
  jet-vs-3-point rows, value still off by several %); Newton converges in ~5-20 steps;
* otherwise over-relaxed Sinkhorn (``relax``) in the stabilised scaling form (Schmitzer 2019;
  :mod:`physkit.ot.scaling`: potentials absorbed in a kernel, updates by batched mat-vec
  products, ~10x cheaper than a logsumexp pass). Converged rows are frozen and dropped from
  the working set once half of it has converged, so easy rows stop costing.

The symmetric self problems converge in a few averaged iterations ``p <- (p + T(p)) / 2``
(scaling form) and are solved at ``eps`` directly. Everything runs on the inputs' device in
their dtype (float32 or float64); there is no Python loop over the batch. ``rowwise`` chooses
how stabilisation steps are decided (:mod:`physkit.ot.batch_mode`).

Gradients (with respect to ``x``, ``a``, ``y``, ``b``) follow from the envelope theorem: the
iterations run under ``torch.no_grad()``; one last soft-min step is taken with autograd on,
from detached potentials and with the "right-hand" points detached, so that
``dS/da = f - p``, ``dS/db = g - q`` and ``dS/dx_i = sum_j pi_ij dC_ij/dx_i -
sum_k pi^aa_ik dC_ik/dx_i`` (no backpropagation through the iterations). When only ``y``
moves (a fixed jet ``x`` against a moving shape), that step reuses the solver's cost matrices
and forms the ``y`` gradient in closed form (:class:`physkit.ot.softmin.MovingSoftmin`); with
a Newton solve, the many-point side's potential is already its soft-min and is not recomputed.

Caching the fixed side (``self_x`` / ``self_y``): the self term ``OT_eps(a, a)`` depends only on
``(x, a)``; with ``return_potentials=True`` its potential comes back as ``potentials.p`` and can
be passed as ``self_x=potentials.p`` to later calls with the *same* ``x``, ``a``, ``eps``, ``R``,
``beta``: those calls then skip the ``(B, N, N)`` self problem entirely (unless ``x`` or ``a``
require grad, in which case one ``(B, N, N)`` soft-min is needed for the gradient). This is the
intended use when a fixed jet is compared with a moving shape. Passing a stale cache gives a
wrong value; it is the caller's responsibility.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .batch_mode import BatchMode
from .cost import _check_params, cost_matrix
from .newton import solve_few_points
from .scaling import sinkhorn_at_eps, solve_self
from .softmin import MovingSoftmin, softmin_cols, softmin_rows

#: finite stand-in for log(0) (keeps logsumexp and its gradient free of NaN on empty rows)
_NEG = -1e30
#: Newton's method on the semi-dual replaces Sinkhorn when one side has at most this many points
NEWTON_MAX_POINTS = 32
#: relative mismatch of total masses above which inputs are rejected
_MASS_RTOL = 1e-3


class SinkhornPotentials(NamedTuple):
    """Converged dual potentials of one :func:`sinkhorn_divergence` call (all detached).

    f : ``(B, N)`` potential on ``x`` of ``OT_eps(a, b)``.
    g : ``(B, M)`` potential on ``y`` of ``OT_eps(a, b)``.
    p : ``(B, N)`` symmetric potential of ``OT_eps(a, a)`` (pass as ``self_x``).
    q : ``(B, M)`` symmetric potential of ``OT_eps(b, b)`` (pass as ``self_y``).
    eps : the final eps.
    n_iter : ``(B,)`` int64, Sinkhorn iterations used per row (eps-scaling steps included).
    converged : ``(B,)`` bool, whether the row reached ``tol`` within ``max_iter``.
    """

    f: torch.Tensor
    g: torch.Tensor
    p: torch.Tensor
    q: torch.Tensor
    eps: float
    n_iter: torch.Tensor
    converged: torch.Tensor


# ---------------------------------------------------------------- arguments and inputs

#: scalar options: (name, valid?, requirement)
_OPTIONS = (("eps", lambda v: v > 0, "> 0"),
            ("scaling", lambda v: 0 < v < 1, "in (0, 1)"),
            ("relax", lambda v: 1.0 <= v < 2.0, "in [1, 2)"))


def _check_tensors(x, a, y, b, mask_x, mask_y) -> None:
    """Types, shapes ``(B, N, 2), (B, N), (B, M, 2), (B, M)``, dtypes and devices."""
    for name, t in (("x", x), ("a", a), ("y", y), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"sinkhorn_divergence: {name} must be a torch.Tensor, got "
                            f"{type(t).__name__}")
    if x.dim() != 3 or x.shape[-1] != 2 or y.dim() != 3 or y.shape[-1] != 2:
        raise ValueError(f"sinkhorn_divergence: x, y must be (B, N, 2), (B, M, 2); got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}")
    if a.shape != x.shape[:2] or b.shape != y.shape[:2] or x.shape[0] != y.shape[0]:
        raise ValueError(f"sinkhorn_divergence: shapes x {tuple(x.shape)}, a {tuple(a.shape)}, "
                         f"y {tuple(y.shape)}, b {tuple(b.shape)} do not match (B, N, 2), "
                         f"(B, N), (B, M, 2), (B, M)")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"sinkhorn_divergence: dtype must be float32 or float64, got {x.dtype}")
    for name, t in (("a", a), ("y", y), ("b", b)):
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"sinkhorn_divergence: {name} is {t.dtype} on {t.device}, x is "
                            f"{x.dtype} on {x.device}; they must match")
    for name, m, ref in (("mask_x", mask_x, a), ("mask_y", mask_y, b)):
        if m is not None and m.shape != ref.shape:
            raise ValueError(f"sinkhorn_divergence: {name} must have shape {tuple(ref.shape)}, "
                             f"got {tuple(m.shape)}")


def _check_arguments(x, a, y, b, mask_x, mask_y, self_x, self_y, warm_start,
                     **options: float) -> None:
    """Every argument of :func:`sinkhorn_divergence` except the data values (checked by
    :func:`_prepare`); one message per option."""
    _check_params(options["R"], options["beta"])  # the cost's own checks (as cost_matrix)
    _check_tensors(x, a, y, b, mask_x, mask_y)
    for name, valid, requirement in _OPTIONS:
        if not valid(options[name]):
            raise ValueError(f"{name} must be {requirement}, got {options[name]!r}")
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    for name, t, n in (("self_x", self_x, N), ("self_y", self_y, M)):
        if t is not None and t.shape != (B, n):
            raise ValueError(f"sinkhorn_divergence: {name} must have shape {(B, n)}, got "
                             f"{tuple(t.shape)}")
    if warm_start is not None and (warm_start.f.shape != (B, N) or warm_start.g.shape != (B, M)):
        raise ValueError("sinkhorn_divergence: warm_start potentials do not match the batch "
                         f"shapes (B, N, M) = {(B, N, M)}")


@dataclass
class _Problem:
    """One call's data as the solvers use it (detached): points ``xd`` ``(B, N, 2)``, ``yd``
    ``(B, M, 2)``; masks ``mx`` ``(B, N)``, ``my`` ``(B, M)``; log-weights ``la``, ``lb``
    (``_NEG`` where no mass; ``lb`` absorbs a tiny mass mismatch); weights normalised per row
    ``an``, ``bn`` (for marginal errors); ``row_ok`` ``(B,)``, rows with mass."""

    xd: torch.Tensor
    yd: torch.Tensor
    mx: torch.Tensor
    my: torch.Tensor
    la: torch.Tensor
    lb: torch.Tensor
    an: torch.Tensor
    bn: torch.Tensor
    row_ok: torch.Tensor


def _check_weights(xd, yd, aw, bw) -> None:
    """Finite data, non-negative weights, equal total masses per row."""
    if not (torch.isfinite(xd).all() and torch.isfinite(yd).all()
            and torch.isfinite(aw).all() and torch.isfinite(bw).all()):
        raise ValueError("sinkhorn_divergence: non-finite value in x, y, a or b")
    if bool((aw < 0).any()) or bool((bw < 0).any()):
        raise ValueError("sinkhorn_divergence: negative weight in a or b")
    sa, sb = aw.sum(1), bw.sum(1)
    mism = (sa - sb).abs() > _MASS_RTOL * torch.maximum(sa, sb)
    if bool(mism.any()):
        r = int(torch.nonzero(mism)[0, 0])
        raise ValueError(f"sinkhorn_divergence: row {r}: total masses differ "
                         f"(sum a = {float(sa[r]):.6g}, sum b = {float(sb[r]):.6g}); "
                         f"balanced OT needs equal masses")


def _prepare(x, a, y, b, mask_x, mask_y, mode: BatchMode) -> _Problem:
    """Masks, checked weights and their logs for :class:`_Problem` (call under no_grad)."""
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    dev, dt = x.device, x.dtype
    mx = torch.ones(B, N, dtype=torch.bool, device=dev) if mask_x is None else mask_x.to(dev, torch.bool)
    my = torch.ones(B, M, dtype=torch.bool, device=dev) if mask_y is None else mask_y.to(dev, torch.bool)
    zero = torch.zeros((), dtype=dt, device=dev)
    xd, yd = x.detach(), y.detach()
    aw = torch.where(mx, a.detach(), zero)
    bw = torch.where(my, b.detach(), zero)
    _check_weights(xd, yd, aw, bw)
    sa, sb = aw.sum(1), bw.sum(1)
    row_ok = sa > 0
    neg = torch.full((), _NEG, dtype=dt, device=dev)
    la = torch.where(aw > 0, torch.log(torch.where(aw > 0, aw, torch.ones_like(aw))), neg)
    # absorb a tiny mass mismatch into b's log-weights so the iterations can converge
    ratio = torch.where(row_ok, sa, 1.0) / torch.where(row_ok, sb, 1.0)
    shift = torch.where(row_ok, mode.log(ratio), zero)
    lb = torch.where(bw > 0, torch.log(torch.where(bw > 0, bw, torch.ones_like(bw))) + shift[:, None], neg)
    an = aw / torch.where(row_ok, sa, 1.0)[:, None]
    bn = bw / torch.where(row_ok, sb, 1.0)[:, None]
    return _Problem(xd, yd, mx, my, la, lb, an, bn, row_ok)


# ---------------------------------------------------------------- cost matrices


@dataclass
class _Costs:
    """Cost matrices of one call, each built once. ``Cxy`` ``(B, N, M)`` (detached); ``Kxx``
    ``(B, N, N)`` and ``Kyy`` ``(B, M, M)`` as ``-C / eps`` (None when not needed);
    ``Cxy_t = C(x, yd)`` (only x moves) and ``Cxx_t = C(x, xd)`` (x moves) tracked by autograd
    for the final step, else None. The solver uses their detached values (bitwise equal to
    building them from detached points)."""

    Cxy: torch.Tensor
    Kxx: Optional[torch.Tensor]
    Kyy: Optional[torch.Tensor]
    Cxy_t: Optional[torch.Tensor]
    Cxx_t: Optional[torch.Tensor]


def _costs(x, y, pb: _Problem, R, beta, eps, gx: bool, gy: bool, solve_p: bool,
           solve_q: bool) -> _Costs:
    """The :class:`_Costs` of a call; ``gx``, ``gy``: x, y move; ``solve_p``, ``solve_q``: the
    self problems are solved (no cache)."""
    xd, yd = pb.xd, pb.yd
    Cxy_t = Cxx_t = None
    if gx and not gy:  # x moves: one tracked (B, N, M) cost serves solver and gradient
        with torch.enable_grad():
            Cxy_t = cost_matrix(x, yd, R, beta)
        Cxy = Cxy_t.detach()
    else:
        Cxy = cost_matrix(xd, yd, R, beta)
    if gx:
        with torch.enable_grad():
            Cxx_t = cost_matrix(x, xd, R, beta)
    Kxx = ((Cxx_t.detach() if gx else cost_matrix(xd, xd, R, beta)).div(-eps)
           if solve_p else None)
    # y's self term: solver and (when y moves) the gradient step use this one matrix
    Kyy = cost_matrix(yd, yd, R, beta).div_(-eps) if (solve_q or gy) else None
    return _Costs(Cxy, Kxx, Kyy, Cxy_t, Cxx_t)


# ---------------------------------------------------------------- eps-scaling of OT(a, b)


@dataclass
class _EpsSchedule:
    """eps-scaling of ``OT(a, b)``: the first eps and the later steps ``(e_cost, e_pot, on)``,
    eps broadcast against ``(B, N, M)`` costs and ``(B, N)`` potentials (floats batch-wide,
    per-row tensors row-wise) and the rows ``(B,)`` that take the step (None: all rows);
    ``n_iter`` ``(B,)`` int64, the iterations the schedule costs each row."""

    first: tuple
    steps: list
    n_iter: torch.Tensor


def _batch_schedule(C: torch.Tensor, pair: torch.Tensor, eps: float, scaling: float) -> _EpsSchedule:
    """One schedule for the batch, from its largest cost down to (excluding) ``eps``."""
    zero = torch.zeros((), dtype=C.dtype, device=C.device)
    cmax = torch.where(pair, C, zero).amax() if C.numel() else zero
    eps0 = max(float(cmax), eps)
    n_steps = int(math.floor(math.log(eps0 / eps) / math.log(1.0 / scaling) + 1e-9))
    schedule = [eps0 * scaling ** k for k in range(n_steps + 1)]
    schedule = [e for e in schedule if e > eps]
    e0 = schedule[0] if schedule else eps
    n = torch.full((C.shape[0],), len(schedule[1:]) + 1, dtype=torch.long, device=C.device)
    return _EpsSchedule((e0, e0), [(e, e, None) for e in schedule[1:]], n)


def _row_schedule(C: torch.Tensor, pair: torch.Tensor, eps: float, scaling: float) -> _EpsSchedule:
    """Per-row schedules: row r runs ``eps0_r * scaling^k`` while > eps, from its own largest
    cost ``eps0_r``."""
    B, dt, dev = C.shape[0], C.dtype, C.device
    cmax = (torch.where(pair, C, torch.zeros((), dtype=dt, device=dev)).amax((1, 2)) if C.numel()
            else torch.zeros(B, dtype=dt, device=dev))
    eps0 = torch.clamp_min(cmax.to(torch.float64), eps)
    n_sch = torch.floor(torch.log(eps0 / eps) / math.log(1.0 / scaling) + 1e-9)
    # number of schedule entries > eps (the k = n_sch entry may equal eps)
    ks = torch.arange(int(n_sch.max()) + 1 if B else 1, dtype=torch.float64, device=dev)
    e_all = eps0[:, None] * scaling ** ks[None, :]  # (B, K) float64
    n_row = ((ks[None, :] <= n_sch[:, None]) & (e_all > eps)).sum(1)  # (B,)
    e0 = torch.where(n_row > 0, e_all[:, 0], torch.full_like(eps0, eps)).to(dt)
    e_all = e_all.to(dt)
    n_last = min(e_all.shape[1], int(n_row.max()) if B else 0)
    steps = [(e_all[:, k, None, None], e_all[:, k, None], n_row > k) for k in range(1, n_last)]
    return _EpsSchedule((e0[:, None, None], e0[:, None]), steps, torch.clamp_min(n_row, 1))


def _eps_scaling(C: torch.Tensor, pb: _Problem, sch: _EpsSchedule):
    """Potentials ``f`` ``(B, N)``, ``g`` ``(B, M)`` after the schedule: a soft-min start,
    then one alternating log-domain step per eps."""
    e_cost, e_pot = sch.first
    f = softmin_rows(-C / e_cost, pb.lb, e_pot)
    g = softmin_cols(-C / e_cost, pb.la, e_pot)
    for e_cost, e_pot, on in sch.steps:
        fk = softmin_rows(-C / e_cost, pb.lb + g / e_pot, e_pot)
        gk = softmin_cols(-C / e_cost, pb.la + fk / e_pot, e_pot)
        f, g = (fk, gk) if on is None else (torch.where(on[:, None], fk, f),
                                            torch.where(on[:, None], gk, g))
    return f, g


def _cross_start(C: torch.Tensor, pb: _Problem, eps: float, scaling: float,
                 warm_start: Optional[SinkhornPotentials], mode: BatchMode):
    """Potentials of ``OT(a, b)`` to iterate from at ``eps``: the warm start, or eps-scaling.
    Returns ``(f (B, N), g (B, M), n_iter (B,))``."""
    if warm_start is not None:
        n = torch.zeros(C.shape[0], dtype=torch.long, device=C.device)
        return warm_start.f.to(C.device, C.dtype).clone(), warm_start.g.to(C.device, C.dtype).clone(), n
    pair = pb.mx[:, :, None] & pb.my[:, None, :]
    sch = (_row_schedule if mode.rowwise else _batch_schedule)(C, pair, eps, scaling)
    return (*_eps_scaling(C, pb, sch), sch.n_iter)


# ---------------------------------------------------------------- self terms


def _self_term(K, lw, wn, valid, cache, start, eps, tol, max_iter, mode: BatchMode, like):
    """Symmetric potential ``(B, n)`` of one side: the cache (detached, in the dtype of
    ``like``) when given, else :func:`~physkit.ot.scaling.solve_self` from ``start``.
    Returns ``(p, n_iter (B,), converged (B,))``."""
    if cache is None:
        start = None if start is None else start.to(like.device, like.dtype).clone()
        return solve_self(K, lw, wn, valid, eps, tol, max_iter, start, mode)
    B = like.shape[0]
    return (cache.detach().to(like.device, like.dtype),
            torch.zeros(B, dtype=torch.long, device=like.device),
            torch.ones(B, dtype=torch.bool, device=like.device))


# ---------------------------------------------------------------- final step


def _final_potentials(x, y, pb: _Problem, costs: _Costs, pots, ready, eps, R, beta, gx, gy):
    """The last soft-min step (differentiable in the moving side, envelope theorem).

    ``pots = (f, g, p, q)`` detached; ``ready`` four bools: that potential is already its
    soft-min (not recomputed when its side is fixed). Returns ``(f_t, g_t, p_t, q_t)``."""
    f, g, p, q = pots
    hx = (pb.la + f / eps)  # detached
    hy = (pb.lb + g / eps)
    with torch.no_grad():  # the terms whose side does not move (values only)
        Kxy = -costs.Cxy / eps
        f_t = None if gx else (f if ready[0] else softmin_rows(Kxy, hy, eps))
        g_t = None if gy else (g if ready[1] else softmin_cols(Kxy, hx, eps))
        p_t = (p if ready[2] else softmin_rows(costs.Kxx, pb.la + p / eps, eps)) if not gx else None
        q_t = (q if ready[3] else softmin_rows(costs.Kyy, pb.lb + q / eps, eps)) if not gy else None
    if gx:  # Cxy_t is C(x, yd) when only x moves
        Cx = costs.Cxy_t if not gy else cost_matrix(x, pb.yd, R, beta)
        f_t = softmin_rows(-Cx / eps, hy, eps)
        p_t = softmin_rows(-costs.Cxx_t / eps, pb.la + p / eps, eps)
    if gy:  # gradient in y formed directly (MovingSoftmin), no graph through the costs
        if gx:
            g_t = softmin_rows(-cost_matrix(y, pb.xd, R, beta) / eps, hx, eps)
        else:
            g_t = MovingSoftmin.apply(y, pb.xd, Kxy, hx, eps, R, beta, 1)
        q_t = MovingSoftmin.apply(y, pb.yd, costs.Kyy, pb.lb + q / eps, eps, R, beta, 2)
    okx = pb.mx & pb.row_ok[:, None]
    oky = pb.my & pb.row_ok[:, None]
    zero = torch.zeros((), dtype=f.dtype, device=f.device)
    return (torch.where(okx, f_t, zero), torch.where(oky, g_t, zero),
            torch.where(okx, p_t, zero), torch.where(oky, q_t, zero))


def _divergence(a, b, pb: _Problem, f_t, g_t, p_t, q_t, eps) -> torch.Tensor:
    """``S = <a, f - p> + <b, g - q>`` ``(B,)`` over the masked weights."""
    zero = torch.zeros((), dtype=f_t.dtype, device=f_t.device)
    am = torch.where(pb.mx, a, zero)
    bm = torch.where(pb.my, b, zero)
    S = (am * (f_t - p_t)).sum(1) + (bm * (g_t - q_t)).sum(1)
    if not bool(torch.isfinite(S.detach()).all()):  # pragma: no cover - defensive
        r = int(torch.nonzero(~torch.isfinite(S.detach()))[0, 0])
        raise FloatingPointError(f"sinkhorn_divergence: non-finite value in row {r} "
                                 f"(eps={eps}, dtype={f_t.dtype})")
    return S


# ---------------------------------------------------------------- entry point


def sinkhorn_divergence(
    x: torch.Tensor,
    a: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor,
    *,
    R: float = 1.0,
    beta: float = 1.0,
    eps: float = 1e-3,
    mask_x: torch.Tensor | None = None,
    mask_y: torch.Tensor | None = None,
    scaling: float = 0.5,
    max_iter: int = 1000,
    tol: float = 1e-3,
    warm_start: SinkhornPotentials | None = None,
    return_potentials: bool = False,
    self_x: torch.Tensor | None = None,
    self_y: torch.Tensor | None = None,
    relax: float = 1.5,
    rowwise: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, SinkhornPotentials]:
    """Debiased Sinkhorn divergence ``S_eps`` for a batch of weighted point clouds.

    Parameters
    ----------
    x : ``(B, N, 2)`` points (y, phi) of the first clouds.
    a : ``(B, N)`` non-negative weights of ``x``.
    y : ``(B, M, 2)`` points of the second clouds.
    b : ``(B, M)`` non-negative weights of ``y``; each row must carry the same total mass as
        the matching row of ``a`` (relative mismatch above 1e-3 raises; smaller ones are
        absorbed). Rows where both masses are 0 give 0.
    R, beta : ground cost ``(theta / R) ** beta``, phi periodic.
    eps : entropic regularisation in units of the normalised cost.
    mask_x, mask_y : optional bool ``(B, N)``, ``(B, M)``; False marks padding (its weight and
        position are ignored; potentials there are 0). Zero weights with mask True carry no
        mass but still get potentials (so ``dS/da`` there is meaningful).
    scaling : eps-scaling factor in (0, 1): eps_{k+1} = scaling * eps_k.
    max_iter : cap on iterations at the final eps per row (Sinkhorn iterations or Newton
        steps; also caps the self problems).
    tol : stopping threshold on each row's L1 marginal error (relative to the row's mass;
        Sinkhorn estimates it from one iteration's change, ``sum_j b_j |dg_j| / eps``).
        Unconverged rows are flagged in ``potentials.converged``, not raised.
    warm_start : potentials of a previous call on a (slightly) different problem of the same
        shapes; eps-scaling is skipped and iterations start from them at ``eps``.
    return_potentials : also return :class:`SinkhornPotentials`.
    relax : over-relaxation factor ``omega`` in [1, 2) of the iterations at eps
        (``f <- f + omega (T(g) - f)``, Thibault et al. 2017); a row whose marginal error
        more than doubles between checks falls back to plain Sinkhorn (``omega = 1``).
    self_x, self_y : cached self potentials (``potentials.p`` / ``.q`` of a previous call with
        the same ``x, a`` / ``y, b`` and the same ``eps, R, beta``); that self problem is then
        not solved again.
    rowwise : make every row's result independent of the other rows of the batch: the
        eps-scaling starts from each row's own largest cost (instead of the batch's), and the
        stabilisation steps (absorptions, log-domain fallbacks) are decided per row. Default
        False (the batch-global behaviour). Rows are still computed together, so a row's
        value is identical whichever batch it is in, given the same padded widths ``N, M``.

    Returns
    -------
    ``(B,)`` tensor (differentiable w.r.t. ``x, a, y, b``), or ``(S, potentials)``.
    """
    _check_arguments(x, a, y, b, mask_x, mask_y, self_x, self_y, warm_start,
                     R=R, beta=beta, eps=eps, scaling=scaling, relax=relax)
    mode = BatchMode(rowwise)
    N, M = x.shape[1], y.shape[1]
    # only the side that requires grad is tracked (envelope theorem: the other side is fixed)
    grad_on = torch.is_grad_enabled() and any(t.requires_grad for t in (x, a, y, b))
    gx, gy = grad_on and x.requires_grad, grad_on and y.requires_grad
    with torch.no_grad():
        pb = _prepare(x, a, y, b, mask_x, mask_y, mode)
        costs = _costs(x, y, pb, R, beta, eps, gx, gy, self_x is None, self_y is None)
        f, g, n_sched = _cross_start(costs.Cxy, pb, eps, scaling, warm_start, mode)
        # the symmetric self problems converge in a few iterations without eps-scaling
        # (Feydy et al. 2019): they are solved at eps directly
        warm_p, warm_q = (None, None) if warm_start is None else (warm_start.p, warm_start.q)
        p, n_p, c_p = _self_term(costs.Kxx, pb.la, pb.an, pb.mx, self_x, warm_p, eps, tol,
                                 max_iter, mode, f)
        q, n_q, c_q = _self_term(costs.Kyy, pb.lb, pb.bn, pb.my, self_y, warm_q, eps, tol,
                                 max_iter, mode, g)
        if 0 < min(N, M) <= NEWTON_MAX_POINTS:  # few points on one side (jet vs shape)
            f, g, n_iter, converged = solve_few_points(costs.Cxy, pb.la, pb.lb, f, g, eps, tol,
                                                       max_iter, pb.row_ok, mode)
            n_iter = n_sched + n_iter
            f_ready, g_ready = M <= N, M > N  # the many-point side is the other's soft-min
        else:
            f, g, n_iter, converged = sinkhorn_at_eps(costs.Cxy, pb.la, pb.lb, pb.bn, pb.mx,
                                                      pb.my, f, g, pb.row_ok, n_sched, eps, tol,
                                                      max_iter, relax, mode)
            f_ready = g_ready = False
        n_iter = torch.maximum(n_iter, torch.maximum(n_p, n_q))
        converged &= c_p & c_q
    f_t, g_t, p_t, q_t = _final_potentials(
        x, y, pb, costs, (f, g, p, q), (f_ready, g_ready, self_x is not None, self_y is not None),
        eps, R, beta, gx, gy)
    S = _divergence(a, b, pb, f_t, g_t, p_t, q_t, eps)
    if not return_potentials:
        return S
    return S, SinkhornPotentials(f=f_t.detach(), g=g_t.detach(), p=p_t.detach(), q=q_t.detach(),
                                 eps=float(eps), n_iter=n_iter, converged=converged)
