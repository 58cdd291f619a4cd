"""The general path of :class:`shaper.Shaper`: any manifold, fitted by a flow and reported at the
exact EMD.

For each jet group and observable:

1. **starts** (:meth:`GeneralPath.starts`), flowed side by side as rows of one batch: the kT
   initialisation (from the exact n-subjettiness axes with ``refine_seeds``), the further
   starts named in ``starts`` (``"kt"``: the raw exclusive-kT initialisation; ``"wide"``: the
   observable's own diverse seeds, :meth:`~shaper.observables.Observable.starts`, e.g. a wide
   light disk around the hardest prong), and the optima of smaller members of the nested family
   fitted in the same call, embedded in this one (new prong with zero weight; pileup fraction 0);
2. **flow** (``flow``): ``"exact"`` -- majorise-minimise steps on the exact EMD between the
   jet and the shape's ``n_samples`` nodes per shape (:mod:`shaper.exact_flow`), or
   ``"sinkhorn"`` -- projected Adam on the debiased Sinkhorn divergence
   (:mod:`shaper.sinkhorn_flow`); optionally with Koopman jumps (``koopman``). The flow sees
   each jet **coarse-grained** to ``coarse_points`` pseudo-particles when that is set (its exact
   n-point optimum, :func:`shaper.lloyd.coarse_grain`; jets with at most n particles are kept
   as they are); then all jets are equally wide and the jets of every width group flow
   together (:meth:`GeneralPath.shared_flow`). Rows run in buckets of ``bucket_size`` in
   parallel threads. Shapes with affine nodes (1-ringiness, 1-diskiness) run the exact flow,
   the polish and the selection's exact values in the compiled engine
   :mod:`shaper.affine_flow` on CPU (:meth:`GeneralPath.compiled`; ``flow_engine="torch"``
   forces torch);
3. **selection** (:meth:`GeneralPath.select`): per jet the flowed end point of least flow value
   is evaluated exactly at ``n_eval_samples`` nodes per shape on the full jet (``polish_steps``
   > 0 with the exact flow: that many exact steps on the full jet at that resolution from it,
   each step's value exact); then the first start's end point and initial parameters (the
   single-start fit) and (with ``refine_seeds``) the raw kT initialisation -- skipped on the
   jets where a cheap lower bound of its exact EMD (:func:`physkit.ot.bounds.emd_lower_bound`)
   is not below the best value so far, evaluated exactly elsewhere. The best is kept per jet,
   so the value never exceeds the one at the initial parameters, multi-start never raises it
   above the single-start fit's, and it never exceeds that of a smaller family member whose
   optimum is a start (up to the quadrature error).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from physkit.flow import FlowResult
from physkit.ot import emd_batch, emd_batch_grads
from physkit.ot.bounds import emd_lower_bound
from physkit.ot.multiscale import emd_batch_coarse_to_fine

from .affine_flow import exact_affine, flow_affine, is_affine, new_warm_starts
from .batching import buckets, thread_map
from .exact_flow import flow_exact
from .group import GroupFit, JetGroup, Params
from .lloyd import coarse_grain
from .observables import Observable
from .sinkhorn_flow import flow_sinkhorn

if TYPE_CHECKING:  # pragma: no cover
    from .shaper import Shaper


#: weight learning rate of the polish steps: none to speak of (the Gauss-Newton steps of the
#: positional parameters cannot raise the value; a weight step at full rate mostly would)
_POLISH_WEIGHT_LR = 1e-12
#: a candidate's exact value known from another solve (its polish) bounds a new evaluation
#: from below to this relative tolerance (two exact solvers agree to ~1e-15)
_KNOWN_RTOL = 1e-9
#: a parameterless shape's exact EMD at ``n_eval_samples`` is warm-started through its
#: quadratures at ``n_eval_samples // d`` for these ``d`` (coarse to fine; levels under 2 skipped)
_COARSE_DIVISORS = (16, 4)


class Flowed(NamedTuple):
    """The flow of one group: ``starts`` (``S`` parameter sets ``(B, ...)``), the flowed
    parameters ``params`` ``(S * B, ...)`` (start-major), their flow status and the flow's own
    final values ``loss`` ``(S * B,)``; ``nested``: how many of the starts (the last ones) are
    embedded optima of smaller family members."""

    starts: List[Params]
    params: Params
    status: torch.Tensor
    loss: torch.Tensor
    nested: int = 0


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
        y, b = self._eval_nodes(obs, params, z)
        v = emd_batch(x, z, y, b, R=s.R, beta=s.beta, n_jobs=n_jobs)
        return torch.as_tensor(v, dtype=torch.float64, device=z.device)

    def _exact_parameterless(self, obs: Observable, group: JetGroup) -> torch.Tensor:
        """Exact EMD ``(B,)`` float64 between the group's jets and a shape without parameters
        at ``n_eval_samples`` (the number :meth:`exact` gives), solved from the optimal
        particle potentials of the same shape at ``n_eval_samples // d``, ``d`` in
        :data:`_COARSE_DIVISORS` (:func:`physkit.ot.multiscale.emd_batch_coarse_to_fine`)."""
        s = self.s
        ks = [s.n_eval_samples // d for d in _COARSE_DIVISORS if s.n_eval_samples // d >= 2]
        levels = []
        for k in ks + [s.n_eval_samples]:
            with torch.no_grad():
                y, b = obs.sample({}, k, s.R, batch=group.z)
            levels.append((y.to(torch.float64), b.to(torch.float64).clamp_min(0)))
        sol = emd_batch_coarse_to_fine(group.x, group.z, levels, R=s.R, beta=s.beta,
                                       n_jobs=self._pot_jobs(group))
        return torch.as_tensor(sol.value, dtype=torch.float64, device=group.z.device)

    def _eval_nodes(self, obs: Observable, params: Params, z: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        with torch.no_grad():
            y, b = obs.sample(p, self.s.n_eval_samples, self.s.R, batch=z)
        return y, b.clamp_min(0)

    def _pot_jobs(self, group: Optional[JetGroup] = None) -> Optional[int]:
        """Threads of the exact solves: on CPU the group's (width groups and flow buckets
        already run in parallel threads), on other devices ``n_jobs`` (the solves are CPU work
        while the device waits; None: every core)."""
        if self.s.device.type == "cpu":
            return 1 if group is None else group.workers
        return self.s.n_jobs

    def grads(self, obs: Observable, params: Params, group: JetGroup) -> Dict[str, torch.Tensor]:
        """d value / d pT ``(B, M)`` and d value / d(y, phi) ``(B, M, 2)`` of the particles at
        fixed fitted shape (the derivative of the observable where the fit is a local optimum:
        envelope theorem), from the exact EMD's optimal plan and dual potentials
        (:func:`physkit.ot.emd_batch_grads`) at the reported quadrature (``n_eval_samples``)."""
        s = self.s
        y, b = self._eval_nodes(obs, params, group.z)
        pt = group.z * group.pt_sum[:, None]
        _, gp, gx = emd_batch_grads(group.x, pt, y, b, R=s.R, beta=s.beta,
                                    n_jobs=self._pot_jobs(group))
        dev = group.z.device
        m = group.mask
        gp = torch.as_tensor(gp, dtype=torch.float64, device=dev)
        gx = torch.as_tensor(gx, dtype=torch.float64, device=dev)
        return {"pt": torch.where(m, gp, torch.zeros_like(gp)),
                "points": torch.where(m[..., None], gx, torch.zeros_like(gx))}

    # ------------------------------------------------------------------ fit
    def fit(self, obs: Observable, group: JetGroup, return_grads: bool = False,
            shared: Optional[Flowed] = None) -> GroupFit:
        """Fit ``obs`` to ``group``: flow from every start (or take the flow of
        :meth:`shared_flow`), then keep the start or end point of least exact EMD."""
        B = len(group)
        if not obs.specs:  # nothing to fit (isotropy)
            v = self._exact_parameterless(obs, group)
            grads = self.grads(obs, {}, group) if return_grads else None
            return GroupFit({}, v, torch.zeros(B, dtype=torch.int8, device=group.x.device), grads)
        fl = shared if shared is not None else self._flow_group(obs, group)
        s = self.s
        if s.flow == "sinkhorn" and s.polish_steps > 0 and s.coarse_points is not None:
            # a few steps on the full jets correct the coarse-graining
            S = len(fl.starts)
            res = self._run_buckets(obs, group.x.repeat(S, 1, 1), group.z.repeat(S, 1),
                                    group.mask.repeat(S, 1), fl.params, s.polish_steps,
                                    group.workers)
            fl = Flowed(fl.starts, res.params, fl.status, res.loss, fl.nested)
        params, value, status = self.select(obs, group, fl)
        grads = self.grads(obs, params, group) if return_grads else None
        return GroupFit(params, value, status, grads)

    # ------------------------------------------------------------------ selection
    def select(self, obs: Observable, group: JetGroup, fl: Flowed
               ) -> Tuple[Params, torch.Tensor, torch.Tensor]:
        """Per jet the best by exact EMD of: the flowed end point of least flow value, the end
        point and the start of the first start (the single-start fit), and (with
        ``refine_seeds``) the raw kT initialisation; candidates whose lower bound is not below
        the best so far are skipped. Returns (params ``(B, ...)`` float64, value ``(B,)``,
        status ``(B,)``: that of the flow of the jet's best start, the one flowed to the end)."""
        B, S = len(group), len(fl.starts)
        ar = torch.arange(B, device=group.x.device)
        ends = [{k: v[i * B:(i + 1) * B].detach().to(torch.float64) for k, v in fl.params.items()}
                for i in range(S)]
        status = fl.status.reshape(S, B)
        first = fl.loss.reshape(S, B).argmin(dim=0)  # the flow's best end point per jet
        best = {k: torch.stack([e[k] for e in ends])[first, ar] for k in obs.specs}
        best_status = status[first, ar]
        # compiled engine: the full jets' solves warm-start from the first candidate's bases
        warm = (new_warm_starts(B, group.x.shape[1], self.s.n_eval_samples)
                if self.compiled(obs) else None)
        best, value = self._first_value(obs, group, best, warm)
        polished, known = self._polish_rows(obs, group, ends[0], first != 0, warm)
        others = [(polished, status[0], first != 0, known)]
        guards = [0] + list(range(S - fl.nested, S))  # the single start, the smaller optima
        others += [({k: v.to(torch.float64) for k, v in fl.starts[i].items()}, status[i], None,
                    None) for i in sorted(set(guards))]
        if self.s.refine_seeds:
            kt = {k: v.to(torch.float64) for k, v in obs.init(group.seeds, self.s.R).items()}
            others.append((kt, status[0], None, None))
        if warm is not None:
            others = self._values_affine(obs, group, others, warm, value)
        for cand, st, rows, known in others:
            best, value, _ = self._challenge(obs, group, best, value, best_status, cand, st, rows,
                                             known)
        return best, value, best_status

    def _values_affine(self, obs: Observable, group: JetGroup, cands: list, warm: np.ndarray,
                       value: torch.Tensor) -> list:
        """The candidates ``(params, status, rows, known)`` of :meth:`select` with ``known``,
        their exact values ``(B,)`` on every jet, filled in where None: one compiled call for
        all of them, warm-started from ``warm`` (``(B, ...)``); ``+inf`` where the lower bound
        is not below ``value (B,)`` (the best so far: such a candidate cannot win)."""
        todo = [i for i, c in enumerate(cands) if c[3] is None]
        if not todo:
            return cands
        B, n = len(group), len(todo)
        params = {k: torch.cat([cands[i][0][k] for i in todo]) for k in obs.specs}
        s = self.s
        v = exact_affine(obs, group.x.repeat(n, 1, 1), group.z.repeat(n, 1), params,
                         n_samples=s.n_eval_samples, R=s.R, beta=s.beta,
                         warm=np.concatenate([warm] * n), beat=value.repeat(n))
        out = list(cands)
        for j, i in enumerate(todo):
            out[i] = cands[i][:3] + (v[j * B:(j + 1) * B],)
        return out

    def _first_value(self, obs: Observable, group: JetGroup, params: Params,
                     warm: Optional[np.ndarray] = None) -> Tuple[Params, torch.Tensor]:
        """Exact value of the first candidate, after ``polish_steps`` exact steps on the full
        jets at the reported resolution (exact flow, ``steps > 0``) when asked. ``warm``:
        per-jet warm starts of the compiled engine (filled here), or None."""
        if self._polishes():
            res = self._polish(obs, group.x, group.z, params, self._pot_jobs(group), warm)
            return {k: v.to(torch.float64) for k, v in res.params.items()}, res.loss
        if warm is not None:
            s = self.s
            return params, exact_affine(obs, group.x, group.z, params,
                                        n_samples=s.n_eval_samples, R=s.R, beta=s.beta,
                                        warm=warm)
        return params, self.exact(obs, params, group.x, group.z, self._pot_jobs(group))

    def _polishes(self) -> bool:
        s = self.s
        return s.flow == "exact" and s.polish_steps > 0 and s.steps > 0

    def _polish(self, obs: Observable, x: torch.Tensor, z: torch.Tensor, params: Params,
                n_jobs: Optional[int], warm: Optional[np.ndarray] = None):
        """``polish_steps`` exact steps (positions only) on full jets ``x (b, M, 2)``,
        ``z (b, M)`` at the reported resolution, from ``params (b, ...)`` (``warm``: the
        compiled engine's warm starts, see :func:`~shaper.affine_flow.flow_affine`)."""
        s = self.s
        if self.compiled(obs):
            return flow_affine(obs, x, z, params, steps=s.polish_steps,
                               n_samples=s.n_eval_samples, R=s.R, beta=s.beta, tol=s.tol,
                               patience=s.patience, warm=warm)
        return flow_exact(obs, x, z, params, steps=s.polish_steps, n_samples=s.n_eval_samples,
                          R=s.R, beta=s.beta, weight_lr=_POLISH_WEIGHT_LR, tol=s.tol,
                          patience=s.patience, n_jobs=n_jobs)

    def compiled(self, obs: Observable) -> bool:
        """Whether the exact flow of ``obs`` runs in the compiled engine
        (:mod:`shaper.affine_flow`): affine nodes, exact flow, CPU, no Koopman jumps, and
        ``flow_engine`` not ``"torch"``."""
        s = self.s
        return (s.flow == "exact" and s.flow_engine == "auto" and s.device.type == "cpu"
                and s.koopman is None and is_affine(obs))

    def _polish_rows(self, obs: Observable, group: JetGroup, params: Params,
                     rows: torch.Tensor, warm: Optional[np.ndarray] = None
                     ) -> Tuple[Params, Optional[torch.Tensor]]:
        """``params (B, ...)`` with the first candidate's polish applied on ``rows (B,)`` bool:
        where another start won the flow, the first start's end point is challenged polished,
        as the single-start fit reports it, so multi-start never ends above single start.
        Also the polish's exact values ``(B,)`` on ``rows`` (None without a polish). ``warm``:
        per-jet warm starts of the compiled engine, or None."""
        if not self._polishes() or not bool(rows.any()):
            return params, None
        idx = torch.nonzero(rows).squeeze(1)
        res = self._polish(obs, group.x.index_select(0, idx), group.z.index_select(0, idx),
                           {k: v.index_select(0, idx) for k, v in params.items()},
                           self._pot_jobs(group), None if warm is None else warm[idx.numpy()])
        out = {k: v.clone() for k, v in params.items()}
        for k in out:
            out[k][idx] = res.params[k].to(out[k].dtype)
        known = torch.full((len(group),), float("nan"), dtype=torch.float64, device=idx.device)
        known[idx] = res.loss.to(torch.float64)
        return out, known

    def _challenge(self, obs: Observable, group: JetGroup, best: Params, value: torch.Tensor,
                   best_status: torch.Tensor, cand: Params, cand_status: torch.Tensor,
                   rows: Optional[torch.Tensor], known: Optional[torch.Tensor] = None
                   ) -> Tuple[Params, torch.Tensor, torch.Tensor]:
        """``cand`` replaces ``best`` on the jets (``rows (B,)`` bool, None: all) where its exact
        value is lower; it is evaluated only where its lower bound is below ``value``
        (``known (B,)``: its exact value from another solve, used as that bound less
        :data:`_KNOWN_RTOL`; the compiled engine's own solves are taken as they are, a torch
        path candidate wins with this exact evaluation's value)."""
        s = self.s
        idx = torch.arange(len(group), device=value.device) if rows is None else \
            torch.nonzero(rows).squeeze(1)
        if known is not None:
            idx = idx[known[idx] * (1 - _KNOWN_RTOL) < value[idx]]
        if idx.numel() == 0:
            return best, value, best_status
        if known is not None and self.compiled(obs):
            return _take(best, value, best_status, cand, cand_status, idx,
                         known.index_select(0, idx))
        sub = {k: v.index_select(0, idx) for k, v in cand.items()}
        x, z = group.x.index_select(0, idx), group.z.index_select(0, idx)
        y, b = self._eval_nodes(obs, sub, z)
        if known is not None:
            lb = known[idx] * (1 - _KNOWN_RTOL)
        else:
            lb = emd_lower_bound(x, z, y, b, R=s.R, beta=s.beta, centers=_centres(obs, sub))
        keep = lb < value.index_select(0, idx)
        idx, x, z, y, b = (t[keep] for t in (idx, x, z, y, b))
        if idx.numel() == 0:
            return best, value, best_status
        v = torch.as_tensor(emd_batch(x, z, y, b, R=s.R, beta=s.beta,
                                      n_jobs=self._pot_jobs(group)),
                            dtype=torch.float64, device=value.device)
        return _take(best, value, best_status, cand, cand_status, idx, v)

    # ------------------------------------------------------------------ starting points
    def starts(self, obs: Observable, group: JetGroup) -> Tuple[List[Params], int]:
        """Starting parameter sets: the kT initialisation (at the exact n-subjettiness axes with
        ``refine_seeds``), the ``starts`` named in the settings, and embeddings of the fitted
        smaller family members (last; their number is returned too)."""
        s = self.s
        seeds = group.refined_seeds if s.refine_seeds else group.seeds
        out = [obs.init(seeds, s.R)]
        if "kt" in s.starts and s.refine_seeds:
            out.append(obs.init(group.seeds, s.R))
        if "wide" in s.starts:
            out.extend(obs.starts(seeds, s.R))
        n_own = len(out)
        fam = obs.family
        if fam is not None and fam.pileup and fam.without_pileup() in group.fitted:
            p = {k: v.clone() for k, v in group.fitted[fam.without_pileup()].items()}
            p["pileup_fraction"] = torch.zeros_like(group.z[:, 0])
            out.append(p)
        if fam is not None and fam.n > 1 and fam.fewer() in group.fitted:
            out.append(_expand(obs, group.fitted[fam.fewer()], out[0], fam.n))
        return out, len(out) - n_own

    def _start(self, obs: Observable, group: JetGroup) -> Tuple[List[Params], Params, int]:
        """Starting parameters: (start sets, their projections stacked ``(S * B, ...)`` in the
        flow dtype, the number of nested starts)."""
        starts, nested = self.starts(obs, group)
        constraints = obs.constraints
        dtype = self._dtype()
        p0 = {k: constraints[k].project(torch.cat([c[k] for c in starts]).to(dtype))
              for k in obs.specs}
        return starts, p0, nested

    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.s.flow == "exact" else self.s.dtype

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
    def _flow_group(self, obs: Observable, group: JetGroup) -> Flowed:
        """The flow of one group on its own."""
        starts, p0, nested = self._start(obs, group)
        S = len(starts)
        if self.s.coarse_points is not None:  # the flow runs on the coarse-grained jets
            cx, cz, cm = self.coarse(group)
            xs, zs, ms = cx.repeat(S, 1, 1), cz.repeat(S, 1), cm.repeat(S, 1)
        else:
            xs, zs, ms = group.x.repeat(S, 1, 1), group.z.repeat(S, 1), group.mask.repeat(S, 1)
        res = self._multi_start(obs, xs, zs, ms, p0, [(S, len(group))], group.workers)
        return Flowed(starts, res.params, res.status, res.loss, nested)

    def shared_flow(self, obs: Observable, groups: Sequence[JetGroup], workers: int
                    ) -> List[Flowed]:
        """The flow of every width group at once on coarse-grained jets (all
        ``coarse_points`` wide, see :meth:`coarse`): one batched flow instead of one per group,
        ``workers`` threads (also for each group's starts and coarse-graining, side by side).
        Returns one :class:`Flowed` per group."""
        per, xs, zs, ms = [], [], [], []
        with thread_map(min(workers, len(groups))) as pmap:
            prepared = pmap(lambda g: (self._start(obs, g), self.coarse(g)), groups)
        for (starts, p0, nested), (cx, cz, cm) in prepared:
            S = len(starts)
            per.append((starts, p0, nested))
            xs.append(cx.repeat(S, 1, 1))
            zs.append(cz.repeat(S, 1))
            ms.append(cm.repeat(S, 1))
        p0 = {k: torch.cat([p[1][k] for p in per]) for k in obs.specs}
        layout = [(len(st), len(g)) for (st, _, _), g in zip(per, groups)]
        res = self._multi_start(obs, torch.cat(xs), torch.cat(zs), torch.cat(ms), p0, layout,
                                workers)
        out, lo = [], 0
        for starts, p, nested in per:
            n = next(iter(p.values())).shape[0]
            out.append(Flowed(starts, {k: v[lo:lo + n] for k, v in res.params.items()},
                              res.status[lo:lo + n], res.loss[lo:lo + n], nested))
            lo += n
        return out

    def _multi_start(self, obs: Observable, xs: torch.Tensor, zs: torch.Tensor,
                     ms: torch.Tensor, p0: Params, layout: List[Tuple[int, int]],
                     workers: int) -> FlowResult:
        """Flow every start (rows ``(n, ...)``: per group of ``layout`` ``(S, B)``, ``S * B``
        rows start-major) for ``screen_steps`` steps, then only each jet's first start and its
        ``screen_keep`` best ones (by the flow's value, :func:`_screened_rows`) for the
        remaining ``steps - screen_steps``; the others keep their screened end points. The first start
        follows the same two legs whether it flows alone or among others, so the single-start
        fit's end point is among the multi-start candidates. ``screen_steps = 0`` or
        ``>= steps``: every start flows ``steps`` steps in one leg."""
        s = self.s
        order = torch.argsort(ms.sum(1), stable=True)  # similar multiplicities share buckets
        if not 0 < s.screen_steps < s.steps:
            return self._run_buckets(obs, xs, zs, ms, p0, s.steps, workers, order)
        res = self._run_buckets(obs, xs, zs, ms, p0, s.screen_steps, workers, order)
        rows = _screened_rows(res.loss, layout, s.screen_keep)
        more = self._run_buckets(obs, xs[rows], zs[rows], ms[rows],
                                 {k: v[rows] for k, v in res.params.items()},
                                 s.steps - s.screen_steps, workers,
                                 torch.argsort(ms[rows].sum(1), stable=True))
        for k in res.params:
            res.params[k][rows] = more.params[k]
        res.status[rows], res.loss[rows] = more.status, more.loss
        res.n_steps[rows] += more.n_steps
        return res

    def _run_buckets(self, obs: Observable, xs: torch.Tensor, zs: torch.Tensor,
                     ms: torch.Tensor, p0: Params, steps: int, workers: int,
                     order: Optional[torch.Tensor] = None) -> FlowResult:
        """Flow rows ``xs (n, M, 2)``, ``zs (n, M)``, ``ms (n, M)`` from ``p0 (n, ...)`` in
        buckets of at most ``bucket_size`` rows (at least one per worker thread); returns
        params, loss ``(n,)``, steps and status ``(n,)`` int8. Rows are independent, so the
        split does not change any result."""
        n = xs.shape[0]
        if order is None:
            order = torch.arange(n, device=xs.device)
        rows_per_bucket = buckets(order, self.s.bucket_size, workers)
        dtype = self._dtype()

        def run(rows):  # full width: a row's arithmetic does not depend on the bucket
            return self._flow(obs, xs[rows].to(dtype), zs[rows].to(dtype), ms[rows],
                              {k: v[rows] for k, v in p0.items()}, steps)

        with thread_map(min(workers, len(rows_per_bucket))) as pmap:
            outs = pmap(run, rows_per_bucket)
        flowed = {k: v.clone() for k, v in p0.items()}
        status = torch.zeros(n, dtype=torch.int8, device=xs.device)
        loss = torch.zeros(n, dtype=torch.float64, device=xs.device)
        n_steps = torch.zeros(n, dtype=torch.int64, device=xs.device)
        for rows, res in zip(rows_per_bucket, outs):
            for k in flowed:
                flowed[k][rows] = res.params[k].to(flowed[k].dtype)
            status[rows] = res.status.to(torch.int8)
            loss[rows] = res.loss.to(torch.float64)
            n_steps[rows] = res.n_steps
        return FlowResult(flowed, loss, n_steps, status)

    def _flow(self, obs: Observable, xs: torch.Tensor, zs: torch.Tensor, ms: torch.Tensor,
              p0: Params, steps: int) -> FlowResult:
        """The flow (``flow`` setting) for one bucket of rows ``xs (b, M, 2)``, ``zs (b, M)``,
        ``ms (b, M)`` from ``p0 (b, ...)``."""
        s = self.s
        if self.compiled(obs):
            return flow_affine(obs, xs, zs, p0, steps=steps, n_samples=s.n_samples, R=s.R,
                               beta=s.beta, tol=s.tol, patience=s.patience)
        if s.flow == "exact":
            return flow_exact(obs, xs, zs, p0, steps=steps, n_samples=s.n_samples, R=s.R,
                              beta=s.beta, weight_lr=s.lr, tol=s.tol, patience=s.patience,
                              n_jobs=self._pot_jobs(), koopman=s.koopman)
        return flow_sinkhorn(obs, xs, zs, ms, p0, steps, s, koopman=s.koopman)


def _take(best: Params, value: torch.Tensor, best_status: torch.Tensor, cand: Params,
          cand_status: torch.Tensor, idx: torch.Tensor, v: torch.Tensor
          ) -> Tuple[Params, torch.Tensor, torch.Tensor]:
    """``cand`` (its exact values ``v`` on jets ``idx``) replaces ``best`` where lower."""
    win = torch.zeros_like(value, dtype=torch.bool)
    win[idx] = torch.isfinite(v) & (v < value[idx])
    value = value.clone()
    value[idx] = torch.where(win[idx], v, value[idx])
    out = {k: torch.where(win.reshape((-1,) + (1,) * (t.dim() - 1)), cand[k], t)
           for k, t in best.items()}
    return out, value, torch.where(win, cand_status, best_status)


def _screened_rows(loss: torch.Tensor, layout: List[Tuple[int, int]], keep: int
                   ) -> torch.Tensor:
    """Sorted rows that flow on after screening: per group of ``layout`` ``(S, B)`` (``S * B``
    rows of ``loss`` start-major), each jet's first start and its ``keep`` starts of least
    ``loss`` (ties by start order; the first start may be one of them)."""
    rows, lo = [], 0
    for S, B in layout:
        jets = torch.arange(B, device=loss.device)
        best = torch.sort(loss[lo:lo + S * B].reshape(S, B), dim=0, stable=True).indices
        best = best[:min(keep, S)]  # (k, B)
        rows.append(lo + jets)  # the first start
        rows.append((lo + best * B + jets)[best != 0])
        lo += S * B
    return torch.sort(torch.cat(rows)).values


def _centres(obs: Observable, params: Params) -> Optional[torch.Tensor]:
    """The shape's positions ``(B, n, 2)`` (every ``"position"`` parameter), or None."""
    pos = [params[k].reshape(params[k].shape[0], -1, 2) for k, spec in obs.specs.items()
           if spec.kind == "position" and params[k].shape[-1] == 2]
    return torch.cat(pos, dim=1) if pos else None


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
