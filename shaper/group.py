"""A group of jets fitted together (one padded width), and what a fit returns for it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, NamedTuple, Optional, Tuple

import torch

from physkit.events import Events

from .batching import centred_frame
from .family import Family
from .seeds import KtSeeds

if TYPE_CHECKING:  # pragma: no cover
    from .points import PointSeeds

Params = Dict[str, torch.Tensor]


@dataclass(eq=False)
class JetGroup:
    """Jets that share one padded width (:func:`shaper.batching.padded_width`), centred on
    their pT-weighted axes, with the state their fits share.

    x : ``(B, M, 2)`` particle (y, phi) relative to the axis (0 on padding).
    z : ``(B, M)`` pT fractions, rows sum to 1 (0 on padding).
    mask : ``(B, M)`` bool, real particles.
    pt_sum : ``(B,)`` scalar sum of the particles' pT (units of the input pT).
    axis : ``(B, 2)`` the axis' (y, phi) in the input frame.
    empty : ``(B,)`` bool, jets without particles (fitted on a stand-in particle at the
        axis, reported as :attr:`physkit.flow.Status.BAD_INPUT`).
    seeds : exclusive-kT subjets of the centred jets.
    workers : threads for this group's flow buckets and exact EMDs.
    fitted : the parameters fitted so far per :class:`~shaper.family.Family`: smaller members
        of a nested family seed the larger ones.
    refined_seeds : seeds with the interface of :class:`KtSeeds` at the exact
        n-subjettiness optima (:class:`shaper.points.PointSeeds`), set by the fit.
    coarse : the coarse-grained jets ``(x (B, n, 2), z (B, n), mask (B, n))`` once computed.
    """

    x: torch.Tensor
    z: torch.Tensor
    mask: torch.Tensor
    pt_sum: torch.Tensor
    axis: torch.Tensor
    empty: torch.Tensor
    seeds: KtSeeds
    workers: int = 1
    fitted: Dict[Family, Params] = field(default_factory=dict)
    refined_seeds: Optional["PointSeeds"] = None
    coarse: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    @classmethod
    def from_events(cls, ev: Events, workers: int = 1) -> "JetGroup":
        """Group of jets ``ev (B, M)`` of one padded width, particles sorted real-first; an
        empty jet gets a stand-in particle of pT 1 at the origin."""
        empty = ev.n_particles() == 0
        if bool(empty.any()):
            pt = ev.pt.clone()
            mask = ev.mask.clone()
            pt[empty, 0] = 1.0
            mask[empty, 0] = True
            ev = Events(pt, ev.y, ev.phi, mask)
        axis, cen = centred_frame(ev)
        return cls(x=cen.points(), z=cen.weights(), mask=cen.mask, pt_sum=cen.pt.sum(1),
                   axis=axis, empty=empty, seeds=KtSeeds(cen), workers=workers)

    def __len__(self) -> int:
        return self.x.shape[0]


class GroupFit(NamedTuple):
    """One observable fitted to a :class:`JetGroup` (centred frame, torch).

    params : name -> ``(B, ...)``; value : ``(B,)`` exact EMD; status : ``(B,)`` int8
    (:class:`physkit.flow.Status`); grads : ``{"pt": (B, M), "points": (B, M, 2)}`` or None.
    """

    params: Params
    value: torch.Tensor
    status: torch.Tensor
    grads: Optional[Dict[str, torch.Tensor]] = None
