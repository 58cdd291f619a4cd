"""Exact fits of point manifolds (n-subjettiness) by batched Lloyd / Weiszfeld iterations.

For ``n`` points with free weights the optimal weights and transport plan are the
nearest-centre assignment, so the EMD between a jet and its best ``n``-point approximation
with centres ``c`` is exactly

    V(c) = sum_i z_i min_j (theta_ij / R)^beta,

(Komiske-Metodiev-Thaler: ``V`` at its minimum is tau_n). We minimise ``V`` over the centres
with Lloyd's alternation: assign every particle to its nearest centre, then move each centre
towards the weighted ``beta``-median of its particles by one iteratively-reweighted step
(``beta = 1``: Weiszfeld with the Vardi-Zhang rule at coincident points; ``beta = 2``: the
mean). For ``beta <= 2`` both half-steps cannot raise ``V``; for any ``beta`` a step is kept
only when ``V`` does not rise, so the returned value is never above the starting one. The
value reported is ``V`` itself -- an exact (not entropic) EMD. Several seeds per jet are run
side by side and the best is kept (:func:`point_starts`: kT axes, winner-take-all particles,
the ``(n-1)``-point optimum plus its costliest particle). Azimuth differences are wrapped
(periodic phi).
"""
from __future__ import annotations

from typing import Optional

import torch

from physkit.angles import wrap_yphi

_COINCIDE = 1e-12
#: a particle closer than this to its centre counts as sitting on it (gradients): Weiszfeld
#: steps approach a median that sits on a particle only to ~1e-9
_ON_CENTRE = 1e-7


def _deltas(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x (B, M, 2)``, ``c (B, n, 2)`` -> ``x_i - c_j`` with wrapped phi, ``(B, M, n, 2)``."""
    return wrap_yphi(x[:, :, None, :] - c[:, None, :, :])


def point_objective(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, R: float, beta: float):
    """``V(c)`` ``(B,)``, nearest-centre index ``(B, M)``, differences ``x_i - c_j``
    ``(B, M, n, 2)`` and distances ``(B, M, n)``."""
    delta = _deltas(x, c)
    dist = delta.norm(dim=-1)
    dmin, near = dist.min(dim=-1)
    v = (z * (dmin / R) ** beta).sum(dim=1)
    return v, near, delta, dist


def _step(x, z, c, near, delta, dist, beta):
    """One reweighted centre update per cluster (assignment ``near`` fixed; ``delta``, ``dist``
    from :func:`_deltas` at ``c``)."""
    n = c.shape[1]
    own = torch.nn.functional.one_hot(near, n).to(x.dtype) * z[:, :, None]  # (B, M, n)
    coinc = dist < _COINCIDE
    safe = torch.where(coinc, torch.ones_like(dist), dist)
    if beta == 2.0:
        w = own
        eta = torch.zeros_like(c[..., 0])
    else:
        w = torch.where(coinc, torch.zeros_like(own), own * safe ** (beta - 2.0))
        eta = (own * coinc).sum(dim=1)  # mass sitting on the centre (Vardi-Zhang)
    s = w.sum(dim=1)  # (B, n)
    r = (w[..., None] * delta).sum(dim=1)  # (B, n, 2)
    ssafe = torch.where(s > 0, s, torch.ones_like(s))
    move = r / ssafe[..., None]
    if beta == 1.0:
        rn = r.norm(dim=-1)
        frac = torch.where(rn > 0, (1.0 - eta / torch.where(rn > 0, rn, torch.ones_like(rn))),
                           torch.zeros_like(rn)).clamp(0.0, 1.0)
        move = move * frac[..., None]
    move = torch.where((s > 0)[..., None], move, torch.zeros_like(move))
    return wrap_yphi(c + move)


def point_starts(x: torch.Tensor, z: torch.Tensor, kt_centers: torch.Tensor, beta: float,
                 previous: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Starting centres ``(B, S, n, 2)`` for :func:`fit_points`.

    ``x (B, M, 2)``, ``z (B, M)``: the jets; ``kt_centers (B, n, 2)``: exclusive-kT axes. The
    seeds are the kT axes, the hardest particle nearest to each kT axis (a winner-take-all
    axis; the kT axis where no particle is nearest to it) and, given the ``(n-1)``-point
    optimum ``previous (B, n-1, 2)``, those centres plus the particle that costs most
    (``z_i min_j theta_ij^beta``), so that the fitted tau_n <= tau_(n-1).
    """
    n = kt_centers.shape[1]
    d = _deltas(x, kt_centers).norm(dim=-1)  # (B, M, n)
    near = torch.nn.functional.one_hot(d.argmin(-1), n).to(z.dtype) * z[:, :, None]
    hard = near.argmax(dim=1)  # (B, n)
    has = near.amax(dim=1) > 0
    wta = torch.gather(x, 1, hard[..., None].expand(-1, -1, 2))
    wta = torch.where(has[..., None], wta, kt_centers)
    starts = [kt_centers, wta]
    if previous is not None:
        dp = _deltas(x, previous).norm(dim=-1).amin(-1)
        far = (z * dp ** beta).argmax(dim=1)
        extra = x[torch.arange(x.shape[0], device=x.device), far][:, None]
        starts.append(torch.cat([previous, extra], dim=1))
    return torch.stack(starts, dim=1)


def fit_points(x: torch.Tensor, z: torch.Tensor, centers: torch.Tensor, *, R: float = 0.8,
               beta: float = 1.0, max_iter: int = 200, tol: float = 1e-7
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise ``V(c)`` from starting centres.

    Parameters
    ----------
    x : (B, M, 2) particle (y, phi), centred frame; z : (B, M) weights (0 on padding).
    centers : (B, S, n, 2) ``S`` seeds per jet.

    Returns
    -------
    centers (B, n, 2), weights (B, n) (mass assigned to each centre), value (B,),
    n_iter (B,) int64 -- iterations used by the best seed's row.
    """
    b, s, n, _ = centers.shape
    m = x.shape[1]
    xs = x[:, None].expand(b, s, m, 2).reshape(b * s, m, 2)
    zs = z[:, None].expand(b, s, m).reshape(b * s, m)
    c = centers.reshape(b * s, n, 2).to(x.dtype).clone()
    v, near, delta, dist = point_objective(xs, zs, c, R, beta)
    iters = torch.zeros(b * s, dtype=torch.int64, device=x.device)
    rows = torch.arange(b * s, device=x.device)  # working set (compacted as rows finish)
    xa, za, ca, va, na = xs, zs, c, v, near
    lam = torch.ones(b * s, dtype=x.dtype, device=x.device)  # over-relaxation factor per row
    for _ in range(max_iter):
        step = _step(xa, za, ca, na, delta, dist, beta) - ca
        cn = wrap_yphi(ca + lam[:, None, None] * step)
        vn, nn, dn, distn = point_objective(xa, za, cn, R, beta)
        better = vn <= va
        gain = va - vn
        ca = torch.where(better[:, None, None], cn, ca)
        na = torch.where(better[:, None], nn, na)
        delta = torch.where(better[:, None, None, None], dn, delta)
        dist = torch.where(better[:, None, None], distn, dist)
        va = torch.where(better, vn, va)
        iters[rows] += 1
        # a plain step (lam = 1) never raises V for beta <= 2: stop when it no longer helps
        # an over-relaxed step that fails or gains little is retried as a plain one
        plain = lam == 1.0
        good = better & (gain > tol * va.clamp_min(1e-30))
        live = good | ~plain
        lam = torch.where(good, (lam * 1.5).clamp_max(8.0), torch.ones_like(lam))
        n_live = int(live.sum())
        if n_live < rows.numel():
            c[rows], v[rows], near[rows] = ca, va, na
            if n_live == 0:
                break
            k = live.nonzero().squeeze(1)
            rows = rows[k]
            xa, za, ca, va, na, delta, dist, lam = (t[k] for t in (xa, za, ca, va, na, delta,
                                                                   dist, lam))
    else:
        if ca is not c:  # (max_iter = 0: nothing moved)
            c[rows], v[rows], near[rows] = ca, va, na
    v = v.reshape(b, s)
    best = v.argmin(dim=1)
    ar = torch.arange(b, device=x.device)
    c = c.reshape(b, s, n, 2)[ar, best]
    near = near.reshape(b, s, m)[ar, best]
    w = (torch.nn.functional.one_hot(near, n).to(z.dtype) * z[:, :, None]).sum(dim=1)
    return c, w, v[ar, best], iters.reshape(b, s)[ar, best]


def coarse_grain(x: torch.Tensor, z: torch.Tensor, seeds: torch.Tensor, *, R: float = 0.8,
                 beta: float = 1.0, max_iter: int = 5
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each jet by ``n`` pseudo-particles: the n-point cloud nearest to it in
    ``EMD_{beta,R}`` that :func:`fit_points` reaches from ``seeds`` (e.g. exclusive-kT subjets).

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
    """
    c, w, v, _ = fit_points(x, z, seeds[:, None].to(x.dtype), R=R, beta=beta,
                            max_iter=max_iter)
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
