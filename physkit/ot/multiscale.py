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

import numpy as np

from ..cores import n_workers
from . import dual_start as _ds
from . import transport_simplex as _ts
from .cost import _check_params, cost_matrix
from .exact import (DEFAULT_N_ITER_MAX, EMDError, _first_nonfinite_row, _network_simplex,
                    _run_chunks, _to_numpy)

#: rows per chunk of work (cost matrices and solver scratch of one chunk at a time)
CHUNK_ROWS = 32


class LevelSolution(NamedTuple):
    """The finest level's exact optimum (:func:`emd_batch_coarse_to_fine`): value ``(B,)``,
    plan ``(B, N, M)`` (normalised weights), dual potentials u ``(B, N)`` (particles), v
    ``(B, M)`` (nodes), with ``u_i + v_k <= C_ik`` (to ``TOL_REL max C``) and equality on the
    plan's support; 0 at zero-weight entries. ``pivots (B,)``: simplex pivots at that level."""

    value: np.ndarray
    plan: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pivots: np.ndarray


def emd_batch_coarse_to_fine(x, a, levels: Sequence[Tuple[object, object]], R: float = 1.0,
                             beta: float = 1.0, *, n_jobs: Optional[int] = None,
                             n_iter_max: int = DEFAULT_N_ITER_MAX) -> LevelSolution:
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
        solved again by POT's network simplex (:class:`~physkit.ot.exact.EMDError` if that
        fails too).

    Returns :class:`LevelSolution` (numpy float64). A row's numbers depend on that row only.
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
    an = np.ascontiguousarray(a / a.sum(1, keepdims=True))
    M = lv[-1][0].shape[1]
    out = LevelSolution(np.empty(B), np.empty((B, N, M)), np.empty((B, N)), np.empty((B, M)),
                        np.zeros(B, dtype=np.int64))

    def work(chunk):
        s, e = chunk
        g = np.zeros((e - s, N))
        for y, b in lv:
            sol = _solve_level(x[s:e], an[s:e], y[s:e], b[s:e], g, R, beta, n_iter_max)
            g = sol.u
        _fallback(sol, x[s:e], an[s:e], lv[-1][0][s:e], lv[-1][1][s:e], R, beta, n_iter_max, s)
        out.value[s:e], out.plan[s:e], out.u[s:e], out.v[s:e] = sol.cost, sol.plan, sol.u, sol.v
        out.pivots[s:e] = sol.pivots

    step = max(1, min(CHUNK_ROWS, -(-B // (4 * n_workers(n_jobs)))))
    _run_chunks(work, [(s, min(s + step, B)) for s in range(0, B, step)], n_jobs, False,
                "emd_batch_coarse_to_fine")
    return out


def _solve_level(x: np.ndarray, an: np.ndarray, y: np.ndarray, b: np.ndarray, g: np.ndarray,
                 R: float, beta: float, n_iter_max: int) -> _ts.TransportSolution:
    """One level for rows ``x (c, N, 2)``, ``an (c, N)`` (normalised) against ``y (c, M, 2)``,
    ``b (c, M)`` from particle potentials ``g (c, N)``."""
    C = np.ascontiguousarray(cost_matrix(x, y, R, beta))
    bn = np.ascontiguousarray(b * (an.sum(1) / b.sum(1))[:, None])
    sol = _ts.new_solution(*C.shape)
    _ds.solve_rows(C, an, bn, np.ascontiguousarray(g), 0, len(C), sol, n_iter_max)
    return sol


def _fallback(sol: _ts.TransportSolution, x, an, y, b, R, beta, n_iter_max, offset: int):
    """Rows of ``sol`` that did not reach optimality: POT's network simplex (plan and first
    side's duals; the nodes' duals priced as the tightest feasible ones)."""
    for k in np.flatnonzero(sol.status != _ts.OPTIMAL):
        ia, ib = np.flatnonzero(an[k] > 0), np.flatnonzero(b[k] > 0)
        C = cost_matrix(x[k][ia][None], y[k][ib][None], R, beta)[0]
        bk = b[k, ib] / b[k, ib].sum()
        try:
            cost, G, u = _network_simplex(an[k, ia], bk, C, n_iter_max, flow=True, duals=True,
                                          what=f"emd_batch_coarse_to_fine: row {offset + k}")
        except EMDError:
            raise
        sol.cost[k] = cost
        sol.plan[k] = 0.0
        sol.plan[k][np.ix_(ia, ib)] = G
        sol.u[k] = 0.0
        sol.u[k, ia] = u
        sol.v[k] = 0.0
        sol.v[k, ib] = (C - u[:, None]).min(0)
        sol.status[k] = _ts.OPTIMAL
