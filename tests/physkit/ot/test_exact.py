"""Exact EMD (physkit.ot.exact) against independent calculations."""
from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from physkit.events import Events
from physkit.ot import EMDError, cost_matrix, emd, emd_batch, emd_batch_grads, emds

#: normalised, periodic: the settings of SHAPER's EMDs (emd/emds default to energyflow's)
NP = {"norm": True, "periodic_phi": True}


def _naive_cost(p0, p1, R, beta):
    """Pairwise (theta/R)^beta with loops and a modulo-based periodic phi (independent code)."""
    C = np.empty((len(p0), len(p1)))
    for i, (y0, f0) in enumerate(p0):
        for j, (y1, f1) in enumerate(p1):
            d = abs(f0 - f1) % (2 * math.pi)
            d = min(d, 2 * math.pi - d)
            C[i, j] = (math.hypot(y0 - y1, d) / R) ** beta
    return C


def _event(rng, n, spread=0.3, phi0=0.0):
    ev = np.zeros((n, 3))
    ev[:, 0] = rng.exponential(1.0, n) + 0.01
    ev[:, 1] = rng.normal(0, spread, n)
    ev[:, 2] = np.angle(np.exp(1j * (phi0 + rng.normal(0, spread, n))))
    return ev


@pytest.fixture(scope="module")
def sample_jets(request):
    """Up to 24 real jets (pT, y, phi) from data/jets_sample.h5, else synthetic jets."""
    try:
        path = request.getfixturevalue("sample_path")
        import h5py
        with h5py.File(path, "r") as f:
            c = f["constituents"][:24].astype(np.float64)
    except pytest.skip.Exception:
        from conftest import synthetic_jets
        c = synthetic_jets(24, 40, seed=3).astype(np.float64)
    return [e[e[:, 0] > 0] for e in c]


def test_cost_matrix_periodic_and_numpy_torch_agree():
    rng = np.random.default_rng(0)
    x = rng.uniform([-1, -np.pi], [1, np.pi], size=(3, 5, 2))
    y = rng.uniform([-1, -np.pi], [1, np.pi], size=(3, 4, 2))
    for beta in (0.5, 1.0, 2.0, 3.0):
        c_np = cost_matrix(x, y, 0.7, beta)
        c_t = cost_matrix(torch.from_numpy(x), torch.from_numpy(y), 0.7, beta).numpy()
        for b in range(3):
            np.testing.assert_allclose(c_np[b], _naive_cost(x[b], y[b], 0.7, beta), rtol=1e-12)
        np.testing.assert_allclose(c_t, c_np, rtol=1e-12)
    # points just either side of phi = +-pi are close
    c = cost_matrix(np.array([[0.0, math.pi - 0.01]]), np.array([[0.0, -math.pi + 0.01]]))
    assert c[0, 0] == pytest.approx(0.02, rel=1e-9)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_cost_matrix_gradient_finite_at_zero_distance(beta):
    x = torch.tensor([[[0.1, 0.2], [0.3, -0.1]]], dtype=torch.float64, requires_grad=True)
    c = cost_matrix(x, x, 1.0, beta)
    c.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_line_closed_form_beta1():
    """On a line, EMD with beta = 1 is the integral of |F - G|."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        n0, n1 = rng.integers(1, 12, size=2)
        e0 = np.column_stack([rng.random(n0) + 0.05, rng.uniform(-1, 1, n0), np.zeros(n0)])
        e1 = np.column_stack([rng.random(n1) + 0.05, rng.uniform(-1, 1, n1), np.zeros(n1)])
        R = 0.8
        pts = np.sort(np.concatenate([e0[:, 1], e1[:, 1]]))
        F = np.array([e0[e0[:, 1] <= t, 0].sum() for t in pts[:-1]]) / e0[:, 0].sum()
        G = np.array([e1[e1[:, 1] <= t, 0].sum() for t in pts[:-1]]) / e1[:, 0].sum()
        expect = np.sum(np.abs(F - G) * np.diff(pts)) / R
        assert emd(e0, e1, R=R, beta=1.0, **NP) == pytest.approx(expect, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_equal_weights_match_assignment(beta):
    rng = np.random.default_rng(2)
    for n in (1, 3, 6):
        e0 = _event(rng, n, phi0=3.0)
        e1 = _event(rng, n, phi0=-3.0)
        e0[:, 0] = e1[:, 0] = 2.5  # equal weights: the optimum is a permutation
        C = _naive_cost(e0[:, 1:], e1[:, 1:], 0.6, beta)
        r, c = linear_sum_assignment(C)
        expect = C[r, c].mean()
        if n <= 4:  # brute force over permutations as a second opinion
            best = min(C[np.arange(n), list(p)].mean() for p in itertools.permutations(range(n)))
            assert best == pytest.approx(expect, rel=1e-12)
        assert emd(e0, e1, R=0.6, beta=beta, **NP) == pytest.approx(expect, rel=1e-9)


def test_matches_pot_called_directly_and_flow():
    rng = np.random.default_rng(3)
    e0, e1 = _event(rng, 15, phi0=np.pi - 0.1), _event(rng, 11, phi0=-np.pi + 0.1)
    e0[3, 0] = 0.0  # zero-weight rows are ignored
    for beta in (0.5, 1.0, 2.0):
        keep = e0[:, 0] > 0
        a = e0[keep, 0] / e0[keep, 0].sum()
        b = e1[:, 0] / e1[:, 0].sum()
        C = _naive_cost(e0[keep, 1:], e1[:, 1:], 0.8, beta)
        expect = ot.emd2(a, b, C, numItermax=10**7)
        val, flow = emd(e0, e1, R=0.8, beta=beta, return_flow=True, **NP)
        assert val == pytest.approx(expect, rel=1e-9)
        assert flow.shape == (15, 11)
        assert np.all(flow[3] == 0)
        np.testing.assert_allclose(flow.sum(1)[keep], a, atol=1e-12)
        np.testing.assert_allclose(flow.sum(0), b, atol=1e-12)
        assert (flow[keep] * C).sum() == pytest.approx(val, rel=1e-9)


def test_periodic_phi():
    e0 = np.array([[1.0, 0.0, math.pi - 0.05]])
    e1 = np.array([[1.0, 0.0, -math.pi + 0.05]])
    assert emd(e0, e1, R=1.0, **NP) == pytest.approx(0.1, rel=1e-9)
    # the same configuration rotated by any angle gives the same distance
    e0b, e1b = e0.copy(), e1.copy()
    e0b[:, 2] = 0.05
    e1b[:, 2] = -0.05
    assert emd(e0b, e1b, **NP) == pytest.approx(0.1, rel=1e-9)


def test_unnormalised():
    e0 = np.array([[2.0, 0.0, 0.0]])
    e1 = np.array([[1.0, 0.3, 0.0]])
    for beta in (0.5, 1.0, 2.0):
        # 1 unit moved a distance 0.3 (cost (0.3/0.8)^beta) + 1 unit of excess energy
        assert emd(e0, e1, R=0.8, beta=beta, norm=False, periodic_phi=True) == pytest.approx(
            (0.3 / 0.8) ** beta + 1.0, rel=1e-12)
        assert emd(e1, e0, R=0.8, beta=beta, norm=False, periodic_phi=True) == pytest.approx(
            (0.3 / 0.8) ** beta + 1.0, rel=1e-12)
    # against a direct POT solve with an explicit fake particle
    rng = np.random.default_rng(4)
    a, b = _event(rng, 7), _event(rng, 9)
    b[:, 0] *= 3.0
    diff = b[:, 0].sum() - a[:, 0].sum()
    C = _naive_cost(a[:, 1:], b[:, 1:], 0.5, 1.0)
    C = np.vstack([C, np.ones((1, 9))])
    expect = ot.emd2(np.append(a[:, 0], diff), b[:, 0], C, numItermax=10**7)
    assert emd(a, b, R=0.5, norm=False, periodic_phi=True) == pytest.approx(expect, rel=1e-9)
    # an empty event against a real one: all its energy is excess
    empty = np.zeros((3, 3))
    assert emd(empty, b, norm=False, periodic_phi=True) == pytest.approx(b[:, 0].sum())
    with pytest.raises(ValueError, match="normalise"):
        emd(empty, b, **NP)


def test_events_input_and_errors():
    rng = np.random.default_rng(5)
    e0, e1 = _event(rng, 6), _event(rng, 8)
    pad0 = np.zeros((1, 10, 3))
    pad0[0, :6] = e0
    ev = Events.from_padded(pad0)
    assert emd(ev, e1, **NP) == pytest.approx(emd(e0, e1, **NP), rel=1e-12)
    with pytest.raises(ValueError, match="negative"):
        bad = e0.copy()
        bad[0, 0] = -1
        emd(bad, e1, **NP)
    with pytest.raises(ValueError):
        emd(e0, e1, beta=0.0, **NP)
    with pytest.raises(EMDError, match="result code"):
        emd(_event(rng, 40), _event(rng, 40), n_iter_max=2, **NP)


def test_emds_symmetric_and_rectangular():
    rng = np.random.default_rng(6)
    evs = [_event(rng, n, phi0=3.1) for n in (3, 8, 5, 12, 1)]
    D = emds(evs, R=0.7, beta=1.0, n_jobs=2, **NP)
    assert D.shape == (5, 5)
    np.testing.assert_array_equal(np.diag(D), 0.0)
    np.testing.assert_array_equal(D, D.T)
    for i, j in itertools.combinations(range(5), 2):
        assert D[i, j] == pytest.approx(emd(evs[i], evs[j], R=0.7, **NP), rel=1e-12)
    D2 = emds(evs[:2], evs[2:], R=0.7, n_jobs=1, norm=False, periodic_phi=True)
    assert D2.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert D2[i, j] == pytest.approx(emd(evs[i], evs[2 + j], R=0.7, norm=False,
                                                 periodic_phi=True),
                                             rel=1e-12)


def test_emd_batch_padded_matches_single():
    rng = np.random.default_rng(7)
    B, N, M = 6, 9, 4
    x = rng.normal(0, 0.3, (B, N, 2))
    x[:, :, 1] += 3.0  # straddle phi = pi
    y = rng.normal(0, 0.3, (B, M, 2))
    a = rng.random((B, N))
    b = rng.random((B, M))
    a[:, 6:] = 0.0  # padding
    b[2, 3] = 0.0
    x[:, 6:] = 100.0  # garbage positions under zero weight must not matter
    for beta in (0.5, 1.0, 2.0):
        got = emd_batch(x, a, y, b, R=0.8, beta=beta, n_jobs=2)
        got_t = emd_batch(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(y),
                          torch.from_numpy(b), R=0.8, beta=beta, n_jobs=1)
        for k in range(B):
            e0 = np.column_stack([a[k], x[k]])
            e1 = np.column_stack([b[k], y[k]])
            assert got[k] == pytest.approx(emd(e0, e1, R=0.8, beta=beta, **NP), rel=1e-10)
        np.testing.assert_allclose(got_t, got, rtol=1e-12)
    with pytest.raises(ValueError, match="row 1"):
        a2 = a.copy()
        a2[1] = 0
        emd_batch(x, a2, y, b)


def test_against_energyflow(sample_jets):
    ef_emd = pytest.importorskip("energyflow.emd")
    jets = sample_jets
    for i in range(0, 12, 2):
        e0, e1 = jets[i], jets[i + 1]
        for beta in (0.5, 1.0, 2.0):
            ref = ef_emd.emd(e0, e1, R=0.8, beta=beta, norm=True, periodic_phi=True)
            assert emd(e0, e1, R=0.8, beta=beta, **NP) == pytest.approx(ref, rel=1e-7)
        ref = ef_emd.emd(e0, e1, R=0.8, beta=1.0, norm=False, periodic_phi=True)
        assert emd(e0, e1, R=0.8, beta=1.0, norm=False,
                   periodic_phi=True) == pytest.approx(ref, rel=1e-7)
    D = emds(jets[:8], R=0.8, beta=1.0, n_jobs=2, **NP)
    # wasserstein's PairwiseEMD asks numpy for a no-copy view of the weight column
    # (np.array(copy=False)), which numpy 2 refuses for C-ordered events: pass Fortran order
    Dref = ef_emd.emds([np.asfortranarray(j) for j in jets[:8]], R=0.8, beta=1.0, norm=True, periodic_phi=True, n_jobs=1,
                       verbose=0)
    np.testing.assert_allclose(D, Dref, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_emd_batch_grads_match_finite_differences(beta):
    rng = np.random.default_rng(0)
    B, N, M = 4, 12, 7
    x = rng.normal(0, 0.3, (B, N, 2))
    a = rng.exponential(1, (B, N))
    a[:, -2:] = 0  # padding
    y = rng.normal(0, 0.3, (B, M, 2))
    b = rng.exponential(1, (B, M))
    x[0, 0, 1], y[0, 0, 1] = 3.1, -3.1  # across phi = pi
    v, ga, gx = emd_batch_grads(x, a, y, b, R=0.8, beta=beta)
    np.testing.assert_allclose(v, emd_batch(x, a, y, b, R=0.8, beta=beta), rtol=1e-12)

    def value(k, xk=None, ak=None):
        xk = x[k] if xk is None else xk
        ak = a[k] if ak is None else ak
        return emd_batch(xk[None], ak[None], y[k:k + 1], b[k:k + 1], R=0.8, beta=beta)[0]

    h = 1e-7
    for k in range(B):
        for i in (0, 3):
            for c in range(2):
                up, dn = x[k].copy(), x[k].copy()
                up[i, c] += h
                dn[i, c] -= h
                fd = (value(k, xk=up) - value(k, xk=dn)) / (2 * h)
                assert abs(fd - gx[k, i, c]) < 1e-5, (k, i, c, fd, gx[k, i, c])
            up, dn = a[k].copy(), a[k].copy()
            up[i] += h
            dn[i] -= h
            fd = (value(k, ak=up) - value(k, ak=dn)) / (2 * h)
            assert abs(fd - ga[k, i]) < 1e-5, (k, i, fd, ga[k, i])
    assert (ga[:, -2:] == 0).all() and (gx[:, -2:] == 0).all()
    # the value is invariant under scaling a: the weight gradient is orthogonal to a
    np.testing.assert_allclose((ga * a).sum(1), 0.0, atol=1e-12)


# ------------------------------------------------------------------ emd_batch_plans
def test_emd_batch_plans_value_plan_and_duals():
    from physkit.ot import emd_batch_plans

    rng = np.random.default_rng(5)
    B, N, M = 6, 9, 7
    x = rng.normal(0, 0.3, (B, N, 2))
    y = rng.normal(0, 0.3, (B, M, 2))
    a = rng.exponential(1.0, (B, N))
    b = rng.exponential(1.0, (B, M))
    a[:, -2:] = 0.0  # padding on both sides
    b[0, 3] = 0.0
    C = cost_matrix(torch.tensor(x), torch.tensor(y), 0.8, 1.0)
    res = emd_batch_plans(C, torch.tensor(a), torch.tensor(b), n_jobs=2)
    np.testing.assert_allclose(res.value.numpy(), emd_batch(x, a, y, b, R=0.8), rtol=1e-12,
                               atol=1e-15)
    an, bn = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    P = res.plan.numpy()
    np.testing.assert_allclose(P.sum(2), an, atol=1e-12)
    np.testing.assert_allclose(P.sum(1), bn, atol=1e-12)
    np.testing.assert_allclose((P * C.numpy()).sum((1, 2)), res.value.numpy(), rtol=1e-12)
    u, v = res.u.numpy(), res.v.numpy()
    slack = C.numpy() - u[:, :, None] - v[:, None, :]
    real = (a > 0)[:, :, None]
    assert (slack[np.broadcast_to(real, slack.shape)] > -1e-12).all()  # dual feasible
    assert np.abs(slack[P > 1e-14]).max() < 1e-12  # tight on the plan's support
    np.testing.assert_allclose((an * u).sum(1) + (bn * v).sum(1), res.value.numpy(), rtol=1e-10)
    # a node without mass is priced by its cheapest particle: adding mass there costs v_k
    k = 3
    assert abs(v[0, k] - (C.numpy()[0, a[0] > 0, k] - u[0, a[0] > 0]).min()) < 1e-12


def test_emd_batch_plans_rows_are_independent_and_errors_name_the_row():
    from physkit.ot import emd_batch_plans

    rng = np.random.default_rng(6)
    C = rng.random((4, 5, 3))
    a, b = rng.random((4, 5)), rng.random((4, 3))
    full = emd_batch_plans(C, a, b, n_jobs=1)
    one = emd_batch_plans(C[2:3], a[2:3], b[2:3], n_jobs=1)
    assert torch.equal(full.value[2:3], one.value) and torch.equal(full.plan[2:3], one.plan)
    bad = a.copy()
    bad[1] = 0.0
    with pytest.raises(ValueError, match="a row 1 has no mass"):
        emd_batch_plans(C, bad, b)
    Cb = C.copy()
    Cb[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        emd_batch_plans(Cb, a, b)
    with pytest.raises(ValueError, match="shapes"):
        emd_batch_plans(C, a[:, :4], b)


def test_defaults_and_names_are_energyflows(sample_jets):
    """emd / emds take energyflow's parameter names and defaults (norm=False,
    periodic_phi=False): the same call gives the same number in both, for every setting."""
    import inspect

    ef_emd = pytest.importorskip("energyflow.emd")
    for ours, theirs in ((emd, ef_emd.emd), (emds, ef_emd.emds)):
        mine = inspect.signature(ours).parameters
        ref = inspect.signature(theirs).parameters
        for name in ("R", "beta", "norm", "periodic_phi", "n_iter_max"):
            assert name in mine and name in ref
            if name != "n_iter_max":
                assert mine[name].default == ref[name].default, name
    jets = [np.asarray(j, dtype=np.float64) for j in sample_jets[:6]]
    jets[1] = jets[1].copy()
    jets[1][:, 2] += 2.0  # azimuths up to ~pi + 2: periodic and plain phi differ
    jets[2] = jets[2].copy()
    jets[2][:, 0] *= 3.0  # unequal total pT: norm matters
    pairs = [(0, 1), (2, 3), (1, 4)]
    for i, j in pairs:
        assert emd(jets[i], jets[j]) == pytest.approx(ef_emd.emd(jets[i], jets[j]), rel=1e-7)
        for norm in (False, True):
            for periodic in (False, True):
                kw = {"R": 0.6, "beta": 1.0, "norm": norm, "periodic_phi": periodic}
                assert emd(jets[i], jets[j], **kw) == pytest.approx(
                    ef_emd.emd(jets[i], jets[j], **kw), rel=1e-7), kw
    fortran = [np.asfortranarray(j) for j in jets]  # see test_against_energyflow
    np.testing.assert_allclose(emds(jets, n_jobs=1),
                               ef_emd.emds(fortran, n_jobs=1, verbose=0), rtol=1e-7, atol=1e-9)


def test_periodic_phi_off_takes_differences_as_they_are():
    e0 = np.array([[1.0, 0.0, math.pi - 0.05]])
    e1 = np.array([[1.0, 0.0, -math.pi + 0.05]])
    assert emd(e0, e1, norm=True) == pytest.approx(2 * math.pi - 0.1, rel=1e-9)
    assert emd(e0, e1, norm=True, periodic_phi=True) == pytest.approx(0.1, rel=1e-9)
    assert emd(e0, e1) == pytest.approx(2 * math.pi - 0.1, rel=1e-9)  # energyflow's defaults


def test_emds_takes_awkward_records_and_particle_lists():
    """emds reads the inputs Shaper reads (Events.as_jets): awkward records in any vector
    coordinates give the numbers of the (pT, y, phi) arrays."""
    ak = pytest.importorskip("awkward")
    rng = np.random.default_rng(8)
    evs = [_event(rng, n) for n in (4, 7, 5)]
    pt = ak.Array([e[:, 0] for e in evs])
    y = ak.Array([e[:, 1] for e in evs])
    phi = ak.Array([e[:, 2] for e in evs])
    cart = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(y),
                   "E": pt * np.cosh(y)})
    want = emds(evs, **NP)
    np.testing.assert_allclose(emds(cart, **NP), want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(emds(ak.zip({"pt": pt, "y": y, "phi": phi}), **NP), want,
                               rtol=1e-12, atol=1e-14)


def test_emd_batch_plans_size_rule_padding_potentials_and_infinite_costs():
    """``max_cells`` sends rows above SMALL_PROBLEM_CELLS to the transportation simplex (with
    a basis) at POT's optimal values; padded particles are priced by their cheapest node;
    an infinite cost is refused naming its row."""
    from physkit.ot import emd_batch_plans
    from physkit.ot.exact import SMALL_PROBLEM_CELLS

    rng = np.random.default_rng(8)
    B, N, M = 2, 120, SMALL_PROBLEM_CELLS // 100
    C = torch.tensor(rng.random((B, N, M)))
    a, b = rng.random((B, N)), rng.random((B, M))
    a[:, -5:] = 0.0
    pot = emd_batch_plans(C, a, b, n_jobs=1)
    ours = emd_batch_plans(C, a, b, n_jobs=1, max_cells=N * M)
    assert (pot.basis == -1).all() and (ours.basis[:, 0] >= 0).all()
    torch.testing.assert_close(ours.value, pot.value, rtol=1e-12, atol=0)
    real_b = torch.tensor(b > 0)
    for res in (pot, ours):
        want = torch.where(real_b[:, None, :], C - res.v[:, None, :], torch.inf).amin(2)
        torch.testing.assert_close(res.u[:, -5:], want[:, -5:], rtol=0, atol=0)
    Cb = C.clone()
    Cb[1, 3, 2] = float("inf")
    with pytest.raises(ValueError, match="row 1"):
        emd_batch_plans(Cb, a, b)
