"""Newton's method on the semi-dual (physkit.ot.newton)."""
from __future__ import annotations

import pytest
import torch

from physkit.ot.batch_mode import BatchMode
from physkit.ot.cost import cost_matrix
from physkit.ot.newton import solve_few_points

F64 = torch.float64


@pytest.mark.parametrize("few_on", ["y", "x"])
@pytest.mark.parametrize("rowwise", [False, True])
def test_plan_has_both_marginals(few_on, rowwise):
    """At convergence the plan ``a_i b_j exp((f_i + g_j - C_ij) / eps)`` has marginals a, b."""
    g = torch.Generator().manual_seed(0)
    B, many, few = 5, 30, 3
    N, M = (many, few) if few_on == "y" else (few, many)
    x = torch.randn(B, N, 2, generator=g, dtype=F64) * 0.4
    y = torch.randn(B, M, 2, generator=g, dtype=F64) * 0.4
    a = torch.rand(B, N, generator=g, dtype=F64) + 0.1
    b = torch.rand(B, M, generator=g, dtype=F64) + 0.1
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    C, eps = cost_matrix(x, y, 0.8, 1.0), 1e-2
    ok = torch.ones(B, dtype=torch.bool)
    f, gg, n_iter, conv = solve_few_points(C, a.log(), b.log(), torch.zeros(B, N, dtype=F64),
                                           torch.zeros(B, M, dtype=F64), eps, 1e-10, 100, ok,
                                           BatchMode(rowwise))
    assert conv.all() and (n_iter >= 1).all() and (n_iter < 100).all()
    P = a[:, :, None] * b[:, None, :] * torch.exp((f[:, :, None] + gg[:, None, :] - C) / eps)
    torch.testing.assert_close(P.sum(2), a, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(P.sum(1), b, rtol=1e-8, atol=1e-12)
