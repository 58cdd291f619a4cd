"""The general path of :class:`shaper.Shaper`: any manifold, fitted by a flow on the Sinkhorn
divergence and reported at the exact EMD.

For each jet group and observable:

1. **candidates**: the kT initialisation (from the exact n-subjettiness axes with
   ``refine_seeds``), plus the optima of smaller members of the nested family fitted in the
   same call, embedded in this one (new prong with zero weight; pileup fraction 0);
2. **flow**: projected Adam (:func:`physkit.flow.minimize`) from every candidate on the debiased
   Sinkhorn divergence (:func:`physkit.ot.sinkhorn_divergence`) between the jet and the
   shape's ``n_samples`` quadrature nodes per shape, dual potentials warm-started from step to
   step and the jet's self-potential cached (``eps`` fixed, no annealing). By default the flow
   sees each jet **coarse-grained** to ``coarse_points`` = n pseudo-particles (its exact
   n-point optimum, the n-point cloud nearest to the jet in EMD,
   :func:`shaper.lloyd.coarse_grain`; for beta = 1 the EMD from any shape to the coarse jet
   differs from that to the jet by at most their distance tau_n); jets with at most n
   particles are kept as they are. All jets are then equally wide, so the jets of every width
   group flow together (:meth:`GeneralPath.shared_flow`), in buckets of ``bucket_size`` rows
   run in parallel threads; ``polish_steps`` > 0 adds flow steps on the full jets;
3. **exact evaluation**: the exact EMD (:func:`physkit.ot.emd_batch`, ``n_eval_samples`` nodes
   per shape) at every candidate, every flowed end point and (with ``refine_seeds``) the raw
   kT initialisation; the best is kept per jet, so the
   value never exceeds the one at the initial parameters nor that of a smaller family member
   (up to the quadrature error).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import torch

from physkit.flow import Status, minimize
from physkit.ot import SinkhornPotentials, emd_batch, emd_batch_grads, sinkhorn_divergence
from physkit.ot.sinkhorn import NEWTON_MAX_POINTS

from .batching import align_nodes, aligned_width, buckets, thread_map
from .group import GroupFit, JetGroup, Params
from .lloyd import coarse_grain
from .observables import Observable

if TYPE_CHECKING:  # pragma: no cover
    from .shaper import Shaper

#: per group: (candidate parameter sets, flowed parameters (S * B, ...), flow status (S * B,))
SharedFlow = Tuple[List[Params], Params, torch.Tensor]


class GeneralPath:
    """Fits of any observable to jet groups, with the settings of ``shaper`` (read when used)."""

    def __init__(self, shaper: "Shaper"):
        self.s = shaper

    # ------------------------------------------------------------------ exact values
    def exact(self, obs: Observable, params: Params, x: torch.Tensor, z: torch.Tensor,
              n_jobs: Optional[int]) -> torch.Tensor:
        """Exact EMD ``(B,)`` float64 between the jets ``x (B, M, 2)``, ``z (B, M)`` and the
        shapes ``params`` (``n_eval_samples`` nodes per shape), ``n_jobs`` threads."""
        s = self.s
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        with torch.no_grad():
            y, b = obs.sample(p, s.n_eval_samples, s.R, batch=z)
        b = b.clamp_min(0)
        v = emd_batch(x, z, y, b, R=s.R, beta=s.beta, n_jobs=n_jobs)
        return torch.as_tensor(v, dtype=torch.float64, device=z.device)

    def grads(self, obs: Observable, params: Params, group: JetGroup) -> Dict[str, torch.Tensor]:
        """d value / d pT ``(B, M)`` and d value / d(y, phi) ``(B, M, 2)`` of the particles at
        fixed fitted shape (the derivative of the observable where the fit is a local optimum:
        envelope theorem), from the exact EMD's optimal plan and dual potentials
        (:func:`physkit.ot.emd_batch_grads`) at the reported quadrature (``n_eval_samples``)."""
        s = self.s
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        with torch.no_grad():
            y, b = obs.sample(p, s.n_eval_samples, s.R, batch=group.z)
        pt = group.z * group.pt_sum[:, None]
        _, gp, gx = emd_batch_grads(group.x, pt, y, b.clamp_min(0), R=s.R, beta=s.beta,
                                    n_jobs=group.workers)
        dev = group.z.device
        m = group.mask
        gp = torch.as_tensor(gp, dtype=torch.float64, device=dev)
        gx = torch.as_tensor(gx, dtype=torch.float64, device=dev)
        return {"pt": torch.where(m, gp, torch.zeros_like(gp)),
                "points": torch.where(m[..., None], gx, torch.zeros_like(gx))}

    # ------------------------------------------------------------------ fit
    def fit(self, obs: Observable, group: JetGroup, return_grads: bool = False,
            shared: Optional[SharedFlow] = None) -> GroupFit:
        """Fit ``obs`` to ``group``: flow from every candidate (or take the flow of
        :meth:`shared_flow`), then keep the candidate or end point of least exact EMD."""
        B = len(group)
        if not obs.specs:  # nothing to fit (isotropy)
            v = self.exact(obs, {}, group.x, group.z, group.workers)
            grads = self.grads(obs, {}, group) if return_grads else None
            return GroupFit({}, v, torch.zeros(B, dtype=torch.int8, device=group.x.device), grads)
        cands, flowed, status = shared if shared is not None else self._flow_group(obs, group)
        if self.s.polish_steps > 0 and self.s.coarse_points is not None:
            # a few steps on the full jets correct the coarse-graining
            S = len(cands)
            flowed, _ = self._run_buckets(obs, group.x.repeat(S, 1, 1), group.z.repeat(S, 1),
                                          group.mask.repeat(S, 1), flowed, self.s.polish_steps,
                                          group.workers)
        params, value, status = self._best_exact(obs, group, cands, flowed, status)
        grads = self.grads(obs, params, group) if return_grads else None
        return GroupFit(params, value, status, grads)

    def _best_exact(self, obs: Observable, group: JetGroup, cands: List[Params],
                    flowed: Params, flow_status: torch.Tensor
                    ) -> Tuple[Params, torch.Tensor, torch.Tensor]:
        """Exact values at every start and every flowed end point ``(S * B, ...)``; the best per
        jet: (params ``(B, ...)`` float64, value ``(B,)``, status ``(B,)`` of its flow)."""
        B, S = len(group), len(cands)
        sets = [{k: v.to(torch.float64) for k, v in c.items()} for c in cands]
        sets += [{k: v[s * B:(s + 1) * B].detach().to(torch.float64) for k, v in flowed.items()}
                 for s in range(S)]
        if self.s.refine_seeds:  # the plain kT initialisation is a candidate too (not flowed)
            sets.append({k: v.to(torch.float64)
                         for k, v in obs.init(group.seeds, self.s.R).items()})
        vals = torch.stack([self.exact(obs, p, group.x, group.z, group.workers)
                            for p in sets])  # (2S, B)
        vals = torch.where(torch.isfinite(vals), vals, torch.full_like(vals, float("inf")))
        best = vals.argmin(dim=0)
        ar = torch.arange(B, device=group.x.device)
        params = {k: torch.stack([p[k] for p in sets])[best, ar] for k in obs.specs}
        value = vals[best, ar]
        st_all = flow_status.reshape(S, B)
        status = st_all[torch.where(best < 2 * S, best % S, torch.zeros_like(best)), ar]
        return params, value, status

    # ------------------------------------------------------------------ starting points
    def _candidates(self, obs: Observable, group: JetGroup) -> List[Params]:
        """Initial parameter sets: kT seeds, plus embeddings of fitted smaller family members."""
        s = self.s
        cands = [obs.init(group.refined_seeds if s.refine_seeds else group.seeds, s.R)]
        fam = obs.family
        if fam is None:
            return cands
        if fam.pileup and fam.without_pileup() in group.fitted:
            p = {k: v.clone() for k, v in group.fitted[fam.without_pileup()].items()}
            p["pileup_fraction"] = torch.zeros_like(group.z[:, 0])
            cands.append(p)
        if fam.n > 1 and fam.fewer() in group.fitted:
            cands.append(_expand(obs, group.fitted[fam.fewer()], cands[0], fam.n))
        return cands

    def _start(self, obs: Observable, group: JetGroup) -> Tuple[List[Params], Params]:
        """Starting parameters: (candidate sets, their projections stacked ``(S * B, ...)`` in
        the flow dtype)."""
        cands = self._candidates(obs, group)
        constraints = obs.constraints
        p0 = {k: constraints[k].project(torch.cat([c[k] for c in cands]).to(self.s.dtype))
              for k in obs.specs}
        return cands, p0

    def coarse(self, group: JetGroup) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coarse-grained jets ``(x (B, n, 2), z (B, n), mask (B, n))``, ``n = coarse_points``:
        a jet with more than n particles becomes the exact n-subjettiness optimum (Lloyd path
        from exclusive-kT seeds: n points with the energy of their nearest particles, the
        n-point cloud nearest to the jet in EMD, at distance tau_n), a jet with at most n
        particles is kept as it is (zero-padded to n). Each jet's result depends on that jet
        only (its group's width is set by its own multiplicity). Cached on the group."""
        if group.coarse is None:
            s = self.s
            n = s.coarse_points
            x, z, mask = group.x, group.z, group.mask
            if x.shape[1] > n:  # every jet of this group has more than n particles
                c0, _ = group.seeds.subjets(n)
                group.coarse = coarse_grain(x, z, c0, R=s.R, beta=s.beta,
                                            max_iter=s.coarse_iter)[:3]
            else:
                pad = n - x.shape[1]
                group.coarse = (torch.nn.functional.pad(x, (0, 0, 0, pad)),
                                torch.nn.functional.pad(z, (0, pad)),
                                torch.nn.functional.pad(mask, (0, pad), value=False))
        return group.coarse

    # ------------------------------------------------------------------ flows
    def _flow_group(self, obs: Observable, group: JetGroup) -> SharedFlow:
        """The flow of one group on its own: (candidates, flowed ``(S * B, ...)``, status)."""
        cands, p0 = self._start(obs, group)
        S = len(cands)
        if self.s.coarse_points is not None:  # the flow runs on the coarse-grained jets
            cx, cz, cm = self.coarse(group)
            xs, zs, ms = cx.repeat(S, 1, 1), cz.repeat(S, 1), cm.repeat(S, 1)
        else:
            xs, zs, ms = group.x.repeat(S, 1, 1), group.z.repeat(S, 1), group.mask.repeat(S, 1)
        # buckets of similar multiplicity (less padding work in the (b, M, K) kernels)
        order = torch.argsort(ms.sum(1), stable=True)
        flowed, status = self._run_buckets(obs, xs, zs, ms, p0, self.s.steps, group.workers,
                                           order)
        return cands, flowed, status

    def shared_flow(self, obs: Observable, groups: Sequence[JetGroup], workers: int
                    ) -> List[SharedFlow]:
        """The flow of every width group at once on coarse-grained jets (all
        ``coarse_points`` wide, see :meth:`coarse`): one batched flow instead of one per group,
        ``workers`` threads. Returns, per group, ``(candidates, flowed params (S * B, ...),
        status (S * B,))``."""
        per, xs, zs, ms = [], [], [], []
        for group in groups:
            cands, p0 = self._start(obs, group)
            cx, cz, cm = self.coarse(group)
            S = len(cands)
            per.append((cands, p0))
            xs.append(cx.repeat(S, 1, 1))
            zs.append(cz.repeat(S, 1))
            ms.append(cm.repeat(S, 1))
        p0 = {k: torch.cat([p[1][k] for p in per]) for k in obs.specs}
        flowed, status = self._run_buckets(obs, torch.cat(xs), torch.cat(zs), torch.cat(ms), p0,
                                           self.s.steps, workers)
        out, lo = [], 0
        for cands, p in per:
            n = next(iter(p.values())).shape[0]
            out.append((cands, {k: v[lo:lo + n] for k, v in flowed.items()}, status[lo:lo + n]))
            lo += n
        return out

    def _run_buckets(self, obs: Observable, xs: torch.Tensor, zs: torch.Tensor,
                     ms: torch.Tensor, p0: Params, steps: int, workers: int,
                     order: Optional[torch.Tensor] = None) -> Tuple[Params, torch.Tensor]:
        """Flow rows ``xs (n, M, 2)``, ``zs (n, M)``, ``ms (n, M)`` from ``p0 (n, ...)`` in
        buckets of at most ``bucket_size`` rows (at least one per worker thread); returns
        (params, status ``(n,)`` int8). Rows are independent, so the split does not change any
        result."""
        n = xs.shape[0]
        if order is None:
            order = torch.arange(n, device=xs.device)
        rows_per_bucket = buckets(order, self.s.bucket_size, workers)
        dtype = self.s.dtype

        def run(rows):  # full width: a row's arithmetic does not depend on the bucket
            return self._flow(obs, xs[rows].to(dtype), zs[rows].to(dtype), ms[rows],
                              {k: v[rows] for k, v in p0.items()}, steps)

        with thread_map(min(workers, len(rows_per_bucket))) as pmap:
            outs = pmap(run, rows_per_bucket)
        flowed = {k: v.clone() for k, v in p0.items()}
        status = torch.zeros(n, dtype=torch.int8, device=xs.device)
        for rows, (pb, st) in zip(rows_per_bucket, outs):
            for k in flowed:
                flowed[k][rows] = pb[k].to(flowed[k].dtype)
            status[rows] = st.to(torch.int8)
        return flowed, status

    def _flow(self, obs: Observable, xs: torch.Tensor, zs: torch.Tensor, ms: torch.Tensor,
              p0: Params, steps: int) -> Tuple[Params, torch.Tensor]:
        """Adam flow on the Sinkhorn divergence for one bucket of rows ``xs (b, M, 2)``,
        ``zs (b, M)``, ``ms (b, M)`` (flow dtype) from ``p0 (b, ...)``; returns (params,
        status ``(b,)``)."""
        s = self.s
        n = xs.shape[0]
        cache: Dict[str, torch.Tensor] = {}

        def sinkhorn(params, idx, max_iter):
            y, b = obs.sample(params, s.n_samples, s.R, batch=zs[idx])
            y, b, mask_y = align_nodes(y, b)
            warm = None
            if cache:
                warm = SinkhornPotentials(cache["f"][idx], cache["g"][idx], None, cache["q"][idx],
                                          s.eps, None, None)
            return sinkhorn_divergence(
                xs[idx], zs[idx], y, b, R=s.R, beta=s.beta, eps=s.eps, mask_x=ms[idx],
                mask_y=mask_y, scaling=s.scaling, max_iter=max_iter, tol=s.sinkhorn_tol,
                warm_start=warm, return_potentials=True, rowwise=True,
                self_x=cache["p"][idx] if cache else None)

        # converge the potentials once at the start; then a few warm-started iterations per
        # step track the moving shape
        with torch.no_grad():
            _, pot = sinkhorn(p0, torch.arange(n, device=xs.device), s.sinkhorn_warmup)
        cache.update(f=pot.f.clone(), g=pot.g.clone(), p=pot.p.clone(), q=pot.q.clone())
        per_step = s.sinkhorn_iter
        if per_step is None:  # Newton's method (one step tracks the shape) or Sinkhorn sweeps
            k = obs.sample({kk: v[:1] for kk, v in p0.items()}, s.n_samples, s.R,
                           batch=zs[:1])[0].shape[1]
            per_step = 1 if min(xs.shape[1], aligned_width(k)) <= NEWTON_MAX_POINTS else 5

        def loss_fn(params, idx):
            value, pot = sinkhorn(params, idx, per_step)
            cache["f"][idx], cache["g"][idx], cache["q"][idx] = pot.f, pot.g, pot.q
            return value

        if steps <= 0:
            return p0, torch.full((n,), int(Status.MAX_STEPS), dtype=torch.int8, device=xs.device)
        res = minimize(loss_fn, p0, obs.constraints, steps=steps, optimizer="adam",
                       lr=s.lr, schedule=s.schedule, tol=s.tol, patience=s.patience,
                       device=xs.device)
        return res.params, res.status


def _expand(obs: Observable, small: Params, kt: Params, n: int) -> Params:
    """Embed an ``(n-1)``-prong optimum into the ``n``-prong family: the extra prong takes the kT
    init's last centre and shape with zero weight (same shape as the smaller optimum)."""
    out = {}
    for k, spec in obs.specs.items():
        if k == "weights":
            w = small[k]
            if w.shape[1] == 2 * (n - 1):  # points then shapes
                zero = torch.zeros_like(w[:, :1])
                out[k] = torch.cat([w[:, :n - 1], zero, w[:, n - 1:], zero], dim=1)
            else:
                out[k] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
        elif k == "pileup_fraction":
            out[k] = small[k].clone()
        elif spec.shape and spec.shape[0] == n:
            out[k] = torch.cat([small[k], kt[k][:, n - 1:n].to(small[k].dtype)], dim=1)
        else:
            out[k] = small[k].clone()
    return out
