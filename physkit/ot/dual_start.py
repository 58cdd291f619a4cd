"""Exact transport of small dense problems from given row potentials (a dual warm start), with
candidate-list pricing.

Problem as :mod:`physkit.ot.transport_simplex`: ``min_{P >= 0} sum_ij P_ij C_ij`` subject to
``P 1 = a``, ``P^T 1 = b``, ``a (n,) > 0``, ``b (m,) > 0``, ``sum a = sum b``.

Method: the primal transportation simplex of :mod:`physkit.ot.transport_simplex` (same tree
bookkeeping, ratio test and anti-cycling), with two changes for problems with many columns
per row (a jet against a shape's quadrature nodes):

- start: given row potentials ``g (n,)`` (e.g. the optimal duals of the same rows against a
  coarser quadrature of the same shape, which approximate the fine problem's), a basis tree
  built column by column: the columns in decreasing order of confidence (how much more their
  second cheapest row costs in ``C_ij - g_i``), each shipping to its open rows cheapest first
  and closing exactly one line per cell (``n + m - 1`` arcs), so the tree follows the cells
  the potentials say are optimal and few pivots remain (``g = 0``: a cold start);
- pricing: a candidate list (each row's most negative reduced cost at the last scan, then
  other negative cells, up to :data:`LIST_ROWS` per row); each pivot enters the most
  negative candidate at the current potentials. When no candidate prices out, the list is
  refilled from the near cells (each column's :data:`NEAR_ROWS` cheapest rows in
  ``C_ij - g_i``, where the optimal plan mostly lies; used where ``m > n > NEAR_ROWS``), and
  only when none of those prices out either from a scan of every cell. The last full scan
  finds no cell below ``-TOL_REL max|C|``: the certificate of optimality.

The optimal value does not depend on the start; where the optimum is degenerate, the plan and
duals may differ from :mod:`~physkit.ot.transport_simplex`'s and POT's.
"""
from __future__ import annotations

import numpy as np

from ..compiled import jit as _jit
from . import transport_simplex as _ts
from .transport_simplex import ITERATION_LIMIT, OPTIMAL, TOL_REL

#: candidate-list capacity, in cells per row
LIST_ROWS = 4

#: pricing first over each column's ``NEAR_ROWS`` (>= 2) cheapest rows (in ``C_ij - g_i``)
NEAR_ROWS = 3


@_jit(refcount=False)
def _column_gaps(C, n, m, g, low, gap):
    """``low[j] = min_i C_ij - g_i`` (so ``v_j``, the reduced costs ``C_ij - g_i - v_j >= 0``)
    and ``gap[j]``: how much more column ``j``'s second cheapest row costs (0 with one row)."""
    for j in range(m):
        low[j] = np.inf
        gap[j] = np.inf
    for i in range(n):
        gi = g[i]
        Ci = C[i]
        for j in range(m):
            c = Ci[j] - gi
            if c < low[j]:
                gap[j] = low[j]
                low[j] = c
            elif c < gap[j]:
                gap[j] = c
    for j in range(m):
        gap[j] = gap[j] - low[j] if n > 1 else 0.0


@_jit
def _column_start(C, g, a, b, n, m, order, ra, arc_r, arc_c, flow):
    """A basis tree from the reduced costs of row potentials ``g``: columns in the given
    ``order``, each shipping to its open rows cheapest first (least ``C_ij - g_i``;
    ``min(supply, demand)`` per cell, closing exactly one line per cell: a row when it runs
    out unless it is the last open row, else the column), so ``n + m - 1`` arcs. Ties:
    lowest row."""
    _column_start_near(C, g, a, b, n, m, order, ra, arc_r, arc_c, flow,
                       np.empty((0, m), dtype=np.int64))


@_jit(refcount=False)
def _column_start_near(C, g, a, b, n, m, order, ra, arc_r, arc_c, flow, near):
    """:func:`_column_start` (the same tree) given ``near (k, m)``: each column's ``k``
    cheapest rows, cheapest first (:func:`_near_cells`), looked at before all rows."""
    for i in range(n):
        ra[i] = a[i]
    rows_left = n
    k = 0
    for t in range(m):
        j = order[t]
        rb_j = b[j]
        while True:
            i = -1
            for s in range(near.shape[0]):
                if ra[near[s, j]] >= 0.0:
                    i = near[s, j]
                    break
            if i < 0:
                best = np.inf
                for r in range(n):
                    if ra[r] >= 0.0 and C[r, j] - g[r] < best:
                        best, i = C[r, j] - g[r], r
            arc_r[k], arc_c[k] = i, j
            if t == m - 1 and rows_left == 1:  # the last cell
                flow[k] = ra[i]
                return
            if rows_left > 1 and (t == m - 1 or ra[i] <= rb_j):
                flow[k] = ra[i]
                rb_j = max(rb_j - ra[i], 0.0)
                ra[i] = -1.0  # closed
                rows_left -= 1
                k += 1
            else:
                flow[k] = rb_j
                ra[i] = max(ra[i] - rb_j, 0.0)
                k += 1
                break


@_jit(refcount=False)
def _row_below(Ci, v, m, thr):
    """How many ``j < m`` have ``Ci[j] - v[j] < thr`` (branch-free, so one vectorised
    pass)."""
    k = 0
    for j in range(m):
        k += Ci[j] - v[j] < thr
    return k


@_jit
def _near_cells(C, n, m, g, k, best, val, rowptr, cols):
    """Each column's ``k`` cheapest rows in ``C_ij - g_i`` (``k <= n``), cheapest first (ties:
    lowest row first): rows ``best[:k, j]``, values ``val[:k, j]``; and the same cells as
    lists per row: row ``i``'s columns ``cols[rowptr[i]:rowptr[i + 1]]`` (ascending)."""
    for j in range(m):
        for t in range(k):
            best[t, j], val[t, j] = -1, np.inf
    for i in range(n):
        gi = g[i]
        Ci = C[i]
        for j in range(m):
            c = Ci[j] - gi
            if c < val[k - 1, j]:
                t = k - 1
                while t > 0 and val[t - 1, j] > c:
                    best[t, j], val[t, j] = best[t - 1, j], val[t - 1, j]
                    t -= 1
                best[t, j], val[t, j] = i, c
    for i in range(n + 1):
        rowptr[i] = 0
    for j in range(m):
        for t in range(k):
            rowptr[best[t, j] + 1] += 1
    for i in range(n):
        rowptr[i + 1] += rowptr[i]
    fill = rowptr[:n].copy()
    for j in range(m):
        for t in range(k):
            i = best[t, j]
            cols[fill[i]] = j
            fill[i] += 1


@_jit(refcount=False)
def _scan(C, n, m, pot, tol, cand_i, cand_j, rowptr, cols, near):
    """Pricing: cells with reduced cost below ``-tol`` into the candidate list (each row's
    others while room is left, then its most negative); returns the list's length (0 after a
    full scan: optimal). Every cell (rows with none below the threshold passed over after one
    vectorised pass), or with ``near`` only the cells of ``rowptr``, ``cols``
    (:func:`_near_cells`)."""
    v = pot[n:n + m]
    cap = min(cand_i.shape[0], LIST_ROWS * n)  # the row's own size, not its padding
    k = 0
    for i in range(n):
        Ci = C[i]
        thr = -tol + pot[i]
        if near:
            lo, hi = rowptr[i], rowptr[i + 1]
        elif _row_below(Ci, v, m, thr) == 0:
            continue
        else:
            lo, hi = 0, m
        best, arg = thr, -1
        for s in range(lo, hi):
            j = cols[s] if near else s
            d = Ci[j] - v[j]
            if d < thr:
                if d < best:
                    best, arg = d, j
                elif k < cap - n:
                    cand_i[k], cand_j[k] = i, j
                    k += 1
        if arg >= 0:
            cand_i[k], cand_j[k] = i, arg
            k += 1
    return k


@_jit(refcount=False)
def _price_list(C, n, pot, tol, cand_i, cand_j, k):
    """The most negative candidate at the current potentials (those no longer below ``-tol``
    leave the list); returns ``(i, j, k)`` with ``i = -1`` when none prices out."""
    best, bi, bj = -tol, -1, -1
    w = 0
    for s in range(k):
        i, j = cand_i[s], cand_j[s]
        d = C[i, j] - pot[i] - pot[n + j]
        if d < -tol:
            cand_i[w], cand_j[w] = i, j
            w += 1
            if d < best:
                best, bi, bj = d, i, j
    return bi, bj, w


@_jit(refcount=False)
def _pivot_listed(C, a, n, m, max_pivots, tol, bufs, ibufs, cand_i, cand_j, rowptr, cols,
                  near):
    """Pivots with candidate-list pricing from the feasible basis in ``bufs`` / ``ibufs``
    until a full scan finds no cell below ``-tol`` or ``max_pivots``; after ``n + m``
    consecutive degenerate pivots Bland's rule until a pivot moves mass. With ``near``, the
    list is refilled first from the cells of ``rowptr``, ``cols`` (:func:`_near_cells`), from a
    full scan only when none of them prices out. Returns ``(status, pivots, scans)``."""
    pot = bufs[0]
    theta_small = 1e-15 * a[:n].sum()
    status, pivots, degenerate, k, scans = OPTIMAL, 0, 0, 0, 0
    bland = False
    while True:
        if bland:
            i, j = _ts._price_bland(C, n, m, pot, tol)
        else:
            i, j, k = _price_list(C, n, pot, tol, cand_i, cand_j, k)
            if i < 0 and near:
                k = _scan(C, n, m, pot, tol, cand_i, cand_j, rowptr, cols, True)
                i, j, k = _price_list(C, n, pot, tol, cand_i, cand_j, k)
            if i < 0:
                k = _scan(C, n, m, pot, tol, cand_i, cand_j, rowptr, cols, False)
                scans += 1
                i, j, k = _price_list(C, n, pot, tol, cand_i, cand_j, k)
        if i < 0:
            break
        if pivots >= max_pivots:
            status = ITERATION_LIMIT
            break
        theta = _ts._pivot_step(C, n, m, i, j, pivots + 1, bufs, ibufs, bland)
        pivots += 1
        if theta <= theta_small:
            degenerate += 1
            bland = bland or degenerate > n + m
        else:
            degenerate = 0
            bland = False
    return status, pivots, scans


@_jit
def _solve(C, a, b, n, m, g, max_pivots, bufs, ibufs, cand_i, cand_j, plan, u, v):
    """One problem on the leading ``n x m`` block of ``C`` from row potentials ``g[:n]``
    (scratch as :func:`physkit.ot.transport_simplex._solve_rows` allocates, ``cand_i``,
    ``cand_j (LIST_ROWS n,)``). Writes ``plan[:n, :m]``, ``u[:n]``, ``v[:m]``; returns
    ``(cost, status, pivots, scans)``."""
    pot, flow, ra, rb = bufs[0], bufs[1], bufs[2], bufs[3]
    parent, parc, mark, head = ibufs[0], ibufs[1], ibufs[2], ibufs[3]
    stack, order, arc_r, arc_c = ibufs[4], ibufs[5], ibufs[6], ibufs[7]
    nxt, prv = ibufs[8], ibufs[9]
    gap = pot[:m]  # scratch until the tree's potentials are set
    near = m > n and NEAR_ROWS < n
    k = NEAR_ROWS if near else 0
    best, val = np.empty((k, m), dtype=np.int64), np.empty((k, m))
    rowptr, cols = np.empty(n + 1, dtype=np.int64), np.empty(k * m, dtype=np.int64)
    if near:
        _near_cells(C, n, m, g, k, best, val, rowptr, cols)
        for j in range(m):
            gap[j] = val[1, j] - val[0, j]
    else:
        _column_gaps(C, n, m, g, rb, gap)
    cols_order = np.argsort(-gap[:m], kind="mergesort")  # confident columns first, ties by index
    _column_start_near(C, g, a, b, n, m, cols_order, ra, arc_r, arc_c, flow, best)
    _ts._build_tree(n, m, head, nxt, prv, mark, arc_r, arc_c)
    _ts._hang(C, n, m, arc_r, arc_c, head, nxt, parent, parc, pot, stack, order, mark)
    cmax = _ts._cmax(C, n, m, rb)
    status, pivots, scans = _pivot_listed(C, a, n, m, max_pivots, TOL_REL * cmax, bufs, ibufs,
                                          cand_i, cand_j, rowptr, cols, near)
    cost = _ts._finish(C, a, b, n, m, bufs, ibufs, plan, u, v)
    return cost, status, pivots, scans


def solve_rows(C: np.ndarray, a: np.ndarray, b: np.ndarray, g: np.ndarray, start: int,
               stop: int, out: _ts.TransportSolution,
               max_pivots: int = _ts.DEFAULT_MAX_PIVOTS) -> None:
    """Solve rows ``start:stop`` of the padded batch ``C (B, N, M)``, ``a (B, N)``,
    ``b (B, M)`` from row potentials ``g (B, N)`` into the preallocated ``out``
    (:func:`physkit.ot.transport_simplex.new_solution`: plan, cost, u, v, status, pivots).
    No checks: contiguous float64 inputs, non-negative weights, every row balanced and with
    mass on both sides (callers split a batch across threads)."""
    _solve_rows(C, a, b, g, start, stop, int(max_pivots), out.plan, out.cost, out.u, out.v,
                out.status, out.pivots)


def transport_from_duals(C, a, b, g, *, max_pivots: int = _ts.DEFAULT_MAX_PIVOTS
                         ) -> _ts.TransportSolution:
    """Exact transport of ``B`` padded balanced problems ``C (B, N, M)``, ``a (B, N)``,
    ``b (B, M)`` (0 = padding) started from row potentials ``g (B, N)`` (any finite values;
    zeros: a cold start). Returns :class:`~physkit.ot.transport_simplex.TransportSolution`
    (``basis`` and ``warm`` not filled). A row's numbers depend only on that row and its
    ``g`` row."""
    C, a, b, g = _ts.check_problems("transport_from_duals", C, a, b, g)
    B, N, M = C.shape
    out = _ts.new_solution(B, N, M)
    solve_rows(C, a, b, g, 0, B, out, max_pivots)
    return out


@_jit
def _solve_rows(C, a, b, g, start, stop, max_pivots, plan, cost, u, v, status, pivots):
    """Rows ``start:stop`` of the padded batch ``C (B, N, M)``, ``a (B, N)``, ``b (B, M)``
    (zero weight = padding, dropped; rows balanced by the caller) from row potentials
    ``g (B, N)``; zero-weight entries get plan 0 and potential 0."""
    N, M = C.shape[1], C.shape[2]
    nn = N + M
    bufs, ibufs = _ts.tree_buffers(nn)
    Cw = np.empty((N, M))
    aw, bw, gw = np.empty(N), np.empty(M), np.empty(N)
    ia, ib = np.empty(N, dtype=np.int64), np.empty(M, dtype=np.int64)
    ja, jb = np.empty(N, dtype=np.int64), np.empty(M, dtype=np.int64)
    ci = np.empty(LIST_ROWS * N, dtype=np.int64)
    cj = np.empty(LIST_ROWS * N, dtype=np.int64)
    pw, uw, vw = np.empty((N, M)), np.empty(N), np.empty(M)
    for r in range(start, stop):
        n, m = _ts._gather_row(a, b, r, ia, ib, ja, jb, aw, bw)
        plan[r] = 0.0
        u[r] = 0.0
        v[r] = 0.0
        for i in range(n):
            gw[i] = g[r, ia[i]]
            for j in range(m):
                Cw[i, j] = C[r, ia[i], ib[j]]
        cost[r], status[r], pivots[r], _ = _solve(Cw, aw, bw, n, m, gw, max_pivots, bufs, ibufs,
                                                  ci, cj, pw, uw, vw)
        for i in range(n):
            u[r, ia[i]] = uw[i]
            for j in range(m):
                plan[r, ia[i], ib[j]] = pw[i, j]
        for j in range(m):
            v[r, ib[j]] = vw[j]


@_jit
def solve_one(C, a, b, g, max_pivots):
    """Test/bench entry: one dense problem ``C (n, m)`` from row potentials ``g (n,)``;
    returns ``(cost, status, pivots, scans, plan, u, v)``."""
    n, m = C.shape
    nn = n + m
    bufs, ibufs = _ts.tree_buffers(nn)
    ci, cj = np.empty(LIST_ROWS * n, dtype=np.int64), np.empty(LIST_ROWS * n, dtype=np.int64)
    plan, u, v = np.empty((n, m)), np.empty(n), np.empty(m)
    cost, status, pivots, scans = _solve(C, a, b, n, m, g, max_pivots, bufs, ibufs, ci, cj,
                                         plan, u, v)
    return cost, status, pivots, scans, plan, u, v
