"""Row-wise and batch-wide runs of the Sinkhorn solvers (physkit.ot.batch_mode, physkit.ot.scaling)."""
from __future__ import annotations

import math

import pytest
import torch

import physkit.ot.scaling as scaling
import physkit.ot.sinkhorn as sk
from physkit.ot import sinkhorn_divergence
from physkit.ot.batch_mode import BatchMode
from physkit.ot.scaling import ScaledPotentials

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(B, N, M, seed, dtype=F64, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 2, generator=g, dtype=F64) * 0.5
    y = torch.randn(B, M, 2, generator=g, dtype=F64) * 0.5 + shift
    mx = torch.rand(B, N, generator=g) < 0.8
    mx[:, 0] = True
    a = torch.where(mx, torch.rand(B, N, generator=g, dtype=F64) + 0.05, torch.zeros((), dtype=F64))
    b = torch.rand(B, M, generator=g, dtype=F64) + 0.05
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    return x.to(dtype), a.to(dtype), y.to(dtype), b.to(dtype), mx


def test_rowwise_and_batchwide_agree(engine):
    """The two modes differ only in how stabilisation steps are decided: same divergence,
    self potentials and (up to the dual's additive constant) potentials, to the tolerance."""
    x, a, y, b, mx = _problem(6, 24, 5 if engine == "newton" else 20, seed=1)
    kw = dict(R=0.8, eps=5e-3, tol=1e-9, max_iter=5000, mask_x=mx, return_potentials=True)
    S0, P0 = sinkhorn_divergence(x, a, y, b, rowwise=False, **kw)
    S1, P1 = sinkhorn_divergence(x, a, y, b, rowwise=True, **kw)
    assert P0.converged.all() and P1.converged.all()
    torch.testing.assert_close(S1, S0, rtol=1e-6, atol=1e-10)
    c0, c1 = P0.f[:, :1], P1.f[:, :1]  # (x's first point is never masked)
    m = mx.to(F64)
    torch.testing.assert_close((P1.f - c1) * m, (P0.f - c0) * m, rtol=0, atol=1e-7)
    torch.testing.assert_close(P1.g + c1, P0.g + c0, rtol=0, atol=1e-7)
    torch.testing.assert_close(P1.p, P0.p, rtol=0, atol=1e-7)
    torch.testing.assert_close(P1.q, P0.q, rtol=0, atol=1e-7)


def test_rowwise_primitives_do_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(2)
    A = torch.rand(5, 7, 9, generator=g, dtype=F64)
    X = torch.rand(5, 9, 1, generator=g, dtype=F64)
    t = torch.rand(5, generator=g, dtype=F64) + 0.5
    mode = BatchMode(rowwise=True)
    full, logs = mode.matmul(A, X), mode.log(t)
    for i in range(5):
        assert torch.equal(mode.matmul(A[i:i + 1], X[i:i + 1])[0], full[i])
        assert torch.equal(mode.log(t[i:i + 1])[0], logs[i])


def test_rows_taking_a_step():
    flags = torch.tensor([False, True, False])
    assert torch.equal(BatchMode(True).rows(flags), flags)
    assert BatchMode(False).rows(flags).all()
    assert not BatchMode(False).rows(torch.zeros(3, dtype=torch.bool)).any()


def test_absorb_keeps_the_potentials_and_only_touches_given_rows():
    g = torch.Generator().manual_seed(3)
    f, lu = torch.randn(4, 6, generator=g, dtype=F64), torch.randn(4, 6, generator=g, dtype=F64)
    gg, lv = torch.randn(4, 5, generator=g, dtype=F64), torch.randn(4, 5, generator=g, dtype=F64)
    st = ScaledPotentials(f=f, lu=lu, g=gg, lv=lv)
    before = st.value(0.01)
    rows = torch.tensor([True, False, True, False])
    st.absorb(rows, 0.01)
    after = st.value(0.01)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert (st.lu[rows] == 0).all() and (st.lv[rows] == 0).all()
    assert torch.equal(st.lu[~rows], lu[~rows]) and torch.equal(st.f[~rows], f[~rows])
    sym = ScaledPotentials(f=f, lu=lu)  # a symmetric problem has one potential
    sym.absorb(rows, 0.01)
    assert sym.g is None and torch.equal(sym.value(0.01)[0], before[0])


@pytest.mark.parametrize("rowwise", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_domain_fallback_after_a_far_warm_start(rowwise, dtype, monkeypatch):
    """Potentials warm-started from a far-away problem make kernel rows underflow at small
    eps: those steps are taken in the log domain and the value matches a cold start."""
    calls = []
    log_step = scaling.softmin_cols  # used by the Sinkhorn loop for log-domain steps only
    monkeypatch.setattr(scaling, "softmin_cols", lambda *a: calls.append(1) or log_step(*a))
    monkeypatch.setattr(sk, "NEWTON_MAX_POINTS", 0)
    x, a, y, b, mx = _problem(8, 40, 48, seed=4, dtype=dtype)
    kw = dict(eps=1e-3, tol=1e-6, max_iter=3000, mask_x=mx, rowwise=rowwise, return_potentials=True)
    _, P0 = sinkhorn_divergence(x, a, y, b, **kw)
    y2 = y + 0.3 + 0.2 * torch.sin(7 * y)
    S_cold, _ = sinkhorn_divergence(x, a, y2, b, **kw)
    calls.clear()
    S_warm, _ = sinkhorn_divergence(x, a, y2, b, warm_start=P0, **kw)
    assert calls, "expected a log-domain step"
    assert torch.isfinite(S_warm).all()
    torch.testing.assert_close(S_warm, S_cold, rtol=1e-3, atol=1e-6)


def test_option_errors_name_the_option():
    x, a, y, b, _ = _problem(2, 4, 3, seed=5)
    cases = [(dict(eps=0.0), r"^eps must be > 0, got 0\.0$"),
             (dict(eps=math.nan), r"^eps must be > 0"),
             (dict(scaling=1.0), r"^scaling must be in \(0, 1\), got 1\.0$"),
             (dict(relax=2.0), r"^relax must be in \[1, 2\), got 2\.0$"),
             (dict(relax=0.5), r"^relax must be in \[1, 2\)"),
             (dict(R=0.0), r"^R must be > 0"),
             (dict(beta=-1.0), r"^beta must be > 0"),
             (dict(self_x=torch.zeros(2, 5, dtype=F64)), r"self_x must have shape \(2, 4\)"),
             (dict(self_y=torch.zeros(3, 3, dtype=F64)), r"self_y must have shape \(2, 3\)")]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            sinkhorn_divergence(x, a, y, b, **kw)
    _, P = sinkhorn_divergence(x, a, y, b, return_potentials=True)
    with pytest.raises(ValueError, match="warm_start potentials do not match"):
        sinkhorn_divergence(x[:, :3], a[:, :3] / a[:, :3].sum(1, keepdim=True), y, b, warm_start=P)
