"""Synthetic wide (P >> N) two-class data for FINDER's tests."""
import numpy as np


def wide_mean_shift(n: int, seed: int, p: int = 2000, k: int = 3, shift: float = 2.0):
    """``n`` + ``n`` rows of ``p`` unit normals, class 1 shifted by ``shift`` in the first
    ``k`` features; returns ``(X (2n, p), y (2n,))``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n, p))
    X[n:, :k] += shift
    return X, np.r_[np.zeros(n, int), np.ones(n, int)]
