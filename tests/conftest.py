"""Shared fixtures: the bundled sample file and a deterministic synthetic-jet generator."""
from __future__ import annotations

import os

import numpy as np
import pytest

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "data", "jets_sample.h5")


@pytest.fixture(scope="session")
def sample_path() -> str:
    """Path of ``data/jets_sample.h5`` (Pythia top/QCD jets); skips the test if it is missing."""
    if not os.path.exists(SAMPLE):
        pytest.skip("data/jets_sample.h5 not present (run data/make_sample.py)")
    return SAMPLE


def synthetic_jets(n: int, m: int = 32, *, seed: int = 0, n_prongs: int = 2,
                   min_particles: int = 3, spread: float = 0.05, radius: float = 0.4,
                   y0: float | tuple[float, float] = (-1.5, 1.5),
                   phi0: float | tuple[float, float] = (-np.pi, np.pi),
                   pt_total: float = 500.0) -> np.ndarray:
    """Deterministic toy jets, padded ``(n, m, 3)`` float32 (pT, y, phi), pT descending.

    Each jet has ``min_particles..m`` particles around ``n_prongs`` prong centres
    (within ``radius`` of the jet axis, Gaussian ``spread``); prong energy fractions are
    Dirichlet-distributed and particle pT exponential, summing to ``pt_total``. Axes
    are drawn uniformly from ``y0``/``phi0`` ranges (or fixed when given a float);
    azimuths are wrapped into (-pi, pi], so jets near phi = pi straddle the boundary.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((n, m, 3), dtype=np.float32)

    def draw(r):
        return rng.uniform(*r, size=n) if isinstance(r, tuple) else np.full(n, float(r))

    ay, aphi = draw(y0), draw(phi0)
    counts = rng.integers(min_particles, m + 1, size=n)
    for i in range(n):  # test data only
        k = counts[i]
        centres = rng.normal(0.0, radius / 2, size=(n_prongs, 2))
        frac = rng.dirichlet(np.ones(n_prongs) * 2.0)
        which = rng.choice(n_prongs, size=k, p=frac)
        pos = centres[which] + rng.normal(0.0, spread, size=(k, 2))
        pt = rng.exponential(1.0, size=k) + 1e-3
        pt = pt / pt.sum() * pt_total
        order = np.argsort(-pt)
        out[i, :k, 0] = pt[order]
        out[i, :k, 1] = ay[i] + pos[order, 0]
        phi = aphi[i] + pos[order, 1]
        out[i, :k, 2] = phi - 2 * np.pi * np.ceil((phi - np.pi) / (2 * np.pi))
    return out


@pytest.fixture
def make_jets():
    """The :func:`synthetic_jets` generator: ``make_jets(n, m=32, *, seed=0, ...)``."""
    return synthetic_jets


def small_jets() -> np.ndarray:
    """Seven tiny jets (1-5 particles, one across phi = pi, coincident particles, row 5 empty)."""
    x = np.zeros((7, 5, 3))
    x[0, 0] = [10, 0.1, 3.1]
    x[1, :2] = [[10, 0.1, 3.1], [5, 0.2, -3.1]]  # straddles phi = pi
    x[2, :3] = [[10, 0.1, 0.1], [5, 0.2, 0.2], [1, 0.0, 0.3]]
    x[3, :4] = [[10, 0.1, 0.1]] * 4  # coincident
    x[4, :4] = [[10, 0.1, 0.1], [10, 0.1, 0.1], [1, 0.3, 0.1], [1, 0.3, 0.1]]
    # x[5] empty
    x[6, :5] = [[10, 0.1, 0.1], [5, 0.2, 0.2], [1, 0.0, 0.3], [1, 0.0, 0.3], [3, -0.2, 0.0]]
    return x
