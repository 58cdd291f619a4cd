"""The exact point path's per-jet search, compiled (numba): the CPU engine of
:mod:`shaper.points`.

:func:`fit_jets` runs, for each jet of a chunk (or of one thread's share of it) in one
compiled call, the whole search of :func:`shaper.points.fit_points` for one ``n``: the
structured starts (exclusive-kT axes, their winner-take-all particles, the ``n + 1`` kT axes
less one, the ``(n-1)`` optimum with one centre split along a principal axis of its particles,
the ``(n-1)`` optimum plus its costliest particle), a loose Lloyd / Weiszfeld search
from each, the k-median local search (best-gain add moves on the ``(n-1)`` optimum, swap moves),
optional perturbed restarts, a tight polish with Newton and snap steps, and the exact report:
the least value among the polished rows, the kT axes and the ``(n-1)`` axes plus the costliest
particle (so it never exceeds the kT-axes value nor tau_(n-1)).

Differences from the torch engine (:mod:`shaper.lloyd`): the split starts (this engine's only);
the loose search's sums and the candidates' gains are float32 passes (vectorised, reassociated
(fastmath) sums over whole 8-particle vectors: they only rank starts and accept steps), the
centres, the polish and the report float64; a particle counts in its first nearest centre only;
the pull and Hessian sums are taken on wrapped azimuth differences for every particle (so they
hold across phi = pi); a start equal to one searched before is skipped; a cluster of one
particle snaps onto it; for n = 1 the kT axis is the only start where the value has one minimum
(:func:`_one_basin`). The reported value is recomputed particle by particle in order
(:func:`value`). Each jet is computed alone, with the same code whatever its neighbours, so its
numbers do not depend on the other jets of the call nor on the thread split.

Conventions: ``x (B, M, 2)`` particle (y, phi) in the jet's centred frame, real particles first,
``z (B, M)`` weights (0 on padding), ``counts (B,)`` real particles per jet; angles in radians;
values are ``sum_i z_i min_j (theta_ij / R)^beta``. The functions are ``nogil``: threads run
side by side (:class:`shaper.points.PointBatch`).
"""
from __future__ import annotations

import math

import numpy as np

from physkit.compiled import jit as compiled_jit

#: columns of the per-centre sums (:func:`_sums`)
_A, _GY, _GP, _ON, _Q, _QYY, _QPP, _QYP, _DK, _KY, _KP, _KN, _KZ = range(13)
_NCOL = 13
#: a centre closer than this to a particle sits on it (float64)
_COINCIDE = 1e-13
#: Newton steps are taken when shorter than this fraction of the distance to the nearest particle
_NEWTON_REACH = 0.5
#: over-relaxation: factor growth on success and cap
_GROW, _MAX_RELAX = 1.5, 8.0
_TWO_PI = 2.0 * math.pi
_PI_THIRD = math.pi / 3.0
#: the search's float32 passes run over whole vectors of this many particles (zero-weight
#: padding: no scalar remainder loop)
_LANES = 8
#: float32 constants of the search's passes (:func:`_sums_search`)
_PI32, _TWO_PI32 = np.float32(math.pi), np.float32(2.0 * math.pi)
_ZERO32, _COINCIDE32 = np.float32(0.0), np.float32(_COINCIDE)

__all__ = ["fit_jets", "lloyd_row", "value", "jit"]


def jit(fn=None, **options):
    """:func:`physkit.compiled.jit` (cached, nogil) with ``error_model="numpy"``: a division
    by zero gives inf / NaN, which the search rejects, instead of raising."""
    return compiled_jit(fn, error_model="numpy", **options)


@jit(inline="always")
def _wrap(a):
    """Angle ``a`` wrapped into ``(-pi, pi]`` (unchanged, bit for bit, when already there)."""
    if a > math.pi or a <= -math.pi:
        return a - _TWO_PI * math.ceil((a - math.pi) / _TWO_PI)
    return a


@jit(inline="always")
def _power(d, beta):
    """``d^beta`` (exact products for beta = 1, 2)."""
    if beta == 1.0:
        return d
    if beta == 2.0:
        return d * d
    return d ** beta


@jit(inline="always")
def _nearest(xs, c, n):
    """Index of the first nearest centre of ``c (n, 2)`` to the point ``xs (2,)`` and its
    distance (azimuth wrapped)."""
    best, jbest = np.inf, 0
    for j in range(n):
        dy = xs[0] - c[j, 0]
        dp = _wrap(xs[1] - c[j, 1])
        d2 = dy * dy + dp * dp
        if d2 < best:
            best, jbest = d2, j
    return jbest, math.sqrt(best)


@jit(refcount=False)
def value(x, z, m, c, beta):
    """``sum_i z_i min_j theta_ij^beta`` of one jet (``x (M, 2)``, ``z (M,)``, ``m`` real
    particles) at centres ``c (n, 2)``, summed particle by particle in order (not divided by
    R^beta)."""
    v = 0.0
    n = c.shape[0]
    for i in range(m):
        _, d = _nearest(x[i], c, n)
        v += z[i] * _power(d, beta)
    return v


@jit(inline="always")
def _wrap_once(a):
    """``a`` wrapped into ``(-pi, pi]`` by one turn (``|a| < 3 pi``)."""
    return a - _TWO_PI if a > math.pi else (a + _TWO_PI if a <= -math.pi else a)


@jit(inline="always")
def _assign(m, c, buf, general):
    """Each particle's (first-)nearest centre of ``c (n, 2)``, in passes over the particles
    that the compiler vectorises, two centres a pass (the particles' y and phi in ``buf``
    rows 0, 1): squared distance, centre index (as a float) and the wrapped ``x_i - c`` into
    rows 2..5 -- the numbers of :func:`_nearest` (azimuth by :func:`_wrap` with ``general``,
    else by :func:`_wrap_once`)."""
    y, p, best, near, dy, dp = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]
    n = c.shape[0]
    j0 = n % 2
    if j0 == 1:  # an odd number of centres: the first alone
        cy, cp = c[0, 0], c[0, 1]
        for i in range(m):
            ey = y[i] - cy
            ep = _wrap(p[i] - cp) if general else _wrap_once(p[i] - cp)
            best[i] = ey * ey + ep * ep
            near[i] = 0.0
            dy[i] = ey
            dp[i] = ep
    for j in range(j0, n, 2):
        cy0, cp0, cy1, cp1 = c[j, 0], c[j, 1], c[j + 1, 0], c[j + 1, 1]
        f0, f1, first = float(j), float(j + 1), j == 0
        for i in range(m):
            ey0 = y[i] - cy0
            ep0 = _wrap(p[i] - cp0) if general else _wrap_once(p[i] - cp0)
            d0 = ey0 * ey0 + ep0 * ep0
            ey1 = y[i] - cy1
            ep1 = _wrap(p[i] - cp1) if general else _wrap_once(p[i] - cp1)
            d1 = ey1 * ey1 + ep1 * ep1
            b, nr, by, bp = best[i], near[i], dy[i], dp[i]
            c0 = first or d0 < b  # centre j, then j + 1: the first nearest wins ties
            b, nr, by, bp = (d0, f0, ey0, ep0) if c0 else (b, nr, by, bp)
            c1 = d1 < b
            best[i] = d1 if c1 else b
            near[i] = f1 if c1 else nr
            dy[i] = ey1 if c1 else by
            dp[i] = ep1 if c1 else bp


@jit(refcount=False)
def _assign_exact(m, c, buf):
    """:func:`_assign` with :func:`_wrap` (the exact sums and values)."""
    _assign(m, c, buf, True)


@jit(refcount=False)
def _value(z, m, c, beta, buf):
    """:func:`value` with the distances taken in passes (:func:`_assign`; the particles' y
    and phi in ``buf`` rows 0, 1): the same number, summed particle by particle in order."""
    _assign_exact(m, c, buf)
    best = buf[2]
    v = 0.0
    for i in range(m):
        v += z[i] * _power(math.sqrt(best[i]), beta)
    return v


@jit(refcount=False)
def _sums(z, m, c, beta, exact, s, buf):
    """Per-centre sums over each centre's (first-)nearest particles into ``s (n, 13)``; returns
    the value (:func:`value`; the particles' y and phi in ``buf`` rows 0, 1, rows 2..5 work
    space). With ``delta = x_i - c`` (wrapped), ``d = |delta|`` and
    ``a = z d^(beta - 2)`` (0 where ``d`` is 0): ``sum a``, ``sum a delta`` (the pull),
    ``sum z [d = 0]``; with ``exact`` also ``q = (2 - beta) a / d^2`` sums ``q``,
    ``q delta delta^T`` (the Hessian's rank-one terms), and the nearest real particle of the
    cluster: its distance, ``delta``, multiplicity (ties) and weight."""
    n = c.shape[0]
    s[:, :] = 0.0
    for j in range(n):
        s[j, _DK] = np.inf
    _assign_exact(m, c, buf)
    best, near, ddy, ddp, aa, dd, qq = buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8]
    for i in range(m):  # each particle's own numbers, in a pass the compiler vectorises
        d = math.sqrt(best[i])
        if beta == 1.0:
            a = z[i] / d
        elif beta == 2.0:
            a = z[i]
        else:
            a = z[i] * d ** (beta - 2.0)
        a = a if d > _COINCIDE else 0.0
        dd[i], aa[i] = d, a
        qq[i] = (2.0 - beta) * a / (d * d)  # used where d > _COINCIDE
    v = 0.0
    for i in range(m):  # the sums, particle by particle in order
        j = int(near[i])
        d, zi, a, dy, dp = dd[i], z[i], aa[i], ddy[i], ddp[i]
        v += zi * _power(d, beta)
        if d <= _COINCIDE:
            s[j, _ON] += zi
        s[j, _A] += a
        s[j, _GY] += a * dy
        s[j, _GP] += a * dp
        if exact:
            if d > _COINCIDE:
                q = qq[i]
                s[j, _Q] += q
                s[j, _QYY] += q * dy * dy
                s[j, _QPP] += q * dp * dp
                s[j, _QYP] += q * dy * dp
            if zi != 0.0:
                if d < s[j, _DK]:
                    s[j, _DK], s[j, _KY], s[j, _KP] = d, dy, dp
                    s[j, _KN], s[j, _KZ] = 1.0, zi
                elif d == s[j, _DK]:
                    s[j, _KN] += 1.0
                    s[j, _KZ] += zi
    return v


@jit(fastmath=True, inline="always")
def _wrap32(a):
    """:func:`_wrap_once` in float32."""
    return a - _TWO_PI32 if a > _PI32 else (a + _TWO_PI32 if a <= -_PI32 else a)


@jit(fastmath=True, refcount=False)
def _assign32(m, c, f):
    """:func:`_assign` of the search, in float32 (``f (8, M)`` float32: rows 0, 1 the
    particles' y and phi; squared distance, centre index and wrapped ``x_i - c`` into rows
    2..5; the centres ``c (n, 2)`` rounded to float32), two centres a pass."""
    y, p, best, near, dy, dp = f[0], f[1], f[2], f[3], f[4], f[5]
    n = c.shape[0]
    j0 = n % 2
    if j0 == 1:  # an odd number of centres: the first alone
        cy, cp = np.float32(c[0, 0]), np.float32(c[0, 1])
        for i in range(m):
            ey = y[i] - cy
            ep = _wrap32(p[i] - cp)
            best[i] = ey * ey + ep * ep
            near[i] = _ZERO32
            dy[i] = ey
            dp[i] = ep
    for j in range(j0, n, 2):
        cy0, cp0 = np.float32(c[j, 0]), np.float32(c[j, 1])
        cy1, cp1 = np.float32(c[j + 1, 0]), np.float32(c[j + 1, 1])
        f0, f1, first = np.float32(j), np.float32(j + 1), j == 0
        for i in range(m):
            ey0 = y[i] - cy0
            ep0 = _wrap32(p[i] - cp0)
            d0 = ey0 * ey0 + ep0 * ep0
            ey1 = y[i] - cy1
            ep1 = _wrap32(p[i] - cp1)
            d1 = ey1 * ey1 + ep1 * ep1
            b, nr, by, bp = best[i], near[i], dy[i], dp[i]
            c0 = first or d0 < b  # centre j, then j + 1: the first nearest wins ties
            b, nr, by, bp = (d0, f0, ey0, ep0) if c0 else (b, nr, by, bp)
            c1 = d1 < b
            best[i] = d1 if c1 else b
            near[i] = f1 if c1 else nr
            dy[i] = ey1 if c1 else by
            dp[i] = ep1 if c1 else bp


@jit(fastmath=True, refcount=False)
def _sums_search(m, c, beta, s, f):
    """:func:`_sums` without the exact columns, for the loose search: float32 passes over the
    particles that the compiler vectorises (``f (8, M)`` float32, see :func:`_work`: rows 0, 1
    the particles' y and phi, row 7 their weights, rows 2..6 work space), sums reassociated
    (fastmath) and written to ``s`` as float64. The search only ranks starts and accepts
    steps with these numbers (its tolerance, 1e-4 relative, is far above float32's rounding);
    the polish and the reported value are float64 (:func:`_sums`, :func:`_value`). A jet's
    numbers depend on the jet alone."""
    n = c.shape[0]
    best, near, dy, dp, a, z = f[2], f[3], f[4], f[5], f[6], f[7]
    _assign32(m, c, f)
    v = _ZERO32
    b32, bm2 = np.float32(beta), np.float32(beta - 2.0)
    for i in range(m):
        d = np.sqrt(best[i])
        if beta == 1.0:
            v += z[i] * d
            w = z[i] / d
        elif beta == 2.0:
            v += z[i] * best[i]
            w = z[i]
        else:
            v += z[i] * d ** b32
            w = z[i] * d ** bm2
        a[i] = w if d > _COINCIDE32 else _ZERO32
    j0 = n % 2
    if j0 == 1:  # an odd number of centres: the first alone
        _centre_sums(z, m, near, dy, dp, a, 0, s)
    for j in range(j0, n, 2):  # then two centres a pass
        _pair_sums(z, m, near, dy, dp, a, j, s)
    return float(v)


@jit(fastmath=True, inline="always")
def _centre_sums(z, m, near, dy, dp, a, j, s):
    """Centre ``j``'s row of :func:`_sums_search` (float32 rows ``near``, ``dy``, ``dp``,
    ``a``: each particle's nearest centre, wrapped offsets and weight ``z d^(beta - 2)``)."""
    fj = np.float32(j)
    sa = sy = sp = on = _ZERO32
    for i in range(m):
        mine = near[i] == fj
        sa += a[i] if mine else _ZERO32
        sy += a[i] * dy[i] if mine else _ZERO32
        sp += a[i] * dp[i] if mine else _ZERO32
        on += z[i] if mine and a[i] == _ZERO32 else _ZERO32
    s[j, _A], s[j, _GY], s[j, _GP], s[j, _ON] = sa, sy, sp, on


@jit(fastmath=True, inline="always")
def _pair_sums(z, m, near, dy, dp, a, j, s):
    """:func:`_centre_sums` of centres ``j`` and ``j + 1`` in one pass over the particles."""
    f0, f1 = np.float32(j), np.float32(j + 1)
    sa0 = sy0 = sp0 = on0 = sa1 = sy1 = sp1 = on1 = _ZERO32
    for i in range(m):
        ai, ay, ap = a[i], a[i] * dy[i], a[i] * dp[i]
        zo = z[i] if ai == _ZERO32 else _ZERO32
        m0, m1 = near[i] == f0, near[i] == f1
        sa0 += ai if m0 else _ZERO32
        sy0 += ay if m0 else _ZERO32
        sp0 += ap if m0 else _ZERO32
        on0 += zo if m0 else _ZERO32
        sa1 += ai if m1 else _ZERO32
        sy1 += ay if m1 else _ZERO32
        sp1 += ap if m1 else _ZERO32
        on1 += zo if m1 else _ZERO32
    s[j, _A], s[j, _GY], s[j, _GP], s[j, _ON] = sa0, sy0, sp0, on0
    s[j + 1, _A], s[j + 1, _GY], s[j + 1, _GP], s[j + 1, _ON] = sa1, sy1, sp1, on1


@jit(refcount=False)
def _step(sj, beta, lam, exact):
    """Move ``(dy, dphi)`` of one centre from its sums ``sj (13,)``: the Weiszfeld step times
    ``lam`` (Vardi-Zhang where mass sits on the centre, beta = 1; none for beta < 1), or with
    ``exact`` where it applies the snap (nearest particle set apart: the exact minimiser of
    the others' quadratic majoriser plus the particle's cone, beta = 1; onto it for beta < 1;
    the others' step for beta > 1) or a Newton step within reach (see :mod:`shaper.lloyd`)."""
    A, E, gy, gp = sj[_A], sj[_ON], sj[_GY], sj[_GP]
    my = mp = 0.0
    if A > 0.0:
        my, mp = gy / A, gp / A
        if beta == 1.0 and E > 0.0:
            rn = math.sqrt(gy * gy + gp * gp)
            keep = min(max(1.0 - E / (rn if rn > 0.0 else 1.0), 0.0), 1.0)
            my, mp = my * keep, mp * keep
        elif beta < 1.0 and E != 0.0:
            my = mp = 0.0
    my, mp = my * lam, mp * lam
    if not exact or beta == 2.0:
        return my, mp
    dk, zk = sj[_DK], sj[_KZ]
    if sj[_KN] == 1.0 and dk > 0.0 and E == 0.0:
        ak = zk * _power(dk, beta - 2.0) if beta != 1.0 else zk / dk
        if ak > 0.5 * A:  # the nearest particle dominates: snap
            ky, kp = sj[_KY], sj[_KP]
            rest = A - ak
            if rest <= 0.0:  # the particle is the whole cluster: its minimiser
                return ky, kp
            vy, vp = (gy - ak * ky) / rest - ky, (gp - ak * kp) / rest - kp
            if beta == 1.0:
                vn = math.sqrt(vy * vy + vp * vp)
                f = max(1.0 - zk / rest / (vn if vn > 0.0 else 1.0), 0.0)
            else:
                f = 1.0 if beta > 1.0 else 0.0
            if f > 0.0:  # a majoriser step off the particle: over-relaxed like Weiszfeld's
                return (ky + f * vy) * lam, (kp + f * vp) * lam
            return ky, kp
    hyy, hpp, hyp = A - sj[_QYY], A - sj[_QPP], -sj[_QYP]
    det = hyy * hpp - hyp * hyp
    if A > 0.0 and E == 0.0 and hyy > 0.0 and det > 1e-9 * A * A:
        ny, np_ = (hpp * gy - hyp * gp) / det, (hyy * gp - hyp * gy) / det
        if math.sqrt(ny * ny + np_ * np_) < _NEWTON_REACH * dk:
            return ny, np_
    return my, mp


#: :func:`lloyd_row`'s modes: the loose search's float32 sums; float64 sums with plain and
#: over-relaxed steps only; float64 sums with Newton and snap steps too
SEARCH, PLAIN, EXACT = 0, 1, 2


@jit(refcount=False)
def lloyd_row(x, z, m, c, beta, max_iter, tol, mode, work):
    """Minimise the value from centres ``c (n, 2)`` (updated in place; ``work`` see
    :func:`_work`, readied by :func:`_load`): proposals are kept where the value does not
    rise; over-relaxed steps (mode :data:`EXACT`: with Newton and snap steps) while they
    succeed, a plain step after a failure; the row ends when a plain step gains less than
    ``tol`` times the value. ``mode``: :data:`SEARCH` (float32 sums), :data:`PLAIN` or
    :data:`EXACT`. Returns ``(value, converged)``."""
    n = c.shape[0]
    s, sn, cur, cn, buf, f = work[0], work[1], c, work[2], work[5], work[8]
    mf = min(-(-m // _LANES) * _LANES, f.shape[1])  # the float32 rows' zero-weight padding
    exact, f64 = mode == EXACT, mode != SEARCH
    v = _sums(z, m, c, beta, exact, s, buf) if f64 else _sums_search(mf, c, beta, s, f)
    relax, full, moved, ok = 1.0, True, False, False
    for _ in range(max_iter):
        for j in range(n):
            my, mp = _step(s[j], beta, relax, exact and full)
            cn[j, 0] = cur[j, 0] + my
            cn[j, 1] = _wrap(cur[j, 1] + mp)
        vn = (_sums(z, m, cn, beta, exact, sn, buf) if f64
              else _sums_search(mf, cn, beta, sn, f))
        better = vn <= v
        small = v - vn <= tol * (vn if better else v)
        if better:  # the proposal's centres and sums become the current ones (buffers swap)
            cur, cn, s, sn = cn, cur, sn, s
            moved = not moved
            v = vn
        if not full and (not better or small):
            ok = True
            break
        if full and better and not small:
            relax = min(relax * _GROW, _MAX_RELAX)
        elif full:
            relax = 1.0
        full = better and not small
    if moved:  # the current centres sit in the work buffer
        for j in range(n):
            c[j, 0], c[j, 1] = cur[j, 0], cur[j, 1]
    return v, ok


@jit
def _seen(start, work):
    """Whether ``start (n, 2)`` equals a start searched before for this jet (its search would
    end at the same point: skipped); records it otherwise. ``work``: see :func:`_work`."""
    tried, count = work[3], work[4]
    for t in range(count[0]):
        same = True
        for j in range(start.shape[0]):
            if start[j, 0] != tried[t, j, 0] or start[j, 1] != tried[t, j, 1]:
                same = False
                break
        if same:
            return True
    tried[count[0]] = start
    count[0] += 1
    return False


@jit
def _work(M, n, cap, n_hard, n_swap):
    """Work arrays for jets of up to ``M`` particles (:func:`_load` readies them for one):
    sums ``(n, 13)`` twice, proposed centres ``(n, 2)``, the starts searched so far
    ``(cap, n, 2)`` and their count ``(1,)``, the rows of :func:`_sums` ``(9, M)`` (the
    particles' y and phi first), those of :func:`_gain_top`: gains ``(n_hard,)`` and picks
    ``(n_swap,)``, and the float32 rows of :func:`_sums_search`
    ``(8, M)`` (the particles' y and phi first, their weights last)."""
    M = max(M, 1)
    return (np.empty((n, _NCOL)), np.empty((n, _NCOL)), np.empty((n, 2)),
            np.empty((cap, n, 2)), np.zeros(1, np.int64), np.zeros((9, M)),
            np.empty(max(n_hard, 1)), np.empty(max(n_swap, 1), np.int64),
            np.zeros((8, M), np.float32))


@jit(refcount=False)
def _load(work, x, z, m):
    """Ready ``work`` (:func:`_work`) for the jet ``x (M, 2)``, ``z (M,)`` of ``m``
    particles."""
    buf, f = work[5], work[8]
    for i in range(m):
        buf[0, i], buf[1, i] = x[i, 0], x[i, 1]
        f[0, i], f[1, i], f[7, i] = x[i, 0], x[i, 1], z[i]
    f[0, m:], f[1, m:], f[7, m:] = 0.0, 0.0, 0.0  # padding: weight 0 adds exact zeros
    work[4][0] = 0


@jit
def _search(x, z, m, starts, beta, iters, tol, found, vals, work):
    """Loose search (plain and over-relaxed Weiszfeld steps) from each start ``(S, n, 2)``:
    end points into ``found (S, n, 2)``, values into ``vals (S,)`` (inf for a start searched
    before); returns the first best."""
    best = 0
    for k in range(starts.shape[0]):
        found[k] = starts[k]
        if _seen(starts[k], work):
            vals[k] = np.inf
            continue
        vals[k], _ = lloyd_row(x, z, m, found[k], beta, iters, tol, SEARCH, work)
        if vals[k] < vals[best]:
            best = k
    return best


@jit
def _take_best(x, z, m, starts, c, v, beta, iters, tol, work):
    """Search ``starts (S, n, 2)``; where the best found value is below ``v`` its centres
    replace ``c`` (in place). Returns the jet's best value."""
    S = starts.shape[0]
    if S == 0:
        return v
    found = np.empty_like(starts)
    vals = np.empty(S)
    k = _search(x, z, m, starts, beta, iters, tol, found, vals, work)
    if vals[k] < v:
        c[:, :] = found[k]
        return vals[k]
    return v


@jit(refcount=False)
def _costliest(z, m, c, beta, buf):
    """Index of the particle of largest ``z_i min_j theta_ij^beta`` (the first; 0 if none;
    the particles' y and phi in ``buf`` rows 0, 1)."""
    _assign_exact(m, c, buf)
    best = buf[2]
    far, worst = 0, -1.0
    for i in range(m):
        cost = z[i] * _power(math.sqrt(best[i]), beta)
        if cost > worst:
            far, worst = i, cost
    return far


@jit
def _starts(x, z, m, kt, more, prev, has_prev, beta, split, buf):
    """The structured starts ``(S, n, 2)``: the kT axes, the hardest particle nearest to each
    (winner-take-all; the axis where none is), the ``n + 1`` kT axes less one each and, given
    ``has_prev``, the ``(n-1)`` optimum with each of its centres split in two along each
    principal axis of its particles (:func:`_split_starts`, offset ``split`` standard
    deviations) and, last, the ``(n-1)`` optimum plus its costliest particle (``buf``: see
    :func:`_work`)."""
    n = kt.shape[0]
    n_split = 2 * (n - 1) if has_prev else 0
    st = np.empty((3 + n + n_split + (1 if has_prev else 0), n, 2))
    st[0] = kt
    st[1] = kt
    hard = np.zeros(n)
    _assign_exact(m, kt, buf)
    near = buf[3]
    for i in range(m):
        j = int(near[i])
        if z[i] > hard[j]:
            hard[j] = z[i]
            st[1, j] = x[i]
    for j in range(n + 1):
        k = 0
        for i in range(n + 1):
            if i != j:
                st[2 + j, k] = more[i]
                k += 1
    if has_prev:
        _split_starts(z, m, prev, split, st[3 + n:3 + n + n_split], kt, buf)
        st[-1, :n - 1] = prev
        st[-1, n - 1] = x[_costliest(z, m, prev, beta, buf)]
    return st


@jit
def _split_starts(z, m, prev, split, out, fill, buf):
    """Starts ``out (2 (n-1), n, 2)``: the centres ``prev (n-1, 2)`` with centre ``k`` replaced
    by two at ``+-split`` standard deviations along the major, then the minor principal axis
    of the weighted (y, phi) spread of its nearest particles (the k-means split of a
    cluster: it tries both orientations of a two-prong split of one blob); ``fill`` where a
    cluster has no spread along that axis (a repeat of a start: skipped). ``buf``: see
    :func:`_work` (the particles' y and phi in rows 0, 1)."""
    k1 = prev.shape[0]
    _assign_exact(m, prev, buf)
    near, dy, dp = buf[3], buf[4], buf[5]
    for k in range(k1):
        w = syy = spp = syp = 0.0
        for i in range(m):
            if int(near[i]) == k:
                w += z[i]
                syy += z[i] * dy[i] * dy[i]
                spp += z[i] * dp[i] * dp[i]
                syp += z[i] * dy[i] * dp[i]
        a, b, c = (syy / w, syp / w, spp / w) if w > 0.0 else (0.0, 0.0, 0.0)
        half, r = 0.5 * (a + c), math.sqrt(0.25 * (a - c) * (a - c) + b * b)
        t = 0.5 * math.atan2(2.0 * b, a - c)
        for ax in range(2):
            row = out[2 * k + ax]
            lam = half + r if ax == 0 else half - r
            ey, ep = (math.cos(t), math.sin(t)) if ax == 0 else (-math.sin(t), math.cos(t))
            if not lam > 0.0:
                row[:, :] = fill
                continue
            s = split * math.sqrt(lam)
            q = 0
            for j in range(k1):
                if j != k:
                    row[q] = prev[j]
                    q += 1
            row[q, 0], row[q, 1] = prev[k, 0] + s * ey, _wrap(prev[k, 1] + s * ep)
            row[q + 1, 0], row[q + 1, 1] = prev[k, 0] - s * ey, _wrap(prev[k, 1] - s * ep)


@jit(fastmath=True)
def _candidates(z, m, n_hard, beta, f):
    """Where a new centre may go: the ``n_hard`` hardest real particles (indices ``(H,)``, by
    decreasing weight, ties in particle order) and their distances to every particle to the
    power beta ``(H, m)`` float32 (the particles' y and phi in the float32 rows ``f`` 0, 1:
    the gains only rank candidates)."""
    order = np.argsort(-z[:m], kind="mergesort")
    h = 0
    while h < min(n_hard, m) and z[order[h]] > 0.0:
        h += 1
    cand = order[:h].copy()
    th = np.empty((h, m), np.float32)
    y, p = f[0], f[1]
    for a in range(h):
        ya, pa, row = y[cand[a]], p[cand[a]], th[a]
        for i in range(m):
            dy = y[i] - ya
            dp = _wrap32(p[i] - pa)
            row[i] = _power32(np.sqrt(dy * dy + dp * dp), beta)
    return cand, th


@jit(inline="always")
def _power32(d, beta):
    """:func:`_power` of a float32 ``d`` in float32."""
    if beta == 1.0:
        return d
    if beta == 2.0:
        return d * d
    return d ** np.float32(beta)


@jit(fastmath=True, refcount=False)
def _gain_top(x, z, m, c, cand, th, beta, top, work):
    """The candidates whose addition to centres ``c (k, 2)`` lowers the value most (gain
    ``sum_j z_j max(0, d_j^beta - theta_ij^beta)``, ``d_j`` particle ``j``'s distance to its
    nearest centre; float32 passes), best first (ties: the harder), into ``top``; returns
    how many."""
    gain, order, f = work[6], work[7], work[8]
    _assign32(m, c, f)
    best, dist, zz = f[2], f[6], f[7]
    for i in range(m):
        dist[i] = _power32(np.sqrt(best[i]), beta)
    h = cand.shape[0]
    for a in range(h):
        g = _ZERO32
        row = th[a]
        for i in range(m):
            e = dist[i] - row[i]
            g += zz[i] * e if e > _ZERO32 else _ZERO32
        gain[a] = g
    k = min(top.shape[0], h)
    _largest_first(gain[:h], k, order)
    for t in range(k):
        top[t] = cand[order[t]]
    return k


@jit(refcount=False)
def _largest_first(v, k, order):
    """Indices of the ``k`` largest entries of ``v`` into ``order[:k]``, largest first (ties:
    the lower index), in one pass over ``v``."""
    if k <= 0:
        return
    got = 0
    for a in range(v.shape[0]):
        if got == k and not v[a] > v[order[k - 1]]:
            continue
        t = min(got, k - 1)  # insert a before the first kept entry it beats
        while t > 0 and v[a] > v[order[t - 1]]:
            order[t] = order[t - 1]
            t -= 1
        order[t] = a
        got = min(got + 1, k)


@jit
def _local_search(x, z, m, c, v, prev, has_prev, swaps, gain, top, beta, iters, tol, n_hard,
                  work):
    """k-median local search on the best centres ``c (n, 2)`` (value ``v``; updated in place):
    the ``(n-1)`` optimum plus each of its best-gain candidates, then up to ``swaps`` rounds of
    swap moves (each centre replaced by each best-gain candidate of the other ``n - 1``; a
    round that lowers the value by less than the fraction ``gain`` ends them), each move
    searched; the best is replaced only by a lower value. Returns the value."""
    n = c.shape[0]
    cand, th = _candidates(z, m, n_hard, beta, work[8])
    k = top.shape[0]
    if has_prev:
        nt = _gain_top(x, z, m, prev, cand, th, beta, top, work)
        st = np.empty((nt, n, 2))
        for a in range(nt):
            st[a, :n - 1] = prev
            st[a, n - 1] = x[top[a]]
        v = _take_best(x, z, m, st, c, v, beta, iters, tol, work)
    rest = np.empty((n - 1, 2))
    for _ in range(swaps):
        st = np.empty((n * k, n, 2))
        cnt = 0
        for j in range(n):
            rest[:j] = c[:j]
            rest[j:] = c[j + 1:]
            nt = _gain_top(x, z, m, rest, cand, th, beta, top, work)
            for a in range(nt):
                st[cnt, :j] = rest[:j]
                st[cnt, j] = x[top[a]]
                st[cnt, j + 1:] = rest[j:]
                cnt += 1
        vn = _take_best(x, z, m, st[:cnt], c, v, beta, iters, tol, work)
        gained = vn < v * (1.0 - gain)
        v = vn
        if not gained:
            break
    return v


@jit
def _restarts(c, v, x, z, m, jiggle, per_round, beta, iters, tol, work):
    """Perturbed restarts: rounds of ``per_round`` offsets of ``jiggle (K, n, 2)`` added to the
    best centres ``c`` (phi wrapped), searched; a round's best replaces ``c`` where lower."""
    K, n = jiggle.shape[0], c.shape[0]
    for lo in range(0, K, per_round):
        hi = min(lo + per_round, K)
        st = np.empty((hi - lo, n, 2))
        for a in range(hi - lo):
            for j in range(n):
                st[a, j, 0] = c[j, 0] + jiggle[lo + a, j, 0]
                st[a, j, 1] = _wrap(c[j, 1] + jiggle[lo + a, j, 1])
        v = _take_best(x, z, m, st, c, v, beta, iters, tol, work)
    return v


@jit
def _weights_sorted(x, z, m, c, w, work):
    """Mass ``w (n,)`` of the particles (first-)nearest to each centre; ``c (n, 2)`` and ``w``
    reordered by decreasing weight (ties in the order found), phi wrapped."""
    n = c.shape[0]
    mass = np.zeros(n)
    _assign_exact(m, c, work[5])
    near = work[5][3]
    for i in range(m):
        mass[int(near[i])] += z[i]
    cc = c.copy()
    order = np.empty(n, np.int64)
    _largest_first(mass, n, order)
    for t in range(n):
        pick = order[t]
        w[t] = mass[pick]
        c[t, 0] = cc[pick, 0]
        c[t, 1] = _wrap(cc[pick, 1])


@jit(refcount=False)
def _one_basin(x, m, beta):
    """Whether the 1-centre value of the jet ``x (M, 2)`` (``m`` particles) has one minimum
    (every start reaches it, up to the search's tolerance): for beta >= 1 and every particle
    within ``pi / 3`` of phi = 0 (a centred jet of R < 1). Then moving a centre's phi back
    into ``[-pi/3, pi/3]`` raises no particle's distance to it (for ``phi_c > pi/3`` and
    ``|p| <= pi/3``: ``pi/3 - p <= phi_c - p`` and ``pi/3 - p <= 2 pi - phi_c + p``; likewise
    below), and inside that strip each wrapped distance is the plane distance
    (``|p - phi_c| <= 2 pi / 3 < pi``): the value there is a sum of convex functions
    ``theta^beta`` of the centre, and no lower outside it."""
    if beta < 1.0:
        return False
    for i in range(m):
        if abs(x[i, 1]) > _PI_THIRD:
            return False
    return True


@jit
def _onto_particles(x, z, m, c, beta, buf):
    """Centres of ``c (n, 2)`` within :data:`_COINCIDE` of a particle (which the polish
    counts as on it) put exactly onto it, where that does not raise the value (``buf``: see
    :func:`_work`)."""
    n = c.shape[0]
    on = c.copy()
    moved = False
    for j in range(n):
        for i in range(m):
            dy = x[i, 0] - c[j, 0]
            dp = _wrap(x[i, 1] - c[j, 1])
            d2 = dy * dy + dp * dp
            if z[i] != 0.0 and 0.0 < d2 <= _COINCIDE * _COINCIDE:
                on[j, 0], on[j, 1] = x[i, 0], x[i, 1]
                moved = True
                break
    if moved and _value(z, m, on, beta, buf) <= _value(z, m, c, beta, buf):
        c[:, :] = on


@jit
def _fit_jet(x, z, m, kt, more, prev, has_prev, jiggle, per_round, beta, max_iter, swaps,
             gain, top, split, search_iter, search_tol, polish_tol, n_hard, out, work):
    """The search of one jet (module docstring); best centres into ``out (n, 2)``; ``work``
    see :func:`_work`. Returns the value (not divided by R^beta) and whether the polish of
    the best converged."""
    n = kt.shape[0]
    _load(work, x, z, m)
    iters = min(max_iter, search_iter)
    st = _starts(x, z, m, kt, more, prev, has_prev, beta, split, work[5])
    if n == 1 and _one_basin(x, m, beta):
        st = st[:1]  # the kT axis alone: every start would reach the same minimum
    found, vals = np.empty_like(st), np.empty(st.shape[0])
    best = _search(x, z, m, st, beta, iters, search_tol, found, vals, work)
    c = found[best].copy()
    v = vals[best]
    if swaps > 0 and n > 1:
        v = _local_search(x, z, m, c, v, prev, has_prev, swaps, gain, top, beta, iters,
                          search_tol, n_hard, work)
    if jiggle.shape[0] > 0:
        v = _restarts(c, v, x, z, m, jiggle, per_round, beta, iters, search_tol, work)
    # polish: the final best, the structured starts' best where the moves replaced it, the kT
    # start's end point where another start was best
    rows = np.empty((3, n, 2))
    rows[0] = c
    k = 1
    if v < vals[best]:
        rows[k] = found[best]
        k += 1
    if best != 0:
        rows[k] = found[0]
        k += 1
    converged = True
    for r in range(k):
        _, ok = lloyd_row(x, z, m, rows[r], beta, max_iter, polish_tol, EXACT, work)
        _onto_particles(x, z, m, rows[r], beta, work[5])
        if r == 0:
            converged = ok
    # report: the least exact value among the polished rows, the kT axes and the (n-1) axes
    # plus the costliest particle (first wins ties)
    vbest = np.inf
    for r in range(k + 1 + (1 if has_prev else 0)):
        cand = rows[r] if r < k else (st[0] if r == k else st[-1])
        vr = _value(z, m, cand, beta, work[5])
        if vr < vbest:
            vbest = vr
            out[:, :] = cand
    return vbest, converged


@jit
def fit_jets(x, z, counts, kt, more, prev, jiggle, per_round, beta, scale, max_iter, swaps,
             gain, n_swap, split, search_iter, search_tol, polish_tol, n_hard, centers, weights,
             values, converged):
    """n-subjettiness of the jets ``x (B, M, 2)``, ``z (B, M)``, ``counts (B,)`` from the
    exclusive-kT axes ``kt (B, n, 2)`` and ``more (B, n + 1, 2)`` and the ``(n-1)`` optimum
    ``prev (B, n-1, 2)`` (``(B, 0, 2)``: none), with up to ``swaps`` rounds of swap moves
    (while a round lowers the value by more than the fraction ``gain``) over
    ``n_swap`` best-gain candidates among the ``n_hard`` hardest particles, the split starts
    (offset ``split`` standard deviations, :func:`_split_starts`) and the restart offsets
    ``jiggle (K, n, 2)`` in rounds of ``per_round``. Writes centres ``(B, n, 2)`` and
    weights ``(B, n)`` by decreasing weight, values ``(B,)`` (divided by ``scale`` = R^beta)
    and whether each jet's polish converged ``(B,)``."""
    has_prev = prev.shape[1] > 0
    n = kt.shape[1]
    top = np.empty(n_swap, np.int64)
    work = _work(x.shape[1], n, 3 * n + 2 + n_swap * (1 + swaps * n) + jiggle.shape[0], n_hard,
                 n_swap)
    for b in range(x.shape[0]):
        m = counts[b]
        v, ok = _fit_jet(x[b], z[b], m, kt[b], more[b], prev[b], has_prev, jiggle, per_round,
                         beta, max_iter, swaps, gain, top, split, search_iter, search_tol,
                         polish_tol, n_hard, centers[b], work)
        values[b] = v / scale
        converged[b] = ok
        _weights_sorted(x[b], z[b], m, centers[b], weights[b], work)
