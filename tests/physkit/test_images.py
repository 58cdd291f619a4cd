"""Jet images from physkit.images.pixelate."""
import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.images import pixelate


def jets(seed=0, B=7, M=15):
    rng = np.random.default_rng(seed)
    arr = np.zeros((B, M, 3), np.float32)
    n = rng.integers(1, M + 1, size=B)
    for b in range(B):  # test data construction only
        arr[b, : n[b], 0] = rng.exponential(10.0, n[b])
        arr[b, : n[b], 1] = 0.5 + rng.normal(0, 0.3, n[b])
        arr[b, : n[b], 2] = np.pi - 0.1 + rng.normal(0, 0.3, n[b])  # straddles phi = pi
    return arr


def reference_image(arr, npix, R):
    """Loop reference: centre each jet on its pT-weighted axis, np.histogram2d."""
    out = np.zeros((len(arr), npix, npix))
    edges = np.linspace(-R, R, npix + 1)
    for b, jet in enumerate(arr):
        jet = jet[jet[:, 0] > 0].astype(np.float64)
        z = jet[:, 0] / jet[:, 0].sum()
        y0 = (z * jet[:, 1]).sum()
        ref = np.arctan2((z * np.sin(jet[:, 2])).sum(), (z * np.cos(jet[:, 2])).sum())
        dphi = (jet[:, 2] - ref + np.pi) % (2 * np.pi) - np.pi
        phi0 = ref + (z * dphi).sum()
        dphi = (jet[:, 2] - phi0 + np.pi) % (2 * np.pi) - np.pi
        h, _, _ = np.histogram2d(jet[:, 1] - y0, dphi, bins=[edges, edges], weights=z)
        out[b] = h
    return out


def test_matches_per_jet_histogram():
    arr = jets()
    img = pixelate(Events.from_padded(arr), npix=16, R=0.8)
    assert img.shape == (7, 16, 16) and img.dtype == np.float32
    np.testing.assert_allclose(img, reference_image(arr, 16, 0.8), atol=1e-5)


def test_normalization_and_raw_pt():
    arr = jets(1)
    ev = Events.from_padded(arr)
    wide = pixelate(ev, npix=10, R=5.0)
    np.testing.assert_allclose(wide.sum((1, 2)), 1.0, rtol=1e-5)  # whole jet inside
    raw = pixelate(ev, npix=10, R=5.0, normalize=False)
    np.testing.assert_allclose(raw.sum((1, 2)), arr[..., 0].sum(1), rtol=1e-5)
    narrow = pixelate(ev, npix=10, R=0.2)
    assert np.all(narrow.sum((1, 2)) <= 1 + 1e-6)


def test_single_particle_pixel_and_no_centering():
    arr = np.zeros((2, 3, 3), np.float32)
    arr[0, 0] = (5.0, 0.05, -0.35)   # y bin 10 of 20 over [-1, 1]; phi bin 6
    arr[1, :2] = [(1.0, -0.95, 0.95), (3.0, 1.0, 1.0)]  # upper edge goes into the last bin
    img = pixelate(Events.from_padded(arr), npix=20, R=1.0, center=False, normalize=False)
    assert img[0, 10, 6] == pytest.approx(5.0) and img[0].sum() == pytest.approx(5.0)
    assert img[1, 0, 19] == pytest.approx(1.0) and img[1, 19, 19] == pytest.approx(3.0)
    # centred: the single particle sits on the axis, in the central pixel
    c = pixelate(Events.from_padded(arr[:1]), npix=21, R=1.0)
    assert c[0, 10, 10] == pytest.approx(1.0)


def test_batch_equals_single_and_torch_dtype():
    arr = jets(2)
    ev = Events.from_padded(arr, dtype=torch.float64)
    full = pixelate(ev)
    for b in (0, 3, 6):
        np.testing.assert_allclose(full[b], pixelate(ev[b])[0])
    with pytest.raises(ValueError):
        pixelate(ev, npix=0)
