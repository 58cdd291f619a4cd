"""physkit.ot.dual_start and physkit.ot.multiscale: exact optima against POT from any start
(random potentials, coarse-to-fine quadratures), plans with exact marginals, feasible and
complementary duals, degenerate problems, padding, batch and thread independence, the
iteration-cap fallback, input checks."""
import os

import numpy as np
import pytest
from ot.lp.emd_wrap import emd_c

from physkit.ot import dual_start as ds
from physkit.ot import emd_batch
from physkit.ot import transport_simplex as ts
from physkit.ot.cost import cost_matrix
from physkit.ot.multiscale import emd_batch_coarse_to_fine
from shaper.quadrature import disk_nodes

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "data", "jets_sample.h5")
R = 0.8


def _pot(a, b, C):
    a = np.asarray(a, float)
    b = np.asarray(b, float) * (a.sum() / np.sum(b))
    return emd_c(a, b, np.ascontiguousarray(C, dtype=float), 10_000_000, 1, None, None)[1]


def _disk_levels(B, ks=(6, 24, 96), R=R):
    """Sunflower quadratures of the disk of radius R (4 k nodes each), coarse to fine."""
    out = []
    for k in ks:
        y = np.broadcast_to(disk_nodes(4 * k).numpy() * R, (B, 4 * k, 2)).copy()
        out.append((y, np.full((B, 4 * k), 1.0 / (4 * k))))
    return out


def _check_optimal(x, a, y, b, sol, R=R, beta=1.0):
    """Every row: POT's optimal value, plan marginals, dual feasibility, complementary
    slackness, no duality gap (on the non-zero-weight entries)."""
    C = cost_matrix(x, y, R, beta)
    for k in range(len(x)):
        ia, ib = a[k] > 0, b[k] > 0
        an, bn = a[k][ia] / a[k][ia].sum(), b[k][ib] / b[k][ib].sum()
        Ck = C[k][np.ix_(ia, ib)]
        ref = _pot(an, bn, Ck)
        assert abs(sol.value[k] - ref) <= 1e-9 * max(ref, 1e-12), (k, sol.value[k], ref)
        u, v = sol.u[k][ia], sol.v[k][ib]
        red = Ck - u[:, None] - v[None, :]
        scale = Ck.max()
        assert red.min() >= -1e-12 * scale
        assert abs(an @ u + bn @ v - sol.value[k]) <= 1e-12 * scale
        if sol.plan.size:
            P = sol.plan[k]
            assert (P >= 0).all()
            assert np.abs(P[~ia]).max(initial=0) == 0 and np.abs(P[:, ~ib]).max(initial=0) == 0
            Pk = P[np.ix_(ia, ib)]
            np.testing.assert_allclose(Pk.sum(1), an, rtol=0, atol=1e-14)
            np.testing.assert_allclose(Pk.sum(0), bn, rtol=0, atol=1e-14)
            assert np.abs(red[Pk > 0]).max(initial=0) <= 1e-12 * scale
            assert abs((Pk * Ck).sum() - sol.value[k]) <= 1e-13 * scale


def test_transport_from_random_potentials_matches_pot():
    rng = np.random.default_rng(151)
    for n, m in ((1, 7), (7, 1), (5, 40), (30, 50), (60, 200)):
        B = 6
        C = rng.random((B, n, m)) * rng.choice([1e-3, 1.0, 50.0])
        a, b = rng.exponential(size=(B, n)), rng.exponential(size=(B, m))
        a /= a.sum(1, keepdims=True)
        b /= b.sum(1, keepdims=True)
        for g in (np.zeros((B, n)), rng.normal(0, 3, (B, n)), C.min(2)):
            res = ds.transport_from_duals(C, a, b, g)
            assert (res.status == ts.OPTIMAL).all()
            for k in range(B):
                assert abs(res.cost[k] - _pot(a[k], b[k], C[k])) <= 1e-12 * C[k].max()
                np.testing.assert_allclose(res.plan[k].sum(1), a[k], rtol=0, atol=1e-14)
                np.testing.assert_allclose(res.plan[k].sum(0), b[k], rtol=0, atol=1e-14)
                red = C[k] - res.u[k][:, None] - res.v[k][None, :]
                assert red.min() >= -1e-12 * C[k].max()
                assert np.abs(red[res.plan[k] > 0]).max() <= 1e-12 * C[k].max()


def test_transport_from_duals_integer_costs_degenerate():
    """Many ties (integer costs, equal masses): still optimal, no cycling."""
    rng = np.random.default_rng(5)
    C = rng.integers(0, 3, (20, 12, 48)).astype(float)
    a = np.full((20, 12), 1 / 12)
    b = np.full((20, 48), 1 / 48)
    res = ds.transport_from_duals(C, a, b, np.zeros((20, 12)))
    for k in range(20):
        assert res.status[k] == ts.OPTIMAL
        assert abs(res.cost[k] - _pot(a[k], b[k], C[k])) <= 1e-12


def test_transport_from_duals_checks_inputs():
    C, a, b, g = np.ones((2, 3, 4)), np.full((2, 3), 1 / 3), np.full((2, 4), 0.25), np.zeros((2, 3))
    with pytest.raises(ValueError, match="shapes"):
        ds.transport_from_duals(C, a, b, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        ds.transport_from_duals(C, a, b, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="negative"):
        ds.transport_from_duals(C, -a, b, g)
    with pytest.raises(ValueError, match="equal positive masses"):
        ds.transport_from_duals(C, a, 2 * b, g)


def test_coarse_to_fine_random_jets_match_pot():
    rng = np.random.default_rng(7)
    B, N = 24, 40
    x = rng.normal(0, 0.3, (B, N, 2))
    a = rng.exponential(size=(B, N)) ** 3  # a few hard particles, many soft ones
    a[:, 30:] = 0.0  # padding
    a[3, 1:] = 0.0  # one particle
    x[4, :5] = x[4, 0]  # coincident particles
    x[5] *= 4.0  # particles far outside the disk
    levels = _disk_levels(B)
    x[6, :10] = levels[-1][0][6, :10]  # particles exactly on nodes
    sol = emd_batch_coarse_to_fine(x, a, levels, R=R, n_jobs=1, plans=True)
    _check_optimal(x, a, *levels[-1], sol)
    np.testing.assert_allclose(sol.value, emd_batch(x, a, *levels[-1], R=R, n_jobs=1),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_coarse_to_fine_other_beta_and_weighted_nodes(beta):
    """Any beta, nodes of unequal weight (some zero), azimuths across +-pi."""
    rng = np.random.default_rng(int(10 * beta))
    B, N = 8, 25
    x = rng.normal(0, 0.3, (B, N, 2))
    x[..., 1] += np.pi - 0.1
    a = rng.exponential(size=(B, N))
    levels = []
    for K in (10, 40, 160):
        y = rng.normal(0, 0.4, (B, K, 2))
        y[..., 1] += np.pi - 0.1
        b = rng.exponential(size=(B, K))
        b[:, :3] = 0.0
        levels.append((y, b))
    sol = emd_batch_coarse_to_fine(x, a, levels, R=R, beta=beta, n_jobs=1, plans=True)
    _check_optimal(x, a, *levels[-1], sol, beta=beta)


def test_coarse_to_fine_sample_jets_match_pot():
    from physkit.io import read_events
    ev = read_events(DATA, dtype=__import__("torch").float64)[:40].trim().centered()
    x, a = ev.points().numpy(), ev.weights().numpy()
    levels = _disk_levels(len(x), (6, 24, 96))
    sol = emd_batch_coarse_to_fine(x, a, levels, R=R, n_jobs=2)
    _check_optimal(x, a, *levels[-1], sol)


def test_coarse_to_fine_batch_thread_and_level_independence():
    rng = np.random.default_rng(11)
    B, N = 20, 30
    x = rng.normal(0, 0.3, (B, N, 2))
    a = rng.exponential(size=(B, N))
    a[::3, 20:] = 0.0
    levels = _disk_levels(B)
    one = emd_batch_coarse_to_fine(x, a, levels, R=R, n_jobs=1, plans=True)
    two = emd_batch_coarse_to_fine(x, a, levels, R=R, n_jobs=2, plans=True)
    for f in one._fields:
        np.testing.assert_array_equal(getattr(one, f), getattr(two, f))
    k = 6  # a padded row alone, with less padding: the same numbers, bit for bit
    alone = emd_batch_coarse_to_fine(x[k:k + 1, :25], a[k:k + 1, :25],
                                     [(y[k:k + 1], b[k:k + 1]) for y, b in levels], R=R,
                                     plans=True)
    assert alone.value[0] == one.value[k]
    np.testing.assert_array_equal(alone.plan[0], one.plan[k, :25])
    fine_only = emd_batch_coarse_to_fine(x, a, levels[-1:], R=R, n_jobs=1)
    np.testing.assert_allclose(fine_only.value, one.value, rtol=1e-12, atol=0)


def test_coarse_to_fine_iteration_cap_falls_back_to_pot():
    rng = np.random.default_rng(3)
    B, N = 4, 20
    x, a = rng.normal(0, 0.3, (B, N, 2)), rng.exponential(size=(B, N))
    levels = _disk_levels(B, (6, 24))
    sol = emd_batch_coarse_to_fine(x, a, levels, R=R, n_iter_max=1, plans=True)
    _check_optimal(x, a, *levels[-1], sol)


def test_coarse_to_fine_checks_inputs():
    x, a = np.zeros((2, 3, 2)), np.ones((2, 3))
    lv = _disk_levels(2, (6,))
    with pytest.raises(ValueError, match="empty"):
        emd_batch_coarse_to_fine(x, a, [])
    with pytest.raises(ValueError, match="shapes"):
        emd_batch_coarse_to_fine(x, a, [(lv[0][0][:1], lv[0][1][:1])])
    with pytest.raises(ValueError, match="no mass"):
        emd_batch_coarse_to_fine(x, np.zeros((2, 3)), lv)
    with pytest.raises(ValueError, match="non-finite"):
        emd_batch_coarse_to_fine(np.full((2, 3, 2), np.nan), a, lv)


@pytest.mark.parametrize("integer", [False, True])
def test_near_cells_are_each_columns_cheapest_rows(integer):
    """The near cells: each column's NEAR_ROWS cheapest rows in C - g (ties: lowest row
    first), their gaps, and the same cells listed per row."""
    rng = np.random.default_rng(21 + integer)
    n, m, k = 9, 31, ds.NEAR_ROWS
    C = rng.integers(0, 3, (n, m)).astype(float) if integer else rng.random((n, m))
    g = np.zeros(n) if integer else rng.normal(0, 0.3, n)
    best, val = np.empty((k, m), dtype=np.int64), np.empty((k, m))
    rowptr, cols = np.empty(n + 1, dtype=np.int64), np.empty(k * m, dtype=np.int64)
    ds._near_cells(C, n, m, g, k, best, val, rowptr, cols)
    red = C - g[:, None]
    want = np.argsort(red, axis=0, kind="stable")[:k]  # stable: lowest row first on ties
    np.testing.assert_array_equal(best, want)
    np.testing.assert_array_equal(val, np.take_along_axis(red, want, 0))
    for i in range(n):
        np.testing.assert_array_equal(cols[rowptr[i]:rowptr[i + 1]],
                                      np.flatnonzero((want == i).any(0)))
    gap, low = np.empty(m), np.empty(m)
    ds._column_gaps(C, n, m, g, low, gap)
    np.testing.assert_array_equal(gap, val[1] - val[0])
    assert ts._cmax(-C, n, m, np.empty(m)) == np.abs(C).max()


def test_transport_from_duals_far_potentials_need_full_scans():
    """Potentials that point most columns at the wrong rows: the near cells do not hold
    the optimum, full scans take over (more than the final one), and the optimum is exact."""
    rng = np.random.default_rng(33)
    full_scans = []
    for _ in range(8):
        n, m = 12, 120
        C = rng.random((n, m))
        a, b = rng.exponential(size=n), rng.exponential(size=m)
        a, b = a / a.sum(), b / b.sum()
        g = rng.normal(0, 2.0, n)
        cost, status, _, scans, plan, u, v = ds.solve_one(C, a, b, g, 10_000_000)
        assert status == ts.OPTIMAL
        assert abs(cost - _pot(a, b, C)) <= 1e-12 * C.max()
        np.testing.assert_allclose(plan.sum(1), a, rtol=0, atol=1e-14)
        np.testing.assert_allclose(plan.sum(0), b, rtol=0, atol=1e-14)
        assert (C - u[:, None] - v[None, :]).min() >= -1e-12 * C.max()
        full_scans.append(scans)
    assert max(full_scans) >= 2


def test_coarse_to_fine_costs_wrap_azimuth():
    """Particles and nodes on either side of phi = +-pi (the costs' wrapped branch), and
    rows that need no wrap, in one batch: POT's optimum on cost_matrix's costs."""
    rng = np.random.default_rng(44)
    B, N = 6, 20
    x = rng.normal(0, 0.2, (B, N, 2))
    x[:3, :, 1] = np.pi - np.abs(x[:3, :, 1])  # just below +pi
    levels = _disk_levels(B, (6, 24))
    for y, _ in levels:
        y[:3, :, 1] = -np.pi + 0.05 + np.abs(y[:3, :, 1])  # just above -pi
    a = rng.exponential(size=(B, N))
    sol = emd_batch_coarse_to_fine(x, a, levels, R=R, n_jobs=1, plans=True)
    _check_optimal(x, a, *levels[-1], sol)
    np.testing.assert_allclose(sol.value, emd_batch(x, a, *levels[-1], R=R, n_jobs=1),
                               rtol=1e-12, atol=0)
