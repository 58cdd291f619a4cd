"""How a batched solver treats the rows of its batch: row-wise or batch-wide.

The solvers of :mod:`physkit.ot.sinkhorn` and :mod:`physkit.ot.newton` run ``B`` problems as
one tensor program. A :class:`BatchMode` supplies the few primitives whose behaviour differs
between the two modes:

* batch-wide (``rowwise=False``): a stabilisation step (absorption, log-domain fallback) that
  one row needs is taken by every row, and torch picks its kernels freely;
* row-wise (``rowwise=True``): those decisions are made per row, and the kernels are chosen
  so that a row's rounding does not depend on the other rows of the batch. A row's result
  is then identical whichever batch it is in (given the same padded widths).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchMode:
    """Row-wise (``rowwise=True``) or batch-wide primitives; see the module docstring."""

    rowwise: bool

    def matmul(self, A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Batched ``A @ X``, ``(B, n, k) @ (B, k, m) -> (B, n, m)``. Row-wise: the same kernel
        whatever ``B`` (torch folds a batch of one into a plain matrix product, whose
        rounding differs)."""
        if self.rowwise and A.shape[0] == 1:
            return torch.matmul(A.expand(2, -1, -1), X.expand(2, -1, -1))[:1]
        return torch.matmul(A, X)

    def log(self, t: torch.Tensor) -> torch.Tensor:
        """``log`` of a ``(B,)`` tensor. Row-wise: each row on a full 16-wide block (torch's
        vectorised and scalar-tail ``log`` round differently, and which row lands in the
        tail depends on the batch)."""
        if self.rowwise:
            return torch.log(t[:, None].expand(-1, 16).contiguous())[:, 0]
        return torch.log(t)

    def rows(self, flags: torch.Tensor) -> torch.Tensor:
        """Rows ``(B,)`` bool that take a step some rows ``flags`` need: those rows (row-wise),
        or every row as soon as one needs it (batch-wide)."""
        return flags if self.rowwise else flags.any().expand_as(flags)
