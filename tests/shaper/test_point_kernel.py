"""The compiled engine of the exact point path (shaper/point_kernel.py) against the torch
engine and POT: exact values at its parameters, never above the kT axes nor tau_(n-1), no
higher than the torch engine's values, bit-for-bit batch and thread independence, periodic
phi, the engine choice and numba's cache fallback."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.ot import emd_batch
from shaper import Shaper, point_kernel
from shaper.points import fit_points, fit_points_compiled, point_engine, point_value
from shaper.seeds import KtSeeds

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")
R = 0.8
ENGINES = {"numba": fit_points_compiled, "torch": fit_points}


def _batch(c: np.ndarray, phi_shift: float = 0.0):
    """Centred jets of ``c (B, M, 3)`` as the point path sees them: ``x (B, W, 2)``,
    ``z (B, W)`` (W a multiple of 32) and their kT seeds; ``phi_shift`` turns every jet in
    azimuth after centring (phi wrapped)."""
    t = torch.as_tensor
    ev = Events(t(c[..., 0]), t(c[..., 1]), t(c[..., 2]), t(c[..., 0] > 0)).centered()
    if phi_shift:
        phi = torch.remainder(ev.phi + phi_shift + np.pi, 2 * np.pi) - np.pi
        ev = Events(ev.pt, ev.y, torch.where(ev.mask, phi, torch.zeros_like(phi)), ev.mask)
    pad = -(-c.shape[1] // 32) * 32 - c.shape[1]
    x = torch.nn.functional.pad(torch.stack([ev.y, ev.phi], -1), (0, 0, 0, pad))
    pt = torch.where(ev.mask, ev.pt, torch.zeros_like(ev.pt))
    z = torch.nn.functional.pad(pt / pt.sum(1, keepdim=True), (0, pad))
    return x, z, KtSeeds(ev)


def _fit_all(x, z, seeds, engine: str, beta: float = 1.0, n_max: int = 3):
    """PointFits of n = 1..n_max, each seeded with the (n-1) optimum."""
    out, prev = {}, None
    for n in range(1, n_max + 1):
        out[n] = ENGINES[engine](x, z, seeds, n, R=R, beta=beta, max_iter=200, previous=prev)
        prev = out[n].centers
    return out


@pytest.fixture(scope="module")
def jets():
    with h5py.File(SAMPLE, "r") as f:
        return f["constituents"][:120].astype(np.float64)


@pytest.fixture(scope="module")
def both(jets):
    x, z, seeds = _batch(jets)
    return x, z, seeds, {e: _fit_all(x, z, seeds, e) for e in ENGINES}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_value_is_exact_emd_at_its_parameters(both, engine):
    x, z, _, fits = both
    for n in (1, 2, 3):
        f = fits[engine][n]
        exact = emd_batch(x, z, f.centers, f.weights, R=R, beta=1.0)
        np.testing.assert_allclose(f.value.numpy(), exact, rtol=1e-9, atol=1e-12)
        assert (f.weights[:, :-1] >= f.weights[:, 1:]).all()  # by decreasing weight
        assert (f.centers[..., 1].abs() <= np.pi).all()


def test_never_above_kt_axes_nor_previous_n(both):
    x, z, seeds, fits = both
    f = fits["numba"]
    for n in (1, 2, 3):
        kt = point_value(x, z, seeds.subjets(n)[0], R, 1.0)
        assert (f[n].value <= kt * (1 + 1e-12)).all(), n
        if n > 1:  # the (n-1) axes plus one particle are a candidate: bit for bit
            assert (f[n].value <= f[n - 1].value).all(), n
        assert (f[n].status == 0).all()


def test_no_higher_than_torch_engine(both):
    fits = both[3]
    for n in (2, 3):
        a, b = fits["numba"][n].value.numpy(), fits["torch"][n].value.numpy()
        assert np.mean(a <= b * (1 + 1e-9)) >= 0.98, n
        assert np.max(a / b) <= 1.001, n


def test_batch_and_thread_independent_bit_for_bit(jets, both):
    x, z, seeds, fits = both
    every = fits["numba"]
    perm = np.random.default_rng(1).permutation(len(jets))[:50]
    xs, zs, ss = _batch(jets[perm])  # other jets around, other order, other width
    part = _fit_all(xs, zs, ss, "numba")
    for i in (0, 7):
        one = _fit_all(*_batch(jets[i:i + 1]), "numba")
        for n in (1, 2, 3):
            for k in range(4):
                assert torch.equal(one[n][k][0], every[n][k][i]), (i, n, k)
    half = len(jets) // 2
    with ThreadPoolExecutor(2) as pool:  # side by side in two threads (nogil kernels)
        split = list(pool.map(lambda r: fit_points_compiled(
            x[r], z[r], seeds.rows(r), 2, R=R, beta=1.0, max_iter=200,
            previous=every[1].centers[r]), [slice(0, half), slice(half, None)]))
    for n in (1, 2, 3):
        for k in range(4):
            assert torch.equal(part[n][k], every[n][k][perm]), (n, k)
    for k in range(4):
        assert torch.equal(torch.cat([s[k] for s in split]), every[2][k]), k


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_other_beta_exact_and_nested(jets, beta):
    x, z, seeds = _batch(jets[:40])
    fits = _fit_all(x, z, seeds, "numba", beta=beta)
    torch_fits = _fit_all(x, z, seeds, "torch", beta=beta)
    for n in (2, 3):
        f = fits[n]
        exact = emd_batch(x, z, f.centers, f.weights, R=R, beta=beta)
        np.testing.assert_allclose(f.value.numpy(), exact, rtol=1e-9, atol=1e-12)
        assert (f.value <= fits[n - 1].value).all()
        assert np.mean(f.value.numpy() <= torch_fits[n].value.numpy() * (1 + 1e-9)) >= 0.9


def test_periodic_phi(jets):
    # the same jets turned so that they straddle phi = pi: the same values
    a = _fit_all(*_batch(jets[:40]), "numba")
    b = _fit_all(*_batch(jets[:40], phi_shift=np.pi - 0.05), "numba")
    for n in (2, 3):
        rel = np.abs(b[n].value.numpy() / a[n].value.numpy() - 1)
        assert np.median(rel) < 1e-9 and np.mean(rel < 1e-6) >= 0.95, n


def test_engine_choice_and_options():
    assert point_engine(None, torch.device("cpu")) == "numba"
    assert point_engine(None, torch.device("cuda")) == "torch"
    assert Shaper(["2-subjettiness"]).point_engine == "numba"
    assert Shaper(["2-subjettiness"], point_engine="torch").settings()["point_engine"] == "torch"
    for bad, dev in (("fast", "cpu"), ("numba", "cuda")):
        with pytest.raises(ValueError, match="point_engine must be"):
            Shaper(["2-subjettiness"], device=dev, point_engine=bad)


def test_jit_without_a_writable_cache(monkeypatch):
    import physkit.compiled

    real = physkit.compiled.numba.njit

    def njit(*args, **kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available")
        return real(*args, **kw)

    monkeypatch.setattr(physkit.compiled.numba, "njit", njit)
    with pytest.warns(RuntimeWarning, match="numba cannot cache"):
        f = point_kernel.jit(lambda a: a + 1.0)
    assert f(1.0) == 2.0


def _random_jet(rng, m, n):
    """A random jet ``x (m, 2)`` across phi = pi, weights, and centres ``(n, 2)`` with a
    duplicate centre and one on a particle (exact ties)."""
    x = np.column_stack([rng.normal(0, 0.4, m), rng.uniform(-np.pi, np.pi, m)])
    x[: m // 3, 1] = np.pi - np.abs(rng.normal(0, 0.1, m // 3))
    z = rng.exponential(1.0, m)
    c = np.column_stack([rng.normal(0, 0.4, n), rng.uniform(-np.pi, np.pi, n)])
    c[-1] = c[0] if n > 2 else c[-1]
    c[0] = x[min(1, m - 1)]
    return x, z / z.sum(), c


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_vectorised_passes_give_the_scalar_numbers(beta):
    """The nearest-centre pass, the report's value and the exact sums' value equal the
    particle-by-particle reference (``value``, ``_nearest``) bit for bit."""
    rng = np.random.default_rng(int(beta * 10))
    for m, n in ((1, 1), (7, 2), (40, 3), (75, 4), (33, 5)):
        x, z, c = _random_jet(rng, m, n)
        work = point_kernel._work(m, n, 4, 64, 5)
        point_kernel._load(work, x, z, m)
        buf = work[5]
        point_kernel._assign_exact(m, c, buf)
        for i in range(m):
            j, d = point_kernel._nearest(x[i], c, n)
            assert (int(buf[3, i]), np.sqrt(buf[2, i])) == (j, d)
        want = point_kernel.value(x, z, m, c, beta)
        assert point_kernel._value(z, m, c, beta, buf) == want
        s = np.zeros((n, 13))
        assert point_kernel._sums(z, m, c, beta, True, s, buf) == want
        near = buf[3, :m].astype(int)  # the pull sums: each centre's own particles
        d = np.sqrt(buf[2, :m])
        with np.errstate(divide="ignore"):
            a = np.where(d > 1e-13, z * d ** (beta - 2.0), 0.0)
        np.testing.assert_allclose(s[:, 0], np.bincount(near, a, minlength=n), rtol=1e-12)


def test_largest_first_is_a_stable_descending_sort():
    rng = np.random.default_rng(5)
    for size, k in ((1, 1), (9, 3), (64, 5), (20, 20)):
        v = rng.integers(0, 4, size).astype(float)  # many ties: the lower index first
        order = np.empty(k, np.int64)
        point_kernel._largest_first(v, k, order)
        assert list(order) == list(np.argsort(-v, kind="stable")[:k])


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_float32_search_sums_match_the_exact_ones(beta):
    """The loose search's float32 passes give the value and the pull sums of the float64
    exact sums to float32 rounding, across phi = pi and with exact ties; the zero-weight
    padding of the float32 rows adds nothing, whatever jet the work space held before."""
    rng = np.random.default_rng(3 + int(beta * 10))
    big, zb, _ = _random_jet(rng, 90, 3)
    for m, n in ((1, 1), (7, 2), (40, 3), (75, 4), (33, 5)):
        x, z, c = _random_jet(rng, m, n)
        work = point_kernel._work(96, n, 4, 64, 5)
        point_kernel._load(work, big, zb, 90)  # a larger jet first: its rows must not leak
        point_kernel._load(work, x, z, m)
        s = np.zeros((n, 13))
        exact = point_kernel._sums(z, m, c, beta, True, s, work[5].copy())
        fresh = point_kernel._work(96, n, 4, 64, 5)
        point_kernel._load(fresh, x, z, m)
        for mf in (m, -(-m // 8) * 8):  # the real particles alone, and padded to 8 lanes
            s32, t32 = np.zeros((n, 13)), np.zeros((n, 13))
            v32 = point_kernel._sums_search(mf, c, beta, s32, work[8])
            assert v32 == point_kernel._sums_search(mf, c, beta, t32, fresh[8])
            np.testing.assert_array_equal(s32, t32)
            assert v32 == pytest.approx(exact, rel=1e-5)
            for col in range(3):  # sum a, the pull (y, phi)
                np.testing.assert_allclose(s32[:, col], s[:, col], rtol=1e-4,
                                           atol=1e-5 * np.abs(s[:, col]).max())


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_one_start_for_one_centre_reaches_the_minimum(beta):
    """tau_1 from the kT axis alone (the 1-centre value has one minimum for beta >= 1 on a
    jet within pi/3 of phi = 0) is no higher than the best polished search from every
    particle; the shortcut is off for beta < 1 and for wider point sets."""
    rng = np.random.default_rng(11)
    c = np.stack([np.column_stack([rng.normal(0, 0.2, (40,)), rng.normal(0, 0.2, (40,))])
                  for _ in range(6)])
    c[..., 1] = np.clip(c[..., 1], -0.6, 0.6)
    jets = np.concatenate([rng.exponential(1.0, (6, 40, 1)), c], axis=2)
    x, z, seeds = _batch(jets)
    fit = fit_points_compiled(x, z, seeds, 1, R=R, beta=beta, max_iter=200)
    xs, zs = x.numpy(), z.numpy()
    for b in range(6):
        m = int((zs[b] > 0).sum())
        assert point_kernel._one_basin(xs[b], m, beta)
        assert not point_kernel._one_basin(xs[b], m, 0.5)
        work = point_kernel._work(xs.shape[1], 1, 4, 64, 5)
        point_kernel._load(work, xs[b], zs[b], m)
        best = np.inf
        for i in range(m):
            start = xs[b, i:i + 1].copy()
            v, _ = point_kernel.lloyd_row(xs[b], zs[b], m, start, beta, 500, 1e-12,
                                              point_kernel.EXACT, work)
            best = min(best, point_kernel.value(xs[b], zs[b], m, start, beta))
        assert fit.value[b].item() * R ** beta <= best * (1 + 1e-9), b
    wide = xs[0].copy()
    wide[0, 1] = 1.1
    assert not point_kernel._one_basin(wide, 40, 1.0)
