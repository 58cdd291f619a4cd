"""The general path's flow on the Sinkhorn divergence (``Shaper(flow="sinkhorn")``).

Projected Adam (:func:`physkit.flow.minimize`) on the debiased Sinkhorn divergence
(:func:`physkit.ot.sinkhorn_divergence`) between the jets and the shapes' quadrature nodes,
dual potentials warm-started from step to step and the jets' self-potentials cached (``eps``
fixed). The potentials are converged once at the start (``sinkhorn_warmup`` iterations); then
one Newton step (rows with at most :data:`physkit.ot.sinkhorn.NEWTON_MAX_POINTS` points on a
side) or a few warm-started Sinkhorn sweeps per flow step track the moving shape. Shape nodes
are padded to multiples of 16 (:func:`shaper.batching.align_nodes`) and the solves run
row-wise, so a row's numbers do not depend on the other rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict

import torch

from physkit.flow import FlowResult, Status, minimize
from physkit.ot import SinkhornPotentials, sinkhorn_divergence
from physkit.ot.sinkhorn import NEWTON_MAX_POINTS

from .batching import align_nodes, aligned_width
from .observables import Observable

if TYPE_CHECKING:  # pragma: no cover
    from .shaper import Shaper

Params = Dict[str, torch.Tensor]


def flow_sinkhorn(obs: Observable, xs: torch.Tensor, zs: torch.Tensor, ms: torch.Tensor,
                  p0: Params, steps: int, s: "Shaper", koopman=None) -> FlowResult:
    """Adam flow on the Sinkhorn divergence for rows ``xs (n, M, 2)``, ``zs (n, M)``,
    ``ms (n, M)`` (flow dtype) from ``p0 (n, ...)`` with the settings of ``s``; ``koopman``:
    :class:`physkit.flow.Koopman` jumps (None: off)."""
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

    if steps <= 0:
        return FlowResult(p0, torch.full((n,), float("inf"), device=xs.device),
                          torch.zeros(n, dtype=torch.int64, device=xs.device),
                          torch.full((n,), int(Status.MAX_STEPS), dtype=torch.int8,
                                     device=xs.device))
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

    return minimize(loss_fn, p0, obs.constraints, steps=steps, optimizer="adam", lr=s.lr,
                    schedule=s.schedule, tol=s.tol, patience=s.patience, device=xs.device,
                    koopman=koopman)
