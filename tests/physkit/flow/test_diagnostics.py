"""Lojasiewicz exponent from flow histories; NTK mu against closed forms."""

import numpy as np
import pytest
import torch

from physkit.flow import (architecture_jacobian, lojasiewicz_exponent, minimize, ntk_mu, ntk_mu_fn,
                          predicted_rate)


def test_lojasiewicz_quadratic_is_one_half():
    # strongly convex quadratic, several curvatures and dims: alpha = 1/2 (tolerance 0.01)
    a = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    H = torch.stack([torch.diag(torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)) * s for s in a])

    def loss(p, idx):
        w = p["w"]
        return 0.5 * torch.einsum("bi,bij,bj->b", w, H[idx], w)

    res = minimize(loss, {"w": torch.ones(3, 3, dtype=torch.float64)}, optimizer="gd", lr=0.05, steps=200,
                   tol=0, history=True, grad_history=True)
    alpha = lojasiewicz_exponent(res.history, res.grad_norm_history, loss_star=0.0)
    assert torch.allclose(alpha, torch.full_like(alpha, 0.5), atol=0.01)
    # L* estimated from the history itself
    shifted = res.history + 2.5
    alpha2 = lojasiewicz_exponent(shifted, res.grad_norm_history)
    assert torch.allclose(alpha2, torch.full_like(alpha2, 0.5), atol=0.02)
    assert predicted_rate(float(alpha[0])).kind == "exponential"


def test_lojasiewicz_quartic_is_three_quarters_and_rates():
    # L = w^4: |L|^(3/4) = |w|^3 = |L'| / 4, alpha = 3/4 (tolerance 0.01)
    def loss(p, idx):
        return (p["w"] ** 4).sum(1)

    w0 = torch.tensor([[1.0], [0.5], [-0.8]], dtype=torch.float64)
    steps = 4000
    res = minimize(loss, {"w": w0}, optimizer="gd", lr=0.01, steps=steps, tol=0, history=True, grad_history=True)
    alpha = lojasiewicz_exponent(res.history, res.grad_norm_history, loss_star=0.0)
    assert torch.allclose(alpha, torch.full_like(alpha, 0.75), atol=0.01)
    rate = predicted_rate(0.75)
    assert rate.kind == "power"
    assert rate.loss_exponent == pytest.approx(2.0) and rate.grad_exponent == pytest.approx(1.5)
    assert rate.distance_exponent == pytest.approx(0.5)
    # the flow's measured late-time decay exponents agree with the prediction
    t = torch.arange(steps, dtype=torch.float64)
    late = slice(steps // 2, steps)
    for series, expo in ((res.history, rate.loss_exponent), (res.grad_norm_history, rate.grad_exponent)):
        x = torch.log(t[late] + 1)
        y = torch.log(series[late, 0])
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        assert slope == pytest.approx(-expo, rel=0.05)
    assert predicted_rate(0.5, atol=0).kind == "exponential"
    assert predicted_rate(0.51, atol=0).kind == "power"


def test_lojasiewicz_too_few_points_is_nan():
    L = torch.tensor([[1.0], [0.5]])
    G = torch.tensor([[1.0], [0.7]])
    assert torch.isnan(lojasiewicz_exponent(L, G, loss_star=0.0)).all()


def _mu_numpy(K, rtol=1e-10):
    s = np.linalg.svd(K, compute_uv=False)
    s = s[s > rtol * s[0]] if s[0] > 0 else s[:0]
    return float(s.min() ** 2) if len(s) else 0.0


def test_ntk_mu_linear_architecture_closed_form():
    rng = np.random.default_rng(0)
    Ks = [rng.normal(size=(6, 4)), rng.normal(size=(3, 8)), rng.normal(size=(5, 3)) @ rng.normal(size=(3, 7))]
    for K in Ks:  # tall, wide, rank-deficient (rank 3 < min(5, 7))
        B = 4
        Kb = torch.tensor(np.stack([K * (1 + r) for r in range(B)]))

        def arch(p, idx):
            return torch.einsum("bpm,bm->bp", Kb[idx], p["w"])

        w = torch.randn(B, K.shape[1], dtype=torch.float64)
        for method in ("vmap", "autograd"):
            J = architecture_jacobian(arch, {"w": w}, method=method)
            torch.testing.assert_close(J, Kb)
        mu, rank = ntk_mu(J, return_rank=True)
        expected = [_mu_numpy(K * (1 + r)) for r in range(B)]
        np.testing.assert_allclose(mu.numpy(), expected, rtol=1e-8)
        assert (rank == np.linalg.matrix_rank(K)).all()
    # float32 path and J = 0
    K = torch.tensor(Ks[0], dtype=torch.float32)[None]
    np.testing.assert_allclose(float(ntk_mu(K)[0]), _mu_numpy(Ks[0]), rtol=1e-4)
    assert float(ntk_mu(torch.zeros(1, 3, 2))[0]) == 0.0


def test_ntk_mu_multiple_parameters_and_flow_stride():
    # A(a, b) = K1 a + K2 b: Jacobian [K1 | K2]; mu is constant along the flow
    g = torch.Generator().manual_seed(0)
    K1 = torch.randn(2, 5, 2, generator=g, dtype=torch.float64)
    K2 = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(2, 5, generator=g, dtype=torch.float64)

    def arch(p, idx):
        return torch.einsum("bpm,bm->bp", K1[idx], p["a"]) + torch.einsum("bpm,bm->bp", K2[idx], p["b"])

    def loss(p, idx):
        return ((arch(p, idx) - y[idx]) ** 2).sum(1)

    expected = torch.tensor([_mu_numpy(torch.cat([K1[r], K2[r]], 1).numpy()) for r in range(2)],
                            dtype=torch.float64)
    res = minimize(loss, {"a": torch.zeros(2, 2, dtype=torch.float64), "b": torch.zeros(2, 3, dtype=torch.float64)},
                   optimizer="gd", lr=0.01, steps=30, tol=0, mu_fn=ntk_mu_fn(arch), mu_stride=10)
    assert res.mu_steps.tolist() == [0, 10, 20]
    torch.testing.assert_close(res.mu_history, expected.expand(3, 2), rtol=1e-8, atol=0)
