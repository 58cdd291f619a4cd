"""Koopman (DMD) jump-ahead: the fit on linear trajectories, and the opt-in in minimize."""
import math

import pytest
import torch

from physkit.flow import Koopman, dmd_jump, minimize
from physkit.flow.koopman import flatten_params, unflatten_params


def _linear_trajectory(B=4, P=5, W=9, seed=0, contraction=0.6):
    """Iterates of z_{t+1} = z* + A (z_t - z*) with spectral radius < 1, per row."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(B, P, P, generator=g, dtype=torch.float64))
    lam = contraction * torch.rand(B, P, generator=g, dtype=torch.float64)
    A = Q @ torch.diag_embed(lam) @ Q.transpose(1, 2)
    star = torch.randn(B, P, generator=g, dtype=torch.float64)
    z = torch.randn(B, P, generator=g, dtype=torch.float64)
    hist = [z]
    for _ in range(W - 1):
        z = star + (A @ (z - star)[..., None])[..., 0]
        hist.append(z)
    return torch.stack(hist), star, A


def test_dmd_jump_reaches_the_fixed_point_of_a_linear_iteration():
    hist, star, _ = _linear_trajectory()
    target, ok = dmd_jump(hist, horizon=10_000)
    assert ok.all()
    assert (target - star).norm(dim=1).max() < 1e-8 * (hist[-1] - star).norm(dim=1).max() + 1e-10
    # a finite horizon predicts that many steps ahead
    W, B, P = hist.shape
    t5, ok5 = dmd_jump(hist[:-2], horizon=2)
    assert ok5.all()
    torch.testing.assert_close(t5, hist[-1], rtol=1e-8, atol=1e-8)


def test_dmd_jump_refuses_growing_modes_and_keeps_the_last_iterate():
    hist, _, _ = _linear_trajectory()
    grow = torch.stack([1.5 ** t * torch.ones(4, 5, dtype=torch.float64) for t in range(9)])
    target, ok = dmd_jump(grow, horizon=50)
    assert not ok.any()
    torch.testing.assert_close(target, grow[-1])
    # rows are independent: a growing row next to converging ones
    mixed = hist.clone()
    mixed[:, 1] = grow[:, 1]
    t, ok = dmd_jump(mixed, horizon=10_000)
    assert ok.tolist() == [True, False, True, True]
    t_alone, _ = dmd_jump(hist[:, 2:3], horizon=10_000)
    assert torch.equal(t[2], t_alone[0])


def test_flatten_roundtrip():
    p = {"a": torch.randn(3, 2, 2), "b": torch.randn(3, dtype=torch.float64)}
    back = unflatten_params(flatten_params(p), p)
    assert all(torch.equal(back[k], p[k]) and back[k].dtype == p[k].dtype for k in p)


def test_minimize_with_koopman_jumps_ends_at_the_same_minimum():
    g = torch.Generator().manual_seed(1)
    B, P = 16, 6
    M = torch.randn(B, P, P, generator=g, dtype=torch.float64)
    H = M @ M.transpose(1, 2) / P + 0.05 * torch.eye(P, dtype=torch.float64)
    c = torch.randn(B, P, generator=g, dtype=torch.float64)
    star = -torch.linalg.solve(H, c[..., None])[..., 0]

    def loss(p, idx):
        x = p["x"]
        return 0.5 * (x[:, None, :] @ H[idx] @ x[..., None])[:, 0, 0] + (c[idx] * x).sum(1)

    kw = dict(steps=5000, optimizer="gd", lr=0.2, tol=1e-12, patience=5)
    plain = minimize(loss, {"x": torch.zeros(B, P, dtype=torch.float64)}, **kw)
    jump = minimize(loss, {"x": torch.zeros(B, P, dtype=torch.float64)},
                    koopman=Koopman(window=8), **kw)
    assert plain.n_jumps is None and jump.n_jumps is not None
    assert (jump.n_jumps > 0).all()
    for r in (plain, jump):
        assert r.converged.all()
        torch.testing.assert_close(r.params["x"], star, rtol=1e-4, atol=1e-4)
    # on these linear (gradient-descent) trajectories the jumps save steps
    assert jump.n_steps.sum() < 0.7 * plain.n_steps.sum()


def test_a_jump_that_raises_the_loss_is_undone():
    # a loss with a cliff: jumping far along the trajectory lands on a much higher loss
    def loss(p, idx):
        x = p["x"][:, 0]
        return (x - 1.0) ** 2 + torch.where(x > 1.05, 100.0 + x * 0, x * 0)

    res = minimize(loss, {"x": torch.zeros(8, 1, dtype=torch.float64)}, steps=300,
                   optimizer="gd", lr=0.02, tol=1e-12, patience=3,
                   koopman=Koopman(window=4, horizon=10_000, max_radius=1.0))
    assert torch.isfinite(res.loss).all() and (res.loss < 1e-6).all()
    assert (res.params["x"] <= 1.05).all()


def test_koopman_settings_are_checked():
    for bad in (dict(window=2), dict(horizon=0), dict(max_radius=1.5), dict(rtol=-1)):
        with pytest.raises(ValueError, match="Koopman"):
            Koopman(**bad)
    with pytest.raises(TypeError, match="koopman"):
        minimize(lambda p, i: p["x"].sum(1), {"x": torch.zeros(2, 1)}, steps=1, koopman=6)
