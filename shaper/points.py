"""The exact point path of :class:`shaper.Shaper`: n-subjettiness of every jet of a chunk in one
batch, and seeds at those optima for the general path.

For each ``n`` (:func:`fit_points`; ``n - 1`` is fitted first, so tau_n <= tau_(n-1) always):

1. **starts** (:func:`point_starts`): the exclusive-kT axes; the hardest particle nearest to
   each (winner-take-all axes); the ``n + 1`` exclusive-kT axes with one left out (``n + 1``
   starts: which prongs one axis covers is the usual ambiguity between local minima); in the
   compiled engine the ``(n-1)``-subjettiness axes with one centre split in two along a
   principal axis of its particles (:data:`SPLIT`; ``2 (n - 1)`` starts: both orientations of
   a two-prong split of one blob); the ``(n-1)``-subjettiness axes plus the particle that
   costs most. All come from one exclusive-kT clustering of the chunk
   (:class:`shaper.seeds.KtSeeds`).
2. **search**: Lloyd / Weiszfeld iterations from every start to a loose tolerance
   (:data:`SEARCH_TOL`, at most :data:`SEARCH_ITER` iterations);
3. **local search** (up to ``swaps`` rounds, 2 by default, a jet's rounds ending after one
   that lowers its value by less than :data:`ROUND_GAIN`; :func:`local_search`): where a new
   centre pays most is measured by its *gain* (how much ``V`` falls when a particle becomes
   one more centre); the ``(n-1)`` optimum plus each of its :data:`SWAP_CANDIDATES` best-gain
   particles, then swap moves (each centre of the best so far replaced by each best-gain
   particle of the other ``n - 1``: the k-median local search, which moves a prong from where
   one is split to where one is missing), all searched like the starts; a jet's best is
   replaced where a move finds a lower value. Candidates are each jet's :data:`CANDIDATES`
   hardest particles. **Restarts** (``restarts > 0``, off by default): rounds of
   :data:`RESTART_ROUND` perturbed copies of each jet's best centres (every centre moved
   uniformly within ``[-R, R]^2``, as fastjet-contrib's ``MultiPass_Axes`` does; fixed
   quasi-random offsets, the same for every jet), searched likewise;
4. **polish**: each jet's best row, the structured starts' best where step 3 replaced it,
   and its kT row where that is another one, in float64 with Newton and snap steps to
   :data:`POLISH_TOL`;
5. **report**: the least exact value (:func:`point_value`, float64) among the polished rows, the
   kT axes themselves and the ``(n-1)`` axes plus the costliest particle. So the value never
   exceeds the kT-axes value nor tau_(n-1), the extra starts never make it higher than the
   kT start alone would, and step 3 never makes it higher than without it (up to rounding:
   the same row polished among other rows was seen to differ by 1e-13 relative). The weights
   are the masses nearest to each centre (the optimal plan of n free-weight points), the
   centres come by decreasing weight, and the value is an exact EMD (no POT call needed).

Two engines run these steps (:func:`point_engine` chooses: the compiled one on CPU, torch
elsewhere). **numba** (:func:`fit_points_compiled`, :mod:`shaper.point_kernel`): one compiled
call per chunk (per thread's share of it) runs the whole search of each jet in turn (float32
search sums, float64 centres, polish and report), with per-jet early exit. **torch** (:func:`fit_points`): every start of every jet
is a row of one batch; :func:`shaper.lloyd.lloyd` searches in float32 and polishes in float64,
on any device. The two find the same minima up to rounding on almost every jet (tested).

Every jet of a chunk goes through one :class:`PointBatch` (all width groups at once: no
per-group loops; the jets split over the worker threads); a jet's numbers do not depend on the
other jets nor on the thread split (see :mod:`shaper.lloyd` and :mod:`shaper.point_kernel`).
"""
from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from physkit.angles import wrap_angle
from physkit.flow import Status

from .batching import thread_map
from .group import GroupFit
from .lloyd import WIDTH_STEP, lloyd, point_value_grads, real_counts, theta
from .seeds import KtSeeds

if TYPE_CHECKING:  # pragma: no cover
    from physkit.events import Events

    from .group import JetGroup

#: iteration cap and tolerance (relative gain of a plain step) of the float32 search
SEARCH_ITER, SEARCH_TOL = 20, 1e-4
#: tolerance of the float64 polish (relative gain of a plain step)
POLISH_TOL = 1e-10
#: perturbed restarts per round
RESTART_ROUND = 4
#: rounds of swap moves (:func:`local_search`) by default, and best-gain particles tried per move
SWAPS, SWAP_CANDIDATES = 2, 5
#: the compiled engine's split starts: each centre of the ``(n-1)`` optimum replaced by two
#: this many standard deviations of its particles' spread either side along each principal axis
SPLIT = 0.5
#: a jet's next round of swap moves only after one that lowered its value by more than this
#: fraction (a round that lowers nothing would repeat itself)
ROUND_GAIN = 1e-3
#: hardest particles per jet where the local search may put a new centre
CANDIDATES = 64
#: fewest jets per worker thread
_MIN_PART = 64
#: engines of the point path (:func:`point_engine`)
ENGINES = ("numba", "torch")

__all__ = ["PointFit", "PointBatch", "PointSeeds", "fit_points", "fit_points_compiled",
           "point_engine", "ENGINES", "point_starts", "point_value",
           "local_search", "SEARCH_ITER", "SEARCH_TOL", "POLISH_TOL", "RESTART_ROUND", "SWAPS",
           "SWAP_CANDIDATES", "SPLIT", "ROUND_GAIN"]


class PointFit(NamedTuple):
    """n-subjettiness of ``B`` jets: centres ``(B, n, 2)`` and weights ``(B, n)`` (float64,
    centred frame; by decreasing weight, ties in the order found), value ``(B,)`` (tau_n, an
    exact EMD) and status ``(B,)`` int8 (MAX_STEPS where the polish hit its iteration cap)."""

    centers: torch.Tensor
    weights: torch.Tensor
    value: torch.Tensor
    status: torch.Tensor


def _block_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis (a multiple of 32) in a fixed order: 32-wide blocks, then the
    blocks in sequence -- zero padding adds exact zeros."""
    blocks = t.reshape(*t.shape[:-1], -1, WIDTH_STEP).sum(-1)
    out = blocks[..., 0]
    for k in range(1, blocks.shape[-1]):
        out = out + blocks[..., k]
    return out


def point_value(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, R: float, beta: float
                ) -> torch.Tensor:
    """``V(c) = sum_i z_i min_j (theta_ij / R)^beta`` ``(B,)`` at centres ``c (B, n, 2)``.

    ``x (B, M, 2)``, ``z (B, M)`` (0 on padding, ``M`` a multiple of 32). Summed particle by
    particle in a fixed order (:func:`_block_sum`), so padding adds exact zeros and adding a
    centre can only lower the value, bit for bit."""
    m = theta(x, z, c).amin(1)
    return _block_sum(z * (m if beta == 1.0 else m ** beta)) / R ** beta


def _first_nearest(d: torch.Tensor) -> torch.Tensor:
    """Membership ``(B, n, M)`` bool of each particle in its nearest centre (ties: the first)."""
    eq = d == d.amin(1, keepdim=True)
    return eq & (torch.cumsum(eq, 1) == 1)


def _nearest_masses(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mass ``(B, n)`` of the particles nearest to each centre (ties go to the first one)."""
    return _block_sum(_first_nearest(theta(x, z, c)) * z[:, None, :])


def _wta(x: torch.Tensor, z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """The hardest particle nearest to each centre ``(B, n, 2)`` (the centre where none is)."""
    zn = _first_nearest(theta(x, z, centers)) * z[:, None, :]  # (B, n, M)
    hard = zn.argmax(dim=2)
    got = torch.gather(x, 1, hard[..., None].expand(-1, -1, 2))
    return torch.where((zn.amax(dim=2) > 0)[..., None], got, centers)


def _costliest(x: torch.Tensor, z: torch.Tensor, centers: torch.Tensor, beta: float
               ) -> torch.Tensor:
    """The particle ``(B, 1, 2)`` of largest ``z_i min_j theta_ij^beta``."""
    d = theta(x, z, centers).amin(1)
    far = (z * d ** beta).argmax(dim=1)
    return x[torch.arange(x.shape[0], device=x.device), far][:, None]


def point_starts(x: torch.Tensor, z: torch.Tensor, seeds: KtSeeds, n: int, beta: float,
                 previous: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Starting centres ``(B, S, n, 2)`` (see the module docstring): slot 0 the exclusive-kT
    axes, then the winner-take-all axes, the ``n + 1`` kT axes less one each, and (given the
    ``(n-1)``-point optimum ``previous (B, n-1, 2)``) those plus the costliest particle, last."""
    kt = seeds.subjets(n)[0].to(x.dtype)
    more = seeds.subjets(n + 1)[0].to(x.dtype)
    starts = [kt, _wta(x, z, kt)]
    starts += [torch.cat([more[:, :j], more[:, j + 1:]], 1) for j in range(n + 1)]
    if previous is not None:
        starts.append(torch.cat([previous, _costliest(x, z, previous, beta)], 1))
    return torch.stack(starts, 1)


def _search(x, z, starts, *, R, beta, max_iter):
    """Float32 search from ``starts (B, S, n, 2)``: centres ``(B, S, n, 2)`` (x's dtype) and
    values ``(B, S)``."""
    B, S, n, _ = starts.shape
    jet = torch.arange(B, device=x.device).repeat_interleave(S)
    fit = lloyd(x, z, jet, starts.reshape(B * S, n, 2), R=R, beta=beta,
                max_iter=min(max_iter, SEARCH_ITER), tol=SEARCH_TOL, dtype=torch.float32,
                exact=False)
    return fit.centers.to(x.dtype).view(B, S, n, 2), fit.value.view(B, S)


def _jiggles(count: int, n: int, R: float, dtype, device) -> torch.Tensor:
    """``count`` fixed perturbations ``(count, n, 2)`` of n centres, uniform in ``[-R, R]^2``
    per centre (a Sobol sequence: the same for every jet, so no jet depends on another)."""
    u = torch.quasirandom.SobolEngine(2 * n, scramble=False).draw(count + 1)[1:]
    return ((2 * u - 1) * R).to(dtype=dtype, device=device).view(count, n, 2)


def _restart(x, z, best_c, best_v, restarts: int, *, R, beta, max_iter):
    """Perturbed restarts (module docstring): rounds of :data:`RESTART_ROUND` perturbations of
    each jet's best centres, searched; a round's best replaces the jet's best where lower."""
    n = best_c.shape[1]
    offsets = _jiggles(restarts, n, R, x.dtype, x.device)
    for lo in range(0, restarts, RESTART_ROUND):
        d = offsets[lo:lo + RESTART_ROUND]
        st = best_c[:, None] + d[None]
        st = torch.stack([st[..., 0], wrap_angle(st[..., 1])], -1)
        c, v = _search(x, z, st, R=R, beta=beta, max_iter=max_iter)
        vb, kb = v.min(1)
        take = vb < best_v
        best_c = torch.where(take[:, None, None], c[torch.arange(x.shape[0]), kb], best_c)
        best_v = torch.where(take, vb, best_v)
    return best_c, best_v


def _order(t: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, K)`` sorting each row of ``t (B, K)`` by decreasing value, ties in index
    order (so padding appended to a row never reorders it)."""
    return torch.sort(t, dim=1, descending=True, stable=True).indices


class Candidates(NamedTuple):
    """Where a new centre may go: each jet's :data:`CANDIDATES` hardest particles
    ``(B, H, 2)``, their distances to every particle ``theta (B, H, M)`` (float32, to the power
    beta) and whether each is a real particle ``(B, H)``."""

    x: torch.Tensor
    theta: torch.Tensor
    real: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, z: torch.Tensor, beta: float) -> "Candidates":
        """The candidates of the jets ``x (B, M, 2)``, ``z (B, M)`` (ties: the first particle;
        padding after every real particle)."""
        top = _order(z)[:, :min(CANDIDATES, x.shape[1])]
        cx = torch.gather(x, 1, top[..., None].expand(-1, -1, 2))
        t = theta(x, z, cx).to(torch.float32)
        return cls(cx, t if beta == 1.0 else t ** beta, torch.gather(z, 1, top) > 0)


def _gain_particles(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, cand: Candidates,
                    k: int, beta: float) -> torch.Tensor:
    """The ``k`` candidates ``(B, k, 2)`` whose addition as a centre to ``c (B, m, 2)`` lowers
    ``V`` most (gain ``sum_j z_j max(0, d_j^beta - theta_ij^beta)``, ``d_j`` particle ``j``'s
    distance to its nearest centre): where a new prong pays most."""
    d = theta(x, z, c).amin(1).to(torch.float32)  # (B, M)
    if beta != 1.0:
        d = d ** beta
    gain = _block_sum((d[:, None, :] - cand.theta).clamp_min(0) * z[:, None, :].to(torch.float32))
    gain = torch.where(cand.real, gain, torch.full_like(gain, -1.0))
    top = _order(gain)[:, :k]
    return torch.gather(cand.x, 1, top[..., None].expand(-1, -1, 2))


def _swap_starts(x, z, c, cand: Candidates, k: int, beta: float) -> torch.Tensor:
    """Swap moves ``(B, n k, n, 2)`` of centres ``c (B, n, 2)``: each centre ``j`` replaced by
    each of the :func:`_gain_particles` of the other ``n - 1`` (k-median local search: moves a
    prong from where it is split off to where one is missing)."""
    n = c.shape[1]
    out = []
    for j in range(n):
        rest = torch.cat([c[:, :j], c[:, j + 1:]], 1)
        add = _gain_particles(x, z, rest, cand, k, beta)
        out += [torch.cat([rest[:, :j], add[:, a:a + 1], rest[:, j:]], 1)
                for a in range(add.shape[1])]
    return torch.stack(out, 1)


def _take_best(x, z, starts, best_c, best_v, *, R, beta, max_iter):
    """Search ``starts (B, S, n, 2)``; where a jet's best found value is below ``best_v``,
    its centres and value replace ``best_c``, ``best_v``."""
    c, v = _search(x, z, starts, R=R, beta=beta, max_iter=max_iter)
    vb, kb = v.min(1)
    take = vb < best_v
    ar = torch.arange(x.shape[0], device=x.device)
    return (torch.where(take[:, None, None], c[ar, kb], best_c), torch.where(take, vb, best_v))


def local_search(x, z, best_c, best_v, *, previous: Optional[torch.Tensor], swaps: int,
                 R: float, beta: float, max_iter: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Improve each jet's best centres ``best_c (B, n, 2)`` (value ``best_v (B,)``): the
    ``(n-1)`` optimum ``previous`` plus each of its :data:`SWAP_CANDIDATES` best-gain particles,
    then up to ``swaps`` rounds of swap moves (:func:`_swap_starts`; a jet's rounds end after
    one that lowered its value by less than :data:`ROUND_GAIN`), each searched; a jet's best
    is replaced only where a move finds a lower value."""
    k = SWAP_CANDIDATES
    cand = Candidates.of(x, z, beta)
    if previous is not None:
        add = _gain_particles(x, z, previous, cand, k, beta)
        st = torch.stack([torch.cat([previous, add[:, a:a + 1]], 1)
                          for a in range(add.shape[1])], 1)
        best_c, best_v = _take_best(x, z, st, best_c, best_v, R=R, beta=beta,
                                    max_iter=max_iter)
    rows = torch.arange(x.shape[0], device=x.device)
    for _ in range(swaps if best_c.shape[1] > 1 else 0):  # rounds while they gain
        sub = Candidates(*(t[rows] for t in cand))
        xs, zs = x[rows], z[rows]
        c, v = _take_best(xs, zs, _swap_starts(xs, zs, best_c[rows], sub, k, beta),
                          best_c[rows], best_v[rows], R=R, beta=beta, max_iter=max_iter)
        gained = v < best_v[rows] * (1 - ROUND_GAIN)
        best_c, best_v = best_c.index_copy(0, rows, c), best_v.index_copy(0, rows, v)
        rows = rows[gained]
        if rows.numel() == 0:
            break
    return best_c, best_v


def fit_points(x: torch.Tensor, z: torch.Tensor, seeds: KtSeeds, n: int, *, R: float,
               beta: float, max_iter: int, previous: Optional[torch.Tensor] = None,
               restarts: int = 0, swaps: int = SWAPS) -> PointFit:
    """n-subjettiness of the jets ``x (B, M, 2)``, ``z (B, M)`` (centred, real particles first,
    ``M`` a multiple of 32) from the starts of :func:`point_starts`, ``swaps`` rounds of
    :func:`local_search` and ``restarts`` perturbed restarts: float32 search, float64 polish,
    exact report (module docstring)."""
    B = x.shape[0]
    ar = torch.arange(B, device=x.device)
    starts = point_starts(x, z, seeds, n, beta, previous)
    found, vals = _search(x, z, starts, R=R, beta=beta, max_iter=max_iter)
    best = vals.argmin(1)
    c, v = found[ar, best], vals[ar, best]
    if swaps > 0 and n > 1:
        c, v = local_search(x, z, c, v, previous=previous, swaps=swaps, R=R, beta=beta,
                            max_iter=max_iter)
    if restarts > 0:
        c, v = _restart(x, z, c, v, restarts, R=R, beta=beta, max_iter=max_iter)
    # polish: the final best, the structured starts' best where the moves replaced it (so the
    # moves never raise a value) and the kT start where another start was best
    moved = torch.nonzero(v < vals[ar, best]).squeeze(1)
    other = torch.nonzero(best != 0).squeeze(1)
    pj = torch.cat([ar, moved, other])
    init = torch.cat([c, found[moved, best[moved]], found[other, torch.zeros_like(other)]])
    polish = lloyd(x, z, pj, init, R=R, beta=beta, max_iter=max_iter, tol=POLISH_TOL,
                   dtype=torch.float64, exact=True)
    pc = polish.centers.to(x.dtype)
    k = B + moved.numel()  # (each candidate set names every jet at most once)
    cands = [pc[:B], pc[B:k], pc[k:], starts[:, 0]]
    owner = [ar, moved, other, ar]
    if previous is not None:
        cands.append(starts[:, -1])
        owner.append(ar)
    return _report(x, z, cands, owner, polish.converged[:B], R, beta)


def fit_points_compiled(x: torch.Tensor, z: torch.Tensor, seeds: KtSeeds, n: int, *, R: float,
                        beta: float, max_iter: int, previous: Optional[torch.Tensor] = None,
                        restarts: int = 0, swaps: int = SWAPS,
                        counts: Optional[torch.Tensor] = None) -> PointFit:
    """:func:`fit_points` by the compiled per-jet search (:func:`shaper.point_kernel.fit_jets`,
    CPU tensors only): the same starts, moves, polish and report (float32 search sums, the
    rest float64).
    ``counts``: :func:`shaper.lloyd.real_counts` of ``z`` where known."""
    from .point_kernel import fit_jets  # numba: imported (and compiled or loaded) on first use

    B = x.shape[0]
    xs = np.ascontiguousarray(x.detach().to(torch.float64).numpy())
    zs = np.ascontiguousarray(z.detach().to(torch.float64).numpy())
    counts = (real_counts(z) if counts is None else counts).cpu().numpy().astype(np.int64)
    kt = np.ascontiguousarray(seeds.subjets(n)[0].to(torch.float64).cpu().numpy())
    more = np.ascontiguousarray(seeds.subjets(n + 1)[0].to(torch.float64).cpu().numpy())
    prev = (np.zeros((B, 0, 2)) if previous is None
            else np.ascontiguousarray(previous.detach().to(torch.float64).cpu().numpy()))
    jiggle = (_jiggles(restarts, n, R, torch.float64, "cpu").numpy() if restarts > 0
              else np.zeros((0, n, 2)))
    centers, weights = np.zeros((B, n, 2)), np.zeros((B, n))
    value, converged = np.zeros(B), np.zeros(B, dtype=np.bool_)
    fit_jets(xs, zs, counts, kt, more, prev, jiggle, RESTART_ROUND, float(beta),
             float(R) ** float(beta), int(max_iter), int(swaps), ROUND_GAIN, SWAP_CANDIDATES,
             SPLIT, SEARCH_ITER, SEARCH_TOL, POLISH_TOL, CANDIDATES, centers, weights, value,
             converged)
    conv = torch.from_numpy(converged)
    status = torch.where(conv, int(Status.CONVERGED), int(Status.MAX_STEPS)).to(torch.int8)
    return PointFit(torch.from_numpy(centers).to(x.dtype), torch.from_numpy(weights).to(x.dtype),
                    torch.from_numpy(value).to(x.dtype), status)


def point_engine(engine: Optional[str], device: torch.device) -> str:
    """The engine of the point path: ``engine`` where given (one of :data:`ENGINES`), else the
    compiled per-jet search (``"numba"``) on CPU and the batched torch search elsewhere."""
    if engine is None:
        return "numba" if torch.device(device).type == "cpu" else "torch"
    if engine not in ENGINES or (engine == "numba" and torch.device(device).type != "cpu"):
        raise ValueError(f"point_engine must be None, 'torch', or 'numba' (CPU only), got "
                         f"{engine!r} on {device}")
    return engine


def _report(x, z, cands: List[torch.Tensor], owner: List[torch.Tensor], converged, R, beta
            ) -> PointFit:
    """The candidate of least :func:`point_value` per jet (candidate ``k``: centres for the
    jets ``owner[k]``), its weights and status."""
    B, n = x.shape[0], cands[0].shape[1]
    inf = torch.full((B,), math.inf, dtype=x.dtype, device=x.device)
    value, centers = inf.clone(), torch.zeros(B, n, 2, dtype=x.dtype, device=x.device)
    for c, who in zip(cands, owner):
        if who.numel() == 0:
            continue
        v = point_value(x[who], z[who], c, R, beta)
        cur = inf.clone()
        cur[who] = v
        take = cur < value
        value = torch.where(take, cur, value)
        full = centers.clone()
        full[who] = c
        centers = torch.where(take[:, None, None], full, centers)
    centers = torch.stack([centers[..., 0], wrap_angle(centers[..., 1])], -1)
    status = torch.where(converged, int(Status.CONVERGED), int(Status.MAX_STEPS)).to(torch.int8)
    weights = _nearest_masses(x, z, centers)
    order = _order(weights)  # centres by decreasing weight (a canonical order)
    centers = torch.gather(centers, 1, order[..., None].expand(-1, -1, 2))
    return PointFit(centers, torch.gather(weights, 1, order), value, status)


class PointBatch:
    """The jets of a chunk for the point path: every width group in one padded batch, one
    exclusive-kT clustering for all of them (the groups' ``seeds`` become views of it) and the
    n-subjettiness fits, computed once per ``n`` for all jets (thread-safe). Each group's
    ``refined_seeds`` becomes a :class:`PointSeeds` on these fits. ``engine``: see
    :func:`point_engine` (None: compiled on CPU, torch elsewhere)."""

    def __init__(self, groups: List["JetGroup"], *, R: float, beta: float, max_iter: int,
                 restarts: int = 0, swaps: int = SWAPS, workers: int = 1,
                 engine: Optional[str] = None):
        self.groups = groups
        self.R, self.beta, self.max_iter, self.workers = R, beta, max_iter, workers
        self.restarts, self.swaps = restarts, swaps
        width = max(g.x.shape[1] for g in groups)
        width = -(-width // WIDTH_STEP) * WIDTH_STEP
        self.x = torch.cat([torch.nn.functional.pad(g.x, (0, 0, 0, width - g.x.shape[1]))
                            for g in groups])
        self.z = torch.cat([torch.nn.functional.pad(g.z, (0, width - g.z.shape[1]))
                            for g in groups])
        self.seeds, views = KtSeeds.joined([g.seeds for g in groups])
        self.rows: Dict[int, slice] = {}
        lo = 0
        for g, view in zip(groups, views):
            g.seeds = view
            g.refined_seeds = PointSeeds(self, g)
            self.rows[id(g)] = slice(lo, lo + len(g))
            lo += len(g)
        self.engine = point_engine(engine, self.x.device)
        self.counts = real_counts(self.z)
        self._fits: Dict[int, PointFit] = {}
        self._lock = threading.RLock()

    def fit(self, n: int) -> PointFit:
        """n-subjettiness of every jet (fitting ``n - 1`` first, cached)."""
        with self._lock:
            if n not in self._fits:
                prev = self.fit(n - 1).centers if n > 1 else None
                self._fits[n] = self._fit(n, prev)
            return self._fits[n]

    def _fit(self, n: int, prev: Optional[torch.Tensor]) -> PointFit:
        """:func:`fit_points_compiled` (engine ``"numba"``) or :func:`fit_points` (``"torch"``)
        of every jet, the jets split over ``workers`` threads (rows are independent: the split
        does not change any number)."""
        B = self.x.shape[0]
        k = max(1, min(self.workers, B // _MIN_PART))
        # interleaved shares: the jets come in width groups, so each thread gets every width
        parts = [slice(i, None, k) for i in range(k)]

        compiled = self.engine == "numba"
        fit = fit_points_compiled if compiled else fit_points

        def run(rows: slice) -> PointFit:
            kw = {"counts": self.counts[rows]} if compiled else {}
            return fit(self.x[rows], self.z[rows], self.seeds.rows(rows), n, R=self.R,
                       beta=self.beta, max_iter=self.max_iter,
                       previous=None if prev is None else prev[rows],
                       restarts=self.restarts, swaps=self.swaps, **kw)

        with thread_map(len(parts)) as pmap:
            fits = pmap(run, parts)
        out = [torch.empty((B, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in fits[0]]
        for rows, fit_part in zip(parts, fits):
            for o, t in zip(out, fit_part):
                o[rows] = t
        return PointFit(*out)

    def group_fit(self, group: "JetGroup", n: int, return_grads: bool = False) -> GroupFit:
        """:meth:`fit` of the jets of ``group`` (its rows), with gradients on request."""
        f = self.fit(n)
        rows = self.rows[id(group)]
        c, w, v, st = f.centers[rows], f.weights[rows], f.value[rows], f.status[rows]
        grads = None
        if return_grads:
            gp, gx = point_value_grads(group.x, group.z, group.pt_sum, c, self.R, self.beta)
            grads = {"pt": gp, "points": gx}
        return GroupFit({"centers": c, "weights": w}, v, st, grads)


class PointSeeds:
    """Seeds with the interface of :class:`~shaper.seeds.KtSeeds` whose ``subjets(n)`` are the
    exact n-subjettiness optimum of ``group`` (:meth:`PointBatch.fit`) instead of the raw kT
    axes."""

    def __init__(self, batch: PointBatch, group: "JetGroup"):
        self.batch, self.group = batch, group
        self.jets: "Events" = group.seeds.jets

    def __len__(self) -> int:
        return len(self.jets)

    def subjets(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(B, n, 2)`` and weights ``(B, n)`` of the n-subjettiness optimum."""
        p = self.batch.group_fit(self.group, n).params
        return p["centers"], p["weights"]
