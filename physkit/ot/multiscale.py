"""Exact EMD against a fine quadrature, warm-started through coarser quadratures of the same
shape.

A shape sampled at several resolutions (e.g. isotropy's sunflower lattices of 24, 96 and 384
nodes) gives a sequence of transport problems with the same particles (rows). Their optimal
particle potentials approximate those of the continuous problem, so each level's potentials
start the next, finer level (:mod:`physkit.ot.dual_start`); only the last level's value is
returned, and it is the exact optimum of that level (the start changes the path to the
optimum, not the optimum). Conventions as :func:`physkit.ot.emd_batch`: normalised weights,
cost ``(theta / R) ** beta`` with periodic azimuth.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import math

import numpy as np

from ..angles import TWO_PI
from ..compiled import jit as _jit
from ..cores import n_workers
from . import dual_start as _ds
from . import transport_simplex as _ts
from .cost import _check_params, cost_matrix
from .exact import (DEFAULT_N_ITER_MAX, EMDError, _first_nonfinite_row, _run_chunks,
                    _solve_with_duals, _to_numpy)

#: rows per chunk of work (cost matrices and solver scratch of one chunk at a time)
CHUNK_ROWS = 32


class LevelSolution(NamedTuple):
    """The finest level's exact optimum (:func:`emd_batch_coarse_to_fine`): value ``(B,)``,
    plan ``(B, N, M)`` (normalised weights), dual potentials u ``(B, N)`` (particles), v
    ``(B, M)`` (nodes), with ``u_i + v_k <= C_ik`` (to ``TOL_REL max C``) and equality on the
    plan's support; 0 at zero-weight entries (``plan``: ``(0, 0, 0)`` unless asked for).
    ``pivots (B,)``: simplex pivots at that level."""

    value: np.ndarray
    plan: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pivots: np.ndarray


def emd_batch_coarse_to_fine(x, a, levels: Sequence[Tuple[object, object]], R: float = 1.0,
                             beta: float = 1.0, *, n_jobs: Optional[int] = None,
                             n_iter_max: int = DEFAULT_N_ITER_MAX, plans: bool = False
                             ) -> LevelSolution:
    """Exact normalised EMD between jets and the finest of ``levels``, warm-started through
    the coarser ones.

    Parameters
    ----------
    x : ``(B, N, 2)`` particle points (y, phi); a : ``(B, N)`` non-negative weights
        (0 = padding). numpy or torch (detached).
    levels : ``[(y, b), ...]`` from coarse to fine: quadratures of one shape, ``y (B, M_l, 2)``
        nodes, ``b (B, M_l)`` non-negative node weights. Only the last is reported; the others
        only start it (any sequence gives the same value; one level: a cold start).
    R, beta : cost ``(theta / R) ** beta``, periodic phi.
    n_jobs : threads (the solver releases the GIL); ``None``: all available cores.
    n_iter_max : pivot cap per level and row; a row that reaches it at the last level is
        solved again by POT's network simplex with its own cap
        (:class:`~physkit.ot.exact.EMDError` if that fails too).
    plans : also return the optimal plans (else ``plan`` is empty, ``(0, 0, 0)``).

    Returns :class:`LevelSolution` (numpy float64). A row's numbers depend on that row only.
    Costs are computed per row on its non-zero-weight entries only (padding costs nothing).
    """
    _check_params(R, beta)
    if len(levels) == 0:
        raise ValueError("emd_batch_coarse_to_fine: levels is empty")
    x, a = _to_numpy(x, "x", 3), _to_numpy(a, "a", 2)
    lv = [(_to_numpy(y, "y", 3), _to_numpy(b, "b", 2)) for y, b in levels]
    B, N = a.shape
    for name, t in [("x", x), ("a", a)] + [(f"levels[{i}]", t) for i, yb in enumerate(lv)
                                           for t in yb]:
        row = _first_nonfinite_row(t)
        if row is not None:
            raise ValueError(f"emd_batch_coarse_to_fine: non-finite value in {name}, row {row}")
    for i, (y, b) in enumerate(lv):
        if x.shape != (B, N, 2) or y.shape[0] != B or y.shape[2] != 2 or b.shape != y.shape[:2]:
            raise ValueError(f"emd_batch_coarse_to_fine: shapes x {x.shape}, a {a.shape}, "
                             f"levels[{i}] y {y.shape}, b {b.shape} do not match (B, N, 2), "
                             f"(B, N), (B, M, 2), (B, M)")
    for name, w in [("a", a)] + [(f"levels[{i}] b", yb[1]) for i, yb in enumerate(lv)]:
        if (w < 0).any() or (w.sum(1) <= 0).any():
            bad = (w < 0).any(1) | (w.sum(1) <= 0)
            raise ValueError(f"emd_batch_coarse_to_fine: {name} row "
                             f"{int(np.flatnonzero(bad)[0])} has a negative weight or no mass")
    M = lv[-1][0].shape[1]
    offs = np.cumsum([0] + [y.shape[1] for y, _ in lv]).astype(np.int64)
    Y = np.ascontiguousarray(np.concatenate([y for y, _ in lv], axis=1))
    W = np.ascontiguousarray(np.concatenate([b for _, b in lv], axis=1))
    x, a = np.ascontiguousarray(x), np.ascontiguousarray(a)
    out = LevelSolution(np.empty(B), np.empty((B, N, M) if plans else (0, 0, 0)),
                        np.empty((B, N)), np.empty((B, M)), np.zeros(B, dtype=np.int64))
    status = np.empty(B, dtype=np.int64)

    def work(chunk):
        _chain_rows(x, a, Y, W, offs, float(R), float(beta), *chunk, int(n_iter_max), plans,
                    out.value, out.plan, out.u, out.v, status, out.pivots)
        for k in range(*chunk):
            if status[k] != _ts.OPTIMAL:
                _fallback(k, x, a, lv[-1][0], lv[-1][1], R, beta, out, plans)

    work((0, 0))  # compiles (or loads) the kernel here, not in several threads at once
    step = max(1, min(CHUNK_ROWS, -(-B // (4 * n_workers(n_jobs)))))
    _run_chunks(work, [(s, min(s + step, B)) for s in range(0, B, step)], n_jobs, False,
                "emd_batch_coarse_to_fine")
    return out


@_jit(refcount=False)
def _costs(x, r, ia, n, Y, ib, m, R, beta, C, ny, nphi):
    """``C[:n, :m]``: ``(theta / R) ** beta`` between row ``r``'s particles ``ia[:n]`` and
    nodes ``ib[:m]`` (columns of ``Y[r]``), azimuth differences wrapped into ``(-pi, pi]``
    as :func:`physkit.angles.wrap_angle` does (so the numbers of
    :func:`physkit.ot.cost.cost_matrix`). ``ny``, ``nphi (>= m,)``: scratch (the nodes made
    contiguous, so each particle's row is one vectorised loop; only a row whose azimuth
    differences leave ``(-pi, pi]`` is redone with the wrap)."""
    lo, hi = np.inf, -np.inf
    for j in range(m):
        ny[j], nphi[j] = Y[r, ib[j], 0], Y[r, ib[j], 1]
        lo, hi = min(lo, nphi[j]), max(hi, nphi[j])
    RR = R * R
    for i in range(n):
        py, pp = x[r, ia[i], 0], x[r, ia[i], 1]
        Ci = C[i]
        if pp - hi > -math.pi and pp - lo <= math.pi:
            for j in range(m):
                dy, dp = py - ny[j], pp - nphi[j]
                Ci[j] = (dy * dy + dp * dp) / RR
        else:
            for j in range(m):
                dy, dp = py - ny[j], pp - nphi[j]
                if dp > math.pi or dp <= -math.pi:
                    dp = np.fmod(dp, TWO_PI)
                    if dp > math.pi:
                        dp -= TWO_PI
                    elif dp <= -math.pi:
                        dp += TWO_PI
                Ci[j] = (dy * dy + dp * dp) / RR
        if beta == 1.0:
            for j in range(m):
                Ci[j] = math.sqrt(Ci[j])
        elif beta != 2.0:
            for j in range(m):
                Ci[j] = Ci[j] ** (0.5 * beta)


@_jit
def _chain_rows(x, a, Y, W, offs, R, beta, start, stop, max_pivots, plans, value, plan, u, v,
                status, pivots):
    """Rows ``start:stop``: particles ``x (B, N, 2)``, ``a (B, N)`` against the levels
    ``Y[:, offs[l]:offs[l + 1]]``, ``W[...]`` in turn, each started from the previous one's
    particle potentials (zeros at the first); the last level's optimum into ``value``,
    ``u``, ``v``, ``status``, ``pivots`` (and ``plan`` with ``plans``)."""
    B, N = a.shape
    L = offs.shape[0] - 1
    Mmax = 0
    for l in range(L):
        Mmax = max(Mmax, offs[l + 1] - offs[l])
    nn = N + Mmax
    bufs, ibufs = _ts.tree_buffers(nn)
    C = np.empty((N, Mmax))
    aw, bw, g = np.empty(N), np.empty(Mmax), np.zeros(N)
    ia, ib = np.empty(N, dtype=np.int64), np.empty(Mmax, dtype=np.int64)
    ci = np.empty(_ds.LIST_ROWS * N, dtype=np.int64)
    cj = np.empty(_ds.LIST_ROWS * N, dtype=np.int64)
    pw, uw, vw = np.empty((N, Mmax)), np.empty(N), np.empty(Mmax)
    ny, nphi = np.empty(Mmax), np.empty(Mmax)
    for r in range(start, stop):
        n, sa = 0, 0.0
        for i in range(N):
            if a[r, i] > 0.0:
                ia[n] = i
                n += 1
                sa += a[r, i]
        for i in range(n):
            aw[i] = a[r, ia[i]] / sa
            g[i] = 0.0
        tot = 0.0
        for i in range(n):
            tot += aw[i]
        for l in range(L):
            m, sb = 0, 0.0
            for j in range(offs[l], offs[l + 1]):
                if W[r, j] > 0.0:
                    ib[m] = j
                    m += 1
                    sb += W[r, j]
            for j in range(m):
                bw[j] = W[r, ib[j]] * (tot / sb)
            _costs(x, r, ia, n, Y, ib, m, R, beta, C, ny, nphi)
            cost, st, piv, _ = _ds._solve(C, aw, bw, n, m, g, max_pivots, bufs, ibufs, ci,
                                          cj, pw, uw, vw)
            for i in range(n):
                g[i] = uw[i]
        value[r], status[r], pivots[r] = cost, st, piv
        u[r] = 0.0
        v[r] = 0.0
        for i in range(n):
            u[r, ia[i]] = uw[i]
        for j in range(m):
            v[r, ib[j] - offs[L - 1]] = vw[j]
        if plans:
            plan[r] = 0.0
            for i in range(n):
                for j in range(m):
                    plan[r, ia[i], ib[j] - offs[L - 1]] = pw[i, j]


def _fallback(k: int, x, a, y, b, R, beta, out: LevelSolution, plans: bool) -> None:
    """Row ``k`` did not reach optimality within the pivot cap: POT's network simplex with its
    own cap (:data:`~physkit.ot.exact.DEFAULT_N_ITER_MAX`; :class:`~physkit.ot.exact.EMDError`
    if it fails too); the nodes' duals priced as the tightest feasible ones."""
    ia, ib = np.flatnonzero(a[k] > 0), np.flatnonzero(b[k] > 0)
    C = np.ascontiguousarray(cost_matrix(x[k][ia][None], y[k][ib][None], R, beta)[0])
    an = np.ascontiguousarray(a[k, ia] / a[k, ia].sum())
    bn = np.ascontiguousarray(b[k, ib] * (an.sum() / b[k, ib].sum()))
    G, cost, u, _, code = _solve_with_duals(an, bn, C, DEFAULT_N_ITER_MAX)
    if code != _ts.OPTIMAL or not np.isfinite(cost):
        raise EMDError(f"emd_batch_coarse_to_fine: row {k}: POT network simplex failed "
                       f"(result code {code}) after the transportation simplex's pivot cap")
    out.value[k] = cost
    out.u[k], out.v[k] = 0.0, 0.0
    out.u[k, ia] = u
    out.v[k, ib] = (C - u[:, None]).min(0)
    if plans:
        out.plan[k] = 0.0
        out.plan[k][np.ix_(ia, ib)] = G
