"""SHAPER observables: names, samplers, quadrature, composition (no fitting)."""
import math

import numpy as np
import pytest
import torch

from physkit.events import Events
from shaper import observables as O
from shaper.observables import from_name
from shaper.quadrature import disk_nodes, ring_nodes
from shaper.seeds import KtSeeds

NAMES = ["3-subjettiness", "2-ringiness", "2-diskiness", "1-ellipsiness", "2-point-ringiness",
         "2-point-diskiness", "2-point-ellipsiness", "isotropy", "2-diskiness+pileup",
         "isotropy+pileup", "1-subjettiness+1-diskiness"]


def _jets(b=6, m=30, seed=3):
    rng = np.random.default_rng(seed)
    a = np.zeros((b, m, 3))
    for i in range(b):
        k = rng.integers(1, m + 1)
        a[i, :k, 0] = rng.exponential(10, k) + 0.1
        a[i, :k, 1] = rng.normal(0.5, 0.2, k)
        a[i, :k, 2] = rng.normal(-1.0, 0.2, k)
    a[0, 1:] = 0.0  # one single-particle jet
    return Events.from_padded(a).centered()


@pytest.mark.parametrize("name", NAMES)
def test_name_roundtrip(name):
    assert from_name(name).name == name


@pytest.mark.parametrize("bad", ["3-subjetiness", "0-subjettiness", "pileup", "2-disk", ""])
def test_bad_names_raise(bad):
    with pytest.raises(ValueError):
        from_name(bad)


@pytest.mark.parametrize("name", NAMES)
def test_sampler_shapes_mass_and_grad(name):
    obs = from_name(name)
    jets = _jets()
    params = obs.init(KtSeeds(jets), 0.8)
    assert set(params) == set(obs.specs)
    for k, spec in obs.specs.items():
        assert tuple(params[k].shape) == (len(jets), *spec.shape), k
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    pts, w = obs.sample(leaves, 10, 0.8, batch=jets.weights())
    assert pts.shape[:2] == w.shape and pts.shape[0] == len(jets) and pts.shape[2] == 2
    assert torch.isfinite(pts).all() and (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(len(jets), dtype=w.dtype))
    if leaves:
        (pts.sum() + (w * torch.arange(w.shape[1], dtype=w.dtype)).sum()).backward()
        for k, v in leaves.items():
            assert v.grad is not None and torch.isfinite(v.grad).all(), k


def test_disk_nodes_are_uniform():
    u = disk_nodes(2000)
    r2 = (u ** 2).sum(1)
    assert r2.max() <= 1.0
    assert abs(float(r2.mean()) - 0.5) < 1e-3  # uniform disk: E[r^2] = 1/2
    assert float(u.mean(0).norm()) < 5e-3  # centred
    # equal-area: fraction inside radius 1/2 is 1/4
    assert abs(float((r2 <= 0.25).double().mean()) - 0.25) < 2e-3


def test_ring_nodes_on_circle():
    u = ring_nodes(37)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(37, dtype=u.dtype))
    assert float(u.mean(0).norm()) < 1e-12


def test_circular_ellipse_equals_disk():
    c = torch.tensor([[[0.1, -0.2]]], dtype=torch.float64)
    w = torch.ones(1, 1, dtype=torch.float64)
    disk, _ = O.diskiness(1).sample({"centers": c, "weights": w,
                                     "radii": torch.tensor([[0.3]], dtype=torch.float64)}, 50)
    ell, _ = O.ellipsiness(1).sample({"centers": c, "weights": w,
                                      "semi_axes": torch.tensor([[[0.3, 0.3]]], dtype=torch.float64),
                                      "angles": torch.tensor([[0.0]], dtype=torch.float64)}, 50)
    torch.testing.assert_close(disk, ell)


def test_ellipse_axes_and_angle():
    c = torch.zeros(1, 1, 2, dtype=torch.float64)
    p = {"centers": c, "weights": torch.ones(1, 1, dtype=torch.float64),
         "semi_axes": torch.tensor([[[0.4, 0.1]]], dtype=torch.float64),
         "angles": torch.tensor([[math.pi / 2]], dtype=torch.float64)}
    pts, _ = O.ellipsiness(1).sample(p, 500)
    # rotated by 90 degrees: the long axis lies along phi
    assert pts[0, :, 1].abs().max() > 0.35 and pts[0, :, 0].abs().max() < 0.11


def test_point_shape_weights_layout():
    obs = O.point_diskiness(2)
    p = {"centers": torch.tensor([[[0.0, 0.0], [0.5, 0.0]]]),
         "weights": torch.tensor([[0.4, 0.1, 0.3, 0.2]]), "radii": torch.tensor([[0.1, 0.2]])}
    pts, w = obs.sample(p, 8)
    assert pts.shape == (1, 2 + 16, 2)
    torch.testing.assert_close(w[0, :2], torch.tensor([0.4, 0.1]))
    torch.testing.assert_close(w[0, 2:10].sum(), torch.tensor(0.3))
    # the second prong's disk is centred on the second point
    torch.testing.assert_close(pts[0, 10:].mean(0), torch.tensor([0.5, 0.0]), atol=0.02, rtol=0)


def test_mixture_keeps_parameter_names_apart():
    mix = O.nsubjettiness(2) + O.diskiness(1)
    assert set(mix.specs) == {"2-subjettiness.centers", "2-subjettiness.weights",
                              "1-diskiness.centers", "1-diskiness.weights", "1-diskiness.radii",
                              "mixture"}
    same = O.diskiness(1) + O.diskiness(1)
    assert "1-diskiness.radii" in same.specs and "1-diskiness#2.radii" in same.specs


def test_pileup_adds_fraction_and_floor():
    obs = O.with_pileup(O.nsubjettiness(1))
    p = {"centers": torch.zeros(2, 1, 2, dtype=torch.float64),
         "weights": torch.ones(2, 1, dtype=torch.float64),
         "pileup_fraction": torch.tensor([0.0, 0.25], dtype=torch.float64)}
    pts, w = obs.sample(p, 10, R=0.4)
    torch.testing.assert_close(w[:, 0], torch.tensor([1.0, 0.75], dtype=torch.float64))
    assert float(pts[:, 1:].norm(dim=-1).max()) <= 0.4 + 1e-12
    with pytest.raises(ValueError):
        O.with_pileup(obs)


def test_kt_seeds_small_jets_sit_on_particles():
    jets = _jets()
    c, w = KtSeeds(jets).subjets(3)
    # jet 0 has one particle: first centre on it with all the weight, others weight 0
    torch.testing.assert_close(c[0, 0], jets.points()[0, 0])
    torch.testing.assert_close(w[0], torch.tensor([1.0, 0.0, 0.0], dtype=w.dtype))
    torch.testing.assert_close(w.sum(1), torch.ones(len(jets), dtype=w.dtype))


def test_parameterless_shapes_take_the_batch_explicitly():
    jets = _jets()
    z = jets.weights()
    iso = from_name("isotropy")
    pts, w = iso.sample({}, 10, 0.8, batch=z)
    assert pts.shape == (len(jets), 40, 2) and w.dtype == z.dtype
    with pytest.raises(ValueError, match="batch="):
        iso.sample({}, 10, 0.8)
    # a mixture hands its batch to both parts; the first parameter stands in without one
    mix = from_name("1-subjettiness+isotropy")
    params = mix.init(KtSeeds(jets), 0.8)
    a = mix.sample(params, 10, 0.8, batch=z)
    b = mix.sample(params, 10, 0.8)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_legacy_batch_key_still_works_with_a_warning():
    z = _jets().weights()
    iso = from_name("isotropy+pileup")
    params = {"pileup_fraction": torch.full((z.shape[0],), 0.3, dtype=z.dtype)}
    with pytest.warns(DeprecationWarning, match="batch="):
        old = iso.sample({**params, "_batch": z}, 10, 0.8)
    new = iso.sample(params, 10, 0.8, batch=z)
    for u, v in zip(old, new):
        assert torch.equal(u, v)
