"""Small event files in community layouts, written by the tests themselves: ROOT trees
(uproot) and LHC Olympics R&D frames (pandas), with deterministic contents."""
from __future__ import annotations

import numpy as np
import pytest


def lhco_events(n: int = 12, seed: int = 4) -> np.ndarray:
    """``(n, 700, 3)`` (pT, eta, phi) events: two hard prongs per event plus a soft
    underlying event (LHCO R&D layout, zero-padded); event 3 is empty."""
    rng = np.random.default_rng(seed)
    v = np.zeros((n, 700, 3))
    for i in range(n):
        if i == 3:
            continue
        parts = []
        for _ in range(2):
            y0, f0 = rng.uniform(-2.0, 2.0), rng.uniform(-np.pi, np.pi)
            k = rng.integers(10, 40)
            parts.append(np.stack([rng.exponential(30.0, k), y0 + rng.normal(0, 0.2, k),
                                   f0 + rng.normal(0, 0.2, k)], axis=1))
        k = rng.integers(20, 120)
        parts.append(np.stack([rng.exponential(1.0, k), rng.uniform(-3.0, 3.0, k),
                               rng.uniform(-np.pi, np.pi, k)], axis=1))
        p = np.concatenate(parts)
        p[:, 2] = np.angle(np.exp(1j * p[:, 2]))
        v[i, :len(p)] = p
    return v


def write_lhco(path, v: np.ndarray, labels=None) -> str:
    """An LHC Olympics R&D file (pandas, key ``df``, ``N x 2101``) as the LHCO reader reads."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    n = len(v)
    lab = np.arange(n) % 2 if labels is None else labels
    pd.DataFrame(np.concatenate([v.reshape(n, 2100), np.asarray(lab, float)[:, None]],
                                axis=1)).to_hdf(path, key="df", format="fixed")
    return str(path)


def write_root(path, x, labels=None, *, fixed=False, prefix="part_", coords=("pt", "eta", "phi"),
               extra=None, tree="Events", mask=None):
    """A ROOT file with uproot: ``x`` ``(N, M, >=3)`` as one list branch per coordinate
    ``prefix + coords[k]`` (jagged: real particles only; ``fixed``: ``float[M]`` zero-padded),
    an int ``label`` branch and ``extra`` per-entry branches; ``mask`` ``(N, M)`` marks the
    real particles (default ``x[..., 0] > 0``)."""
    uproot = pytest.importorskip("uproot")
    import awkward as ak

    x = np.asarray(x)
    branches, types = {}, {}
    if fixed:
        for k, c in enumerate(coords):
            branches[prefix + c] = np.ascontiguousarray(x[..., k])
            types[prefix + c] = (x.dtype, (x.shape[1],))
    else:
        real = x[..., 0] > 0 if mask is None else mask
        rec = ak.zip({c: ak.unflatten(x[..., k][real], real.sum(1)) for k, c in enumerate(coords)})
        branches[prefix.rstrip("_")] = rec
        types[prefix.rstrip("_")] = ak.type(rec)
    if labels is not None:
        branches["label"] = np.asarray(labels, dtype=np.int64)
        types["label"] = np.int64
    for k, v in (extra or {}).items():
        branches[k], types[k] = np.asarray(v), np.asarray(v).dtype
    with uproot.recreate(path) as f:
        f.mktree(tree, types)
        f[tree].extend(branches)
    return path

