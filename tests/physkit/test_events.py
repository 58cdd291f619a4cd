"""The Events data model: weights, axes across phi = ±pi, awkward round trips, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from physkit.errors import EventFileError
from physkit.events import Events, validate_constituents


def test_weights_sum_to_one_and_vanish_on_padding(make_jets):
    x = make_jets(20, 16, seed=1)
    x[5] = 0.0
    ev = Events.from_padded(x, empty="zero")
    w = ev.weights()
    tot = w.sum(1)
    assert torch.allclose(tot[torch.arange(20) != 5], torch.ones(19), atol=1e-6)
    assert tot[5] == 0
    assert torch.all(w[~ev.mask] == 0)
    np.testing.assert_allclose(w[0, :3].numpy(), x[0, :3, 0] / x[0, :, 0].sum(), rtol=1e-6)


@pytest.mark.parametrize("phi0", [np.pi, -np.pi + 0.01, 0.3])
def test_axis_and_centering_across_phi_boundary(make_jets, phi0):
    x = make_jets(30, 20, seed=2, phi0=phi0, y0=0.7).astype(np.float64)
    ev = Events.from_padded(x)
    # independent axis: unwrap azimuths around the known centre, then pT-weighted mean
    pt, y, phi = x[..., 0], x[..., 1], x[..., 2]
    z = pt / pt.sum(1, keepdims=True)
    unwrapped = phi0 + (phi - phi0 + np.pi) % (2 * np.pi) - np.pi
    ref_y = (z * y).sum(1)
    ref_phi = (z * unwrapped).sum(1)
    ax = ev.axis().numpy()
    np.testing.assert_allclose(ax[:, 0], ref_y, atol=1e-10)
    dphi = (ax[:, 1] - ref_phi + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(dphi, 0.0, atol=1e-10)
    assert np.all((ax[:, 1] > -np.pi) & (ax[:, 1] <= np.pi))

    c = ev.centered()
    np.testing.assert_allclose(c.axis().numpy(), 0.0, atol=1e-9)
    real = c.mask.numpy()
    # centred particles sit near the origin (the toy jets have radius ~0.4), none at ~2 pi
    assert np.abs(c.phi.numpy()[real]).max() < 1.5
    assert np.abs(c.y.numpy()[real]).max() < 1.5


def test_awkward_round_trip(make_jets):
    ak = pytest.importorskip("awkward")
    x = make_jets(15, 12, seed=3)
    ev = Events.from_padded(x)
    arr = ev.to_awkward()
    assert ak.fields(arr) == ["pt", "y", "phi"]
    np.testing.assert_array_equal(ak.to_numpy(ak.num(arr)), (x[..., 0] > 0).sum(1))
    back = Events.from_awkward(arr, dtype=torch.float32)
    m = back.shape[1]
    np.testing.assert_array_equal(back.to_padded(), ev.to_padded()[:, :m])
    assert not ev.to_padded()[:, m:].any()


def test_from_awkward_four_momenta():
    ak = pytest.importorskip("awkward")
    rng = np.random.default_rng(4)
    counts = np.array([3, 1, 5])
    n = counts.sum()
    pt = rng.uniform(1, 50, n)
    y = rng.uniform(-3, 3, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    m = rng.uniform(0, 2, n)
    mt = np.sqrt(pt ** 2 + m ** 2)
    rec = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": mt * np.sinh(y),
                  "E": mt * np.cosh(y)})
    ev = Events.from_awkward(ak.unflatten(rec, counts), dtype=torch.float64)
    got = ev.to_padded()[ev.mask.numpy()]
    np.testing.assert_allclose(got[:, 0], pt, rtol=1e-12)
    np.testing.assert_allclose(got[:, 1], y, atol=1e-10)
    np.testing.assert_allclose(got[:, 2], phi, atol=1e-12)


def test_from_awkward_eta_fields():
    ak = pytest.importorskip("awkward")
    arr = ak.Array([[{"pt": 2.0, "eta": 0.5, "phi": 3.5}], [{"pt": 1.0, "eta": -1.0, "phi": 0.0}]])
    ev = Events.from_awkward(arr, dtype=torch.float64)
    assert ev.y[0, 0] == 0.5
    assert ev.phi[0, 0] == pytest.approx(3.5 - 2 * np.pi)  # wrapped into (-pi, pi]


def test_trim_getitem_and_counts(make_jets):
    x = make_jets(6, 10, seed=5)
    x = np.concatenate([np.zeros((6, 2, 3), np.float32), x], axis=1)  # padding first
    ev = Events.from_padded(x)
    t = ev.trim()
    assert t.shape[1] == int((x[..., 0] > 0).sum(1).max())
    np.testing.assert_array_equal(t.n_particles().numpy(), ev.n_particles().numpy())
    np.testing.assert_array_equal(np.sort(t.pt.numpy(), 1), np.sort(ev.pt.numpy(), 1)[:, 2:])
    one = ev[3]
    assert len(one) == 1 and torch.equal(one.pt[0], ev.pt[3])
    assert ev.points().shape == (6, 12, 2)


def test_validate_reports_first_bad_event_with_offset(make_jets):
    x = make_jets(10, 5, seed=6)
    x[7, 0, 0] = -3.0
    x[8, 0, 1] = np.nan
    with pytest.raises(EventFileError) as err:
        validate_constituents(x, path="f.h5", dataset="constituents", offset=100)
    assert err.value.event == 107 and "negative pT" in str(err.value)
    assert "f.h5" in str(err.value) and "'constituents'" in str(err.value)
    with pytest.raises(EventFileError, match="event 1: negative pT"):
        Events.from_padded(x[6:])


def test_axis_does_not_depend_on_batch_neighbours():
    """A jet's axis is bitwise the same alone and at any row of a batch (no SIMD-tail rounding)."""
    rng = np.random.default_rng(7)
    arr = np.zeros((37, 12, 3))
    arr[..., 0] = rng.uniform(1.0, 50.0, (37, 12))
    arr[..., 1] = rng.normal(0.0, 0.3, (37, 12))
    arr[..., 2] = np.pi - np.abs(rng.normal(0.0, 0.3, (37, 12)))  # straddle phi = ±pi
    arr[..., 2] = np.where(rng.random((37, 12)) < 0.5, arr[..., 2], -arr[..., 2])
    for dtype in (np.float32, np.float64):
        ev = Events.from_padded(arr.astype(dtype))
        together = ev.axis()
        alone = torch.cat([ev[i].axis() for i in range(len(ev))])
        perm = torch.from_numpy(rng.permutation(len(ev)))
        shuffled = Events(ev.pt[perm], ev.y[perm], ev.phi[perm], ev.mask[perm]).axis()
        assert torch.equal(together, alone)
        assert torch.equal(together[perm], shuffled)
