"""Hand-written batched optimizers: one update rule applied to all active rows at once.

State tensors have the full batch shape ``(B, ...)``; :func:`physkit.flow.minimize` index-selects the
active rows, calls :meth:`step` on them, and writes the rows back. All active rows share the same step
count (rows only ever leave the batch), so Adam's bias correction uses a scalar step number.

- ``"gd"``: ``w <- w - h g`` (explicit Euler step of the gradient flow ``dw/dt = -grad L``).
- ``"nesterov"``: ``v <- mu v + g``; ``w <- w - h (g + mu v)`` (PyTorch's Nesterov form, ``mu=0.9``).
- ``"adam"``: ``m <- b1 m + (1-b1) g``, ``s <- b2 s + (1-b2) g^2``,
  ``w <- w - h mhat / (sqrt(shat) + eps)`` with bias-corrected ``mhat, shat``
  (``b1=0.9, b2=0.999, eps=1e-8``).

``h`` is the effective learning rate (``lr`` times the schedule factor) of the parameter.

Coupled constraints: a diagonal preconditioner followed by a Euclidean projection onto a set that
couples coordinates (the simplex) has spurious fixed points (projected Adam stalls at non-KKT points of
the simplex). Adam therefore shares the second moment over ``shared[name]`` dims (the constraint's
``shared_scale_dims``; the last axis for :class:`~physkit.flow.Simplex`): the step is then a positive
scalar times ``mhat`` on each simplex vector, so its fixed points are the KKT points.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

__all__ = ["Optimizer", "GD", "Nesterov", "Adam", "make_optimizer"]

Tensors = Dict[str, torch.Tensor]


class Optimizer:
    """Batched optimizer. ``state_names`` lists the per-parameter state tensors (same shape as the parameter)."""

    state_names: tuple = ()

    def init_state(self, params: Tensors) -> Dict[str, Tensors]:
        return {s: {k: torch.zeros_like(v) for k, v in params.items()} for s in self.state_names}

    def step(self, p: Tensors, g: Tensors, state: Dict[str, Tensors], h: Dict[str, float], t: int,
             shared: Optional[Dict[str, Optional[tuple]]] = None):
        """One update of the active rows. Returns ``(new_params, new_state)`` (no in-place change).

        ``t`` is the 1-based step count of these rows; ``shared`` maps a parameter name to dims over which
        adaptive scales are shared (``None``: per coordinate).
        """
        raise NotImplementedError


class GD(Optimizer):
    state_names = ()

    def step(self, p, g, state, h, t, shared=None):
        return {k: p[k] - h[k] * g[k] for k in p}, {}


class Nesterov(Optimizer):
    state_names = ("v",)

    def __init__(self, momentum: float = 0.9):
        self.mu = float(momentum)

    def step(self, p, g, state, h, t, shared=None):
        v = {k: self.mu * state["v"][k] + g[k] for k in p}
        new = {k: p[k] - h[k] * (g[k] + self.mu * v[k]) for k in p}
        return new, {"v": v}


class Adam(Optimizer):
    state_names = ("m", "s")

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8):
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)

    def step(self, p, g, state, h, t, shared=None):
        c1 = 1.0 - self.b1 ** t
        c2 = 1.0 - self.b2 ** t
        shared = shared or {}
        m = {k: self.b1 * state["m"][k] + (1.0 - self.b1) * g[k] for k in p}
        s = {}
        for k in p:
            g2 = g[k] * g[k]
            dims = shared.get(k)
            if dims:
                g2 = g2.mean(dim=dims, keepdim=True).expand_as(g2)
            s[k] = self.b2 * state["s"][k] + (1.0 - self.b2) * g2
        new = {k: p[k] - (h[k] / c1) * m[k] / ((s[k] / c2).sqrt() + self.eps) for k in p}
        return new, {"m": m, "s": s}


def make_optimizer(name, **options) -> Optimizer:
    """``"adam"`` | ``"nesterov"`` | ``"gd"`` (or an :class:`Optimizer` instance, returned as is)."""
    if isinstance(name, Optimizer):
        return name
    table = {"adam": Adam, "nesterov": Nesterov, "gd": GD}
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}: choose 'adam', 'nesterov' or 'gd'")
    return table[name](**options)
