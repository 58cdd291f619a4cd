"""IAE on a batched Fourier least-squares toy: the model is unchanged by expand, the error falls each stage."""
import math

import numpy as np
import torch

from physkit.flow import Expandable, expand_and_minimize

N_GRID = 128
X = torch.arange(N_GRID, dtype=torch.float64) * (2 * math.pi / N_GRID) - math.pi


def targets(B):
    """One known function per row: a sawtooth (sin coefficients ~ 1/k) plus a smooth bump exp(s cos(x - phi))."""
    r = torch.arange(B, dtype=torch.float64)
    s = 0.5 + 0.25 * r
    phi = 0.3 * r
    c = 0.2 + 0.1 * r
    return c[:, None] * X[None] / math.pi + torch.exp(s[:, None] * torch.cos(X[None] - phi[:, None]))


class Fourier:
    """f(x) = c_0 + sum_k c_{2k-1} cos(k x) + c_{2k} sin(k x); params {"c": (B, 2K+1)}; expand adds `step` harmonics."""

    def __init__(self, y, step=1):
        self.y, self.step = y, step

    @staticmethod
    def model(c):
        K = (c.shape[1] - 1) // 2
        k = torch.arange(1, K + 1, dtype=c.dtype)
        basis = [torch.ones(1, N_GRID, dtype=c.dtype)]
        x = X.to(c.dtype)
        cos, sin = torch.cos(k[:, None] * x[None]), torch.sin(k[:, None] * x[None])
        basis = torch.cat([basis[0], torch.stack([cos, sin], 1).reshape(2 * K, N_GRID)], 0)
        return c @ basis  # (B, N_GRID)

    def size(self, params):
        return params["c"].shape[1]

    def expand(self, params):
        c = params["c"]
        return {"c": torch.cat([c, c.new_zeros(c.shape[0], 2 * self.step)], 1)}, {}

    def loss_fn(self, params, idx):
        c = params["c"]
        return ((self.model(c) - self.y[idx].to(c.dtype)) ** 2).mean(1)


def lstsq_error(y, K):
    """Independent reference: least-squares error with K harmonics (numpy lstsq)."""
    x = X.numpy()
    cols = [np.ones_like(x)] + sum(([np.cos(k * x), np.sin(k * x)] for k in range(1, K + 1)), [])
    A = np.stack(cols, 1)
    coef, *_ = np.linalg.lstsq(A, y.numpy().T, rcond=None)
    return ((A @ coef - y.numpy().T) ** 2).mean(0)


def test_expand_keeps_the_model():
    arch = Fourier(targets(3))
    c = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c2, _ = arch.expand({"c": c})
    assert c2["c"].shape == (3, 7)
    torch.testing.assert_close(arch.model(c2["c"]), arch.model(c), rtol=0, atol=1e-13)
    c32 = c.float()
    torch.testing.assert_close(arch.model(arch.expand({"c": c32})[0]["c"]), arch.model(c32), rtol=0, atol=1e-6)
    assert isinstance(arch, Expandable)


def test_error_falls_with_each_expansion_and_matches_lstsq():
    B = 4
    y = targets(B)
    arch = Fourier(y)
    res = expand_and_minimize(arch, {"c": torch.zeros(B, 1, dtype=torch.float64)}, max_stages=6, gain_tol=1e-12,
                              optimizer="gd", lr=0.5, steps=400, tol=1e-12)
    assert res.stop_reason == "max_stages"
    assert res.sizes == [1, 3, 5, 7, 9, 11]
    S = res.stage_loss
    assert S.shape == (6, B)
    assert (S[1:] < S[:-1]).all()  # strictly falls with each expansion, every row
    assert (res.gains > 0).all()
    for s, K in enumerate(range(6)):
        np.testing.assert_allclose(S[s].numpy(), lstsq_error(y, K), rtol=1e-8)


def test_stops_when_gain_is_small_and_at_max_size():
    B = 2
    y = torch.exp(0.3 * torch.cos(X))[None].repeat(B, 1)  # harmonics decay like I_k(0.3): gains collapse fast
    arch = Fourier(y)
    res = expand_and_minimize(arch, {"c": torch.zeros(B, 1, dtype=torch.float64)}, max_stages=20, gain_tol=0.5,
                              optimizer="gd", lr=0.5, steps=400, tol=1e-12)
    assert res.stop_reason == "gain"
    assert (res.gains[-1] < 0.5).all() and (res.gains[:-1] >= 0.5).any(dim=1).all()
    assert len(res.sizes) < 20
    res2 = expand_and_minimize(arch, {"c": torch.zeros(B, 1, dtype=torch.float64)}, max_stages=20, gain_tol=0.0,
                               max_size=7, loss_fn_factory=lambda a: a.loss_fn, optimizer="gd", lr=0.5, steps=50)
    assert res2.stop_reason == "max_size" and res2.sizes[-1] == 7


def test_adam_flows_warm_start_never_worse():
    # with Adam (not exact), each stage starts from the expanded optimum and returns its best: no stage is worse
    B = 3
    arch = Fourier(targets(B), step=2)
    res = expand_and_minimize(arch, {"c": torch.zeros(B, 3)}, max_stages=4, gain_tol=1e-9, optimizer="adam",
                              lr=0.05, steps=300)
    assert (res.stage_loss[1:] <= res.stage_loss[:-1]).all()
    assert (res.stage_loss[-1] < 0.5 * res.stage_loss[0]).all()
    assert res.params["c"].shape == (B, 3 + 4 * (len(res.sizes) - 1))


def test_split_expansion_needs_noise_to_break_symmetry():
    """Nonlinear IAE: a mixture of Gaussian bumps grows by splitting its heaviest bump into two halves at the
    same place (the same model). The two copies have identical Jacobian columns (the NTK rank does not grow)
    and identical gradients, so a deterministic flow keeps them together: zero gain. Annealed noise breaks the
    symmetry and the two-bump targets are fitted."""
    from physkit.flow import Annealing, Simplex, architecture_jacobian, ntk_mu

    B, sig = 32, 0.4
    xg = torch.linspace(-3, 3, 121, dtype=torch.float64)
    d = torch.linspace(0.6, 1.2, B, dtype=torch.float64)

    def dens(mu, w):
        return (w[:, :, None] * torch.exp(-0.5 * ((xg - mu[:, :, None]) / sig) ** 2)).sum(1)

    y = dens(torch.stack([-d, d], 1), torch.full((B, 2), 0.5, dtype=torch.float64))

    class Bumps:
        def size(self, p):
            return 2 * p["mu"].shape[1]

        def expand(self, p):
            mu, w = p["mu"], p["w"]
            j = w.argmax(1, keepdim=True)
            half = w.gather(1, j) / 2
            return ({"mu": torch.cat([mu, mu.gather(1, j)], 1), "w": torch.cat([w.scatter(1, j, half), half], 1)},
                    {"w": Simplex()})

        def loss_fn(self, p, idx):
            return ((dens(p["mu"], p["w"]) - y[idx]) ** 2).mean(1)

    arch = Bumps()
    p0 = {"mu": torch.zeros(B, 1, dtype=torch.float64), "w": torch.ones(B, 1, dtype=torch.float64)}
    kw = dict(constraints={"w": Simplex()}, max_stages=2, gain_tol=1e-3, optimizer="adam", lr=0.02, steps=600)

    def model(p, idx):
        return dens(p["mu"], p["w"])

    det = expand_and_minimize(arch, p0, **kw)
    assert det.stop_reason == "gain" and det.sizes == [2, 4]
    assert (det.gains.abs() < 1e-6).all()  # only the continued convergence of stage 0 (vs > 0.5 below)
    assert torch.equal(det.params["mu"][:, 0], det.params["mu"][:, 1])  # the copies never separate
    p1 = det.results[0].params
    torch.testing.assert_close(model(arch.expand(p1)[0], None), model(p1, None), rtol=0, atol=1e-15)
    _, rank1 = ntk_mu(architecture_jacobian(model, p1), return_rank=True)
    _, rank2 = ntk_mu(architecture_jacobian(model, det.params), return_rank=True)
    assert (rank1 == 2).all() and (rank2 == 2).all()  # duplicated columns: no new directions

    ann = expand_and_minimize(arch, p0, noise=Annealing(0.02, "linear", seed=0), **kw)
    ok = ann.gains[0] > 0.5
    assert float(ok.double().mean()) > 0.6
    assert (ann.stage_loss[1, ok] < 1e-6 * ann.stage_loss[0, ok]).all()
    _, rank3 = ntk_mu(architecture_jacobian(model, ann.params), return_rank=True)
    assert (rank3[ok] == 4).all()
