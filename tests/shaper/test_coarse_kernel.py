"""shaper.coarse_kernel: the compiled coarse graining gives shaper.lloyd.coarse_grain's torch
numbers (points, weights, mask, distance) to 1e-12, on sample jets and synthetic ones, for
beta 1, 1.5 and 2 and several iteration counts; dispatch (CPU float64 centred jets, beta >= 1
only)."""
import h5py
import numpy as np
import pytest
import torch

from physkit.events import Events
from shaper.lloyd import coarse_grain
from shaper.seeds import KtSeeds

from conftest import SAMPLE, synthetic_jets


def _coarse_inputs(jets, n):
    ev = Events.from_padded(jets, dtype=torch.float64).centered()
    ev = ev[torch.nonzero(ev.n_particles() > n).squeeze(1)].trim()
    seeds, _ = KtSeeds(ev).subjets(n)
    return ev.points(), ev.weights(), seeds


def _assert_same(x, z, seeds, **kw):
    fast = coarse_grain(x, z, seeds, compiled=True, **kw)
    ref = coarse_grain(x, z, seeds, compiled=False, **kw)
    for f, r in zip(fast, ref):
        assert f.shape == r.shape and f.dtype == r.dtype
    assert torch.equal(fast[2], ref[2])
    for k in (0, 1, 3):
        scale = ref[k].abs().amax().item()
        np.testing.assert_allclose(fast[k].numpy(), ref[k].numpy(), rtol=0, atol=1e-12 * scale)
    return fast


@pytest.mark.parametrize("beta, max_iter", [(1.0, 5), (1.0, 1), (1.0, 12), (2.0, 5),
                                            (1.5, 5)])
def test_compiled_coarse_grain_equals_torch_on_sample_jets(beta, max_iter):
    with h5py.File(SAMPLE, "r") as f:
        jets = f["constituents"][:60].astype(np.float64)
    x, z, seeds = _coarse_inputs(jets, 24)
    assert len(x) >= 20
    c, w, _, dist = _assert_same(x, z, seeds, R=0.8, beta=beta, max_iter=max_iter)
    np.testing.assert_allclose(w.sum(1).numpy(), z.sum(1).numpy(), rtol=1e-12)
    # the Lloyd path moved the points (else the test would compare seeds with seeds)
    assert (c - seeds).abs().amax() > 1e-6
    assert (dist > 0).all()


def test_compiled_coarse_grain_equals_torch_on_synthetic_jets():
    jets = synthetic_jets(30, 48, seed=7, n_prongs=3)
    x, z, seeds = _coarse_inputs(np.asarray(jets, dtype=np.float64), 8)
    _assert_same(x, z, seeds, R=0.4, beta=1.0, max_iter=5)


def test_compiled_rows_do_not_depend_on_the_batch():
    with h5py.File(SAMPLE, "r") as f:
        jets = f["constituents"][:30].astype(np.float64)
    x, z, seeds = _coarse_inputs(jets, 16)
    whole = coarse_grain(x, z, seeds, compiled=True)
    for r in (0, len(x) - 1):
        one = coarse_grain(x[r:r + 1], z[r:r + 1], seeds[r:r + 1], compiled=True)
        for a, b in zip(whole, one):
            assert torch.equal(a[r:r + 1], b)


def test_dispatch_keeps_torch_where_the_kernel_is_not_exact_or_cannot_run():
    with h5py.File(SAMPLE, "r") as f:
        jets = f["constituents"][:12].astype(np.float64)
    x, z, seeds = _coarse_inputs(jets, 8)
    auto = coarse_grain(x, z, seeds)
    fast = coarse_grain(x, z, seeds, compiled=True)
    assert all(torch.equal(a, b) for a, b in zip(auto, fast))  # CPU float64 centred: compiled
    far = x.clone()
    far[..., 1] += 2.0  # azimuths beyond pi / 2: the torch code
    auto = coarse_grain(far, z, seeds + torch.tensor([0.0, 2.0], dtype=torch.float64))
    ref = coarse_grain(far, z, seeds + torch.tensor([0.0, 2.0], dtype=torch.float64),
                       compiled=False)
    assert all(torch.equal(a, b) for a, b in zip(auto, ref))
    half = coarse_grain(x, z, seeds, beta=0.5)  # beta < 1: the torch code
    assert all(torch.equal(a, b) for a, b in zip(half, coarse_grain(x, z, seeds, beta=0.5,
                                                                    compiled=False)))
    with pytest.raises(ValueError, match="CPU float64"):
        coarse_grain(x.float(), z.float(), seeds.float(), compiled=True)
