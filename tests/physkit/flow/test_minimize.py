"""physkit.flow.minimize: convergence masks, non-finite rows, optimizers, dtype, final evaluation."""
import math

import numpy as np
import pytest
import torch

from physkit.flow import Angle, Simplex, Status, is_final_evaluation, minimize


class CountingQuadratic:
    """L_r(w) = 0.5 * a_r * |w - c_r|^2; counts flow evaluations per row via idx."""

    def __init__(self, a, c):
        self.a, self.c = a, c
        self.counts = torch.zeros(len(a), dtype=torch.int64)
        self.calls = []
        self.final_calls = 0

    def __call__(self, p, idx):
        if is_final_evaluation():
            self.final_calls += 1
            assert torch.equal(idx, torch.arange(len(self.a)))
            assert not torch.is_grad_enabled()
        else:
            self.counts.index_add_(0, idx, torch.ones_like(idx))
            self.calls.append(idx.clone())
        d = p["w"] - self.c[idx]
        return 0.5 * self.a[idx] * (d * d).sum(dim=1)


def test_quadratic_gd_converges_per_row_and_frozen_rows_drop_out():
    a = torch.tensor([1.0, 2.0, 5.0, 9.0], dtype=torch.float64)
    c = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 7
    f = CountingQuadratic(a, c)
    res = minimize(f, {"w": torch.zeros(4, 3, dtype=torch.float64)}, optimizer="gd", lr=0.1, steps=3000,
                   tol=1e-10, patience=5, history=True)
    assert (res.status == Status.CONVERGED).all()
    torch.testing.assert_close(res.params["w"], c, atol=1e-5, rtol=0)
    # stiffer rows converge in fewer steps (GD contraction 1 - 0.1 a)
    n = res.n_steps.tolist()
    assert n[0] > n[1] > n[2] > n[3]
    # a converged row is evaluated once per step taken plus the evaluation that declared convergence
    torch.testing.assert_close(f.counts, res.n_steps + 1)
    assert f.final_calls == 2
    # once a row has converged it never appears again in idx
    for r in range(4):
        last = max(t for t, idx in enumerate(f.calls) if r in idx.tolist())
        assert last == int(res.n_steps[r])
    # history: finite while evaluated, NaN afterwards, non-increasing for GD on a quadratic
    H = res.history
    assert H.shape == (len(f.calls), 4)
    for r in range(4):
        k = int(res.n_steps[r]) + 1
        assert torch.isfinite(H[:k, r]).all() and torch.isnan(H[k:, r]).all()
        assert (H[1:k, r] <= H[: k - 1, r]).all()
    assert res.params["w"].dtype == torch.float64 and res.loss.dtype == torch.float64


def test_converged_row_stops_changing():
    # row 0 is already at its minimum, row 1 far away: row 0 must be returned exactly unchanged
    a = torch.tensor([1.0, 1.0])
    c = torch.tensor([[0.3, -0.2], [5.0, 5.0]])
    f = CountingQuadratic(a, c)
    w0 = torch.tensor([[0.3, -0.2], [0.0, 0.0]])
    res = minimize(f, {"w": w0}, optimizer="adam", lr=0.05, steps=400, patience=3, history=True)
    assert res.status[0] == Status.CONVERGED
    # evaluations 2, 3, 4 stall (L = 0 each time): converged at the 4th evaluation after 3 (zero) steps
    assert int(res.n_steps[0]) == 3 and int(f.counts[0]) == 4
    assert torch.equal(res.params["w"][0], w0[0])
    assert int(f.counts[1]) == res.history.shape[0] > 4
    assert torch.isnan(res.history[4:, 0]).all()


@pytest.mark.parametrize("optimizer", ["adam", "nesterov", "gd"])
def test_optimizers_reach_minimum_with_simplex_constraint(optimizer):
    # min |x - v|^2 on the simplex = projection of v (known independently: x = max(v - theta, 0))
    v = torch.tensor([[0.9, 0.4, -0.3], [0.1, 0.1, 0.1], [2.0, -1.0, 0.5]], dtype=torch.float64)
    expected = torch.tensor([[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]], dtype=torch.float64)

    def loss(p, idx):
        return ((p["x"] - v[idx]) ** 2).sum(1)

    lr = {"adam": 0.02, "nesterov": 0.02, "gd": 0.1}[optimizer]
    res = minimize(loss, {"x": torch.full((3, 3), 1 / 3, dtype=torch.float64)}, {"x": Simplex()},
                   optimizer=optimizer, lr=lr, steps=3000, schedule="cosine" if optimizer == "adam" else None)
    torch.testing.assert_close(res.params["x"], expected, atol=2e-4, rtol=0)
    torch.testing.assert_close(res.params["x"].sum(1), torch.ones(3, dtype=torch.float64))


def test_nonfinite_rows_stop_with_last_finite_params():
    # rows 0,1: fine quadratics. Row 2: loss is NaN once w < 0.5. Row 3: gradient inf at w = 0 (sqrt|w|).
    def loss(p, idx):
        w = p["w"][:, 0]
        out = (w - 0.0) ** 2
        out = torch.where(idx == 2, torch.log(w - 0.5) * 0 + w**2, out)
        out = torch.where(idx == 3, torch.sqrt(w.abs()), out)
        return out

    w0 = torch.tensor([[1.0], [2.0], [1.0], [0.0]])
    res = minimize(loss, {"w": w0}, optimizer="gd", lr=0.1, steps=200, history=True)
    assert res.status.tolist()[2:] == [Status.NONFINITE, Status.NONFINITE]
    assert res.status[0] == Status.CONVERGED or res.status[0] == Status.MAX_STEPS
    assert torch.isfinite(res.params["w"]).all() and not torch.isnan(res.loss).any()
    # row 2 keeps the last parameter where the loss was finite: w = 1 * 0.8^k >= 0.5, i.e. 0.512
    torch.testing.assert_close(res.params["w"][2, 0], torch.tensor(0.8**3))
    assert int(res.n_steps[2]) == 4  # the 4th step led to w = 0.4096 where the loss is NaN
    # row 3: gradient is infinite at the start: never moves, final loss is finite (sqrt(0) = 0)
    assert float(res.params["w"][3, 0]) == 0.0 and int(res.n_steps[3]) == 0
    # no NaN sneaks into the rows that stopped: the history is NaN only after they stopped
    assert torch.isnan(res.history[4:, 2]).all()


def test_nonfinite_from_the_start_gives_inf_loss_not_nan():
    res = minimize(lambda p, idx: p["w"].sum(1) * float("nan"), {"w": torch.ones(2, 2)}, steps=10)
    assert (res.status == Status.NONFINITE).all()
    assert torch.equal(res.params["w"], torch.ones(2, 2))
    assert torch.isinf(res.loss).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="non-finite"):
        minimize(lambda p, i: p["w"].sum(1), {"w": torch.tensor([[1.0], [float("nan")]])})
    with pytest.raises(ValueError, match="batch size"):
        minimize(lambda p, i: p["w"].sum(1), {"w": torch.ones(2, 1), "v": torch.ones(3)})
    with pytest.raises(ValueError, match="loss_fn must return"):
        minimize(lambda p, i: p["w"].sum(), {"w": torch.ones(2, 1)}, steps=3)
    with pytest.raises(ValueError, match="unknown optimizer"):
        minimize(lambda p, i: p["w"].sum(1), {"w": torch.ones(2, 1)}, optimizer="sgdx")
    with pytest.raises(ValueError, match="lr dict"):
        minimize(lambda p, i: p["w"].sum(1), {"w": torch.ones(2, 1)}, lr={"v": 0.1})


def test_per_parameter_lr_and_angle_constraint():
    # phi is periodic: minimum of 1 - cos(phi - phi0) reached through the wrap
    phi0 = torch.tensor([3.0, -3.0], dtype=torch.float64)

    def loss(p, idx):
        return (1 - torch.cos(p["phi"] - phi0[idx])) + (p["r"] - 2.0) ** 2

    res = minimize(loss, {"phi": torch.tensor([-3.0, 3.0], dtype=torch.float64),
                          "r": torch.zeros(2, dtype=torch.float64)},
                   {"phi": Angle()}, optimizer="gd", lr={"phi": 0.5, "r": 0.25}, steps=2000, tol=1e-12)
    torch.testing.assert_close(res.params["phi"], phi0, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.params["r"], torch.full((2,), 2.0, dtype=torch.float64), atol=1e-6, rtol=0)
    assert (res.params["phi"].abs() <= math.pi).all()


def test_final_selection_uses_deterministic_reevaluation():
    # The flow sees a noisy loss (an extra random offset per evaluation) that makes an early point look
    # best; the final deterministic evaluation must choose by the true loss.
    g = torch.Generator().manual_seed(0)

    def loss(p, idx):
        true = ((p["w"] - 1.0) ** 2).sum(1)
        if is_final_evaluation():
            return true
        return true + torch.rand(len(idx), generator=g, dtype=true.dtype) * 0.5 - 10.0 * (p["w"][:, 0] == 0)

    res = minimize(loss, {"w": torch.zeros(3, 1, dtype=torch.float64)}, optimizer="gd", lr=0.1, steps=300)
    torch.testing.assert_close(res.loss, ((res.params["w"] - 1.0) ** 2).sum(1))
    assert (res.params["w"] > 0.99).all()  # not the starting point that the noisy loss favoured


def test_grad_history_and_float32():
    a = torch.tensor([1.0, 3.0])

    def loss(p, idx):
        return 0.5 * a[idx] * (p["w"] ** 2).sum(1)

    res = minimize(loss, {"w": torch.ones(2, 2)}, optimizer="gd", lr=0.1, steps=5, tol=0, history=True,
                   grad_history=True)
    assert res.loss.dtype == torch.float32 and res.params["w"].dtype == torch.float32
    # |grad| = a |w| = a sqrt(2) (1 - 0.1 a)^t
    t = torch.arange(5, dtype=torch.float32)[:, None]
    expected = a * math.sqrt(2) * (1 - 0.1 * a) ** t
    torch.testing.assert_close(res.grad_norm_history, expected, rtol=1e-5, atol=0)
    assert (res.status == Status.MAX_STEPS).all() and (res.n_steps == 5).all()


def test_shrinking_batch_indices_and_many_rows():
    # 1000 rows, curvatures spread: the active set must shrink over time and results match closed form
    B = 1000
    a = torch.linspace(0.5, 9.5, B, dtype=torch.float64)
    sizes = []

    def loss(p, idx):
        if not is_final_evaluation():
            sizes.append(len(idx))
        return 0.5 * a[idx] * (p["w"][:, 0] - 1.0) ** 2

    res = minimize(loss, {"w": torch.zeros(B, 1, dtype=torch.float64)}, optimizer="gd", lr=0.1, steps=2000,
                   tol=1e-9, patience=3)
    assert sizes[0] == B and sizes[-1] < B // 10
    assert all(x >= y for x, y in zip(sizes, sizes[1:]))
    np.testing.assert_allclose(res.params["w"][:, 0].numpy(), 1.0, atol=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "nesterov", "gd"])
def test_update_rules_match_torch_optim(optimizer):
    # the hand-written batched rules reproduce torch.optim on each row (an independent implementation):
    # the loss history of the flow equals the losses torch sees before each of its steps
    g = torch.Generator().manual_seed(4)
    B, steps, lr = 3, 12, 0.01
    A = torch.randn(B, 4, 4, generator=g, dtype=torch.float64)
    c = torch.randn(B, 4, generator=g, dtype=torch.float64)
    w0 = torch.randn(B, 4, generator=g, dtype=torch.float64)

    def loss(p, idx):
        r = torch.einsum("bij,bj->bi", A[idx], p["w"]) - c[idx]
        return (r * r).sum(1) + 0.1 * (p["w"] ** 4).sum(1)

    res = minimize(loss, {"w": w0}, optimizer=optimizer, lr=lr, steps=steps, tol=0, patience=10**6, history=True)
    for r in range(B):
        w = torch.nn.Parameter(w0[r].clone())
        if optimizer == "adam":
            opt = torch.optim.Adam([w], lr=lr)
        else:
            opt = torch.optim.SGD([w], lr=lr, momentum=0.9 if optimizer == "nesterov" else 0.0,
                                  nesterov=optimizer == "nesterov")
        seen = []
        for _ in range(steps):
            opt.zero_grad()
            L = loss({"w": w[None]}, torch.tensor([r]))[0]
            seen.append(float(L.detach()))
            L.backward()
            opt.step()
        final = float(loss({"w": w.detach()[None]}, torch.tensor([r]))[0])
        np.testing.assert_allclose(res.history[:, r].numpy(), seen, rtol=1e-12)
        # returned: the better of the final parameters and the best evaluated ones
        assert float(res.loss[r]) == pytest.approx(min(final, min(seen)), rel=1e-12)
        if final <= min(seen):
            torch.testing.assert_close(res.params["w"][r], w.detach(), rtol=1e-10, atol=1e-12)


def test_lr_schedules():
    from physkit.flow import lr_factor

    assert lr_factor(None, 5, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("exp", 10, 10) == pytest.approx(0.01)
    assert lr_factor(lambda t: 1 / (1 + t), 3, 10) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        lr_factor("bogus", 0, 10)
    # a zero schedule freezes the parameters
    res = minimize(lambda p, i: (p["w"] ** 2).sum(1), {"w": torch.ones(2, 2)}, optimizer="gd",
                   schedule=lambda t: 0.0, steps=5)
    assert torch.equal(res.params["w"], torch.ones(2, 2))


def test_device_argument_and_dtype_kept():
    res = minimize(lambda p, i: ((p["w"] - 1) ** 2).sum(1), {"w": torch.zeros(2, 3, dtype=torch.float64)},
                   device="cpu", optimizer="gd", lr=0.25, steps=200)
    assert res.params["w"].device.type == "cpu" and res.params["w"].dtype == torch.float64
    assert res.status.dtype == torch.int8 and res.n_steps.dtype == torch.int64
    torch.testing.assert_close(res.params["w"], torch.ones(2, 3, dtype=torch.float64))


def test_no_steps_evaluates_the_projected_start_twice():
    calls = []

    def loss(p, idx):
        calls.append((is_final_evaluation(), idx.clone()))
        return (p["v"] * torch.arange(1, 4, dtype=p["v"].dtype)).sum(1)

    v0 = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, -1.0]], dtype=torch.float64)
    res = minimize(loss, {"v": v0}, {"v": Simplex()}, steps=0, history=True, grad_history=True,
                   mu_fn=lambda p, idx: idx.double())
    assert [final for final, _ in calls] == [True, True]
    torch.testing.assert_close(res.params["v"].sum(1), torch.ones(2, dtype=torch.float64))
    assert (res.status == Status.MAX_STEPS).all() and (res.n_steps == 0).all()
    assert res.history.shape == (0, 2) and res.grad_norm_history.shape == (0, 2)
    assert res.mu_history.shape == (0, 2) and res.mu_steps.shape == (0,)


def test_mu_history_every_stride_on_active_rows():
    c = torch.tensor([[0.0], [3.0], [-1.0]], dtype=torch.float64)
    res = minimize(lambda p, idx: ((p["w"] - c[idx]) ** 2).sum(1), {"w": torch.zeros(3, 1, dtype=torch.float64)},
                   optimizer="gd", lr=0.25, steps=40, tol=1e-12, patience=2,
                   mu_fn=lambda p, idx: idx.double() + 10, mu_stride=3)
    assert res.mu_steps.tolist() == list(range(0, 40, 3))[:res.mu_history.shape[0]]
    H = res.mu_history
    for r in range(3):  # the row's index while it is active, NaN after it converged
        active = res.mu_steps <= res.n_steps[r]
        assert (H[active, r] == r + 10).all() and torch.isnan(H[~active, r]).all()
