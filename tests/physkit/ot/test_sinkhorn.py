"""Batched debiased Sinkhorn divergence (physkit.ot.sinkhorn)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.ot import SinkhornPotentials, emd_batch, sinkhorn_divergence

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def jets(request):
    """64 centred jets as (points (B, M, 2), weights (B, M), mask (B, M)), float64.

    From data/jets_sample.h5 when present, else deterministic synthetic jets."""
    try:
        path = request.getfixturevalue("sample_path")
        import h5py
        with h5py.File(path, "r") as f:
            c = f["constituents"][:64]
    except pytest.skip.Exception:
        from conftest import synthetic_jets
        c = synthetic_jets(64, 60, seed=11, n_prongs=3)
    ev = Events.from_padded(c, dtype=F64).centered().trim()
    return ev.points(), ev.weights(), ev.mask


def _rand_problem(B, N, M, seed, phi_centre=math.pi, spread=0.4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 2, generator=g, dtype=F64) * spread
    y = torch.randn(B, M, 2, generator=g, dtype=F64) * spread
    x[..., 1] = torch.remainder(x[..., 1] + phi_centre + math.pi, 2 * math.pi) - math.pi
    y[..., 1] = torch.remainder(y[..., 1] + phi_centre + math.pi, 2 * math.pi) - math.pi
    a = torch.rand(B, N, generator=g, dtype=F64) + 0.1
    b = torch.rand(B, M, generator=g, dtype=F64) + 0.1
    return x, a / a.sum(1, keepdim=True), y, b / b.sum(1, keepdim=True)


def test_accuracy_vs_exact_emd_on_jets(jets):
    """Jet vs jet, R = 0.8, beta = 1: median |rel. error| <= 1 %, max <= 4 % at eps = 1e-3,
    and both fall at eps = 1e-4 (32 pairs)."""
    pts, w, m = jets
    x, a, mx = pts[0::2], w[0::2], m[0::2]
    y, b, my = pts[1::2], w[1::2], m[1::2]
    exact = emd_batch(x, a, y, b, R=0.8, beta=1.0)
    errs = {}
    for eps in (1e-3, 1e-4):
        S = sinkhorn_divergence(x, a, y, b, R=0.8, beta=1.0, eps=eps, mask_x=mx, mask_y=my)
        rel = np.abs(S.numpy() / exact - 1)
        errs[eps] = (np.median(rel), rel.max())
    assert errs[1e-3][0] <= 0.01 and errs[1e-3][1] <= 0.04, errs
    assert errs[1e-4][0] < errs[1e-3][0] and errs[1e-4][1] < errs[1e-3][1], errs


def test_accuracy_jet_vs_few_points(jets):
    pts, w, m = jets
    B = 32
    g = torch.Generator().manual_seed(5)
    for k in (1, 2, 3, 4):
        y = torch.randn(B, k, 2, generator=g, dtype=F64) * 0.2
        b = torch.rand(B, k, generator=g, dtype=F64) + 0.2
        b = b / b.sum(1, keepdim=True)
        exact = emd_batch(pts[:B], w[:B], y, b, R=0.8, beta=1.0)
        S = sinkhorn_divergence(pts[:B], w[:B], y, b, R=0.8, eps=1e-3, mask_x=m[:B])
        rel = np.abs(S.numpy() / exact - 1)
        assert np.median(rel) <= 0.01 and rel.max() <= 0.04, (k, np.median(rel), rel.max())


def _fd_check(fn, t, direction, h=1e-6):
    with torch.no_grad():
        plus = fn(t + h * direction)
        minus = fn(t - h * direction)
    return (plus - minus) / (2 * h)


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_gradients_match_finite_differences(beta, engine):
    """Envelope-theorem gradients vs central differences, float64, phi near +-pi."""
    x, a, y, b = _rand_problem(2, 6, 4, seed=1)
    kw = dict(R=0.7, beta=beta, eps=0.05, tol=1e-13, max_iter=20000)
    xs, as_, ys, bs = (t.clone().requires_grad_(True) for t in (x, a, y, b))
    S = sinkhorn_divergence(xs, as_, ys, bs, **kw)
    S.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (xs, as_, ys, bs))
    g = torch.Generator().manual_seed(2)
    for name, t, grad in (("x", x, xs.grad), ("y", y, ys.grad), ("a", a, as_.grad),
                          ("b", b, bs.grad)):
        for _ in range(3):
            d = torch.randn(t.shape, generator=g, dtype=F64)
            if name in ("a", "b"):
                d = d - d.mean(1, keepdim=True)  # keep the total mass

            def f(v, name=name):
                args = dict(x=x, a=a, y=y, b=b)
                args[name] = v
                return sinkhorn_divergence(args["x"], args["a"], args["y"], args["b"], **kw)

            fd = _fd_check(f, t, d).sum()
            an = (grad * d).sum()
            assert float(an) == pytest.approx(float(fd), rel=1e-5, abs=1e-9), name


def test_periodic_phi_invariance():
    x, a, y, b = _rand_problem(3, 7, 5, seed=3, phi_centre=0.0, spread=0.3)
    S0 = sinkhorn_divergence(x, a, y, b, eps=1e-2, tol=1e-9)
    shift = torch.tensor([0.0, math.pi - 0.1], dtype=F64)
    xs, ys = x + shift, y + shift
    for t in (xs, ys):
        t[..., 1] = torch.remainder(t[..., 1] + math.pi, 2 * math.pi) - math.pi
    S1 = sinkhorn_divergence(xs, a, ys, b, eps=1e-2, tol=1e-9)
    torch.testing.assert_close(S1, S0, rtol=1e-6, atol=1e-10)


def test_padding_masks_and_zero_weights(engine):
    x, a, y, b = _rand_problem(4, 6, 3, seed=4)
    ref = sinkhorn_divergence(x, a, y, b, eps=1e-2, tol=1e-10)
    # pad with garbage positions: masked (mask False) on x, zero weight on y
    xp = torch.cat([x, torch.full((4, 5, 2), 123.0, dtype=F64)], 1)
    ap = torch.cat([a, torch.rand(4, 5, dtype=F64)], 1)  # weights under mask False ignored
    mx = torch.cat([torch.ones(4, 6, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.bool)], 1)
    yp = torch.cat([y, torch.full((4, 2, 2), -7.0, dtype=F64)], 1)
    bp = torch.cat([b, torch.zeros(4, 2, dtype=F64)], 1)
    xp.requires_grad_(True)
    yp.requires_grad_(True)
    ap.requires_grad_(True)
    bp.requires_grad_(True)
    S = sinkhorn_divergence(xp, ap, yp, bp, eps=1e-2, tol=1e-10, mask_x=mx)
    torch.testing.assert_close(S.detach(), ref, rtol=1e-8, atol=1e-12)
    S.sum().backward()
    for t in (xp, yp, ap, bp):
        assert torch.isfinite(t.grad).all()
    assert (xp.grad[:, 6:] == 0).all() and (yp.grad[:, 3:] == 0).all()


def test_empty_rows_give_zero_without_nan(engine):
    x, a, y, b = _rand_problem(3, 5, 4, seed=5)
    a = a.clone()
    b = b.clone()
    a[1] = 0.0
    b[1] = 0.0
    xs = x.clone().requires_grad_(True)
    bs = b.clone().requires_grad_(True)
    S = sinkhorn_divergence(xs, a, y, bs, eps=1e-2)
    assert S[1].item() == 0.0 and torch.isfinite(S).all()
    S.sum().backward()
    assert torch.isfinite(xs.grad).all() and torch.isfinite(bs.grad).all()
    ref = sinkhorn_divergence(x[[0, 2]], a[[0, 2]], y[[0, 2]], b[[0, 2]], eps=1e-2)
    torch.testing.assert_close(S.detach()[[0, 2]], ref, rtol=1e-6, atol=1e-10)


def test_identical_clouds_and_symmetry():
    x, a, y, b = _rand_problem(3, 8, 6, seed=6)
    S_same = sinkhorn_divergence(x, a, x, a, eps=1e-2, tol=1e-10)
    assert S_same.abs().max() < 1e-9
    S_xy = sinkhorn_divergence(x, a, y, b, eps=1e-2, tol=1e-10)
    S_yx = sinkhorn_divergence(y, b, x, a, eps=1e-2, tol=1e-10)
    torch.testing.assert_close(S_xy, S_yx, rtol=1e-7, atol=1e-12)
    assert (S_xy > 0).all()


def test_batch_rows_independent_and_float32(engine):
    x, a, y, b = _rand_problem(5, 10, 7, seed=7)
    S = sinkhorn_divergence(x, a, y, b, eps=1e-3, tol=1e-8, max_iter=5000)
    for i in (0, 3):
        Si = sinkhorn_divergence(x[i:i + 1], a[i:i + 1], y[i:i + 1], b[i:i + 1], eps=1e-3,
                                 tol=1e-8, max_iter=5000)
        torch.testing.assert_close(Si[0], S[i], rtol=1e-6, atol=1e-10)
    S32 = sinkhorn_divergence(x.float(), a.float(), y.float(), b.float(), eps=1e-3)
    assert S32.dtype == torch.float32
    torch.testing.assert_close(S32.double(), S, rtol=2e-3, atol=1e-6)


def test_warm_start_cuts_iterations(engine):
    x, a, y, b = _rand_problem(8, 20, 4, seed=8)
    kw = dict(R=0.8, eps=1e-3, tol=1e-6, max_iter=5000, return_potentials=True)
    S0, P0 = sinkhorn_divergence(x, a, y, b, **kw)
    assert isinstance(P0, SinkhornPotentials) and P0.converged.all()
    y1 = y + 1e-3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    S_cold, P_cold = sinkhorn_divergence(x, a, y1, b, **kw)
    S_warm, P_warm = sinkhorn_divergence(x, a, y1, b, warm_start=P0, **kw)
    assert P_warm.converged.all()
    assert P_warm.n_iter.sum() < P_cold.n_iter.sum()
    assert (P_warm.n_iter <= P_cold.n_iter).all()
    torch.testing.assert_close(S_warm, S_cold, rtol=1e-5, atol=1e-9)


def test_cached_self_term_same_value_and_gradients(engine):
    x, a, y, b = _rand_problem(4, 12, 3, seed=9)
    kw = dict(eps=5e-3, tol=1e-9, max_iter=5000)
    _, P = sinkhorn_divergence(x, a, y, b, return_potentials=True, **kw)
    y0 = y + 0.05
    grads = []
    for self_x in (None, P.p):
        ys = y0.clone().requires_grad_(True)
        bs = b.clone().requires_grad_(True)
        S = sinkhorn_divergence(x, a, ys, bs, self_x=self_x, **kw)
        S.sum().backward()
        grads.append((S.detach(), ys.grad, bs.grad))
    for u, v in zip(*grads):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-9)


def test_input_errors():
    x, a, y, b = _rand_problem(2, 4, 3, seed=10)
    with pytest.raises(ValueError, match="masses differ"):
        sinkhorn_divergence(x, a, y, 2 * b)
    with pytest.raises(ValueError, match="shapes"):
        sinkhorn_divergence(x, a[:, :3], y, b)
    with pytest.raises(TypeError):
        sinkhorn_divergence(x, a.float(), y, b)
    with pytest.raises(ValueError, match="negative"):
        a2 = a.clone()
        a2[0, 0] = -0.1
        a2[0, 1] += 0.1
        sinkhorn_divergence(x, a2, y, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x, a, y, b = _rand_problem(16, 30, 5, seed=11)
    S_cpu = sinkhorn_divergence(x, a, y, b, eps=1e-3, tol=1e-7)
    dev = torch.device("cuda")
    xs = x.to(dev).requires_grad_(True)
    S_gpu = sinkhorn_divergence(xs, a.to(dev), y.to(dev), b.to(dev), eps=1e-3, tol=1e-7)
    assert S_gpu.device.type == "cuda"
    torch.testing.assert_close(S_gpu.detach().cpu(), S_cpu, rtol=1e-5, atol=1e-9)
    S_gpu.sum().backward()
    assert torch.isfinite(xs.grad).all()
