"""Optimal transport between weighted point clouds in the (rapidity, azimuth) plane.

Cost (energyflow's convention): ``(theta_ij / R) ** beta`` with periodic azimuth.

- :func:`cost_matrix` — batched ground cost ``(B, N, M)`` (numpy or torch).
- Exact: :func:`emd`, :func:`emds`, :func:`emd_batch`,
  :func:`emd_batch_grads` (value and exact gradients from the plan and dual potentials),
  :func:`emd_batch_plans` (plans and dual potentials of a batch with precomputed costs);
  small problems by :mod:`physkit.ot.transport_simplex` (compiled transportation simplex:
  ``transport_simplex``, ``transport_simplex_batch``), larger ones by POT's network simplex;
  :func:`physkit.ot.multiscale.emd_batch_coarse_to_fine`: exact EMD to the finest of several
  quadratures of one shape, each solved from the coarser one's particle potentials
  (:mod:`physkit.ot.dual_start`).
- Entropic: :func:`sinkhorn_divergence` (batched, log-domain, debiased, eps-scaling,
  masks, warm starts, envelope-theorem gradients), :class:`SinkhornPotentials`.
"""
from .cost import cost_matrix
from .exact import (DEFAULT_N_ITER_MAX, EMDError, PlanBatch, emd, emd_batch, emd_batch_grads,
                    emd_batch_plans, emds)
from .sinkhorn import SinkhornPotentials, sinkhorn_divergence

__all__ = ["cost_matrix", "emd", "emds", "emd_batch", "emd_batch_grads", "emd_batch_plans",
           "PlanBatch", "EMDError", "DEFAULT_N_ITER_MAX",
           "sinkhorn_divergence", "SinkhornPotentials"]
