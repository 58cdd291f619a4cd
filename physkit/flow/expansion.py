"""Iterative architecture expansion (IAE): flow, grow the architecture without changing the model, flow again.

API::

    class Expandable(Protocol):
        def expand(self, params) -> tuple[params', constraints']   # same model at params'
        def size(self, params) -> int                              # per-row parameter count M
        # optional: loss_fn(params, idx) -> (b,)  (used when no loss_fn_factory is given)

    expand_and_minimize(arch, params, *, loss_fn_factory=None, constraints=None, max_stages=10,
                        gain_tol=1e-3, max_size=None, **minimize_kwargs) -> ExpansionResult

``expand`` maps fitted parameters of ``A_M`` to parameters of ``A_{M+k}`` with
``A_{M+k}(params') == A_M(params)`` (e.g. new coefficients set to 0, a unit split in two halves) and
returns the constraints of the expanded parameters. It may update ``arch`` in place (the loss is then
rebuilt by ``loss_fn_factory(arch)`` after every expansion) or be pure (the size read off the shapes).

Stage ``s`` flows from the warm start ``expand(params_{s-1})``. The relative gain of row ``r`` is
``(L_{s-1,r} - L_{s,r}) / max(|L_{s-1,r}|, tiny)``. Expansion stops after the stage where every row's gain
is below ``gain_tol`` (``"gain"``), after ``max_stages`` flows (``"max_stages"``), or when the next
expansion would exceed ``max_size`` (``"max_size"``). Because each flow evaluates its warm start and
returns the better of its best-so-far and final parameters, a deterministic loss never increases from one
stage to the next.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Tuple, runtime_checkable

import torch

from physkit.flow.constraints import Constraint
from physkit.flow.minimize import FlowResult, minimize

__all__ = ["Expandable", "ExpansionResult", "expand_and_minimize"]

Params = Dict[str, torch.Tensor]
Constraints = Dict[str, Constraint]


@runtime_checkable
class Expandable(Protocol):
    def expand(self, params: Params) -> Tuple[Params, Constraints]:
        ...

    def size(self, params: Params) -> int:
        ...


@dataclass
class ExpansionResult:
    """params/loss/status/n_steps: of the last stage. stage_loss ``(S, B)`` loss after each stage;
    sizes: per-row parameter count ``M`` of each stage; gains ``(S-1, B)``; stop_reason; results: the
    :class:`FlowResult` of each stage; constraints: those of the last stage."""

    params: Params
    loss: torch.Tensor
    status: torch.Tensor
    n_steps: torch.Tensor
    stage_loss: torch.Tensor
    sizes: List[int]
    gains: torch.Tensor
    stop_reason: str
    constraints: Constraints = field(default_factory=dict)
    results: List[FlowResult] = field(default_factory=list)


def expand_and_minimize(
    arch: Expandable,
    params: Params,
    *,
    loss_fn_factory: Optional[Callable[[Expandable], Callable]] = None,
    constraints: Optional[Constraints] = None,
    max_stages: int = 10,
    gain_tol: float = 1e-3,
    max_size: Optional[int] = None,
    **minimize_kwargs,
) -> ExpansionResult:
    """Flow, expand, flow again (see module docstring). ``minimize_kwargs`` go to every :func:`minimize`."""
    if max_stages < 1:
        raise ValueError("expand_and_minimize: max_stages must be >= 1")
    if loss_fn_factory is None:
        if not callable(getattr(arch, "loss_fn", None)):
            raise TypeError("expand_and_minimize: give loss_fn_factory or an architecture with loss_fn(params, idx)")
        loss_fn_factory = lambda a: a.loss_fn  # noqa: E731
    cons = dict(constraints or {})
    res = minimize(loss_fn_factory(arch), params, cons, **minimize_kwargs)
    results = [res]
    losses = [res.loss]
    sizes = [int(arch.size(res.params))]
    gains: List[torch.Tensor] = []
    reason = "max_stages"
    for _ in range(1, max_stages):
        new_params, new_cons = arch.expand(res.params)
        new_size = int(arch.size(new_params))
        if max_size is not None and new_size > max_size:
            reason = "max_size"
            break
        cons = dict(new_cons or {})
        nxt = minimize(loss_fn_factory(arch), new_params, cons, **minimize_kwargs)
        prev = losses[-1]
        tiny = torch.finfo(prev.dtype).tiny if prev.is_floating_point() else 1e-300
        gain = (prev - nxt.loss) / prev.abs().clamp_min(tiny)
        gain = torch.where(torch.isfinite(gain), gain, torch.zeros_like(gain))
        res = nxt
        results.append(res)
        losses.append(res.loss)
        sizes.append(new_size)
        gains.append(gain)
        if bool((gain < gain_tol).all()):
            reason = "gain"
            break
    B = losses[0].shape[0]
    return ExpansionResult(
        params=res.params,
        loss=res.loss,
        status=res.status,
        n_steps=res.n_steps,
        stage_loss=torch.stack(losses),
        sizes=sizes,
        gains=(torch.stack(gains) if gains
               else torch.empty((0, B), dtype=losses[0].dtype, device=losses[0].device)),
        stop_reason=reason,
        constraints=cons,
        results=results,
    )
