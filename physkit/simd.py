"""Row-position-independent transcendental functions on small per-event tensors.

torch's CPU kernels evaluate ``exp``, ``log``, ``sin``, ``cos``, ``atan2`` ... with vectorised
(SLEEF) code over whole SIMD vectors and with scalar libm code on the tail of a tensor; the
two round differently in the last bit. For a ``(B,)`` or ``(B, n)`` tensor, whether a jet's
elements fall in the tail depends on its row position, i.e. on which jets share its batch.
:func:`aligned` evaluates such a function with every element on its own 16-wide block, so it
always goes through the vectorised code (the per-jet tensors here are tiny; the cost is nil).
"""
from __future__ import annotations

from typing import Callable

import torch

#: elements per block: covers 512-bit vectors of float32 (16 lanes) and float64 (8 lanes)
LANES = 16


def aligned(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)`` (elementwise, same-shape tensors) with each element computed in a full
    SIMD block; differentiable. Same shape as ``args[0]``."""
    shape = args[0].shape
    wide = [a.reshape(-1, 1).expand(-1, LANES).contiguous() for a in args]
    return fn(*wide)[:, 0].reshape(shape)
