"""Exact fits of point manifolds (n-subjettiness) by batched Lloyd / Weiszfeld iterations.

For ``n`` points with free weights the optimal weights and transport plan are the
nearest-centre assignment, so the EMD between a jet and its best ``n``-point approximation
with centres ``c`` is exactly

    V(c) = sum_i z_i min_j (theta_ij / R)^beta,

(Komiske-Metodiev-Thaler: ``V`` at its minimum is tau_n). :func:`lloyd` minimises ``V`` over
the centres of many independent rows at once (a row: one jet and one set of starting
centres). Each iteration evaluates ``V`` at proposed centres and keeps them only when ``V``
does not rise, so a row's value never exceeds its start. The proposal moves each centre
towards the weighted ``beta``-median of its nearest particles:

* an over-relaxed iteratively-reweighted (Weiszfeld) step: weights ``z_i theta_i^(beta-2)``,
  the Vardi-Zhang rule where a centre sits on a particle (beta = 1), the mean for beta = 2;
  the relaxation factor grows while steps succeed and drops to 1 after a failure (a plain step
  cannot raise ``V`` for beta <= 2);
* with ``exact=True`` also, per centre, a Newton step on its cluster's cost where the step
  stays within half the distance to the nearest particle, and a **snap** onto that particle
  where the Newton step would run through it (for beta <= 1 a median often sits exactly on a
  particle, which Weiszfeld steps only approach geometrically; on the particle the
  Vardi-Zhang rule then holds the centre still, exactly).

A row ends when a plain step gains less than ``tol * V`` (converged) or at ``max_iter``.

**Cost and batch independence.** One evaluation per iteration: the distances
``(rows, n, M)`` (``torch.cdist``), the nearest-centre membership by one comparison with their
minimum, and every per-centre sum the step needs by one batched matrix product
(membership ``(rows, n, M)`` times per-particle columns ``(rows, M, k)``). Rows are processed
in blocks of at most :data:`ROWS` rows of one width (a row is always evaluated at its jet's own
width, :func:`row_widths`): every reduction runs over one row's particles, with the same
kernel whatever the other rows are, so a row's numbers do not depend on the other rows of the
call (checked in ``tests/shaper/test_point_search.py``). Azimuth differences are
wrapped (periodic phi) for the rows whose particles and centres could be more than pi apart.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

import torch

from physkit.angles import wrap_angle

from .coarse_kernel import coarse_grain_compiled

#: rows per evaluation block (the block's tensors stay in cache)
ROWS = 512
#: particles per width step: a row is evaluated at a multiple of this width
WIDTH_STEP = 32
#: Newton steps are taken when shorter than this fraction of the distance to the nearest particle
_NEWTON_REACH = 0.5
#: over-relaxation: factor growth on success and cap
_GROW, _MAX_RELAX = 1.5, 8.0
#: a particle closer than this to its centre counts as sitting on it (gradients)
_ON_CENTRE = 1e-7
#: columns of the per-centre sums (see :func:`cluster_sums`)
_A, _AY, _AP, _COST, _ON = range(5)
_Q, _QY, _QP, _QYY, _QPP, _QYP, _DNEAR, _KY, _KP, _KN, _KZ = range(5, 16)

__all__ = ["LloydFit", "lloyd", "theta", "cluster_sums", "nearest_masses", "point_objective",
           "point_value_grads", "coarse_grain", "row_widths", "real_counts"]


class LloydFit(NamedTuple):
    """Per row: centres ``(r, n, 2)``, value ``V`` ``(r,)`` (in the working dtype), iterations
    ``(r,)`` int64 and whether the row converged ``(r,)`` bool."""

    centers: torch.Tensor
    value: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def _coincide(dtype: torch.dtype) -> float:
    """Distance under which a centre counts as sitting on a particle."""
    return 1e-13 if dtype == torch.float64 else 1e-7


def real_counts(z: torch.Tensor) -> torch.Tensor:
    """One past the last non-zero weight of each row of ``z (B, M)``: ``(B,)`` int64 (0 for an
    empty row)."""
    idx = torch.arange(1, z.shape[1] + 1, device=z.device)
    return torch.where(z != 0, idx, torch.zeros_like(idx)).amax(1)


def row_widths(z: torch.Tensor) -> torch.Tensor:
    """Width ``(B,)`` at which each row of weights ``z (B, M)`` is evaluated: one past its last
    non-zero weight (:func:`real_counts`), rounded up to a multiple of :data:`WIDTH_STEP` (at
    least one step)."""
    return ((real_counts(z) + WIDTH_STEP - 1) // WIDTH_STEP).clamp_min(1) * WIDTH_STEP


def _distances(x: torch.Tensor, c: torch.Tensor, wrap_rows: Optional[torch.Tensor]) -> torch.Tensor:
    """``theta`` ``(r, n, M)`` between centres ``c (r, n, 2)`` and particles ``x (r, M, 2)``;
    the rows ``wrap_rows`` (indices) with the azimuthal difference wrapped."""
    d = torch.cdist(c, x, compute_mode="donot_use_mm_for_euclid_dist")
    if wrap_rows is not None and wrap_rows.numel():
        xs, cs = x[wrap_rows], c[wrap_rows]
        dy = xs[:, None, :, 0] - cs[:, :, None, 0]
        dp = wrap_angle(xs[:, None, :, 1] - cs[:, :, None, 1])
        d[wrap_rows] = torch.sqrt(dy * dy + dp * dp)
    return d


def theta(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Distances ``(r, n, M)`` between centres ``c (r, n, 2)`` and particles ``x (r, M, 2)``
    (weights ``z (r, M)``, 0 on padding), azimuth wrapped in the rows where particles and
    centres could be more than pi apart (each row's own choice)."""
    wrap = _phi_max(x, z) + c[..., 1].abs().amax(1) > math.pi
    return _distances(x, c, torch.nonzero(wrap).squeeze(1) if bool(wrap.any()) else None)


def _phi_max(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Largest ``|phi|`` ``(r,)`` of each row's particles (padding excluded)."""
    return torch.where(z != 0, x[..., 1].abs(), torch.zeros_like(z)).amax(1)


def cluster_sums(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, *, beta: float,
                 exact: bool, wrap_rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-centre sums over each centre's nearest particles, ``(r, n, 5)`` or ``(r, n, 16)``.

    ``x (r, M, 2)``, ``z (r, M)`` (0 on padding), ``c (r, n, 2)``. With ``d_i`` the distance of
    particle ``i`` to its nearest centre and ``a_i = z_i d_i^(beta - 2)`` (0 where ``d_i`` is 0):
    columns ``sum a``, ``sum a y``, ``sum a phi``, ``sum z d^beta`` (the centre's share of
    ``V * R^beta``), ``sum z [d = 0]``; with ``exact`` also ``sum q``, ``sum q y``,
    ``sum q phi``, ``sum q y^2``, ``sum q phi^2``, ``sum q y phi`` (``q = (2 - beta) a / d^2``,
    the Hessian's rank-one terms), the distance to the nearest particle of the centre's
    cluster and that particle's (y, phi), multiplicity (ties) and weight. A particle at equal distance
    from two centres counts in both (measure zero; :func:`nearest_masses` breaks ties).
    """
    d = _distances(x, c, wrap_rows)
    m = d.amin(1)
    member = 1 - torch.sign(d - m[:, None])
    far = m > _coincide(x.dtype)
    safe = torch.where(far, m, torch.ones_like(m))
    if beta == 1.0:
        a, cost = z / safe, m
    elif beta == 2.0:
        a, cost = z, m * m
    else:
        a, cost = z * safe ** (beta - 2.0), m ** beta
    a = a * far
    y, p = x[..., 0], x[..., 1]
    cols = [a, a * y, a * p, z * cost, z * ~far]
    if exact:
        q = (2.0 - beta) * a / (safe * safe)
        qy, qp = q * y, q * p
        cols += [q, qy, qp, qy * y, qp * p, qy * p]
    sums = torch.bmm(member, torch.stack(cols, 1).transpose(1, 2))
    if not exact:
        return sums
    # nearest particle of each cluster (padding never: its weight is 0)
    big = torch.finfo(x.dtype).max / 4
    dm = torch.where((member > 0) & (z != 0)[:, None, :], d, torch.full_like(d, big))
    dk = dm.amin(2)
    onek = 1 - torch.sign(dm - dk[..., None])
    xk = torch.bmm(onek, torch.stack([y, p, torch.ones_like(y), z], 1).transpose(1, 2))
    return torch.cat([sums, dk[..., None], xk], -1)


def _weiszfeld(c: torch.Tensor, s: torch.Tensor, beta: float
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reweighted step per centre ``(r, n)`` (y, phi), and the pull ``g = sum a (x - c)``."""
    A, E = s[..., _A], s[..., _ON]
    pos = A > 0
    one = torch.ones_like(A)
    gy = s[..., _AY] - c[..., 0] * A
    gp = s[..., _AP] - c[..., 1] * A
    my, mp = gy / torch.where(pos, A, one), gp / torch.where(pos, A, one)
    if beta == 1.0:  # Vardi-Zhang: mass E on the centre holds it back
        rn = torch.sqrt(gy * gy + gp * gp)
        keep = torch.where(E > 0, (1 - E / torch.where(rn > 0, rn, one)).clamp(0, 1), one)
        my, mp = my * keep, mp * keep
    elif beta < 1.0:  # a centre on a particle is a local minimum
        my, mp = my * (E == 0), mp * (E == 0)
    return my * pos, mp * pos, gy, gp


def _newton_or_snap(c: torch.Tensor, s: torch.Tensor, beta: float, gy: torch.Tensor,
                    gp: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per centre: the exact-mode move ``(r, n)`` (y, phi), where to use it ``(r, n)`` bool, and
    where it is a majoriser step off a particle (which over-relaxation may lengthen).

    Where the nearest particle ``k`` of the cluster dominates the weights (``a_k > A / 2``:
    Weiszfeld steps crawl there), the particle is set apart: a reweighted step of the other
    particles' cost, then the exact minimiser of its quadratic majoriser plus the particle's
    cone ``z_k theta`` (beta = 1): a shrink towards ``x_k`` that lands **on** it when the
    others' pull is at most ``z_k`` (Vardi-Zhang) -- a median on a particle is then reached
    exactly, in one step. beta < 1: onto the particle; beta > 1: the others' step.
    Elsewhere a **Newton** step on the cluster's cost, where it stays within half the distance
    to the nearest particle (the cost is smooth there)."""
    A = s[..., _A]
    one = torch.ones_like(A)
    cy, cp = c[..., 0], c[..., 1]
    q, qy, qp = s[..., _Q], s[..., _QY], s[..., _QP]
    syy = s[..., _QYY] - 2 * cy * qy + cy * cy * q
    spp = s[..., _QPP] - 2 * cp * qp + cp * cp * q
    syp = s[..., _QYP] - cy * qp - cp * qy + cy * cp * q
    hyy, hpp, hyp = A - syy, A - spp, -syp
    det = hyy * hpp - hyp * hyp
    ok = (A > 0) & (s[..., _ON] == 0) & (hyy > 0) & (det > 1e-9 * A * A)
    det = torch.where(ok, det, one)
    ny = (hpp * gy - hyp * gp) / det
    np_ = (hyy * gp - hyp * gy) / det
    dk, zk = s[..., _DNEAR], s[..., _KZ]
    newton = ok & (torch.sqrt(ny * ny + np_ * np_) < _NEWTON_REACH * dk)
    # the nearest particle set apart: a Weiszfeld step of the others' cost from c, then the
    # exact minimiser of (its quadratic majoriser + the particle's cone): a shrink towards x_k
    ky, kp = s[..., _KY] - cy, s[..., _KP] - cp
    ak = zk / torch.where(dk > 0, dk, one)
    near = (s[..., _KN] == 1) & (dk > 0) & (ak > 0.5 * A) & (s[..., _ON] == 0)
    rest = torch.where(near, A - ak, one)
    vy, vp = (gy - ak * ky) / rest - ky, (gp - ak * kp) / rest - kp  # from x_k
    if beta == 1.0:
        vn = torch.sqrt(vy * vy + vp * vp)
        f = (1 - zk / rest / torch.where(vn > 0, vn, one)).clamp_min(0)
    else:
        f = (beta > 1.0) * one  # beta < 1: onto the particle
    my = torch.where(near, ky + f * vy, ny)
    mp = torch.where(near, kp + f * vp, np_)
    return my, mp, near | newton, near & (f > 0)


def _propose(c: torch.Tensor, s: torch.Tensor, relax: torch.Tensor, full: torch.Tensor,
             beta: float, exact: bool) -> torch.Tensor:
    """Proposed centres ``(r, n, 2)``: Weiszfeld steps times ``relax (r,)``; on ``full (r,)``
    rows with ``exact`` the Newton / snap moves where they apply."""
    my, mp, gy, gp = _weiszfeld(c, s, beta)
    lam = relax[:, None]
    my, mp = my * lam, mp * lam
    if exact and beta != 2.0:
        ny, np_, use, off = _newton_or_snap(c, s, beta, gy, gp)
        use = use & full[:, None]
        ny, np_ = torch.where(off, ny * lam, ny), torch.where(off, np_ * lam, np_)
        my, mp = torch.where(use, ny, my), torch.where(use, np_, mp)
    return torch.stack([c[..., 0] + my, wrap_angle(c[..., 1] + mp)], -1)


class _Rows:
    """The live rows of a :func:`lloyd` call, sorted by width, with their jets' particles."""

    def __init__(self, x, z, jet, widths, dtype):
        order = torch.argsort(widths[jet], stable=True)
        self.index = order  # original row of each live row
        self.x = x[jet[order]].to(dtype)
        self.z = z[jet[order]].to(dtype)
        self.width = widths[jet[order]]
        self.phi_max = _phi_max(self.x, self.z)

    def keep(self, k: torch.Tensor) -> None:
        self.index, self.x, self.z = self.index[k], self.x[k], self.z[k]
        self.width, self.phi_max = self.width[k], self.phi_max[k]

    def blocks(self) -> List[Tuple[int, int, int]]:
        """``(lo, hi, width)`` runs of at most :data:`ROWS` live rows of one width."""
        out = []
        widths, starts = torch.unique_consecutive(self.width, return_counts=True)
        lo = 0
        for w, k in zip(widths.tolist(), starts.tolist()):
            for a in range(lo, lo + k, ROWS):
                out.append((a, min(a + ROWS, lo + k), w))
            lo += k
        return out

    def sums(self, c: torch.Tensor, beta: float, exact: bool) -> torch.Tensor:
        """:func:`cluster_sums` of every live row at centres ``c``, each at its own width."""
        wrap = self.phi_max + c[..., 1].abs().amax(1) > math.pi
        out: List[torch.Tensor] = []
        for lo, hi, w in self.blocks():
            rows_wrap = torch.nonzero(wrap[lo:hi]).squeeze(1) if bool(wrap[lo:hi].any()) else None
            out.append(cluster_sums(self.x[lo:hi, :w], self.z[lo:hi, :w], c[lo:hi], beta=beta,
                                    exact=exact, wrap_rows=rows_wrap))
        return torch.cat(out) if len(out) > 1 else out[0]


def lloyd(x: torch.Tensor, z: torch.Tensor, jet: torch.Tensor, centers: torch.Tensor, *,
          R: float = 0.8, beta: float = 1.0, max_iter: int = 200, tol: float = 1e-10,
          dtype: torch.dtype = torch.float64, exact: bool = True) -> LloydFit:
    """Minimise ``V`` from many starts at once.

    Parameters
    ----------
    x : (B, M, 2) particle (y, phi) of ``B`` jets, centred frame, real particles first;
    z : (B, M) weights (0 on padding).
    jet : (r,) int64, the jet of each row; centers : (r, n, 2) its starting centres.
    tol : a row ends when a plain step gains less than ``tol * V``.
    dtype : working precision (float32 for cheap searches, float64 for the reported fits).
    exact : Newton and snap steps (:func:`cluster_sums`), for convergence to machine precision.
    """
    r, n, _ = centers.shape
    dev = x.device
    rows = _Rows(x, z, jet, row_widths(z), dtype)
    c = centers[rows.index].to(dtype)
    s = rows.sums(c, beta, exact)
    v = s[..., _COST].sum(1)
    out = LloydFit(torch.empty(r, n, 2, dtype=dtype, device=dev),
                   torch.empty(r, dtype=dtype, device=dev),
                   torch.zeros(r, dtype=torch.int64, device=dev),
                   torch.zeros(r, dtype=torch.bool, device=dev))
    relax = torch.ones(r, dtype=dtype, device=dev)
    full = torch.ones(r, dtype=torch.bool, device=dev)  # this step is not a plain one
    live = torch.ones(r, dtype=torch.bool, device=dev)
    for _ in range(max_iter):
        cn = _propose(c, s, relax, full & live, beta, exact)
        sn = rows.sums(cn, beta, exact)
        vn = sn[..., _COST].sum(1)
        better = (vn <= v) & live
        small = v - vn <= tol * torch.where(better, vn, v)
        c = torch.where(better[:, None, None], cn, c)
        s = torch.where(better[:, None, None], sn, s)
        v = torch.where(better, vn, v)
        out.n_iter[rows.index] += live.to(torch.int64)
        ended = live & ~full & (~better | small)  # a plain step failed or gained too little
        # relaxation grows after a successful full step, restarts at 1 after a failed one
        grow = full & better & ~small
        relax = torch.where(grow, (relax * _GROW).clamp_max(_MAX_RELAX),
                            torch.where(full, torch.ones_like(relax), relax))
        full = better & ~small
        _store(out, rows.index, ended, c, v, converged=True)
        live = live & ~ended
        if not bool(live.any()):
            break
        if int(live.sum()) < 0.75 * live.numel():  # compact
            k = torch.nonzero(live).squeeze(1)
            rows.keep(k)
            c, s, v, relax, full, live = (t[k] for t in (c, s, v, relax, full, live))
    else:
        _store(out, rows.index, live, c, v, converged=False)
    return LloydFit(out.centers, out.value / R ** beta, out.n_iter, out.converged)


def _store(out: LloydFit, index: torch.Tensor, which: torch.Tensor, c: torch.Tensor,
           v: torch.Tensor, converged: bool) -> None:
    if not bool(which.any()):
        return
    k = torch.nonzero(which).squeeze(1)
    rows = index[k]
    out.centers[rows], out.value[rows] = c[k], v[k]
    out.converged[rows] = converged


def nearest_masses(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mass ``(B, n)`` of the particles nearest to each centre (ties to the first centre):
    the optimal weights of the n-point shape at centres ``c (B, n, 2)``."""
    _, near, _, _ = point_objective(x, z, c, 1.0, 1.0)
    return (torch.nn.functional.one_hot(near, c.shape[1]).to(z.dtype) * z[:, :, None]).sum(1)


def _deltas(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x (B, M, 2)``, ``c (B, n, 2)`` -> ``x_i - c_j`` with wrapped phi, ``(B, M, n, 2)``."""
    d = x[:, :, None, :] - c[:, None, :, :]
    return torch.stack([d[..., 0], wrap_angle(d[..., 1])], dim=-1)


def point_objective(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, R: float, beta: float):
    """``V(c)`` ``(B,)``, nearest-centre index ``(B, M)``, differences ``x_i - c_j``
    ``(B, M, n, 2)`` and distances ``(B, M, n)`` (one jet per row; reference implementation)."""
    delta = _deltas(x, c)
    dist = delta.norm(dim=-1)
    dmin, near = dist.min(dim=-1)
    v = (z * (dmin / R) ** beta).sum(dim=1)
    return v, near, delta, dist


def coarse_grain(x: torch.Tensor, z: torch.Tensor, seeds: torch.Tensor, *, R: float = 0.8,
                 beta: float = 1.0, max_iter: int = 5, compiled: Optional[bool] = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each jet by ``n`` pseudo-particles: the n-point cloud nearest to it in
    ``EMD_{beta,R}`` that :func:`lloyd` reaches from ``seeds`` (e.g. exclusive-kT subjets) in
    ``max_iter`` iterations (plain reweighted steps, float64).

    Parameters
    ----------
    x : (B, M, 2) particle (y, phi); z : (B, M) weights (0 on padding).
    seeds : (B, n, 2) starting points.

    Returns
    -------
    points (B, n, 2); weights (B, n): the mass of the particles nearest to each point (rows
    sum as ``z``'s); mask (B, n): weight > 0; distance (B,): the exact EMD between each jet and
    its cloud (its n-subjettiness value at these points). For any distribution Q,
    ``|EMD(jet, Q) - EMD(cloud, Q)| <= distance`` (triangle inequality, beta = 1).

    compiled : None (default): the compiled kernel
    (:func:`shaper.coarse_kernel.coarse_grain_compiled`, the same numbers to rounding) for CPU
    float64 jets with ``beta >= 1`` whose particles and seeds all lie within ``|phi| < pi / 2``
    (centred jets: no azimuth difference can leave ``(-pi, pi]``, where the two sum the pull
    differently), this torch code otherwise (for ``beta < 1`` the two can part at an
    accept / reject decision taken at rounding level: ~1e-8 relative on some sample jets);
    True / False force one (True: CPU float64 only).
    """
    cpu64 = x.device.type == "cpu" and x.dtype == torch.float64
    if compiled is None and cpu64 and beta >= 1.0:
        compiled = bool((_phi_max(x, z) < math.pi / 2).all()) and \
            bool((seeds[..., 1].abs() < math.pi / 2).all())
    if compiled:
        if not cpu64:
            raise ValueError("coarse_grain(compiled=True) takes CPU float64 jets only")
        return coarse_grain_compiled(x, z, seeds, R=R, beta=beta, max_iter=max_iter)
    jet = torch.arange(x.shape[0], device=x.device)
    fit = lloyd(x, z, jet, seeds.to(x.dtype), R=R, beta=beta, max_iter=max_iter, tol=0.0,
                dtype=torch.float64, exact=False)
    c = fit.centers.to(x.dtype)
    w = nearest_masses(x, z, c)
    v = point_objective(x, z, c, R, beta)[0]
    return c, w, w > 0, v


def point_value_grads(x: torch.Tensor, z: torch.Tensor, pt_sum: torch.Tensor, c: torch.Tensor,
                      R: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact gradients of ``V`` at optimal centres (envelope theorem: centres held fixed).

    Returns ``dV/dpT (B, M)`` (per unit pT of each particle; ``V`` depends on pT through
    ``z = pT / sum pT``) and ``dV/d(y, phi) (B, M, 2)``. Zero on padding. Where a particle
    sits on its centre (a kink of V for ``beta <= 1``) it gets minus the sum of the other
    gradients of its cluster (the derivative when the centre follows it, which it does
    while it stays the cluster's median).
    """
    _, near, delta, dist = point_objective(x, z, c, R, beta)
    dmin = dist.min(dim=-1).values
    cost = (dmin / R) ** beta
    v = (z * cost).sum(dim=1, keepdim=True)
    real = z > 0
    safe = torch.where(pt_sum > 0, pt_sum, torch.ones_like(pt_sum))
    g_pt = torch.where(real, (cost - v) / safe[:, None], torch.zeros_like(cost))
    dsel = torch.gather(delta, 2, near[:, :, None, None].expand(-1, -1, 1, 2)).squeeze(2)
    dm = torch.where(dmin > 0, dmin, torch.ones_like(dmin))
    coinc = dmin < _ON_CENTRE
    fac = torch.where(coinc, torch.zeros_like(dm), z * beta * dm ** (beta - 1.0) / R ** beta / dm)
    g_x = fac[..., None] * dsel
    # particles sitting on a centre (beta <= 1: V is not differentiable there). V is invariant
    # under translating a cluster with its centre, so the gradients of one cluster sum to zero;
    # the particles on the centre take minus the others' sum, shared by weight.
    n = c.shape[1]
    own = torch.nn.functional.one_hot(near, n).to(z.dtype)  # (B, M, n)
    rest = torch.einsum("bmn,bmk->bnk", own, g_x)  # (B, n, 2)
    eta = torch.einsum("bmn,bm->bn", own, z * coinc)
    share = torch.where(coinc, z, torch.zeros_like(z))[..., None] * torch.einsum(
        "bmn,bnk->bmk", own, -rest / torch.where(eta > 0, eta, torch.ones_like(eta))[..., None])
    return g_pt, g_x + share

