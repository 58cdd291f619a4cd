"""Exact optimal transport of small dense balanced problems: a primal transportation simplex.

Problem: ``min_{P >= 0} sum_ij P_ij C_ij`` subject to ``P 1 = a``, ``P^T 1 = b`` with
``a (n,) > 0``, ``b (m,) > 0``, ``sum a = sum b`` and ``C (n, m)`` float64 (any units).

Method (numba, one compiled call per batch of rows, GIL released):

- basis: a spanning tree of ``n + m - 1`` arcs of the bipartite row/column graph
  (degenerate zero-flow basic arcs are kept), stored as linked adjacency lists plus parent
  and dual potential per node; rooted at row 0 with ``u_0 = 0``; a pivot reverses the
  parent links on one path and shifts the potentials of the subtree it moves;
- start: the least-cost (matrix-minimum) rule, which on transport between nearby point
  clouds starts close to optimal (few pivots left); or, given a basis (a warm start, e.g.
  the previous optimal tree of a problem that moved a little), that tree when it is a
  spanning tree of the problem's entries with non-negative flows for the current weights
  (only the pivots for the moved costs remain), or, when its flows went negative (moved
  weights), the least-cost rule on its reduced costs with its arcs taken first in
  leaf-elimination order (a repaired tree close to it); anything else starts cold;
- pricing: block pricing (the most negative reduced cost ``C_ij - u_i - v_j`` within a
  cyclic block of cells); the leaving arc is the last blocking arc met going round the
  cycle from its apex in the entering arc's direction;
- anti-cycling: after ``n + m`` consecutive degenerate pivots, Bland's rule (first
  improving cell, smallest blocking cell) until a pivot moves mass, so every run terminates;
- optimality: every reduced cost ``>= -tol`` with ``tol = TOL_REL * max|C|``;
- at the end the basic flows are recomputed from the tree by leaf elimination (so the
  plan's marginals are ``a`` and ``b`` to rounding) and the duals satisfy
  ``u_i + v_j = C_ij`` on the tree exactly as computed, ``<= C_ij + tol`` elsewhere.

Status codes follow POT's: :data:`OPTIMAL` (1), :data:`ITERATION_LIMIT` (3); the batch
entry point marks rows it leaves to the caller (more cells than ``max_cells``) :data:`SKIPPED`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..compiled import jit as _jit

OPTIMAL = 1
ITERATION_LIMIT = 3
SKIPPED = -1
#: how a row started (``TransportSolution.warm``): least-cost rule, the given basis, or the
#: least-cost rule on the reduced costs of the given (spanning but infeasible) basis
COLD, WARM, CRASH = 0, 1, 2
#: reduced costs above ``-TOL_REL * max|C|`` count as non-negative (optimality test)
TOL_REL = 1e-13
#: default cap on pivots per problem
DEFAULT_MAX_PIVOTS = 10_000_000
# The kernels below that allocate nothing are compiled without numba's reference counting
# (``jit(refcount=False)``): they are called per pivot / per tree node with array arguments, and the
# counts on each call cost more than the arithmetic (20x for the tree's list links). Same code,
# same numbers.


# ------------------------------------------------------------------ tree bookkeeping
@_jit(refcount=False)
def _link(h, node, head, nxt, prv):
    """Push half-edge ``h`` onto ``node``'s adjacency list."""
    nxt[h] = head[node]
    prv[h] = -1
    if head[node] >= 0:
        prv[head[node]] = h
    head[node] = h


@_jit(refcount=False)
def _unlink(h, node, head, nxt, prv):
    """Remove half-edge ``h`` from ``node``'s adjacency list."""
    if prv[h] >= 0:
        nxt[prv[h]] = nxt[h]
    else:
        head[node] = nxt[h]
    if nxt[h] >= 0:
        prv[nxt[h]] = prv[h]


# ------------------------------------------------------------------ start
@_jit(refcount=False)
def _row_min(C, i, m, colpen):
    """Cheapest open column of row ``i`` and its cost (``colpen``: 0 open, inf closed)."""
    best, arg = np.inf, -1
    Ci = C[i]
    for j in range(m):
        c = Ci[j] + colpen[j]
        if c < best:
            best, arg = c, j
    return arg, best


@_jit(refcount=False)
def _least_cost_start(C, a, b, n, m, rmin, ra, rb, rv, colpen, arc_r, arc_c, flow):
    """Matrix-minimum rule: repeatedly take the cheapest cell of the open rows and columns
    (each row caches its cheapest open column ``rmin`` and cost ``rv``, inf once closed),
    ship ``min(supply, demand)`` and close exactly one line (the last row / column stays
    open until the final cell), which yields a spanning tree of ``n + m - 1`` arcs.
    Ties: lowest row, then lowest column."""
    for i in range(n):
        ra[i] = a[i]
    for j in range(m):
        rb[j] = b[j]
        colpen[j] = 0.0
    for i in range(n):
        rmin[i], rv[i] = _row_min(C, i, m, colpen)
    rows_left, cols_left = n, m
    last = n + m - 2
    for k in range(last + 1):
        best, i = np.inf, -1
        for r in range(n):
            if rv[r] < best:
                best, i = rv[r], r
        j = rmin[i]
        arc_r[k] = i
        arc_c[k] = j
        if k == last:
            flow[k] = ra[i]
        elif rows_left > 1 and (cols_left == 1 or ra[i] <= rb[j]):
            flow[k] = ra[i]
            rb[j] = max(rb[j] - ra[i], 0.0)
            ra[i] = 0.0
            rv[i] = np.inf
            rows_left -= 1
        else:
            flow[k] = rb[j]
            ra[i] = max(ra[i] - rb[j], 0.0)
            rb[j] = 0.0
            colpen[j] = np.inf
            cols_left -= 1
            for r in range(n):
                if rmin[r] == j and rv[r] < np.inf:
                    rmin[r], rv[r] = _row_min(C, r, m, colpen)


# ------------------------------------------------------------------ pricing
@_jit(refcount=False)
def _price_block(C, n, m, pot, row, block_rows, tol):
    """Block pricing by rows from row ``row``: the most negative reduced cost
    ``C_ij - u_i - v_j`` within the first block of ``block_rows`` rows (cyclically) that
    holds one below ``-tol``. Returns ``(i, j, next_row)``, ``i = -1`` when no cell prices
    out (optimal)."""
    v = pot[n:n + m]
    best = -tol
    bi, bj = -1, -1
    inblock = 0
    for _ in range(n):
        ui = pot[row]
        Ci = C[row]
        rbest, rj = np.inf, -1
        for j in range(m):
            d = Ci[j] - v[j]
            if d < rbest:
                rbest, rj = d, j
        if rbest - ui < best:
            best, bi, bj = rbest - ui, row, rj
        row += 1
        if row == n:
            row = 0
        inblock += 1
        if inblock == block_rows:
            if bi >= 0:
                break
            inblock = 0
    return bi, bj, row


@_jit(refcount=False)
def _price_bland(C, n, m, pot, tol):
    """Bland's rule: the first cell (row-major) with reduced cost below ``-tol``."""
    for i in range(n):
        for j in range(m):
            if C[i, j] - pot[i] - pot[n + j] < -tol:
                return i, j
    return -1, -1


# ------------------------------------------------------------------ pivot
@_jit(refcount=False)
def _apex(p, q, parent, mark, stamp):
    """Join of the tree paths from ``p`` and ``q`` to the root: walk up from both in turn,
    marking nodes ``2 stamp`` (``p``'s side) / ``2 stamp + 1``, until one side meets a node
    the other marked."""
    sp, sq = 2 * stamp, 2 * stamp + 1
    mark[p], mark[q] = sp, sq
    x, y = p, q
    while True:
        if parent[x] >= 0:
            x = parent[x]
            if mark[x] == sq:
                return x
            mark[x] = sp
        if parent[y] >= 0:
            y = parent[y]
            if mark[y] == sp:
                return y
            mark[y] = sq


@_jit(refcount=False)
def _ratio_test(p, q, apex, n, m, arc_r, arc_c, flow, parent, parc, bland):
    """Walk the cycle closed by the entering arc (row ``p`` -> column node ``q``) up to its
    apex. Returns ``(theta, leaving arc, leaving on p's side, the leaving arc's lower
    node)``: ``theta`` is the least flow among the arcs the pivot decreases (column nodes'
    parent arcs on ``q``'s side, row nodes' on ``p``'s side). Ties: the last blocking arc
    from the apex in the entering arc's direction, or with ``bland`` the smallest cell."""
    tp, tq = np.inf, np.inf
    kp, kq, wp, wq = -1, -1, -1, -1
    x = p
    while x != apex:
        if x < n:
            k = parc[x]
            f = flow[k]
            if f < tp or (bland and f == tp and
                          arc_r[k] * m + arc_c[k] < arc_r[kp] * m + arc_c[kp]):
                tp, kp, wp = f, k, x
        x = parent[x]
    y = q
    while y != apex:
        if y >= n:
            k = parc[y]
            f = flow[k]
            if f < tq or (f == tq and (not bland or
                                       arc_r[k] * m + arc_c[k] < arc_r[kq] * m + arc_c[kq])):
                tq, kq, wq = f, k, y
        y = parent[y]
    if kp < 0:
        return tq, kq, False, wq
    if kq < 0:
        return tp, kp, True, wp
    if bland and tp == tq:
        if arc_r[kp] * m + arc_c[kp] < arc_r[kq] * m + arc_c[kq]:
            return tp, kp, True, wp
        return tq, kq, False, wq
    if tq <= tp:
        return tq, kq, False, wq
    return tp, kp, True, wp


@_jit(refcount=False)
def _push(p, q, apex, theta, n, flow, parent, parc):
    """Move ``theta`` round the cycle: ``-theta`` on the decreasing arcs, ``+theta`` on the
    others (the entering arc is set by the caller)."""
    x = p
    while x != apex:
        if x < n:
            flow[parc[x]] -= theta
        else:
            flow[parc[x]] += theta
        x = parent[x]
    y = q
    while y != apex:
        if y >= n:
            flow[parc[y]] -= theta
        else:
            flow[parc[y]] += theta
        y = parent[y]


@_jit(refcount=False)
def _reroot(s, t, k, w, parent, parc):
    """The detached subtree (below the leaving arc, whose lower node is ``w``) hangs from
    ``t`` through arc ``k`` at ``s``: reverse the parent links on the path ``s`` .. ``w``."""
    x, prev, prev_arc = s, t, k
    while True:
        nx, na = parent[x], parc[x]
        parent[x], parc[x] = prev, prev_arc
        if x == w:
            return
        prev, prev_arc, x = x, na, nx


@_jit(refcount=False)
def _shift(s, k, n, sigma, head, nxt, arc_r, arc_c, pot, stack, via):
    """Add ``sigma`` to the row potentials and ``-sigma`` to the column potentials of the
    subtree reached from ``s`` without crossing arc ``k`` (depth first)."""
    top = 0
    stack[0], via[0] = s, k
    while top >= 0:
        x, kx = stack[top], via[top]
        top -= 1
        pot[x] += sigma if x < n else -sigma
        h = head[x]
        while h >= 0:
            kk = h >> 1
            if kk != kx:
                top += 1
                stack[top] = n + arc_c[kk] if (h & 1) == 0 else arc_r[kk]
                via[top] = kk
            h = nxt[h]


# ------------------------------------------------------------------ warm start
@_jit(refcount=False)
def _build_tree(n, m, head, nxt, prv, mark, arc_r, arc_c):
    """Adjacency lists of the ``n + m - 1`` arcs in ``arc_r``, ``arc_c``; clears ``mark``."""
    for x in range(n + m):
        head[x] = -1
        mark[x] = 0
    for h in range(2 * (n + m - 1)):  # _link, inline (each half-edge onto its node's list)
        k = h >> 1
        node = arc_r[k] if (h & 1) == 0 else n + arc_c[k]
        first = head[node]
        nxt[h], prv[h] = first, -1
        if first >= 0:
            prv[first] = h
        head[node] = h


@_jit(refcount=False)
def _hang(C, n, m, arc_r, arc_c, head, nxt, parent, parc, pot, stack, order, mark):
    """Root the arcs' graph at row 0 (``u_0 = 0``), depth-first: parent, parent arc and
    potential (``u_r + v_c = C_rc`` on every tree arc) of each node reached, the visit order
    in ``order``. Returns the number of nodes reached (``n + m`` iff the ``n + m - 1`` arcs
    form a spanning tree), or -1 at the first node met twice (a cycle). ``mark`` is scratch,
    all 0 on return."""
    for x in range(n + m):
        mark[x] = 0
    parent[0], parc[0], pot[0] = -1, -1, 0.0
    top, count = 0, 0
    stack[0] = 0
    mark[0] = 1
    while top >= 0:
        x = stack[top]
        top -= 1
        order[count] = x
        count += 1
        h = head[x]
        while h >= 0:
            kk = h >> 1
            if kk != parc[x]:
                y = n + arc_c[kk] if (h & 1) == 0 else arc_r[kk]
                if mark[y]:
                    count = -1
                    top = -1
                    break
                mark[y] = 1
                parent[y] = x
                parc[y] = kk
                pot[y] = C[arc_r[kk], arc_c[kk]] - pot[x]
                top += 1
                stack[top] = y
            h = nxt[h]
    for x in range(n + m):
        mark[x] = 0
    return count


@_jit(refcount=False)
def _tree_start(C, a, b, n, m, bufs, ibufs):
    """Start from the arcs in ``arc_r``, ``arc_c`` (working indices, checked in range by the
    caller): adjacency, rooting and potentials, then the tree's unique flows for ``a``, ``b``
    by leaf elimination. Returns :data:`WARM` if the arcs form a spanning tree whose flows
    are all ``>= -1e-13 sum(a)`` (primal feasible; tiny negatives are set to 0, the final
    flows are recomputed by :func:`_finish` anyway), :data:`CRASH` if they form a spanning
    tree that is not feasible (its potentials for ``C`` are left in ``bufs[0]``),
    :data:`COLD` otherwise."""
    pot, flow, rem = bufs[0], bufs[1], bufs[2]
    parent, parc, mark, head = ibufs[0], ibufs[1], ibufs[2], ibufs[3]
    stack, order, arc_r, arc_c = ibufs[4], ibufs[5], ibufs[6], ibufs[7]
    nxt, prv = ibufs[8], ibufs[9]
    nn = n + m
    _build_tree(n, m, head, nxt, prv, mark, arc_r, arc_c)
    count = _hang(C, n, m, arc_r, arc_c, head, nxt, parent, parc, pot, stack, order, mark)
    if count != nn:
        return COLD
    if not _tree_flows(a, b, n, m, count, order, parent, parc, rem, flow, -1e-13 * a[:n].sum()):
        return CRASH
    return WARM


@_jit(refcount=False)
def _tree_flows(a, b, n, m, count, order, parent, parc, rem, flow, ftol):
    """The tree's unique flows for the marginals ``a``, ``b`` by leaf elimination (children
    before parents: ``order`` reversed), each clamped at 0, into ``flow`` (``rem`` scratch).
    Returns False at the first flow below ``ftol`` (the tree is not primal feasible)."""
    for x in range(n):
        rem[x] = a[x]
    for j in range(m):
        rem[n + j] = b[j]
    for t in range(count - 1, 0, -1):
        x = order[t]
        f = rem[x]
        if f < ftol:
            return False
        flow[parc[x]] = f if f > 0.0 else 0.0
        rem[parent[x]] -= f
    return True


@_jit(refcount=False)
def _crash_costs(C, n, m, pot, parc, order, arc_r, arc_c, Cr):
    """Costs for a least-cost start that repairs an infeasible tree: the reduced costs
    ``C_ij - u_i - v_j`` of the tree's potentials off the tree (a feasible plan's cost
    changes by the constant ``sum u a + sum v b`` only), and on the tree values below all
    of them, increasing in leaf-elimination order (children before parents). The rule then
    ships along the tree from its leaves as leaf elimination would, and where a flow would
    go negative it closes the other line and sends the rest to the cheapest cell off the
    tree."""
    top = 0.0
    for i in range(n):
        for j in range(m):
            d = C[i, j] - pot[i] - pot[n + j]
            Cr[i, j] = d
            top = max(top, abs(d))
    nn = n + m
    low = -2.0 * (top + nn) - 1.0
    for t in range(nn - 1, 0, -1):
        k = parc[order[t]]
        Cr[arc_r[k], arc_c[k]] = low + (nn - 1 - t)


# ------------------------------------------------------------------ one problem
@_jit(refcount=False)
def _cmax(C, n, m, acc):
    """``max |C_ij|`` over the leading ``n x m`` block (the optimality tolerance's scale);
    ``acc (>= m,)`` scratch: column maxima, one vectorised pass per row."""
    for j in range(m):
        acc[j] = 0.0
    for i in range(n):
        Ci = C[i]
        for j in range(m):
            c = abs(Ci[j])
            acc[j] = c if c > acc[j] else acc[j]
    cmax = 0.0
    for j in range(m):
        cmax = max(cmax, acc[j])
    return cmax


@_jit(refcount=False)
def _solve(C, a, b, n, m, max_pivots, block, tol_rel, stall, bufs, ibufs, plan, u, v, warm,
           Cr):
    """Solve one problem on the leading ``n x m`` block of ``C``; ``bufs`` / ``ibufs`` are
    scratch arrays sized for the batch's largest problem; after more than ``stall``
    consecutive degenerate pivots (``stall < 0``: ``n + m``) Bland's rule. With ``warm``
    the ``n + m - 1`` arcs already in ``arc_r`` / ``arc_c`` (``ibufs[6:8]``) are tried as
    the starting basis (:func:`_tree_start`); if they form a spanning tree that is not
    primal feasible, the least-cost start runs on :func:`_crash_costs` (in the scratch
    ``Cr``); else on ``C``. Writes ``plan[:n, :m]``, ``u[:n]``, ``v[:m]``; returns
    ``(cost, status, pivots, start)`` (:data:`COLD`, :data:`WARM`, :data:`CRASH`); the
    final basis is left in ``arc_r``, ``arc_c``."""
    status, pivots, start = _pivots(C, a, b, n, m, max_pivots, block,
                                    tol_rel * _cmax(C, n, m, v), stall, bufs, ibufs, warm, Cr)
    return _finish(C, a, b, n, m, bufs, ibufs, plan, u, v), status, pivots, start


@_jit(refcount=False)
def solve_lean(C, a, b, n, m, max_pivots, block, tol, stall, bufs, ibufs, warm, Cr):
    """:func:`_solve` for callers that read the basis, not the dense plan or the duals: the
    same start, pivots and optimum, with the optimality tolerance ``tol`` given (absolute,
    :data:`TOL_REL` times ``max|C|``, e.g. found while the caller built ``C``: no pass for
    it) and no dense plan. Returns ``(cost, status, pivots, start)``, ``cost`` equal bit for
    bit to :func:`_solve`'s; the final basis is left in ``arc_r``, ``arc_c``
    (``ibufs[6:8]``), its flows (leaf elimination, as :func:`_finish`) in ``bufs[1]``, the
    tree's potentials ``u``, ``v`` in ``bufs[0][:n]``, ``bufs[0][n:n + m]``."""
    status, pivots, start = _pivots(C, a, b, n, m, max_pivots, block, tol, stall, bufs, ibufs,
                                    warm, Cr)
    if not (pivots == 0 and start == WARM):  # else the start's tree, flows, potentials stand
        _tree_basics(C, a, b, n, m, bufs, ibufs)
    cost = 0.0
    flow, arc_r, arc_c = bufs[1], ibufs[6], ibufs[7]
    for k in range(n + m - 1):
        cost += flow[k] * C[arc_r[k], arc_c[k]]
    return cost, status, pivots, start


@_jit(refcount=False)
def _pivots(C, a, b, n, m, max_pivots, block, tol, stall, bufs, ibufs, warm, Cr):
    """The start and the pivots of :func:`_solve` (optimality: every reduced cost
    ``>= -tol``); returns ``(status, pivots, start)``, the basis in ``arc_r``, ``arc_c``, its
    (unrecomputed) flows in ``bufs[1]``."""
    nn = n + m
    pot, flow, ra, rb = bufs[0], bufs[1], bufs[2], bufs[3]
    parent, parc, mark, head = ibufs[0], ibufs[1], ibufs[2], ibufs[3]
    stack, order, arc_r, arc_c = ibufs[4], ibufs[5], ibufs[6], ibufs[7]
    nxt, prv = ibufs[8], ibufs[9]
    start = _tree_start(C, a, b, n, m, bufs, ibufs) if warm else COLD
    if start != WARM:
        Cs = C
        if start == CRASH:
            _crash_costs(C, n, m, pot, parc, order, arc_r, arc_c, Cr)
            Cs = Cr
        _least_cost_start(Cs, a, b, n, m, ibufs[4], ra, rb, pot[:n], pot[n:nn], arc_r, arc_c,
                          flow)
        _build_tree(n, m, head, nxt, prv, mark, arc_r, arc_c)
        _hang(C, n, m, arc_r, arc_c, head, nxt, parent, parc, pot, stack, order, mark)
    status, pivots = _pivot(C, a, n, m, max_pivots, block, tol, stall, bufs, ibufs)
    return status, pivots, start


@_jit(refcount=False)
def _pivot(C, a, n, m, max_pivots, block, tol, stall, bufs, ibufs):
    """Simplex pivots from the primal feasible basis held in ``bufs`` / ``ibufs`` (tree,
    potentials, flows: :func:`_hang` and :func:`_tree_flows` done) until every reduced cost is
    ``>= -tol`` or ``max_pivots``; after more than ``stall`` consecutive degenerate
    pivots (``stall < 0``: ``n + m``) Bland's rule. Returns ``(status, pivots)``."""
    nn = n + m
    pot = bufs[0]
    theta_small = 1e-15 * (a[:n].sum())
    status, pivots, degenerate, cursor = OPTIMAL, 0, 0, 0
    block_rows = max(1, (block + m - 1) // m)
    bland = False
    if stall < 0:
        stall = nn
    while True:
        if bland:
            i, j = _price_bland(C, n, m, pot, tol)
        else:
            i, j, cursor = _price_block(C, n, m, pot, cursor, block_rows, tol)
        if i < 0:
            break
        if pivots >= max_pivots:
            status = ITERATION_LIMIT
            break
        theta = _pivot_step(C, n, m, i, j, pivots + 1, bufs, ibufs, bland)
        pivots += 1
        if theta <= theta_small:
            degenerate += 1
            bland = bland or degenerate > stall
        else:
            degenerate = 0
            bland = False
    return status, pivots


@_jit(refcount=False)
def _pivot_step(C, n, m, i, j, stamp, bufs, ibufs, bland):
    """One pivot: cell ``(i, j)`` (negative reduced cost) enters the basis held in ``bufs`` /
    ``ibufs``, the blocking arc leaves (:func:`_ratio_test`), flows and potentials follow;
    ``stamp``: a number not used before in this solve (marks of :func:`_apex`). Returns the
    mass moved."""
    pot, flow = bufs[0], bufs[1]
    parent, parc, mark, head = ibufs[0], ibufs[1], ibufs[2], ibufs[3]
    stack, order, arc_r, arc_c = ibufs[4], ibufs[5], ibufs[6], ibufs[7]
    nxt, prv = ibufs[8], ibufs[9]
    p, q = i, n + j
    d = C[i, j] - pot[p] - pot[q]
    apex = _apex(p, q, parent, mark, stamp)
    theta, kl, on_p, w = _ratio_test(p, q, apex, n, m, arc_r, arc_c, flow, parent, parc,
                                     bland)
    if theta > 0.0:
        _push(p, q, apex, theta, n, flow, parent, parc)
    _unlink(2 * kl, arc_r[kl], head, nxt, prv)
    _unlink(2 * kl + 1, n + arc_c[kl], head, nxt, prv)
    arc_r[kl], arc_c[kl], flow[kl] = i, j, theta
    _link(2 * kl, i, head, nxt, prv)
    _link(2 * kl + 1, q, head, nxt, prv)
    if on_p:
        _reroot(p, q, kl, w, parent, parc)
        _shift(p, kl, n, d, head, nxt, arc_r, arc_c, pot, stack, order)
    else:
        _reroot(q, p, kl, w, parent, parc)
        _shift(q, kl, n, -d, head, nxt, arc_r, arc_c, pot, stack, order)
    return theta


@_jit(refcount=False)
def _tree_basics(C, a, b, n, m, bufs, ibufs):
    """Re-root the final basis (potentials from ``u_0 = 0`` into ``bufs[0]``) and its flows
    by leaf elimination (children before parents) into ``bufs[1]``."""
    pot, flow, rem = bufs[0], bufs[1], bufs[2]
    parent, parc, mark, head = ibufs[0], ibufs[1], ibufs[2], ibufs[3]
    stack, order, arc_r, arc_c, nxt = ibufs[4], ibufs[5], ibufs[6], ibufs[7], ibufs[8]
    count = _hang(C, n, m, arc_r, arc_c, head, nxt, parent, parc, pot, stack, order, mark)
    _tree_flows(a, b, n, m, count, order, parent, parc, rem, flow, -np.inf)


@_jit(refcount=False)
def _finish(C, a, b, n, m, bufs, ibufs, plan, u, v):
    """Basic flows by leaf elimination (children before parents), then plan, duals, cost."""
    pot, flow, arc_r, arc_c = bufs[0], bufs[1], ibufs[6], ibufs[7]
    _tree_basics(C, a, b, n, m, bufs, ibufs)
    for i in range(n):
        for j in range(m):
            plan[i, j] = 0.0
    cost = 0.0
    for k in range(n + m - 1):
        plan[arc_r[k], arc_c[k]] = flow[k]
        cost += flow[k] * C[arc_r[k], arc_c[k]]
    for i in range(n):
        u[i] = pot[i]
    for j in range(m):
        v[j] = pot[n + j]
    return cost


# ------------------------------------------------------------------ batch
@_jit(refcount=False)
def _load_basis(basis, r, n, m, ja, jb, arc_r, arc_c):
    """Row ``r`` of ``basis (B, L, 2)`` (padded (row, column) pairs, -1 = none) as working
    indices into ``arc_r``, ``arc_c``. True if it holds exactly ``n + m - 1`` arcs, all
    between entries of positive weight (``ja``, ``jb``: padded -> working index, -1 for
    zero weight); False otherwise (start cold)."""
    L = basis.shape[1]
    na = n + m - 1
    if L < na or (L > na and basis[r, na, 0] >= 0):
        return False
    N, M = ja.shape[0], jb.shape[0]
    for k in range(na):
        i, j = basis[r, k, 0], basis[r, k, 1]
        if i < 0 or i >= N or j < 0 or j >= M or ja[i] < 0 or jb[j] < 0:
            return False
        arc_r[k], arc_c[k] = ja[i], jb[j]
    return True


@_jit(refcount=False)
def _gather_row(a, b, r, ia, ib, ja, jb, aw, bw):
    """Positive-weight entries of row ``r``: working -> padded (``ia``, ``ib``) and
    padded -> working (``ja``, ``jb``, -1 for zero weight) maps, weights ``aw``, ``bw``;
    returns ``(n, m)``."""
    n, m = 0, 0
    for i in range(a.shape[1]):
        ja[i] = -1
        if a[r, i] > 0.0:
            ia[n], ja[i], aw[n] = i, n, a[r, i]
            n += 1
    for j in range(b.shape[1]):
        jb[j] = -1
        if b[r, j] > 0.0:
            ib[m], jb[j], bw[m] = j, m, b[r, j]
            m += 1
    return n, m


@_jit
def tree_buffers(nn):
    """Scratch arrays of one solve of up to ``nn = n + m`` nodes: ``bufs (4, nn)`` float64
    (potentials, flows, work) and ``ibufs (10, 2 nn)`` int64 (tree, arcs, lists)."""
    return np.empty((4, nn)), np.empty((10, max(2 * nn, 1)), dtype=np.int64)


def check_problems(name: str, C, a, b, *extra):
    """``C (B, N, M)``, ``a (B, N)``, ``b (B, M)`` (and ``extra`` arrays, each ``(B, N)``) as
    contiguous float64, checked: finite, non-negative weights, every row with equal positive
    masses; ``ValueError`` naming ``name`` otherwise."""
    C, a, b = (np.ascontiguousarray(t, dtype=np.float64) for t in (C, a, b))
    extra = tuple(np.ascontiguousarray(t, dtype=np.float64) for t in extra)
    shape = C.shape if C.ndim == 3 else (None, None, None)
    B, N, M = shape
    if C.ndim != 3 or a.shape != (B, N) or b.shape != (B, M) or \
            any(t.shape != (B, N) for t in extra):
        shapes = f"C {C.shape}, a {a.shape}, b {b.shape}" + "".join(
            f", {t.shape}" for t in extra)
        raise ValueError(f"{name}: shapes {shapes} do not match (B, N, M), (B, N), (B, M)"
                         + ", (B, N)" * len(extra))
    if not all(np.isfinite(t).all() for t in (C, a, b) + extra):
        what = "cost, weight or potential" if extra else "cost or weight"
        raise ValueError(f"{name}: non-finite {what}")
    if (a < 0).any() or (b < 0).any():
        raise ValueError(f"{name}: negative weight")
    sa, sb = a.sum(1), b.sum(1)
    if ((sa <= 0) | (sb <= 0)).any() or (np.abs(sa - sb) > 1e-12 * np.maximum(sa, sb)).any():
        raise ValueError(f"{name}: every row needs equal positive masses (sum a = sum b > 0)")
    return (C, a, b) + extra


@_jit
def _solve_rows(C, a, b, start, stop, max_cells, max_pivots, block, tol_rel, stall,
                plan, cost, u, v, status, pivots, basis_in, use_basis, basis_out, warm):
    """Rows ``start:stop`` of a padded batch ``C (B, N, M)``, ``a (B, N)``, ``b (B, M)``
    (zero weight = padding, dropped; each row balanced by the caller). Rows with more than
    ``max_cells`` real cells get ``status = SKIPPED``. Zero-weight entries get plan 0 and
    potential 0. With ``use_basis``, row ``r`` tries ``basis_in[r]`` as its start. Writes the
    final basis (padded pairs, -1 beyond ``n + m - 1`` and on skipped rows) into
    ``basis_out (B, N + M - 1, 2)`` and how the row started (:func:`_solve`) into ``warm``."""
    N, M = C.shape[1], C.shape[2]
    nn = N + M
    bufs, ibufs = tree_buffers(nn)
    Cw, Cr = np.empty((N, M)), np.empty((N, M))
    aw, bw = np.empty(N), np.empty(M)
    ia, ib = np.empty(N, dtype=np.int64), np.empty(M, dtype=np.int64)
    ja, jb = np.empty(N, dtype=np.int64), np.empty(M, dtype=np.int64)
    pw, uw, vw = np.empty((N, M)), np.empty(N), np.empty(M)
    for r in range(start, stop):
        n, m = _gather_row(a, b, r, ia, ib, ja, jb, aw, bw)
        plan[r] = 0.0
        u[r] = 0.0
        v[r] = 0.0
        basis_out[r] = -1
        warm[r] = COLD
        if n * m > max_cells:
            status[r] = SKIPPED
            continue
        for i in range(n):
            for j in range(m):
                Cw[i, j] = C[r, ia[i], ib[j]]
        given = use_basis and _load_basis(basis_in, r, n, m, ja, jb, ibufs[6], ibufs[7])
        cost[r], status[r], pivots[r], warm[r] = _solve(Cw, aw, bw, n, m, max_pivots, block,
                                                        tol_rel, stall, bufs, ibufs, pw, uw,
                                                        vw, given, Cr)
        for k in range(n + m - 1):
            basis_out[r, k, 0], basis_out[r, k, 1] = ia[ibufs[6, k]], ib[ibufs[7, k]]
        for i in range(n):
            u[r, ia[i]] = uw[i]
            for j in range(m):
                plan[r, ia[i], ib[j]] = pw[i, j]
        for j in range(m):
            v[r, ib[j]] = vw[j]


class TransportSolution(NamedTuple):
    """Result of :func:`transport_simplex` (one problem: no batch axis) or
    :func:`transport_simplex_batch` (leading batch axis ``B``).

    plan ``(B, N, M)``; cost ``(B,)`` = ``sum plan * C``; u ``(B, N)``, v ``(B, M)``: dual
    potentials, ``u_i + v_j <= C_ij + tol`` with equality on the basis (which holds the
    plan's support), 0 at zero-weight entries; status ``(B,)`` (:data:`OPTIMAL`,
    :data:`ITERATION_LIMIT` or :data:`SKIPPED`); pivots ``(B,)``; basis ``(B, N + M - 1, 2)``
    int64: the final basis as (row, column) pairs of padded indices, ``n + m - 1`` of them
    (``n``, ``m``: positive weights), the rest and skipped rows -1 (a warm start for the next
    solve); warm ``(B,)`` int8: how the row started: :data:`COLD` (least-cost rule),
    :data:`WARM` (the given basis) or :data:`CRASH` (least-cost rule on the reduced costs of
    the given basis, which was a spanning tree but not primal feasible).
    """

    plan: np.ndarray
    cost: np.ndarray
    u: np.ndarray
    v: np.ndarray
    status: np.ndarray
    pivots: np.ndarray
    basis: np.ndarray | None = None
    warm: np.ndarray | None = None


def new_solution(B: int, N: int, M: int) -> TransportSolution:
    """An uninitialised :class:`TransportSolution` for ``B`` problems padded to ``N x M``."""
    return TransportSolution(np.empty((B, N, M)), np.zeros(B), np.empty((B, N)),
                             np.empty((B, M)), np.empty(B, dtype=np.int64),
                             np.zeros(B, dtype=np.int64),
                             np.full((B, max(N + M - 1, 0), 2), -1, dtype=np.int64),
                             np.zeros(B, dtype=np.int8))


def check_basis(basis, B: int) -> np.ndarray | None:
    """``basis`` as a contiguous int64 ``(B, L, 2)`` array (None stays None); ValueError on
    another shape. Its contents are not checked: a row's basis that is not a spanning tree
    of that row's positive-weight entries, or not primal feasible, is ignored (cold start)."""
    if basis is None:
        return None
    basis = np.ascontiguousarray(basis, dtype=np.int64)
    if basis.ndim != 3 or basis.shape[0] != B or basis.shape[2] != 2:
        raise ValueError(f"basis must be (B, L, 2) = ({B}, L, 2) (row, column) pairs, "
                         f"got shape {basis.shape}")
    return basis


def default_block(n: int, m: int) -> int:
    """Pricing block (cells, rounded up to whole rows): ``max(128, sqrt(n m))``."""
    return max(128, int(np.sqrt(n * m)))


def transport_simplex_batch(C, a, b, *, max_cells: int | None = None,
                            max_pivots: int = DEFAULT_MAX_PIVOTS, block: int | None = None,
                            stall: int | None = None, basis=None) -> TransportSolution:
    """Exact transport of ``B`` padded balanced problems, one compiled call (GIL released).

    Parameters
    ----------
    C : ``(B, N, M)`` finite costs. a : ``(B, N)``, b : ``(B, M)``: non-negative weights,
        0 = padding (dropped); ``sum a = sum b`` per row (to rounding; the plan's marginals
        are exact on ``a``'s side, the rounding residue lands on the tree's root).
    max_cells : rows with more real cells (``n * m``) are left (``status = SKIPPED``).
    max_pivots : pivot cap per row (``status = ITERATION_LIMIT`` when reached).
    block : pricing block in cells (default :func:`default_block` of the padded shape).
    stall : consecutive degenerate pivots after which Bland's rule takes over until a pivot
        moves mass (default ``n + m``; 0: Bland after every degenerate pivot).
    basis : optional warm start ``(B, L, 2)`` int: per row ``n + m - 1`` (row, column) pairs
        of padded indices followed by -1 (e.g. a previous solution's ``basis``). A row starts
        from it if the pairs form a spanning tree of its positive-weight entries whose flows
        for this ``a``, ``b`` are non-negative (to ``1e-13 sum a``); otherwise (or for a row
        of -1) from the least-cost rule.

    A row's numbers depend only on that row and its basis (not on the batch or padding).
    """
    C, a, b = check_problems("transport_simplex_batch", C, a, b)
    B, N, M = C.shape
    basis = check_basis(basis, B)
    out = new_solution(B, N, M)
    cells = N * M if max_cells is None else int(max_cells)
    blk = default_block(N, M) if block is None else int(block)
    solve_rows(C, a, b, 0, B, cells, max_pivots, blk, out, -1 if stall is None else int(stall),
               basis)
    return out


_NO_BASIS = np.full((1, 1, 2), -1, dtype=np.int64)


def solve_rows(C, a, b, start: int, stop: int, max_cells: int, max_pivots: int, block: int,
               out: TransportSolution, stall: int = -1, basis: np.ndarray | None = None
               ) -> None:
    """Solve rows ``start:stop`` into the preallocated ``out`` (:func:`new_solution`; no
    checks: contiguous float64 inputs, balanced rows, ``basis`` None or from
    :func:`check_basis`; for callers that split a batch across threads)."""
    _solve_rows(C, a, b, start, stop, max_cells, max_pivots, block, TOL_REL, stall, out.plan,
                out.cost, out.u, out.v, out.status, out.pivots,
                _NO_BASIS if basis is None else basis, basis is not None, out.basis, out.warm)


def transport_simplex(a, b, C, *, max_pivots: int = DEFAULT_MAX_PIVOTS,
                      block: int | None = None, stall: int | None = None,
                      basis=None) -> TransportSolution:
    """Exact transport of one balanced problem ``a (n,)``, ``b (m,)``, ``C (n, m)``
    (zero weights dropped; ``basis (L, 2)``: optional warm start, see
    :func:`transport_simplex_batch`); :class:`TransportSolution` without the batch axis."""
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError(f"transport_simplex: C must be (n, m), got shape {C.shape}")
    blk = default_block(*C.shape) if block is None else block
    res = transport_simplex_batch(C[None], np.asarray(a)[None], np.asarray(b)[None],
                                  max_pivots=max_pivots, block=blk, stall=stall,
                                  basis=None if basis is None else np.asarray(basis)[None])
    return TransportSolution(*(t[0] for t in res))
