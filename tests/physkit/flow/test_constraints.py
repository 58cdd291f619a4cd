"""Projections of physkit.flow.constraints, checked against independent computations."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize as scipy_minimize

from physkit.flow import Angle, Box, Free, Positive, Simplex, project_simplex


def _simplex_bruteforce(v):
    """Projection onto the simplex by enumerating supports (KKT: x_S = v_S - theta, x = 0 off S)."""
    n = len(v)
    best, best_d = None, math.inf
    for r in range(1, n + 1):
        for S in itertools.combinations(range(n), r):
            S = list(S)
            theta = (v[S].sum() - 1.0) / r
            x = np.zeros(n)
            x[S] = v[S] - theta
            if (x[S] < -1e-12).any():
                continue
            d = ((x - v) ** 2).sum()
            if d < best_d:
                best, best_d = x, d
    return best


def _simplex_bisection(v):
    """sum(max(v - theta, 0)) = 1 solved for theta by bisection (a different formula)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0).sum() > 1.0:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0)


def test_simplex_matches_bruteforce_and_bisection():
    rng = np.random.default_rng(0)
    V = rng.normal(scale=2.0, size=(200, 5))
    V[:20] = rng.uniform(size=(20, 5))  # some already near the simplex
    V[20] = [0.2, 0.2, 0.2, 0.2, 0.2]  # on the simplex: unchanged
    V[21] = [3.0, 3.0, 3.0, -1.0, 0.0]  # ties
    X = project_simplex(torch.tensor(V, dtype=torch.float64)).numpy()
    for v, x in zip(V, X):
        np.testing.assert_allclose(x, _simplex_bruteforce(v), atol=1e-12)
        np.testing.assert_allclose(x, _simplex_bisection(v), atol=1e-10)
    np.testing.assert_allclose(X[20], V[20], atol=1e-15)


def test_simplex_kkt_and_scipy_qp_batched_shapes():
    g = torch.Generator().manual_seed(1)
    V = torch.randn(4, 3, 7, generator=g, dtype=torch.float64) * 3
    X = Simplex().project(V)
    assert X.shape == V.shape
    assert (X >= 0).all()
    torch.testing.assert_close(X.sum(-1), torch.ones(4, 3, dtype=torch.float64))
    # KKT: v - x is the same constant theta on the support and >= theta off it
    diff = V - X
    for v, x, d in zip(V.reshape(-1, 7), X.reshape(-1, 7), diff.reshape(-1, 7)):
        sup = x > 0
        theta = d[sup]
        assert float(theta.max() - theta.min()) < 1e-12
        assert (v[~sup] <= theta[0] + 1e-12).all()
    # scipy SLSQP on one vector
    v = V[0, 0].numpy()
    qp = scipy_minimize(lambda x: ((x - v) ** 2).sum(), np.full(7, 1 / 7), jac=lambda x: 2 * (x - v),
                        bounds=[(0, None)] * 7, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                        method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    np.testing.assert_allclose(X[0, 0].numpy(), qp.x, atol=1e-6)


def test_simplex_float32():
    v = torch.tensor([[0.5, 2.0, -1.0, 0.3]], dtype=torch.float32)
    x = Simplex().project(v)
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy()[0], _simplex_bruteforce(v.double().numpy()[0]), atol=1e-6)


def test_angle_wrap_no_shift_and_wrap():
    a = torch.tensor([-3.14, -1.0, 0.0, 0.5, 3.14, math.pi], dtype=torch.float64)
    assert torch.equal(Angle().project(a), a)  # in range: bit-for-bit unchanged
    b = torch.tensor([3 * math.pi / 2, -3 * math.pi / 2, 7.0, -math.pi], dtype=torch.float64)
    w = Angle().project(b)
    assert ((w > -math.pi) & (w <= math.pi)).all()
    torch.testing.assert_close(torch.cos(w), torch.cos(b))
    torch.testing.assert_close(torch.sin(w), torch.sin(b))
    torch.testing.assert_close(w[3], torch.tensor(math.pi, dtype=torch.float64))
    # period pi (orientation angles)
    c = torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64)
    wc = Angle(period=math.pi).project(c)
    assert ((wc > -math.pi / 2) & (wc <= math.pi / 2)).all()
    torch.testing.assert_close(wc[0], c[0])
    torch.testing.assert_close(wc[1], c[1] - math.pi)


def test_box_positive_free():
    t = torch.tensor([[-2.0, 0.5, 3.0], [1.0, -1.0, 0.0]])
    assert torch.equal(Free().project(t), t)
    assert torch.equal(Positive().project(t), t.clamp_min(0))
    assert torch.equal(Positive(min=0.7).project(t), torch.tensor([[0.7, 0.7, 3.0], [1.0, 0.7, 0.7]]))
    assert torch.equal(Box(-1.0, 1.0).project(t), torch.tensor([[-1.0, 0.5, 1.0], [1.0, -1.0, 0.0]]))
    lo = torch.tensor([0.0, 0.6, -5.0])
    hi = torch.tensor([1.0, 1.0, 2.0])
    assert torch.equal(Box(lo, hi).project(t), torch.tensor([[0.0, 0.6, 2.0], [1.0, 0.6, 0.0]]))
    assert torch.equal(Box(None, 0.0).project(t), t.clamp_max(0))
    # per-row bounds follow idx
    lo_rows = torch.tensor([[0.0], [10.0], [-10.0]])
    box = Box(lo_rows, None, per_row=True)
    out = box.project(torch.zeros(2, 1), torch.tensor([1, 2]))
    assert torch.equal(out, torch.tensor([[10.0], [0.0]]))
    with pytest.raises(ValueError):
        Box(1.0, 0.0)
