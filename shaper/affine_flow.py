"""A compiled engine for the exact flow of shapes whose nodes are affine in their parameters.

Shapes it takes (:func:`is_affine`): one extended shape with centre ``c = (c_y, c_phi)`` and
radius ``r >= lo`` whose ``K`` nodes are ``y_k = c + r u_k`` with a fixed unit pattern ``u_k``
(ring angles, the disk's sunflower lattice) and fixed masses ``w m_k`` (``w`` the one-element
simplex weight, never stepped): 1-ringiness and 1-diskiness. The pattern and masses are read
from the observable's own sampler (at ``c = 0``, ``r = 1``, ``w = 1``), so the nodes are the
torch path's, bit for bit.

The engine runs, per row and in one nogil numba call per bucket (no Python per step), the same
algorithm as :class:`shaper.exact_flow.ExactSteps` driven by :func:`physkit.flow.minimize`
(``optimizer="gd"``, ``lr=1``): the exact transport solve (the transport-simplex kernel of
:mod:`physkit.ot.transport_simplex`, warm-started from the basis of the row's last kept
solve), the majoriser weights ``W_k`` and targets ``T_k`` from the plan, the damped
Gauss-Newton step (here a 3 x 3 system: ``d y_k / d c = I``, ``d y_k / d r = u_k``),
accept/reject with the step scales, the projection (``r >= lo``; the weight's one-element
simplex), the stall rule (``tol``, ``patience``), the step limit, the statuses and the final
evaluation (the better of the final and best-so-far parameters). Differences to the torch
path are rounding only: sums run in another order (the plan's summaries over its basic arcs,
the 3 x 3 products and solve, the weights' normalisation), so values agree to ~1e-12 relative
except where a rounding-level difference flips an accept/reject or a stall decision.

Problems above :data:`physkit.ot.exact.SMALL_PROBLEM_CELLS` cells (the torch path hands them to
POT, cold) are solved by the same transport simplex here, warm-started: the optimal value is
the same; the plan (and so the step) can differ only on degenerate problems with several
optimal plans.
"""
from __future__ import annotations

import weakref
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from physkit.compiled import jit
from physkit.flow import FlowResult, Positive, Simplex
from physkit.flow.constraints import Free
from physkit.ot import dual_start as _ds
from physkit.ot import transport_simplex as _ts
from physkit.ot.exact import DEFAULT_N_ITER_MAX
from physkit.status import Status

from .exact_flow import _DAMP, _FLOOR, _GROW, _SHRINK, _THETA_FLOOR
from .observables import Observable

Params = Dict[str, torch.Tensor]
#: per observable, ``(n_samples, R) -> (u, m)`` of :func:`node_pattern`
_PATTERNS: "weakref.WeakKeyDictionary[Observable, dict]" = weakref.WeakKeyDictionary()

_TWO_PI = 2.0 * np.pi
#: kernel error codes (raised as exceptions by the wrapper)
_OK, _NO_MASS, _SOLVE_FAILED = 0, 1, 2
#: columns of the kernel's per-row output
_N_OUT = 10
# Helpers called per particle / per solve that allocate nothing compile without numba's
# reference counting (``jit(refcount=False)``, as in :mod:`physkit.ot.transport_simplex`): the counts
# on their array arguments cost more than their arithmetic. Same numbers.
#: fewest nodes at which a row's first cold solve starts through the pattern at a quarter
#: of the nodes (:func:`_coarse_start`)
COARSE_START_MIN = 48


def is_affine(obs: Observable) -> bool:
    """Whether ``obs`` declares affine nodes with a fixed pattern (``obs.affine_nodes``) and has
    exactly the parameters the engine steps: ``centers (1, 2)`` free, ``weights (1,)`` simplex,
    ``radii (1,)`` positive."""
    if not getattr(obs, "affine_nodes", False):
        return False
    sp = obs.specs
    return (list(sp) == ["centers", "weights", "radii"]
            and sp["centers"].shape == (1, 2) and type(sp["centers"].constraint) is Free
            and sp["weights"].shape == (1,) and isinstance(sp["weights"].constraint, Simplex)
            and sp["radii"].shape == (1,) and type(sp["radii"].constraint) is Positive)


def node_pattern(obs: Observable, n_samples: int, R: float) -> Tuple[np.ndarray, np.ndarray]:
    """The unit pattern ``u (K, 2)`` and masses ``m (K,)`` float64 of an affine observable: its
    sampler's nodes and masses at ``c = 0``, ``r = 1``, ``w = 1``. Sampled once per
    observable, ``n_samples`` and ``R`` (kept while ``obs`` lives; the arrays are shared: read
    them, do not write them)."""
    per = _PATTERNS.get(obs)
    if per is None:
        per = _PATTERNS.setdefault(obs, {})
    key = (int(n_samples), float(R))
    if key not in per:
        per[key] = _sampled_pattern(obs, n_samples, R)
    return per[key]


def _sampled_pattern(obs: Observable, n_samples: int, R: float
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`node_pattern`, sampled."""
    p = {"centers": torch.zeros(1, 1, 2, dtype=torch.float64),
         "weights": torch.ones(1, 1, dtype=torch.float64),
         "radii": torch.ones(1, 1, dtype=torch.float64)}
    with torch.no_grad():
        y, b = obs.sample(p, n_samples, R)
    return (np.ascontiguousarray(y[0].numpy(), dtype=np.float64),
            np.ascontiguousarray(b[0].clamp_min(0).numpy(), dtype=np.float64))


# ------------------------------------------------------------------ kernel: one solve
@jit(refcount=False)
def _gather(x, a, r, xw, aw):
    """Positive-weight particles of row ``r`` into ``xw (n, 2)``, weights normalised to unit
    mass into ``aw (n,)``; returns ``n``."""
    n = 0
    s = 0.0
    for i in range(a.shape[1]):
        s += a[r, i]
    for i in range(a.shape[1]):
        an = a[r, i] / s
        if an > 0.0:
            xw[n, 0], xw[n, 1], aw[n] = x[r, i, 0], x[r, i, 1], an
            n += 1
    return n


@jit(refcount=False)
def _masses(mk, w, aw, n, bw):
    """Node masses ``bw (K,)``: ``w m_k`` rescaled to the jet's (normalised) total."""
    K = mk.shape[0]
    sa, sb = 0.0, 0.0
    for i in range(n):
        sa += aw[i]
    for k in range(K):
        bw[k] = max(w * mk[k], 0.0)
        sb += bw[k]
    f = sa / sb
    for k in range(K):
        bw[k] = bw[k] * f


@jit(refcount=False)
def _wrap(dp):
    """An azimuth difference wrapped into ``(-pi, pi]`` (:func:`physkit.angles.wrap_angle`'s
    formula; the identity, bit for bit, on one in range)."""
    if dp > np.pi or dp <= -np.pi:
        return dp - _TWO_PI * np.ceil((dp - np.pi) / _TWO_PI)
    return dp


@jit
def _costs(xw, n, c0, c1, rad, u, R, beta, y, C):
    """Nodes ``y (K, 2) = c + r u`` and the costs ``C (n, K) = (theta / R)^beta`` (azimuth
    differences wrapped into ``(-pi, pi]`` where any can leave it); returns ``max C``."""
    K = u.shape[0]
    y0, y1 = np.empty(K), np.empty(K)  # contiguous node coordinates: the rows vectorise
    reach = 0.0
    for k in range(K):
        y[k, 0] = y0[k] = c0 + rad * u[k, 0]
        y[k, 1] = y1[k] = c1 + rad * u[k, 1]
        reach = max(reach, abs(y[k, 1]))
    xmax = 0.0
    for i in range(n):
        xmax = max(xmax, abs(xw[i, 1]))
    wrap = reach + xmax >= np.pi - 1e-6
    cmax = 0.0
    for i in range(n):
        Ci = C[i]
        _cost_row(xw[i, 0], xw[i, 1], y0, y1, R, beta, wrap, Ci)
        cmax = max(cmax, _row_max(Ci, K))
    return cmax


@jit(refcount=False)
def _cost_row(x0, x1, y0, y1, R, beta, wrap, Ci):
    """One particle's costs ``Ci (K,)`` to the nodes ``(y0, y1)`` (:func:`_costs`), the
    branches outside the loops (the common cases vectorise; the same numbers)."""
    K = y0.shape[0]
    if wrap:
        inv_r, inv_r2 = 1.0 / R, 1.0 / (R * R)
        for k in range(K):
            dy, dp = x0 - y0[k], _wrap(x1 - y1[k])
            if beta == 2.0:
                Ci[k] = (dy * dy + dp * dp) * inv_r2
            elif beta == 1.0:
                Ci[k] = np.sqrt(dy * dy + dp * dp) * inv_r
            else:
                Ci[k] = (np.sqrt(dy * dy + dp * dp) * inv_r) ** beta
    elif beta == 1.0:
        _row_beta1(x0, x1, y0, y1, K, 1.0 / R, Ci)
    elif beta == 2.0:
        _row_beta2(x0, x1, y0, y1, K, 1.0 / (R * R), Ci)
    else:
        inv_r = 1.0 / R
        for k in range(K):
            dy, dp = x0 - y0[k], x1 - y1[k]
            Ci[k] = (np.sqrt(dy * dy + dp * dp) * inv_r) ** beta


@jit(refcount=False)
def _row_beta1(x0, x1, y0, y1, K, inv_r, Ci):
    """``Ci[k] = |x - y_k| / R`` (no wrap), one loop without branches."""
    for k in range(K):
        dy = x0 - y0[k]
        dp = x1 - y1[k]
        Ci[k] = np.sqrt(dy * dy + dp * dp) * inv_r


@jit(refcount=False)
def _row_beta2(x0, x1, y0, y1, K, inv_r2, Ci):
    """``Ci[k] = |x - y_k|^2 / R^2`` (no wrap), one loop without branches."""
    for k in range(K):
        dy = x0 - y0[k]
        dp = x1 - y1[k]
        Ci[k] = (dy * dy + dp * dp) * inv_r2


@jit(fastmath=True, refcount=False)
def _row_max(Ci, K):
    """``max(Ci[:K])`` (finite, non-negative costs: any order gives the same number)."""
    m = 0.0
    for k in range(K):
        m = max(m, Ci[k])
    return m


@jit
def _solve_at(xw, aw, n, bw, c0, c1, rad, u, R, beta, block, basis, has_basis, ws):
    """Exact transport between the row's particles and the shape at ``(c0, c1, rad)``, warm
    started from ``basis (2, n + K - 1)`` when ``has_basis``; returns ``(value, status)``.
    The final basis is left in ``ibufs[6:8]`` (``ws[7]``), its flows in ``bufs[1]``
    (``ws[6]``)."""
    cmax = _costs(xw, n, c0, c1, rad, u, R, beta, ws[0], ws[1])
    return _solve_costs(xw, aw, n, bw, c0, c1, rad, R, beta, u.shape[0], cmax, block, basis,
                        has_basis, ws)


@jit
def _solve_costs(xw, aw, n, bw, c0, c1, rad, R, beta, K, cmax, block, basis, has_basis, ws):
    """:func:`_solve_at` on the costs already in ``ws[1]`` (``cmax``: their maximum), by the
    lean transport-simplex entry (basis and basic flows, no dense plan). Without a kept
    basis, and with a coarser pattern in ``ws[3]`` (``(K2, 2)``, ``K2 > 0``), the solve starts
    from :func:`_coarse_start`'s tree (else the least-cost rule): the same optimum."""
    C, Cr, bufs, ibufs = ws[1], ws[2], ws[6], ws[7]
    warm = has_basis
    if has_basis:
        for k in range(n + K - 1):
            ibufs[6, k], ibufs[7, k] = basis[0, k], basis[1, k]
    elif ws[3].shape[0] > 0:
        warm = _coarse_start(xw, aw, n, bw, c0, c1, rad, R, beta, K, block, ws)
    cost, status, pivots, _ = _ts.solve_lean(C, aw, bw, n, K, DEFAULT_N_ITER_MAX, block,
                                             _ts.TOL_REL * cmax, -1, bufs, ibufs, warm, Cr)
    ws[8][0] += pivots
    ws[8][1] += 1
    return cost, status


@jit
def _coarse_start(xw, aw, n, bw, c0, c1, rad, R, beta, K, block, ws):
    """A start for the costs ``ws[1] (n, K)`` of a row without a kept basis (as
    :mod:`physkit.ot.multiscale`): the same particles against the shape's coarser pattern
    ``ws[3] (K2, 2)`` with masses ``ws[4] (K2,)`` solved cold (costs in ``ws[2]``), its
    optimal particle potentials ``g (n,)`` then order :mod:`physkit.ot.dual_start`'s column
    tree for the fine costs, left in ``arc_r``, ``arc_c`` (``ibufs[6:8]``). Returns True
    (a start is there), False if the coarse solve failed (start cold)."""
    u2, bw2, C2, bufs, ibufs = ws[3], ws[5], ws[2], ws[6], ws[7]
    K2 = u2.shape[0]
    _masses(ws[4], 1.0, aw, n, bw2)
    cmax2 = _costs(xw, n, c0, c1, rad, u2, R, beta, np.empty((K2, 2)), C2)
    _, code, _, _ = _ts.solve_lean(C2, aw, bw2, n, K2, DEFAULT_N_ITER_MAX, block,
                                   _ts.TOL_REL * cmax2, -1, bufs, ibufs, False, C2)
    if code != _ts.OPTIMAL:
        return False
    g = bufs[0][:n].copy()
    C, low, gap = ws[1], bufs[3], bufs[0][:K]
    _ds._column_gaps(C, n, K, g, low, gap)
    cols = np.argsort(-gap[:K], kind="mergesort")
    _ds._column_start(C, g, aw, bw, n, K, cols, bufs[2], ibufs[6], ibufs[7], bufs[1])
    return True


# ------------------------------------------------------------------ kernel: one step
@jit(refcount=False)
def _majoriser(xw, n, K, R, beta, ws, W, T):
    """Majoriser weights ``W (K,)`` and targets ``T (K, 2)`` of the plan left by
    :func:`_solve_at` (summed over its basic arcs), as :class:`shaper.exact_flow.Transport`."""
    y, bufs, ibufs = ws[0], ws[6], ws[7]
    for k in range(K):
        W[k], T[k, 0], T[k, 1] = 0.0, 0.0, 0.0
    c1, c2, c3 = 0.5 / R, 1.0 / (R * R), 0.5 * beta / R ** beta
    for e in range(n + K - 1):
        i, k, f = ibufs[6, e], ibufs[7, e], bufs[1, e]
        if f == 0.0:
            continue
        dy, dp = xw[i, 0] - y[k, 0], _wrap(xw[i, 1] - y[k, 1])
        if beta == 2.0:
            pw = f * c2
        else:
            t = max(np.sqrt(dy * dy + dp * dp), _THETA_FLOOR)
            pw = f * c1 / t if beta == 1.0 else f * t ** (beta - 2.0) * c3
        W[k] += pw
        T[k, 0] += pw * dy
        T[k, 1] += pw * dp
    for k in range(K):
        if W[k] > 0:
            T[k, 0] = y[k, 0] + T[k, 0] / W[k]
            T[k, 1] = y[k, 1] + T[k, 1] / W[k]
        else:
            T[k, 0], T[k, 1] = y[k, 0], y[k, 1]


@jit(refcount=False)
def _gauss_newton(u, y, W, T, H, out):
    """Damped Gauss-Newton step ``out (3,)`` over ``(c_y, c_phi, r)`` on the majoriser
    ``sum_k W_k |y_k - T_k|^2`` (``d y_k / d c = I``, ``d y_k / d r = u_k``): the minimiser
    :meth:`shaper.exact_flow.ExactSteps._gauss_newton` solves (LU, partial pivoting);
    ``H (3, 4)``: scratch for the augmented system."""
    for p in range(3):
        for q in range(4):
            H[p, q] = 0.0
    for k in range(u.shape[0]):
        w = W[k]
        r0, r1 = y[k, 0] - T[k, 0], y[k, 1] - T[k, 1]
        ju0, ju1 = u[k, 0] * w, u[k, 1] * w
        H[0, 0] += w
        H[1, 1] += w
        H[0, 2] += ju0
        H[1, 2] += ju1
        H[2, 2] += u[k, 0] * ju0 + u[k, 1] * ju1
        H[0, 3] += w * r0
        H[1, 3] += w * r1
        H[2, 3] += ju0 * r0 + ju1 * r1
    H[2, 0], H[2, 1] = H[0, 2], H[1, 2]
    floor = _FLOOR * (H[0, 0] + H[1, 1] + H[2, 2]) + 1e-300
    for p in range(3):
        H[p, p] += _DAMP * H[p, p] + floor
    for col in range(3):  # elimination with partial pivoting
        piv = col
        for r in range(col + 1, 3):
            if abs(H[r, col]) > abs(H[piv, col]):
                piv = r
        if piv != col:
            for q in range(4):
                H[col, q], H[piv, q] = H[piv, q], H[col, q]
        for r in range(col + 1, 3):
            f = H[r, col] / H[col, col]
            for q in range(col, 4):
                H[r, q] -= f * H[col, q]
    for p in range(2, -1, -1):
        s = H[p, 3]
        for q in range(p + 1, 3):
            s -= H[p, q] * out[q]
        out[p] = s / H[p, p]


# ------------------------------------------------------------------ kernel: one row
@jit
def _flow_row(xw, aw, n, bw, p, u, R, beta, lo, steps, tol, patience, block, basis, ws, out):
    """The flow of one row from ``p = (c_y, c_phi, r, w)`` (projected); writes
    ``out = (c_y, c_phi, r, w, value, status, n_steps, error)`` (``out[8:10]``: pivots and
    solves, by the caller). ``basis (2, L)``: the warm
    start of the first solve (working (particle, node) indices; -1: cold), overwritten by
    the basis of the last kept solve."""
    K = u.shape[0]
    na = n + K - 1
    has_basis = basis[0, 0] >= 0
    kept, stp, best, seen = p.copy(), np.zeros(4), p.copy(), p.copy()
    delta, W, T = np.zeros(3), np.zeros(K), np.zeros((K, 2))
    H, new = np.empty((3, 4)), np.empty(4)  # scratch: the 3 x 3 system, the next parameters
    kept_value, scale, best_loss, prev = np.inf, 1.0, np.inf, np.nan
    seen_value, have_seen, stall, status, n_steps = np.nan, False, 0, 1, 0
    for _ in range(steps):
        value, code = _solve_at(xw, aw, n, bw, p[0], p[1], p[2], u, R, beta, block, basis,
                                has_basis, ws)
        if code != _ts.OPTIMAL:
            out[7] = _SOLVE_FAILED
            return
        keep = value <= kept_value
        if keep:
            ib = ws[7]
            for e in range(na):
                basis[0, e], basis[1, e] = ib[6, e], ib[7, e]
            has_basis = True
            _majoriser(xw, n, K, R, beta, ws, W, T)
            _gauss_newton(u, ws[0], W, T, H, delta)
            kept[:] = p
            stp[0], stp[1], stp[2] = delta[0], delta[1], delta[2]
            kept_value = value
            scale = min(scale * _GROW, 1.0)
        else:
            scale = scale * _SHRINK
        gsum = value
        for q in range(4):
            direction = p[q] - (kept[q] - (scale if q < 3 else 1.0) * stp[q])
            gsum += direction
            new[q] = p[q] - direction
        finite = np.isfinite(gsum)
        seen[:] = p
        seen_value, have_seen = value, True
        if finite and value < best_loss:
            best_loss = value
            best[:] = p
        stalled = abs(prev - value) <= tol * max(abs(prev), abs(value))
        stall = stall + 1 if (stalled and finite) else 0
        if finite:
            prev = value
        conv = finite and stall >= patience
        new[2] = lo if new[2] < lo else new[2]  # Positive
        new[3] = max(new[3] - (new[3] - 1.0) / 1.0, 0.0)  # one-element simplex
        newfinite = np.isfinite(new[0] + new[1] + new[2] + new[3])
        apply = finite and not conv and newfinite
        if conv:
            status = 0
        if (not finite) or (finite and not conv and not newfinite):
            status = 2
        if not apply:
            break
        p[:] = new
        n_steps += 1
    _final(xw, aw, n, bw, p, best, seen, seen_value, have_seen, u, R, beta, block, basis,
           has_basis, ws, out)
    out[5], out[6] = status, n_steps


@jit
def _final(xw, aw, n, bw, p, best, seen, seen_value, have_seen, u, R, beta, block, basis,
           has_basis, ws, out):
    """The final evaluation of :func:`physkit.flow.minimize`: the exact values at the final
    and the best-so-far parameters (the last evaluation's value where they equal its
    parameters), the better kept (ties to the final ones); writes ``out[0:5]``, ``out[7]``.
    A row without a kept basis keeps the basis of its last solve here (for later calls)."""
    vals = np.empty(2)
    solved = False
    for j in range(2):
        q = p if j == 0 else best
        same, again = have_seen, j == 1
        for t in range(4):
            same = same and q[t] == seen[t]
            again = again and q[t] == p[t]
        if same:
            vals[j] = seen_value
        elif again:  # the same parameters, the same warm start: the same solve
            vals[j] = vals[0]
        else:
            v, code = _solve_at(xw, aw, n, bw, q[0], q[1], q[2], u, R, beta, block, basis,
                                has_basis, ws)
            if code != _ts.OPTIMAL:
                out[7] = _SOLVE_FAILED
                return
            vals[j] = v
            solved = True
    if solved and not has_basis:  # a warm start for later calls on these jets
        ib = ws[7]
        for e in range(n + u.shape[0] - 1):
            basis[0, e], basis[1, e] = ib[6, e], ib[7, e]
    lf, lb = vals[0], vals[1]
    use_best = np.isfinite(lb) and (not np.isfinite(lf) or lb < lf)
    q = best if use_best else p
    val = lb if use_best else lf
    for t in range(4):
        out[t] = q[t]
    out[4] = val if np.isfinite(val) else np.inf
    out[7] = _OK


@jit
def _workspace(M, K, u2, m2):
    """One row's work arrays for jets of up to ``M`` particles and ``K`` nodes: ``ws`` (nodes
    ``(K, 2)``, costs and the crash start's scratch ``(M, K)``, the coarser pattern ``u2
    (K2, 2)`` of :func:`_coarse_start` with its masses ``m2 (K2,)`` and their scratch
    ``(K2,)`` (``K2 = 0``: none), the transport simplex's
    :func:`~physkit.ot.transport_simplex.tree_buffers`, pivot and solve counts ``(2,)``), and
    the row's particles ``(M, 2)``, weights ``(M,)`` and node masses ``(K,)``."""
    bufs, ibufs = _ts.tree_buffers(M + K)
    ws = (np.empty((K, 2)), np.empty((M, K)), np.empty((M, K)),
          u2, m2, np.empty(m2.shape[0]), bufs, ibufs, np.zeros(2, dtype=np.int64))
    return ws, np.empty((M, 2)), np.empty(M), np.empty(K)


@jit
def _flow_rows(x, a, p0, u, mk, u2, m2, R, beta, lo, steps, tol, patience, block, basis,
               out):
    """Rows of a padded batch ``x (B, M, 2)``, ``a (B, M)`` (0 = padding) from ``p0 (B, 4)``
    ``(c_y, c_phi, r, w)``: the flow of :func:`_flow_row` per row into ``out (B, 10)``
    (see :func:`_flow_row`; ``out[:, 8:10]``: the row's simplex pivots and solves);
    ``basis (B, 2, M + K - 1)``: per-row warm starts, in/out (:func:`_flow_row`)."""
    B, M = a.shape
    K = u.shape[0]
    ws, xw, aw, bw = _workspace(M, K, u2, m2)
    for r in range(B):
        n = _gather(x, a, r, xw, aw)
        if n == 0:
            out[r, 7] = _NO_MASS
            continue
        _masses(mk, p0[r, 3], aw, n, bw)
        ws[8][:] = 0
        _flow_row(xw, aw, n, bw, p0[r].copy(), u, R, beta, lo, steps, tol, patience, block,
                  basis[r], ws, out[r])
        out[r, 8], out[r, 9] = ws[8][0], ws[8][1]


# ------------------------------------------------------------------ kernel: exact values
@jit
def _line_w(p, a, n, q, b, m, beta):
    """``W_beta^beta`` between the 1-D weighted samples ``p[:n]``, ``a[:n]`` and ``q[:m]``,
    ``b[:m]`` (equal total mass; ``beta >= 1``): the monotone plan, by merging the sorted
    samples."""
    ip, iq = np.argsort(p[:n]), np.argsort(q[:m])
    i, j, ra, rb, total = 0, 0, a[ip[0]], b[iq[0]], 0.0
    while i < n and j < m:
        w = min(ra, rb)
        total += w * abs(p[ip[i]] - q[iq[j]]) ** beta
        ra -= w
        rb -= w
        if ra <= rb:
            i += 1
            if i < n:
                ra = a[ip[i]]
        else:
            j += 1
            if j < m:
                rb = b[iq[j]]
    return total


@jit
def _lower_bound(xw, aw, n, bw, c0, c1, R, beta, ws):
    """A lower bound of the exact value of the costs ``C`` left by :func:`_costs` (the bounds
    of :func:`physkit.ot.bounds.emd_lower_bound`): the two semi-relaxed bounds and, for
    ``beta >= 1``, the 1-D projections on the rapidity and on the distance to the centre."""
    y, C = ws[0], ws[1]
    K = y.shape[0]
    s1, s2 = 0.0, 0.0
    for i in range(n):
        lo = np.inf
        for k in range(K):
            lo = min(lo, C[i, k])
        s1 += aw[i] * lo
    for k in range(K):
        lo = np.inf
        for i in range(n):
            lo = min(lo, C[i, k])
        s2 += bw[k] * lo
    bound = max(s1, s2)
    if beta < 1.0:
        return bound
    px, qy = np.empty(n), np.empty(K)
    for i in range(n):
        px[i] = xw[i, 0]
    for k in range(K):
        qy[k] = y[k, 0]
    scale = R ** beta
    bound = max(bound, _line_w(px, aw, n, qy, bw, K, beta) / scale)
    for i in range(n):  # distance to the centre
        dp = _wrap(xw[i, 1] - c1)
        px[i] = np.sqrt((xw[i, 0] - c0) ** 2 + dp * dp)
    for k in range(K):
        dp = _wrap(y[k, 1] - c1)
        qy[k] = np.sqrt((y[k, 0] - c0) ** 2 + dp * dp)
    return max(bound, _line_w(px, aw, n, qy, bw, K, beta) / scale)


@jit
def _dual_bound(aw, n, bw, K, basis, ws, beat):
    """Whether the dual bound of the costs ``C = ws[1] (n, K)`` from the warm start ``basis``
    reaches ``beat``: the basis tree's potentials for these costs (``u_0 = 0``, ``u_i + v_k =
    C_ik`` on its arcs), made feasible by the c-transforms ``v_k = min_i C_ik - u_i``, then
    ``u_i = min_k C_ik - v_k``; ``sum_i a_i u_i + sum_k b_k v_k`` is then a lower bound of the
    exact value (weak duality), compared with ``beat`` less a rounding margin of ``1e-12``
    times ``|beat|`` plus the potentials' weighted magnitudes. A basis that is no spanning
    tree of these rows (it always is, from a solve of the same jet) gives False."""
    C, pot, ibufs = ws[1], ws[6][0], ws[7]
    for e in range(n + K - 1):
        ibufs[6, e], ibufs[7, e] = basis[0, e], basis[1, e]
    _ts._build_tree(n, K, ibufs[3], ibufs[8], ibufs[9], ibufs[2], ibufs[6], ibufs[7])
    if _ts._hang(C, n, K, ibufs[6], ibufs[7], ibufs[3], ibufs[8], ibufs[0], ibufs[1], pot,
                 ibufs[4], ibufs[5], ibufs[2]) != n + K:
        return False
    v = np.empty(K)
    for k in range(K):
        v[k] = np.inf
    for i in range(n):
        ui = pot[i]
        Ci = C[i]
        for k in range(K):
            v[k] = min(v[k], Ci[k] - ui)
    bound, scale = 0.0, abs(beat)
    for k in range(K):
        bound += bw[k] * v[k]
        scale += bw[k] * abs(v[k])
    for i in range(n):
        ui = np.inf
        Ci = C[i]
        for k in range(K):
            ui = min(ui, Ci[k] - v[k])
        bound += aw[i] * ui
        scale += aw[i] * abs(ui)
    return bound - 1e-12 * scale >= beat


@jit
def _values_rows(x, a, p, u, mk, u2, m2, R, beta, block, basis, beat, out):
    """Exact values ``out (B,)`` of the shapes ``p (B, 4)`` on the jets ``x``, ``a``, warm
    started from ``basis`` (filled where empty); a row whose lower bound (:func:`_lower_bound`,
    and with a warm start :func:`_dual_bound`) is not below ``beat (B,)`` (to ``1e-12``
    relative) is not solved (``out = inf``, it cannot win).
    Returns the first failed row's error code, or 0."""
    B, M = a.shape
    K = u.shape[0]
    ws, xw, aw, bw = _workspace(M, K, u2, m2)
    for r in range(B):
        n = _gather(x, a, r, xw, aw)
        if n == 0:
            return _NO_MASS
        _masses(mk, p[r, 3], aw, n, bw)
        cmax = _costs(xw, n, p[r, 0], p[r, 1], p[r, 2], u, R, beta, ws[0], ws[1])
        has = basis[r, 0, 0] >= 0
        if beat[r] < np.inf and (
                (has and _dual_bound(aw, n, bw, K, basis[r], ws, beat[r])) or
                _lower_bound(xw, aw, n, bw, p[r, 0], p[r, 1], R, beta, ws) * (1 - 1e-12)
                >= beat[r]):
            out[r] = np.inf
            continue
        v, code = _solve_costs(xw, aw, n, bw, p[r, 0], p[r, 1], p[r, 2], R, beta, K, cmax,
                               block, basis[r], has, ws)
        if code != _ts.OPTIMAL:
            return _SOLVE_FAILED
        out[r] = v
        if not has:
            for e in range(n + K - 1):
                basis[r, 0, e], basis[r, 1, e] = ws[7][6, e], ws[7][7, e]
    return _OK


# ------------------------------------------------------------------ wrappers
def new_warm_starts(b: int, M: int, n_samples: int) -> np.ndarray:
    """Empty per-row warm starts ``(b, 2, M + K - 1)`` int64 (-1: cold) for jets ``M`` wide
    and ``K = n_samples`` nodes, for :func:`flow_affine`'s ``warm``."""
    return np.full((b, 2, M + n_samples - 1), -1, dtype=np.int64)


def flow_affine(obs: Observable, x: torch.Tensor, a: torch.Tensor, p0: Params, *, steps: int,
                n_samples: int, R: float, beta: float, tol: float, patience: int,
                warm: Optional[np.ndarray] = None) -> FlowResult:
    """:func:`shaper.exact_flow.flow_exact` for an affine observable (:func:`is_affine`) on CPU:
    jets ``x (b, M, 2)``, ``a (b, M)`` (0 = padding), start ``p0`` ``(b, ...)`` each; one nogil
    compiled call. ``warm``: optional per-row warm starts (:func:`new_warm_starts`) of these
    jets at ``n_samples`` nodes, used by the first solve of each row and overwritten by the
    basis of its last kept solve (None: every row starts cold, as the torch path does).
    ``steps = 0``: the exact values at ``p0``. Returns :class:`physkit.flow.FlowResult`
    (float64 params, loss, n_steps, status)."""
    u, mk, start, xn, an, warm = _inputs(obs, x, a, p0, n_samples, R, warm)
    lo = float(obs.specs["radii"].constraint.min)
    out = np.zeros((start.shape[0], _N_OUT))
    u2, m2 = _coarse_pattern(obs, n_samples, R, beta)
    _flow_rows(xn, an, start, u, mk, u2, m2, float(R), float(beta), lo, int(steps), float(tol),
               int(patience), _ts.default_block(xn.shape[1], u.shape[0]), warm, out)
    err = out[:, 7]
    _raise(int(err.max()) if len(err) else _OK)
    t = torch.from_numpy(out)
    dev = x.device
    params = {"centers": t[:, None, 0:2].clone().to(dev), "weights": t[:, 3:4].clone().to(dev),
              "radii": t[:, 2:3].clone().to(dev)}
    return FlowResult(params=params, loss=t[:, 4].clone().to(dev),
                      n_steps=t[:, 6].to(torch.int64).to(dev),
                      status=t[:, 5].to(torch.int8).to(dev))


def exact_affine(obs: Observable, x: torch.Tensor, a: torch.Tensor, params: Params, *,
                 n_samples: int, R: float, beta: float, warm: Optional[np.ndarray] = None,
                 beat: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exact values ``(b,)`` float64 of an affine observable's shapes ``params`` (``K =
    n_samples`` nodes) on the jets ``x (b, M, 2)``, ``a (b, M)``, warm-started from ``warm``
    (:func:`new_warm_starts`; filled where empty). ``beat (b,)``: rows whose lower bound
    (:func:`physkit.ot.bounds.emd_lower_bound`'s bounds; for a row with a warm start also the
    dual bound of its basis's potentials, made feasible by c-transforms) is not below it are
    not solved and get ``+inf`` (their value cannot be below ``beat``)."""
    u, mk, p, xn, an, warm = _inputs(obs, x, a, params, n_samples, R, warm)
    out = np.empty(p.shape[0])
    bt = np.full(p.shape[0], np.inf) if beat is None else \
        np.ascontiguousarray(beat.detach().to(torch.float64).cpu().numpy())
    u2, m2 = _coarse_pattern(obs, n_samples, R, beta)
    _raise(_values_rows(xn, an, p, u, mk, u2, m2, float(R), float(beta),
                        _ts.default_block(xn.shape[1], u.shape[0]), warm, bt, out))
    return torch.from_numpy(out).to(x.device)


def _coarse_pattern(obs: Observable, n_samples: int, R: float, beta: float
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """The coarser pattern ``(K2, 2)`` and masses ``(K2,)`` (``K2 = n_samples // 4`` nodes) that
    start a row's first solve without a kept basis (:func:`_coarse_start`); empty (no coarse
    start: the least-cost rule) below :data:`COARSE_START_MIN` nodes and for ``beta < 1``
    (there another optimal plan of a degenerate problem moved a polish by up to 1.5e-7
    relative on 1 of 200 reference jets: kept on the least-cost start)."""
    if n_samples < COARSE_START_MIN or beta < 1.0:
        return np.empty((0, 2)), np.empty(0)
    return node_pattern(obs, n_samples // 4, R)


def _inputs(obs: Observable, x: torch.Tensor, a: torch.Tensor, p0: Params, n_samples: int,
            R: float, warm: Optional[np.ndarray]):
    """The kernels' inputs: pattern ``u``, masses ``m``, projected parameters ``(b, 4)``
    ``(c_y, c_phi, r, w)``, jets as contiguous float64 numpy, checked warm starts."""
    u, mk = node_pattern(obs, n_samples, R)
    cons = obs.constraints
    q = {k: cons[k].project(v.detach().to(torch.float64)) for k, v in p0.items()}
    b = q["centers"].shape[0]
    start = torch.cat([q["centers"].reshape(b, 2), q["radii"].reshape(b, 1),
                       q["weights"].reshape(b, 1)], 1).cpu().numpy()
    xn = np.ascontiguousarray(x.detach().to(torch.float64).cpu().numpy())
    an = np.ascontiguousarray(a.detach().to(torch.float64).cpu().numpy())
    L = xn.shape[1] + u.shape[0] - 1
    if warm is None:
        warm = new_warm_starts(b, xn.shape[1], u.shape[0])
    elif warm.shape != (b, 2, L) or warm.dtype != np.int64 or not warm.flags.c_contiguous:
        raise ValueError(f"affine engine: warm must be C-contiguous int64 {(b, 2, L)}, got "
                         f"{warm.dtype} {warm.shape}")
    return u, mk, np.ascontiguousarray(start), xn, an, warm


def _raise(code: int) -> None:
    if code == _NO_MASS:
        raise ValueError("affine engine: a jet row has no mass")
    if code == _SOLVE_FAILED:
        raise RuntimeError("affine engine: transportation simplex failed (iteration limit)")


__all__ = ["is_affine", "node_pattern", "new_warm_starts", "flow_affine", "exact_affine"]
