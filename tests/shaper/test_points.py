"""n-subjettiness through SHAPER's exact point path, against fastjet-contrib's tau_n and POT."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from physkit.ot import emd_batch
from shaper import Results, Shaper
from conftest import small_jets

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")


@pytest.fixture(scope="module")
def sample():
    with h5py.File(SAMPLE, "r") as f:
        return {k: f[k][:] for k in ("constituents", "labels", "tau_kt")}


@pytest.fixture(scope="module")
def taus(sample):
    return Shaper(["2-subjettiness", "3-subjettiness"]).compute(sample["constituents"])


def test_tau_n_at_most_fastjet_kt_axes(sample, taus):
    for n in (2, 3):
        v = taus[f"{n}-subjettiness"].value
        ratio = v / sample["tau_kt"][:, n - 1]
        assert np.isfinite(v).all()
        assert (ratio <= 1.01).mean() >= 0.95, n
        assert np.median(ratio) <= 1.0, n
        assert (taus[f"{n}-subjettiness"].status == 0).mean() > 0.95


def test_tau_n_nested(taus):
    # the 2-axes optimum plus one more axis seeds the 3-axes fit: tau_3 <= tau_2 for every jet
    assert (taus["3-subjettiness"].value <= taus["2-subjettiness"].value).all()


def test_tau32_auc_not_worse_than_fastjet(sample, taus):
    t32 = taus["3-subjettiness"].value / np.maximum(taus["2-subjettiness"].value, 1e-12)
    ref = sample["tau_kt"][:, 2] / sample["tau_kt"][:, 1]
    y = sample["labels"]
    assert roc_auc_score(y, -t32) >= roc_auc_score(y, -ref) - 0.005


def test_value_is_exact_emd_at_reported_axes(sample, taus):
    c = sample["constituents"][:150].astype(np.float64)
    r = taus["3-subjettiness"][:150]
    # positions are reported in the input's own (y, phi): no re-centring needed
    exact = emd_batch(c[..., 1:], c[..., 0], r.params["centers"], r.params["weights"],
                      R=0.8, beta=1.0)
    np.testing.assert_allclose(r.value, exact, rtol=1e-9, atol=1e-12)
    assert (np.abs(r.params["centers"][..., 1]) <= np.pi).all()


def test_small_coincident_and_empty_jets():
    r = Shaper(["1-subjettiness", "2-subjettiness", "3-subjettiness"]).compute(
        small_jets(), return_grads=True)
    fitted = np.arange(7) != 5  # row 5 is empty
    for name, res in r.items():
        assert np.isfinite(res.value[fitted]).all()
        assert all(np.isfinite(v[fitted]).all() for v in res.params.values())
        assert all(np.isfinite(v).all() for v in res.grads.values())
        # empty jet: BAD_INPUT, value and parameters NaN (the command line's convention)
        assert res.status[5] == 3 and np.isnan(res.value[5])
        assert all(np.isnan(v[5]).all() for v in res.params.values())
    v3 = r["3-subjettiness"].value
    assert (v3[[0, 1, 2, 3, 4]] == 0).all()  # <= 3 distinct particles: points sit on them
    assert r["2-subjettiness"].value[4] == 0 and r["1-subjettiness"].value[3] == 0
    # the two-particle jet across phi = pi: centres on the particles, phi in (-pi, pi]
    c = r["2-subjettiness"].params["centers"][1]
    np.testing.assert_allclose(sorted(c[:, 1]), [-3.1, 3.1], atol=1e-9)
    # tau_1 of it: weights 2/3 and 1/3, the median is the harder particle;
    # distance sqrt(0.1^2 + (2 pi - 6.2)^2)
    d = np.hypot(0.1, 2 * np.pi - 6.2)
    np.testing.assert_allclose(r["1-subjettiness"].value[1], d / 3 / 0.8, rtol=1e-9)


def test_rotation_and_boost_covariance(sample):
    c = sample["constituents"][:40].astype(np.float64)
    moved = c.copy()
    real = moved[..., 0] > 0
    moved[..., 1] = np.where(real, moved[..., 1] + 0.7, 0.0)
    moved[..., 2] = np.where(real, (moved[..., 2] + 2.5 + np.pi) % (2 * np.pi) - np.pi, 0.0)
    a = Shaper(["3-subjettiness"]).compute(c)["3-subjettiness"]
    b = Shaper(["3-subjettiness"]).compute(moved)["3-subjettiness"]
    np.testing.assert_allclose(a.value, b.value, rtol=1e-6, atol=1e-9)
    shifted = a.params["centers"] + np.array([0.7, 2.5])
    shifted[..., 1] = (shifted[..., 1] + np.pi) % (2 * np.pi) - np.pi
    dphi = (b.params["centers"][..., 1] - shifted[..., 1] + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(b.params["centers"][..., 0] - shifted[..., 0]).max() < 1e-5
    assert np.abs(dphi).max() < 1e-5


def test_deterministic_and_chunking(sample):
    c = sample["constituents"][:60]
    a = Shaper(["2-subjettiness"]).compute(c)
    b = Shaper(["2-subjettiness"], chunk_size=25, progress=False).compute(c)
    np.testing.assert_array_equal(a["2-subjettiness"].value, Shaper(["2-subjettiness"]).compute(c)
                                  ["2-subjettiness"].value)
    np.testing.assert_allclose(a["2-subjettiness"].value, b["2-subjettiness"].value, rtol=1e-9)
    flat = Results.concat([a, a]).to_dict()
    assert flat["2-subjettiness/value"].shape == (120,)
    assert flat["2-subjettiness/centers"].shape == (120, 2, 2)
    assert flat["2-subjettiness/status"].dtype == np.int8


def test_gradients_match_finite_differences(sample):
    c = sample["constituents"][:3].astype(np.float64)
    sh = Shaper(["2-subjettiness"])
    r = sh.compute(c, return_grads=True)["2-subjettiness"]
    h = 1e-6
    for j in range(3):
        for i in (0, 3):  # a hard particle and a softer one
            for col, g in ((1, r.grads["points"][j, i, 0]), (2, r.grads["points"][j, i, 1]),
                           (0, r.grads["pt"][j, i])):
                step = h * (c[j, i, 0] if col == 0 else 1.0)
                up, dn = c[j:j + 1].copy(), c[j:j + 1].copy()
                up[0, i, col] += step
                dn[0, i, col] -= step
                fd = (sh.compute(up)["2-subjettiness"].value[0]
                      - sh.compute(dn)["2-subjettiness"].value[0]) / (2 * step)
                assert abs(fd - g) <= 2e-3 * max(abs(g), 1e-2 / c[j, :, 0].sum()), (j, i, col)
