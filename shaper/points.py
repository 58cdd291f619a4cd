"""The exact point path of :class:`shaper.Shaper`: n-subjettiness of a jet group by Lloyd
iterations (:mod:`shaper.lloyd`), and seeds at those optima for the general path."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from physkit.flow import Status

from .family import Family
from .group import GroupFit, JetGroup
from .lloyd import fit_points, point_starts, point_value_grads

#: rows per Lloyd block
_LLOYD_ROWS = 512


def fit_point_group(group: JetGroup, n: int, *, R: float, beta: float, max_iter: int,
                    return_grads: bool = False, previous: Optional[torch.Tensor] = None
                    ) -> GroupFit:
    """Exact n-subjettiness of every jet of ``group``: centres ``(B, n, 2)`` and weights
    ``(B, n)``, value ``(B,)`` (tau_n, an exact EMD), status (MAX_STEPS where the Lloyd
    iterations hit ``max_iter``), grads (:func:`~shaper.lloyd.point_value_grads`).

    ``previous (B, n-1, 2)``: the (n-1)-subjettiness axes, a further seed (:func:`point_starts`).
    All jets of the group share one padded width (set by their own multiplicity), so a jet's
    reductions run in the same order whatever batch it is in; rows are independent, fitted in
    fixed blocks of rows (bounded memory).
    """
    x, z = group.x, group.z
    c_kt, _ = group.seeds.subjets(n)
    starts = point_starts(x, z, c_kt, beta, previous)
    B = x.shape[0]
    c = torch.empty(B, n, 2, dtype=x.dtype, device=x.device)
    w = torch.empty(B, n, dtype=x.dtype, device=x.device)
    v = torch.empty(B, dtype=x.dtype, device=x.device)
    iters = torch.empty(B, dtype=torch.int64, device=x.device)
    for lo in range(0, B, _LLOYD_ROWS):
        rows = slice(lo, lo + _LLOYD_ROWS)
        c[rows], w[rows], v[rows], iters[rows] = fit_points(
            x[rows], z[rows], starts[rows], R=R, beta=beta, max_iter=max_iter)
    status = torch.where(iters >= max_iter, int(Status.MAX_STEPS), int(Status.CONVERGED))
    grads = None
    if return_grads:
        gp, gx = point_value_grads(x, z, group.pt_sum, c, R, beta)
        grads = {"pt": gp, "points": gx}
    return GroupFit({"centers": c, "weights": w}, v, status.to(torch.int8), grads)


class LloydSeeds:
    """Seeds with the interface of :class:`~shaper.seeds.KtSeeds` whose ``subjets(n)`` are the
    exact n-subjettiness optimum of ``group`` (:func:`fit_point_group` from kT seeds; the one
    fitted in this call when n-subjettiness is among its observables) instead of the raw kT
    axes. Cached per ``n``."""

    def __init__(self, group: JetGroup, *, R: float, beta: float, max_iter: int):
        self.group = group
        self.jets = group.seeds.jets
        self.R, self.beta, self.max_iter = R, beta, max_iter
        self._cache: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.jets)

    def subjets(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(B, n, 2)`` and weights ``(B, n)`` of the n-subjettiness optimum."""
        done = self.group.fitted.get(Family("subjettiness", n))
        if done is not None:  # n-subjettiness is among this call's observables
            return done["centers"], done["weights"]
        if n not in self._cache:
            p = fit_point_group(self.group, n, R=self.R, beta=self.beta,
                                max_iter=self.max_iter).params
            self._cache[n] = (p["centers"], p["weights"])
        return self._cache[n]
