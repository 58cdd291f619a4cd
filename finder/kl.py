"""Karhunen–Loève (PCA) bases of a class, computed without ever forming a ``P x P``
matrix when the data are wide (``P > N``).

All functions take and return torch tensors, shapes ``(N, P)`` for data (``N`` samples,
``P`` features), ``(P, r)`` for bases (orthonormal columns) and ``(r,)`` for the
variances along them (eigenvalues of the sample covariance, divided by ``N - 1``,
descending).  They run on whatever device the input lives on (CPU or CUDA).
"""
from __future__ import annotations

import numpy as np
import torch

#: eigenvalues below ``RTOL * largest`` are treated as exactly zero (null directions)
RTOL = 1e-9

#: up to this many features a ``P x P`` covariance + ``eigh`` is used when ``N >= P``
COV_MAX_FEATURES = 4096

#: largest feature magnitude accepted: squares and sums of larger values overflow float64
#: in the covariance / SVD
MAX_ABS_FEATURE = 1e100


def check_scale(X: np.ndarray) -> np.ndarray:
    """``X`` ``(N, P)`` itself, after refusing values beyond :data:`MAX_ABS_FEATURE`
    (``ValueError`` saying how large they are and what to do)."""
    top = float(np.abs(X).max()) if X.size else 0.0
    if top > MAX_ABS_FEATURE:
        raise ValueError(f"features reach |x| = {top:.3g}, beyond {MAX_ABS_FEATURE:.0e}: "
                         f"their squares overflow float64 in the eigen-decomposition; "
                         f"rescale them (e.g. divide each feature by a typical value)")
    return X


def as_tensor(X, *, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Any array-like (numpy, torch, list) as a torch tensor on ``device``."""
    if isinstance(X, torch.Tensor):
        return X.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(X), dtype=dtype, device=device)


def kl_basis(Xc: torch.Tensor, *, rtol: float = RTOL) -> tuple[torch.Tensor, torch.Tensor]:
    """KL basis of already-centred data.

    Parameters
    ----------
    Xc : (N, P) tensor, each column centred (mean zero over the N rows).

    Returns
    -------
    vecs : (P, r) orthonormal eigenvectors of the sample covariance with non-zero
        eigenvalue (``r <= min(N - 1, P)``), in order of decreasing variance.
    vals : (r,) the variances (eigenvalues), descending, all > ``rtol * vals[0]``.

    Uses the ``P x P`` covariance only when ``N >= P`` and ``P <= COV_MAX_FEATURES``;
    otherwise the thin SVD of the ``(N, P)`` matrix (memory ``O(N P)``).
    """
    n, p = Xc.shape
    denom = max(n - 1, 1)
    if n == 0 or p == 0:
        return Xc.new_zeros((p, 0)), Xc.new_zeros((0,))
    if n >= p and p <= COV_MAX_FEATURES:
        cov = (Xc.T @ Xc) / denom
        vals, vecs = torch.linalg.eigh(cov)
        vals, vecs = vals.flip(0), vecs.flip(1)
    else:
        _, s, vh = torch.linalg.svd(Xc, full_matrices=False)
        vals, vecs = s.square() / denom, vh.T
    top = float(vals[0]) if vals.numel() else 0.0
    keep = vals > rtol * top if top > 0 else torch.zeros_like(vals, dtype=torch.bool)
    return vecs[:, keep].contiguous(), vals[keep].contiguous()


def n_from_spec(spec, vals: torch.Tensor, *, name: str = "n_components") -> int:
    """Number of leading directions from an int count or an explained-variance fraction.

    ``spec`` int >= 0: that count (clipped to ``len(vals)``); float in (0, 1): the smallest
    count whose directions explain at least that fraction of the total variance.
    """
    r = int(vals.numel())
    if isinstance(spec, (bool, np.bool_)):
        raise ValueError(f"{name} must be an int >= 0 or a float in (0, 1), got {spec!r}")
    if isinstance(spec, (int, np.integer)):
        if spec < 0:
            raise ValueError(f"{name} must be >= 0, got {spec}")
        return min(int(spec), r)
    if isinstance(spec, (float, np.floating)) and 0.0 < spec < 1.0:
        if r == 0:
            return 0
        frac = torch.cumsum(vals, 0) / vals.sum()
        return min(int(torch.searchsorted(frac, torch.tensor(float(spec), dtype=frac.dtype,
                                                             device=frac.device)).item()) + 1, r)
    raise ValueError(f"{name} must be an int >= 0 or a float in (0, 1), got {spec!r}")


def residual(Xc: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``(I - V V^T) x`` for every row: ``(N, P)`` data, ``(P, k)`` orthonormal ``V``."""
    if V.shape[1] == 0:
        return Xc
    return Xc - (Xc @ V) @ V.T
