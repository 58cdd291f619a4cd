"""Constraints for batched flows: each is a projection ``project(t, idx=None) -> t``.

A parameter tensor has a leading batch axis ``B`` (one problem per row). ``project`` is applied
after every optimizer step (and after the Langevin noise), so it must be idempotent and cheap.

- :class:`Free` -- identity.
- :class:`Positive` ``(min=0.0)`` -- ``clamp(t, min)``.
- :class:`Simplex` -- exact Euclidean projection of the **last axis** onto the probability
  simplex ``{x >= 0, sum x = 1}`` (sort-based, batched; Held-Wolfe-Crowder / Duchi et al.).
- :class:`Angle` ``(period=2*pi)`` -- wrap into ``(-period/2, period/2]`` with
  :func:`physkit.angles.wrap_angle` (an in-range angle is returned bit-for-bit unchanged).
- :class:`Box` ``(lo, hi, per_row=False)`` -- elementwise clamp to ``[lo, hi]``; ``lo``/``hi``
  are scalars or tensors broadcastable against one row (``t.shape[1:]``), or, with
  ``per_row=True``, tensors with the leading batch axis ``B`` of the full batch, selected by ``idx``.

``idx`` (int64, ``(b,)``) are the row indices of ``t`` in the full batch; the flow engine passes it
because it projects only the rows still active. Constraints that do not depend on the row ignore it.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from physkit.angles import wrap_angle

__all__ = ["Constraint", "Free", "Positive", "Simplex", "Angle", "Box", "project_simplex"]


class Constraint:
    """Base class: a projection onto a closed (for Angle: periodic) set.

    ``shared_scale_dims``: dims of one parameter tensor that the projection couples (``None`` for
    elementwise constraints); adaptive optimizers share their per-coordinate scale over them.
    """

    shared_scale_dims: Optional[tuple] = None

    def project(self, t: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}()"


class Free(Constraint):
    """No constraint."""

    def project(self, t, idx=None):
        return t


class Positive(Constraint):
    """``t >= min`` elementwise (``min`` defaults to 0)."""

    def __init__(self, min: float = 0.0):
        self.min = float(min)

    def project(self, t, idx=None):
        return t.clamp_min(self.min)

    def __repr__(self):
        return f"Positive(min={self.min})"


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each vector along the last axis onto the probability simplex.

    ``v``: ``(..., n)`` -> ``(..., n)`` with entries ``>= 0`` summing to 1. With ``u`` the entries
    sorted in decreasing order and ``c_j = sum_{i<=j} u_i - 1``, the support size is
    ``rho = max{j : u_j - c_j / j > 0}`` and the result is ``max(v - c_rho / rho, 0)``.
    """
    n = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    j = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    cond = (u - css / j) > 0
    # rho = last index where cond holds (cond is true for a prefix; index 0 always holds)
    rho = (cond.to(torch.int64) * torch.arange(1, n + 1, device=v.device)).amax(dim=-1, keepdim=True)
    rho = rho.clamp_min(1)
    theta = torch.gather(css, -1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0.0)


class Simplex(Constraint):
    """Probability simplex on the last axis (exact Euclidean projection)."""

    shared_scale_dims = (-1,)

    def project(self, t, idx=None):
        return project_simplex(t)


class Angle(Constraint):
    """Periodic parameter, wrapped into ``(-period/2, period/2]`` (the loss must have this period)."""

    def __init__(self, period: float = 2.0 * math.pi):
        self.period = float(period)

    def project(self, t, idx=None):
        return wrap_angle(t, self.period)

    def __repr__(self):
        return f"Angle(period={self.period})"


Bound = Union[float, torch.Tensor, None]


class Box(Constraint):
    """``lo <= t <= hi`` elementwise. ``None`` for one side leaves it open.

    ``per_row=False``: bounds broadcast against one row's shape ``t.shape[1:]`` (or are scalars).
    ``per_row=True``: bounds carry the full batch axis ``(B, ...)`` and are index-selected by ``idx``.
    """

    def __init__(self, lo: Bound = None, hi: Bound = None, per_row: bool = False):
        self.lo = lo
        self.hi = hi
        self.per_row = bool(per_row)
        if lo is not None and hi is not None:
            lo_t = torch.as_tensor(lo, dtype=torch.float64)
            hi_t = torch.as_tensor(hi, dtype=torch.float64)
            if bool((lo_t > hi_t).any()):
                raise ValueError("Box: lo > hi for some entries")

    def _bound(self, b, t, idx):
        if b is None:
            return None
        if not isinstance(b, torch.Tensor):
            return torch.tensor(float(b), dtype=t.dtype, device=t.device)
        b = b.to(device=t.device, dtype=t.dtype)
        if self.per_row and idx is not None:
            b = b.index_select(0, idx)
        return b

    def project(self, t, idx=None):
        lo = self._bound(self.lo, t, idx)
        hi = self._bound(self.hi, t, idx)
        if lo is not None:
            t = torch.maximum(t, lo)
        if hi is not None:
            t = torch.minimum(t, hi)
        return t

    def __repr__(self):
        return f"Box(lo={self.lo}, hi={self.hi}, per_row={self.per_row})"
