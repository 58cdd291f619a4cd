"""physkit.ot.transport_simplex: optimal costs against POT, exact marginals, dual
feasibility and complementary slackness, degenerate problems, batches, caps and checks."""
import numpy as np
import pytest
from ot.lp.emd_wrap import emd_c

from physkit.ot import transport_simplex as ts


def _pot_cost(a, b, C):
    return emd_c(a, b, np.ascontiguousarray(C), 10_000_000, 1, None, None)[1]


def _check_solution(a, b, C, res, ref_cost):
    """Optimal cost equal to POT's, exact marginals, a feasible and complementary dual."""
    assert res.status == ts.OPTIMAL
    scale = max(np.abs(C).max(), 1e-300)
    assert abs(res.cost - ref_cost) <= 1e-12 * max(abs(ref_cost), 1e-3 * scale)
    P = res.plan
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(1), a, rtol=0, atol=1e-14)
    np.testing.assert_allclose(P.sum(0), b, rtol=0, atol=1e-14)
    assert abs((P * C).sum() - res.cost) <= 1e-14 * scale
    reduced = C - res.u[:, None] - res.v[None, :]
    assert reduced.min() >= -1e-12 * scale                       # dual feasibility
    assert np.abs(reduced[P > 0]).max(initial=0.0) <= 1e-12 * scale  # complementary slackness
    assert abs(a @ res.u + b @ res.v - res.cost) <= 1e-12 * scale   # no duality gap


def _points(rng, k, clustered):
    if not clustered:
        return rng.normal(0, 0.4, (k, 2))
    centres = rng.normal(0, 0.4, (3, 2))
    return centres[rng.integers(0, 3, k)] + rng.normal(0, 0.02, (k, 2))


def test_random_problems_match_pot():
    rng = np.random.default_rng(20260)
    for t in range(1500):
        big = t % 150 == 0
        n = int(rng.integers(60, 101)) if big else int(rng.integers(1, 40))
        m = int(rng.integers(100, 401)) if big else int(rng.integers(1, 60))
        x, y = _points(rng, n, t % 2 == 1), _points(rng, m, t % 4 == 3)
        d = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
        C = d * d if t % 3 == 0 else d
        a, b = rng.random(n) + 1e-3, rng.random(m) + 1e-3
        a /= a.sum()
        b *= a.sum() / b.sum()
        _check_solution(a, b, C, ts.transport_simplex(a, b, C), _pot_cost(a, b, C))


def _degenerate_problems(rng):
    for n in (1, 2, 5, 17, 40):  # equal weights, n = m (assignment-like), integer costs
        C = rng.integers(0, 4, (n, n)).astype(float)
        yield np.full(n, 1 / n), np.full(n, 1 / n), C
    x = rng.normal(size=(6, 2))
    pts = np.repeat(x, 4, axis=0)  # duplicate points: many equal costs, many optima
    C = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    yield np.full(24, 1 / 24), np.full(24, 1 / 24), C
    yield np.full(30, 1 / 30), np.full(20, 1 / 20), np.zeros((30, 20))   # every plan optimal
    yield np.full(12, 1 / 12), np.full(8, 1 / 8), np.ones((12, 8))
    for n, m in ((1, 9), (9, 1), (1, 1)):  # one entry on a side
        a, b = rng.random(n), rng.random(m)
        a /= a.sum()
        b /= b.sum()
        yield a, b, rng.random((n, m))
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    C = np.abs(grid[:, None] - grid[None]).sum(-1)  # Manhattan on a grid: heavy ties
    yield np.full(25, 0.04), np.full(25, 0.04), C
    w = rng.integers(1, 4, 30).astype(float)  # weights that hit partial sums exactly
    a, b = w[:15] / w.sum() * 2, w[15:] / w.sum() * 2
    b *= a.sum() / b.sum()
    yield a, b, rng.integers(0, 3, (15, 15)).astype(float)


@pytest.mark.parametrize("stall", [None, 0])
def test_degenerate_problems_terminate_optimal(stall):
    """``stall=0``: Bland's rule after every degenerate pivot (the anti-cycling path)."""
    rng = np.random.default_rng(7)
    problems = list(_degenerate_problems(rng))
    for n in (30, 60):  # assignment problems with few distinct costs
        x = rng.integers(0, 3, (n, 2)).astype(float)
        problems.append((np.full(n, 1 / n), np.full(n, 1 / n),
                         np.abs(x[:, None] - x[None, ::-1]).sum(-1)))
    for a, b, C in problems:
        res = ts.transport_simplex(a, b, C, stall=stall)
        _check_solution(a, b, C, res, _pot_cost(a, b, C))


def test_batch_rows_independent_of_batch_and_padding():
    rng = np.random.default_rng(3)
    B, N, M = 7, 12, 15
    C = rng.random((B, N, M))
    a, b = rng.random((B, N)), rng.random((B, M))
    a[1, 5:] = 0.0  # padding
    b[2, ::3] = 0.0
    a /= a.sum(1, keepdims=True)
    b *= (a.sum(1) / b.sum(1))[:, None]
    res = ts.transport_simplex_batch(C, a, b)
    assert (res.status == ts.OPTIMAL).all()
    assert (res.plan[1, 5:] == 0).all() and (res.plan[2][:, ::3] == 0).all()
    for k in range(B):
        one = ts.transport_simplex_batch(C[k:k + 1], a[k:k + 1], b[k:k + 1])
        ia, ib = a[k] > 0, b[k] > 0
        alone = ts.transport_simplex(a[k][ia], b[k][ib], C[k][np.ix_(ia, ib)])
        assert one.cost[0] == res.cost[0 + k]
        np.testing.assert_array_equal(one.plan[0], res.plan[k])
        np.testing.assert_array_equal(alone.plan, res.plan[k][np.ix_(ia, ib)])
        np.testing.assert_array_equal(alone.u, res.u[k][ia])
        np.testing.assert_array_equal(alone.v, res.v[k][ib])


def test_max_cells_skips_rows_and_pivot_cap_reports():
    a = b = np.array([0.5, 0.5])
    C = np.array([[1.0, 2.0], [3.0, 100.0]])  # the least-cost start is not optimal
    capped = ts.transport_simplex(a, b, C, max_pivots=0)
    assert capped.status == ts.ITERATION_LIMIT
    assert capped.cost > _pot_cost(a, b, C)
    assert ts.transport_simplex(a, b, C).cost == pytest.approx(2.5, rel=1e-15)
    res = ts.transport_simplex_batch(np.stack([C, np.zeros((2, 2))]), np.stack([a, [1.0, 0]]),
                                     np.stack([b, b]), max_cells=2)
    assert res.status.tolist() == [ts.SKIPPED, ts.OPTIMAL]


@pytest.mark.parametrize("C, a, b, match", [
    (np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)), "shapes"),
    (np.full((1, 2, 2), np.nan), np.ones((1, 2)), np.ones((1, 2)), "non-finite"),
    (np.ones((1, 2, 2)), np.array([[2.0, -1.0]]), np.array([[0.5, 0.5]]), "negative"),
    (np.ones((1, 2, 2)), np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]), "equal positive"),
])
def test_bad_input_raises(C, a, b, match):
    with pytest.raises(ValueError, match=match):
        ts.transport_simplex_batch(C, a, b)


# ------------------------------------------------------------------ wiring in exact.py
def test_exact_entry_points_split_by_size_and_agree_with_pot(monkeypatch):
    import physkit.ot.exact as exact

    rng = np.random.default_rng(11)
    B, N, M = 6, 14, 20
    C = rng.random((B, N, M))
    a, b = rng.random((B, N)), rng.random((B, M))
    a[::2, 4:] = 0.0  # even rows: 4 x 20 = 80 real cells, odd rows 14 x 20 = 280
    b[1, :3] = 0.0
    monkeypatch.setattr(exact, "SMALL_PROBLEM_CELLS", 100)
    mixed = exact.emd_batch_plans(C, a, b, n_jobs=2)
    monkeypatch.setattr(exact, "SMALL_PROBLEM_CELLS", 0)
    pot = exact.emd_batch_plans(C, a, b, n_jobs=2)
    np.testing.assert_allclose(mixed.value.numpy(), pot.value.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(mixed.plan[1::2].numpy(), pot.plan[1::2].numpy())  # POT rows
    an = a / a.sum(1, keepdims=True)
    np.testing.assert_allclose(mixed.plan.numpy().sum(2), an, rtol=0, atol=1e-14)
    red = C - mixed.u.numpy()[:, :, None] - mixed.v.numpy()[:, None, :]
    assert red.min() >= -1e-12  # padding potentials priced too
    ev0 = np.column_stack([rng.random(9), rng.normal(0, 0.3, (9, 2))])
    ev1 = np.column_stack([rng.random(7), rng.normal(0, 0.3, (7, 2))])
    want = exact.emd(ev0, ev1, R=0.4)
    monkeypatch.setattr(exact, "SMALL_PROBLEM_CELLS", 10_000)
    assert exact.emd(ev0, ev1, R=0.4) == pytest.approx(want, rel=1e-12, abs=0)


def test_exact_small_path_errors_name_the_row():
    import physkit.ot.exact as exact

    C = np.stack([np.zeros((2, 2)), [[1.0, 2.0], [3.0, 100.0]]])
    w = np.full((2, 2), 0.5)
    with pytest.raises(exact.EMDError, match="row 1: transportation simplex failed: iteration"):
        exact.emd_batch_plans(C, w, w, n_iter_max=0)


# ------------------------------------------------------------------ warm starts
def _cold_and_warm(C, a, b, basis, stall=None):
    cold = ts.transport_simplex_batch(C, a, b, stall=stall)
    warm = ts.transport_simplex_batch(C, a, b, basis=basis, stall=stall)
    assert (cold.status == ts.OPTIMAL).all() and (warm.status == ts.OPTIMAL).all()
    np.testing.assert_allclose(warm.cost, cold.cost, rtol=1e-12, atol=1e-15)
    for k in range(len(C)):  # each warm row a valid optimal solution (marginals, duals)
        ia, ib = a[k] > 0, b[k] > 0
        sub = ts.TransportSolution(warm.plan[k][np.ix_(ia, ib)], warm.cost[k], warm.u[k][ia],
                                   warm.v[k][ib], warm.status[k], warm.pivots[k])
        _check_solution(a[k][ia], b[k][ib], C[k][np.ix_(ia, ib)], sub, cold.cost[k])
    return cold, warm


def _moved_problems(rng, B, N, M, steps, *, move_weights, zero_pattern, degenerate=False):
    """``steps`` batches of ``B`` padded problems, each a small move of the last: nodes
    moved (costs), optionally the weights moved and zero-weight entries switched."""
    x, y = rng.normal(0, 0.4, (B, N, 2)), rng.normal(0, 0.4, (B, M, 2))
    a, b = rng.random((B, N)) + 0.1, rng.random((B, M)) + 0.1
    if degenerate:
        a[:], b[:] = 1.0, N / M
    for _ in range(steps):
        y = y + rng.normal(0, 0.01, y.shape)
        if move_weights:
            b = np.abs(b + rng.normal(0, 0.02, b.shape)) + 1e-3
        aa, bb = a.copy(), b.copy()
        if zero_pattern:
            aa[rng.random((B, N)) < 0.15] = 0.0
            bb[rng.random((B, M)) < 0.15] = 0.0
            aa[:, 0], bb[:, 0] = 1.0, 1.0
        C = np.sqrt(((x[:, :, None] - y[:, None]) ** 2).sum(-1))
        if degenerate:
            C = np.round(C * 4)  # few distinct costs: many optimal bases
        aa /= aa.sum(1, keepdims=True)
        bb /= bb.sum(1, keepdims=True)
        yield C, aa, bb


@pytest.mark.parametrize("move_weights, zero_pattern, degenerate, stall", [
    (False, False, False, None), (True, False, False, None), (True, True, False, None),
    (False, False, True, None), (True, False, True, 0)])
def test_warm_starts_match_cold_solves_on_moving_problems(move_weights, zero_pattern,
                                                          degenerate, stall):
    rng = np.random.default_rng(151)
    basis, starts = None, []
    for C, a, b in _moved_problems(rng, 6, 14, 11, 8, move_weights=move_weights,
                                   zero_pattern=zero_pattern, degenerate=degenerate):
        _, warm = _cold_and_warm(C, a, b, basis, stall)
        if basis is not None:
            starts.append(warm.warm)
        basis = warm.basis
        n, m = (a > 0).sum(1), (b > 0).sum(1)
        assert ((basis >= 0).all(2).sum(1) == n + m - 1).all()
    starts = np.concatenate(starts)
    if not move_weights and not zero_pattern:  # same marginals: the old tree is feasible
        assert (starts == ts.WARM).all()
    elif not zero_pattern:  # moved weights: warm where feasible, else the crash start
        assert (starts != ts.COLD).all() and (starts == ts.CRASH).any()


def test_warm_start_from_the_optimal_basis_needs_no_pivot():
    rng = np.random.default_rng(5)
    C, a, b = next(_moved_problems(rng, 4, 9, 13, 1, move_weights=False, zero_pattern=True))
    cold = ts.transport_simplex_batch(C, a, b)
    again = ts.transport_simplex_batch(C, a, b, basis=cold.basis)
    assert (again.warm == ts.WARM).all() and (again.pivots == 0).all()
    np.testing.assert_allclose(again.plan, cold.plan, rtol=0, atol=1e-15)  # same tree


def test_warm_start_across_a_size_change_falls_back_or_repairs():
    """A basis of another size: too few / too many arcs -> cold; a basis padded wider is
    read up to its first -1."""
    rng = np.random.default_rng(9)
    C, a, b = next(_moved_problems(rng, 3, 10, 8, 1, move_weights=True, zero_pattern=False))
    first = ts.transport_simplex_batch(C, a, b)
    small = ts.transport_simplex_batch(C[:, :7, :5], a[:, :7] / a[:, :7].sum(1, keepdims=True),
                                       b[:, :5] / b[:, :5].sum(1, keepdims=True))
    _, warm = _cold_and_warm(C, a, b, small.basis)  # 11 arcs where 17 are needed
    assert (warm.warm == ts.COLD).all()
    wide = np.full((3, 40, 2), -1, dtype=np.int64)
    wide[:, :17] = first.basis
    _, warm = _cold_and_warm(C, a, b, wide)
    assert (warm.warm == ts.WARM).all() and (warm.pivots == 0).all()
    _, warm = _cold_and_warm(C[:, :7, :5], a[:, :7] / a[:, :7].sum(1, keepdims=True),
                             b[:, :5] / b[:, :5].sum(1, keepdims=True), first.basis)
    assert (warm.warm == ts.COLD).all()  # 17 arcs where 11 are needed


def _spoiled(basis, how):
    bad = basis.copy()
    if how == "cycle":
        bad[:, 3] = bad[:, 2]                 # a repeated arc: not a tree
    elif how == "range":
        bad[:, 0, 1] = 99
    elif how == "zero weight":
        bad[:, 0] = (0, 2)                    # column 2 carries no weight below
    elif how == "missing":                    # one arc short of n + m - 1
        bad[:, 5:-1] = bad[:, 6:].copy()
        bad[:, -1] = -1
    elif how == "negative":
        bad[:, 1, 0] = -5
    return bad


@pytest.mark.parametrize("how", ["cycle", "range", "zero weight", "missing", "negative"])
def test_invalid_basis_falls_back_to_the_cold_start(how):
    rng = np.random.default_rng(13)
    C = rng.random((3, 8, 6))
    a, b = rng.random((3, 8)), rng.random((3, 6))
    b[:, 2] = 0.0
    a /= a.sum(1, keepdims=True)
    b /= b.sum(1, keepdims=True)
    good = ts.transport_simplex_batch(C, a, b).basis
    cold, warm = _cold_and_warm(C, a, b, _spoiled(good, how))
    assert (warm.warm == ts.COLD).all()
    np.testing.assert_array_equal(warm.plan, cold.plan)  # the same start: the same solve
    np.testing.assert_array_equal(warm.basis, cold.basis)


def test_basis_of_the_wrong_shape_raises():
    C, w = np.ones((2, 3, 3)), np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="basis must be"):
        ts.transport_simplex_batch(C, w, w, basis=np.zeros((2, 5)))


def test_warm_rows_independent_of_batch_and_threads():
    import physkit.ot.exact as exact

    rng = np.random.default_rng(17)
    probs = list(_moved_problems(rng, 7, 12, 9, 2, move_weights=True, zero_pattern=True))
    (C0, a0, b0), (C, a, b) = probs
    basis = ts.transport_simplex_batch(C0, a0, b0).basis
    res = ts.transport_simplex_batch(C, a, b, basis=basis)
    both = exact.emd_batch_plans(C, a, b, n_jobs=2, basis=basis)
    for k in range(7):
        one = ts.transport_simplex_batch(C[k:k + 1], a[k:k + 1], b[k:k + 1],
                                         basis=basis[k:k + 1])
        np.testing.assert_array_equal(one.plan[0], res.plan[k])
        np.testing.assert_array_equal(one.basis[0], res.basis[k])
        alone = exact.emd_batch_plans(C[k:k + 1], a[k:k + 1], b[k:k + 1], n_jobs=1,
                                      basis=basis[k:k + 1])
        np.testing.assert_array_equal(alone.plan[0].numpy(), both.plan[k].numpy())
        np.testing.assert_array_equal(alone.v[0].numpy(), both.v[k].numpy())
        np.testing.assert_array_equal(alone.basis[0], both.basis[k])


def test_emd_batch_plans_returns_no_basis_for_pot_rows(monkeypatch):
    import physkit.ot.exact as exact

    rng = np.random.default_rng(19)
    C, a, b = rng.random((2, 5, 30)), rng.random((2, 5)), rng.random((2, 30))
    a[0, 2:] = 0.0  # row 0: 2 x 30 = 60 cells, row 1: 150
    monkeypatch.setattr(exact, "SMALL_PROBLEM_CELLS", 100)
    res = exact.emd_batch_plans(C, a, b, n_jobs=1)
    assert res.basis.shape == (2, 34, 2)
    assert (res.basis[1] == -1).all() and (res.basis[0, :31] >= 0).all()
    assert (res.basis[0, 31:] == -1).all()


def _scratch(n, m):
    nn = n + m
    return (np.empty((4, nn)), np.empty((10, 2 * nn), dtype=np.int64), np.empty((n, m)))


def _one(entry, C, a, b, arcs, stall):
    """One problem through the full ``_solve`` or the lean ``solve_lean`` kernel entry,
    from the arcs ``arcs (2, n + m - 1)`` (None: cold); returns the numbers and the basis."""
    n, m = C.shape
    bufs, ibufs, Cr = _scratch(n, m)
    warm = arcs is not None
    if warm:
        ibufs[6, :n + m - 1], ibufs[7, :n + m - 1] = arcs
    if entry == "full":
        plan, u, v = np.empty((n, m)), np.empty(n), np.empty(m)
        out = ts._solve(C, a, b, n, m, ts.DEFAULT_MAX_PIVOTS, ts.default_block(n, m),
                        ts.TOL_REL, stall, bufs, ibufs, plan, u, v, warm, Cr)
    else:
        tol = ts.TOL_REL * np.abs(C).max()
        out = ts.solve_lean(C, a, b, n, m, ts.DEFAULT_MAX_PIVOTS, ts.default_block(n, m), tol,
                            stall, bufs, ibufs, warm, Cr)
        plan = np.zeros((n, m))
        plan[ibufs[6, :n + m - 1], ibufs[7, :n + m - 1]] = bufs[1, :n + m - 1]
        u, v = bufs[0, :n].copy(), bufs[0, n:n + m].copy()
    return out, plan, u, v, ibufs[6:8, :n + m - 1].copy()


@pytest.mark.parametrize("move_weights, degenerate, stall", [
    (False, False, -1), (True, False, -1), (False, True, -1), (True, True, 0)])
def test_lean_entry_equals_the_full_solve(move_weights, degenerate, stall):
    """The lean entry (basis and basic flows, tolerance given) takes the same start and
    pivots as the full solve and leaves the same basis, flows (as a plan), potentials and
    cost, bit for bit: cold, warm and crash starts along a moving problem."""
    rng = np.random.default_rng(77 + 2 * move_weights + degenerate)
    arcs, starts = {"full": None, "lean": None}, []
    for C, a, b in _moved_problems(rng, 1, 23, 31, 10, move_weights=move_weights,
                                   zero_pattern=False, degenerate=degenerate):
        C, a, b = C[0], a[0], b[0]
        full = _one("full", C, a, b, arcs["full"], stall)
        lean = _one("lean", C, a, b, arcs["lean"], stall)
        assert full[0] == lean[0]  # (cost, status, pivots, start)
        for f, g in zip(full[1:], lean[1:]):
            np.testing.assert_array_equal(f, g)
        assert full[0][1] == ts.OPTIMAL
        assert abs(full[0][0] - _pot_cost(a, b, C)) <= 1e-12 * max(C.max(), 1e-300)
        arcs = {"full": full[4], "lean": lean[4]}
        starts.append(full[0][3])
    assert starts[0] == ts.COLD and all(s != ts.COLD for s in starts[1:])
    if move_weights:
        assert ts.CRASH in starts
    else:
        assert all(s == ts.WARM for s in starts[1:])


def test_lean_entry_warm_at_the_optimum_keeps_the_start_tree():
    """Warm from the optimal basis of the same problem: no pivot, and the lean entry's
    (skipped) recomputation would have given the same flows, potentials and cost."""
    rng = np.random.default_rng(8)
    C, a, b = (t[0] for t in next(_moved_problems(rng, 1, 17, 12, 1, move_weights=True,
                                                   zero_pattern=False)))
    first = _one("full", C, a, b, None, -1)
    full = _one("full", C, a, b, first[4], -1)
    lean = _one("lean", C, a, b, first[4], -1)
    assert lean[0][2] == 0 and lean[0][3] == ts.WARM
    assert full[0] == lean[0]
    for f, g in zip(full[1:], lean[1:]):
        np.testing.assert_array_equal(f, g)
