"""Analytic Jacobians of the built-in prong samplers (shaper.prong_derivatives) against autograd
through the sampler, and the exact flow's fallback for observables without them."""
import pytest
import torch

from shaper import from_name
from shaper.exact_flow import ExactSteps, flow_exact
from shaper.observables import Observable, ParamSpec, with_pileup
from physkit.flow.constraints import Free, Positive

NAMES = ["1-ringiness", "2-diskiness", "2-ellipsiness", "2-point-ringiness",
         "2-point-diskiness", "1-point-ellipsiness"]


def _params(obs, B, seed):
    g = torch.Generator().manual_seed(seed)
    p = {}
    for k, s in obs.specs.items():
        t = torch.rand((B,) + s.shape, generator=g, dtype=torch.float64)
        if k == "weights":
            t = t / t.sum(1, keepdim=True)
        elif k == "centers":
            t = t - 0.5
        p[k] = t
    return p


def _steps(obs, B=5, M=7, K=24):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, M, 2, generator=g, dtype=torch.float64) - 0.5
    a = torch.rand(B, M, generator=g, dtype=torch.float64)
    return ExactSteps(obs, x, a, n_samples=K, R=0.8, beta=1.0, weight_lr=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_node_jacobian_equals_autograd_through_the_sampler(name):
    obs = from_name(name)
    steps = _steps(obs)
    p, idx = _params(obs, 5, 0), torch.arange(5)
    J = obs.node_jacobian(p, 24, 0.8, steps.positional)
    assert J is not None and J.shape == (5, obs.sample(p, 24, 0.8)[0].shape[1], 2, J.shape[-1])
    auto = steps._autograd_jacobian(p, idx, steps.positional)
    torch.testing.assert_close(J.reshape(5, -1, J.shape[-1]), auto, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(steps._jacobian(p, idx, steps.positional), auto, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "1-ringiness"])
def test_mass_gradients_equal_autograd_through_the_sampler(name):
    obs = from_name(name)
    p = _params(obs, 5, 2)
    K = obs.sample(p, 24, 0.8)[0].shape[1]
    v = torch.randn(5, K, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    analytic = obs.mass_grads(p, 24, 0.8, v, ["weights"])
    q = {k: t.clone().requires_grad_(k == "weights") for k, t in p.items()}
    auto = torch.autograd.grad((obs.sample(q, 24, 0.8)[1] * v).sum(), [q["weights"]])
    torch.testing.assert_close(analytic[0], auto[0], rtol=1e-14, atol=1e-15)


def _user_ring():
    """A ring observable without analytic derivatives (a user's sampler)."""
    def sampler(params, k, R):
        t = 2 * torch.pi * (torch.arange(k, dtype=torch.float64) + 0.5) / k
        u = torch.stack([torch.cos(t), torch.sin(t)], -1)
        pts = params["centers"][:, :, None, :] + params["radii"][:, :, None, None] * u
        B = pts.shape[0]
        return pts.reshape(B, -1, 2), torch.full((B, k), 1.0 / k, dtype=torch.float64)

    specs = {"centers": ParamSpec((1, 2), Free(), "position"),
             "radii": ParamSpec((1,), Positive(), "length")}
    return Observable("my-ring", specs, sampler)


@pytest.mark.parametrize("make", [_user_ring, lambda: with_pileup(from_name("1-diskiness"))])
def test_observables_without_analytic_derivatives_fall_back_to_autograd(make):
    obs = make()
    steps = _steps(obs)
    p, idx = _params(obs, 5, 4), torch.arange(5)
    if obs.name == "my-ring":
        assert obs.node_jacobian(p, 24, 0.8, steps.positional) is None
    J = steps._jacobian(p, idx, steps.positional)
    torch.testing.assert_close(J, steps._autograd_jacobian(p, idx, steps.positional))
    assert J.abs().sum() > 0


def test_flow_with_analytic_derivatives_equals_the_autograd_flow():
    """The same flow, bit for bit, whether the derivatives come from the observable or from
    autograd through its sampler."""
    obs = from_name("2-point-diskiness")
    g = torch.Generator().manual_seed(7)
    x = 0.3 * torch.randn(4, 20, 2, generator=g, dtype=torch.float64)
    a = torch.rand(4, 20, generator=g, dtype=torch.float64)
    p0 = _params(obs, 4, 5)
    p0["centers"] = 0.3 * p0["centers"]
    p0["radii"] = 0.2 * p0["radii"]
    kw = dict(steps=8, n_samples=12, R=0.8, beta=1.0, weight_lr=0.25, tol=1e-6, patience=2)
    fast = flow_exact(obs, x, a, p0, **kw)
    plain = from_name("2-point-diskiness")
    plain._jacobian = plain._mass_vjp = None
    slow = flow_exact(plain, x, a, p0, **kw)
    assert torch.equal(fast.loss, slow.loss)
    for k in p0:
        assert torch.equal(fast.params[k], slow.params[k]), k
