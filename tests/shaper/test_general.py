"""SHAPER's general path (flow + Sinkhorn, exact report) on extended shapes."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physkit.flow import Angle, Free, Positive
from physkit.ot import emd_batch
from shaper import Observable, ParamSpec, Shaper, from_name, plot_event
from shaper import observables as O

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")

NAMES = ["1-diskiness", "2-diskiness", "2-diskiness+pileup", "1-ringiness", "2-ringiness",
         "1-ellipsiness", "2-point-diskiness", "1-point-ellipsiness"]
FAST = dict(steps=25, n_eval_samples=48)


@pytest.fixture(scope="module")
def jets():
    with h5py.File(SAMPLE, "r") as f:
        lab = f["labels"][:]
        idx = np.sort(np.r_[np.flatnonzero(lab == 1)[:10], np.flatnonzero(lab == 0)[:10]])
        return f["constituents"][idx].astype(np.float64)


@pytest.fixture(scope="module")
def fitted(jets):
    return Shaper(NAMES, **FAST).compute(jets)


@pytest.fixture(scope="module")
def initial(jets):
    return Shaper(NAMES, **{**FAST, "steps": 0}).compute(jets)


def test_finite_and_status(fitted):
    for name in NAMES:
        r = fitted[name]
        assert r.value.shape == (20,) and r.value.dtype == np.float64
        assert np.isfinite(r.value).all() and (r.value >= 0).all()
        assert set(r.params) == set(from_name(name).specs)
        assert np.isin(r.status, [0, 1]).all()


def test_never_above_initial_value(fitted, initial):
    for name in NAMES:
        assert (fitted[name].value <= initial[name].value + 1e-9).all(), name
    # and the flow does improve on the kT start for most jets
    assert (fitted["2-point-diskiness"].value < initial["2-point-diskiness"].value - 1e-6).mean() > 0.5


def test_nested_families(fitted):
    assert (fitted["2-diskiness"].value <= fitted["1-diskiness"].value + 1e-9).all()
    assert (fitted["2-ringiness"].value <= fitted["1-ringiness"].value + 1e-9).all()
    assert (fitted["2-diskiness+pileup"].value <= fitted["2-diskiness"].value + 1e-9).all()


def test_nested_option_fits_unlisted_smaller_members(jets, fitted):
    # nested=True fits 1-diskiness (not listed) to seed 2-diskiness: never above it
    r = Shaper("2-diskiness", nested=True, **FAST).compute(jets)["2-diskiness"]
    assert np.isfinite(r.value).all()
    assert (r.value <= fitted["1-diskiness"].value + 1e-9).all()


def test_value_is_exact_emd_at_reported_params(jets, fitted):
    for name in ("2-diskiness", "1-ellipsiness", "2-point-diskiness"):
        r = fitted[name]
        p = {k: torch.as_tensor(v) for k, v in r.params.items()}
        pts, w = from_name(name).sample(p, FAST["n_eval_samples"], 0.8)
        # positions are in the input's own frame: compare with the raw particles
        exact = emd_batch(jets[..., 1:], jets[..., 0], pts, w.clamp_min(0), R=0.8, beta=1.0)
        np.testing.assert_allclose(r.value, exact, rtol=1e-7, atol=1e-10)
        assert (r.params["weights"] >= -1e-9).all()
        np.testing.assert_allclose(r.params["weights"].sum(1), 1.0, atol=1e-5)


def test_exact_values_api_reproduces_reported_values(jets, fitted):
    sh = Shaper(NAMES, **FAST)
    for name in ("2-diskiness+pileup", "2-point-diskiness"):
        v = sh.exact_values(jets, name, fitted[name].params)
        np.testing.assert_allclose(v, fitted[name].value, rtol=1e-7, atol=1e-10)


def test_flow_on_points_agrees_with_exact_path(jets):
    exact = Shaper(["2-subjettiness"]).compute(jets)["2-subjettiness"].value
    flow = Shaper(["2-subjettiness"], exact_points=False, steps=60).compute(jets)["2-subjettiness"].value
    ratio = flow / exact
    assert (ratio >= 1 - 1e-6).mean() >= 0.9  # the exact path is (almost always) the better one
    assert np.median(ratio) < 1.05


def test_user_defined_observable_and_mixture(jets):
    def segment_sampler(params, k, R):
        t = torch.linspace(-1, 1, k, dtype=params["center"].dtype)
        d = torch.stack([torch.cos(params["angle"]), torch.sin(params["angle"])], -1)
        pts = params["center"][:, None, :] + (params["half_length"][:, None, None] * t[:, None]) * d[:, None, :]
        return pts, torch.full(pts.shape[:2], 1.0 / k, dtype=pts.dtype)

    def init(seeds, R):
        c, _ = seeds.subjets(1)
        b = len(seeds)
        return {"center": c[:, 0].clone(), "half_length": torch.full((b,), 0.1, dtype=c.dtype),
                "angle": torch.zeros(b, dtype=c.dtype)}

    seg = Observable("segment", {"center": ParamSpec((2,), Free(), "position"),
                                 "half_length": ParamSpec((), Positive(), "length"),
                                 "angle": ParamSpec((), Angle(np.pi), "angle")},
                     segment_sampler, init=init)
    mix = seg + O.nsubjettiness(1)
    sh = Shaper([seg, mix], **FAST)
    r = sh.compute(jets[:6])
    r0 = Shaper([seg, mix], **{**FAST, "steps": 0}).compute(jets[:6])
    assert (r["segment"].value <= r0["segment"].value + 1e-12).all()
    assert r["segment"].params["center"].shape == (6, 2)
    assert set(r[mix.name].params) == {"segment.center", "segment.half_length", "segment.angle",
                                       "1-subjettiness.centers", "1-subjettiness.weights", "mixture"}
    np.testing.assert_allclose(r[mix.name].params["mixture"].sum(1), 1.0, atol=1e-6)
    assert np.isfinite(r[mix.name].value).all()


def test_general_path_is_deterministic(jets, fitted):
    again = Shaper(["1-diskiness", "2-diskiness"], **FAST).compute(jets)
    np.testing.assert_array_equal(again["2-diskiness"].value, fitted["2-diskiness"].value)
    np.testing.assert_array_equal(again["2-diskiness"].params["radii"],
                                  fitted["2-diskiness"].params["radii"])


def test_isotropy_and_grads(jets):
    r = Shaper(["isotropy", "1-diskiness"], **FAST).compute(jets[:4], return_grads=True)
    iso = r["isotropy"]
    assert iso.params == {} and np.isfinite(iso.value).all()
    # a jet concentrated near its axis is far from uniform on the R = 0.8 disk
    assert (iso.value > 0.2).all()
    g = r["1-diskiness"].grads
    assert g["pt"].shape == jets[:4, :, 0].shape and g["points"].shape == jets[:4, :, 1:].shape
    assert np.isfinite(g["pt"]).all() and np.isfinite(g["points"]).all()
    assert (g["pt"][jets[:4, :, 0] == 0] == 0).all()


@pytest.mark.parametrize("n_eval", [96, 7])
def test_isotropy_is_the_exact_emd_at_n_eval_samples(jets, n_eval):
    """Isotropy (solved coarse to fine) is the exact EMD to its 4 n_eval_samples sunflower
    nodes, as one direct exact solve gives it; its grads come from the same quadrature."""
    sh = Shaper(["isotropy"], n_eval_samples=n_eval, R=0.8)
    r = sh.compute(jets, return_grads=True)["isotropy"]
    ev = O.isotropy()
    pt = torch.as_tensor(jets[:, :, 0])
    keep = pt > 0
    z = pt / pt.sum(1, keepdim=True)
    from physkit.events import Events
    cen = Events.from_padded(jets, dtype=torch.float64).centered()
    y, b = ev.sample({}, n_eval, 0.8, batch=z)
    direct = emd_batch(cen.points(), cen.weights() * keep, y, b, R=0.8)
    np.testing.assert_allclose(r.value, direct, rtol=1e-12, atol=0)
    assert np.isfinite(r.grads["pt"]).all() and (r.grads["pt"][jets[:, :, 0] == 0] == 0).all()


def test_plot_event(jets, fitted):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot_event(jets, fitted, 3, observables=["2-point-diskiness", "1-ellipsiness"])
    assert len(ax.patches) >= 3 and len(ax.collections) >= 2
    plt.close("all")


@pytest.mark.slow
def test_default_settings_on_200_jets():
    with h5py.File(SAMPLE, "r") as f:
        x = f["constituents"][:200]
    names = ["1-point-diskiness", "2-point-diskiness", "2-point-diskiness+pileup"]
    r = Shaper(names).compute(x)
    r0 = Shaper(names, steps=0).compute(x)
    for n in names:
        assert np.isfinite(r[n].value).all()
        # flowing is not a bound by construction: the flow ranks its end points on the
        # coarse-grained jets, steps=0 ranks the starts there, and both are polished and
        # reported on the full jets; so a flowed value may end a coarse-graining error above
        assert np.mean(r[n].value <= r0[n].value + 1e-9) >= 0.99
        assert (r[n].value <= r0[n].value * (1 + 1e-3)).all()
    assert (r["2-point-diskiness"].value <= r["1-point-diskiness"].value + 1e-9).all()
    assert (r["2-point-diskiness+pileup"].value <= r["2-point-diskiness"].value + 1e-9).all()
    # the flow gains on the kT start for most jets
    assert np.median(r["2-point-diskiness"].value / r0["2-point-diskiness"].value) < 0.99


def test_coarse_grain_is_an_exact_nearby_cloud(jets):
    """The flow's coarse-grained jets: n points whose exact EMD to the jet is the returned
    distance (their n-subjettiness value), no further than the kT seeds, mass conserved."""
    from physkit.events import Events
    from shaper.lloyd import coarse_grain, point_objective
    from shaper.seeds import KtSeeds

    ev = Events.from_padded(jets, dtype=torch.float64).centered()
    big = ev.n_particles() > 32
    ev = ev[torch.nonzero(big).squeeze(1)].trim()
    assert len(ev) >= 5
    x, z = ev.points(), ev.weights()
    seeds, _ = KtSeeds(ev).subjets(32)
    c, w, m, dist = coarse_grain(x, z, seeds, R=0.8, beta=1.0)
    assert c.shape == (len(ev), 32, 2) and w.shape == m.shape == (len(ev), 32)
    np.testing.assert_allclose(w.sum(1).numpy(), z.sum(1).numpy(), rtol=1e-12)
    exact = emd_batch(x, z, c, w, R=0.8, beta=1.0)
    np.testing.assert_allclose(dist.numpy(), exact, rtol=1e-9, atol=1e-12)
    v_seed = point_objective(x, z, seeds, 0.8, 1.0)[0]
    assert (dist <= v_seed + 1e-12).all()
    # more Lloyd iterations only bring the cloud closer
    assert (coarse_grain(x, z, seeds, R=0.8, beta=1.0, max_iter=50)[3] <= dist + 1e-12).all()


def test_coarse_flow_matches_full_flow(jets, initial):
    name = "2-point-diskiness"
    coarse = Shaper(name, **FAST).compute(jets)[name].value
    full = Shaper(name, coarse_points=None, **FAST).compute(jets)[name].value
    polished = Shaper(name, polish_steps=5, **FAST).compute(jets)[name].value
    for v in (coarse, full, polished):
        assert np.isfinite(v).all() and (v <= initial[name].value + 1e-9).all()
    assert 0.98 < np.median(coarse / full) < 1.02
    assert 0.98 < np.median(polished / full) < 1.02
    with pytest.raises(ValueError, match="coarse_points"):
        Shaper(name, coarse_points=40)
    # "auto": coarse-grained for beta >= 1 only
    assert Shaper(name).coarse_points == 32 and Shaper(name, beta=2.0).coarse_points == 32
    assert Shaper(name, beta=0.5).coarse_points is None


def test_general_grads_match_finite_differences_at_fixed_shape(jets):
    """return_grads on the general path: the exact EMD's derivative with the fitted shape
    held fixed (in the input frame), checked against finite differences of exact_values."""
    name = "2-point-diskiness"
    sh = Shaper(name, **FAST)
    c = jets[:2].copy()
    r = sh.compute(c, return_grads=True)[name]
    h = 1e-7
    for j in range(2):
        n = int((c[j, :, 0] > 0).sum())
        for i in (0, n // 2, n - 1):  # the hardest particle, a middle one, the softest
            for col, g in ((0, r.grads["pt"][j, i]), (1, r.grads["points"][j, i, 0]),
                           (2, r.grads["points"][j, i, 1])):
                step = h * (c[j, i, 0] if col == 0 else 1.0)
                vals = []
                for sgn in (1, -1):
                    e = c[j:j + 1].copy()
                    e[0, i, col] += sgn * step
                    vals.append(sh.exact_values(e, name, {k: v[j:j + 1] for k, v in r.params.items()})[0])
                fd = (vals[0] - vals[1]) / (2 * step)
                assert abs(fd - g) <= 1e-4 * max(abs(g), 1.0 / c[j, :, 0].sum()), (j, i, col, fd, g)


def test_general_path_small_coincident_and_empty_jets():
    from conftest import small_jets

    names = ["2-point-diskiness", "1-diskiness+pileup", "1-ellipsiness"]
    r = Shaper(names, **FAST).compute(small_jets(), return_grads=True)
    fitted = np.arange(7) != 5  # row 5 is empty
    for name in names:
        res = r[name]
        assert np.isfinite(res.value[fitted]).all() and (res.value[fitted] >= 0).all(), name
        assert all(np.isfinite(v[fitted]).all() for v in res.params.values()), name
        assert all(np.isfinite(v).all() for v in res.grads.values()), name
        # empty jet: BAD_INPUT, value and parameters NaN (the command line's convention)
        assert res.status[5] == 3 and np.isnan(res.value[5])
        assert all(np.isnan(v[5]).all() for v in res.params.values()), name
    # <= 2 particles: the two prongs' points sit on them
    assert (r["2-point-diskiness"].value[[0, 1]] < 1e-12).all()
