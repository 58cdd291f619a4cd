"""Exact EMD between a jet and a fitted SHAPER shape, one code path for every tool.

The bench scores physkit's and pyshaper's fits with this module only, so neither tool's own
reported number (Sinkhorn minima, quadrature choices) enters the comparison.

Shapes are given by parameters in the jet's centred (y, phi) frame:

- n-subjettiness: ``centers (B, n, 2)``, ``weights (B, n)`` -> n weighted points;
- n-(point+disk)iness: ``centers (B, n, 2)``, ``weights (B, 2n)`` (the n points first, then
  the n disks, disk j centred on point j), ``radii (B, n)`` -> points plus uniform disks of
  radius ``radii`` (in units of y, phi), each disk represented by a fine, deterministic,
  equal-area polar grid (:func:`disk_grid`). This grid is deliberately *not* physkit's own
  training quadrature (a sunflower lattice) nor pyshaper's random samples.

The distance is ``physkit.ot.emd_batch`` (POT's network simplex), energyflow's convention
``EMD_{beta,R} = min sum f_ij (theta_ij / R)^beta`` with both sides normalised to unit mass.
"""
from __future__ import annotations

import math

import numpy as np

from physkit.ot import emd_batch


def disk_grid(n_rings: int = 24) -> np.ndarray:
    """``(n_rings**2, 2)`` nodes filling the unit disk with equal-area cells.

    Annulus ``j`` (edges ``j / n``, ``(j + 1) / n``) has area proportional to ``2j + 1`` and is
    cut into ``2j + 1`` equal angular cells; each node sits at the cell's area-bisecting radius
    ``sqrt(j**2 + j + 1/2) / n`` and mid-angle (odd rings rotated by half a cell); the central
    cell's node is the centre. Every node carries weight ``1 / n_rings**2``.
    """
    pts = [np.zeros((1, 2))]
    for j in range(1, n_rings):
        m = 2 * j + 1
        r = math.sqrt(j * j + j + 0.5) / n_rings
        t = 2.0 * math.pi * (np.arange(m) + 0.5 + 0.5 * (j % 2)) / m
        pts.append(np.stack([r * np.cos(t), r * np.sin(t)], axis=1))
    return np.concatenate(pts, axis=0)


def shape_cloud(kind: str, centers: np.ndarray, weights: np.ndarray,
                radii: np.ndarray | None = None, n_rings: int = 24
                ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted point cloud ``(points (B, K, 2), weights (B, K))`` of fitted shapes.

    kind : ``"points"`` (n-subjettiness) or ``"point-disk"`` (n-(point+disk)iness).
    """
    centers = np.asarray(centers, dtype=np.float64)
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    B, n, _ = centers.shape
    if kind == "points":
        if weights.shape != (B, n):
            raise ValueError(f"points: weights {weights.shape} != {(B, n)}")
        return centers, weights
    if kind != "point-disk":
        raise ValueError(f"unknown shape kind {kind!r}")
    if weights.shape != (B, 2 * n) or radii is None or np.shape(radii) != (B, n):
        raise ValueError(f"point-disk: need weights (B, 2n) and radii (B, n); got "
                         f"{weights.shape}, {None if radii is None else np.shape(radii)}")
    u = disk_grid(n_rings)                                        # (K, 2)
    k = len(u)
    radii = np.clip(np.asarray(radii, dtype=np.float64), 0.0, None)
    disks = centers[:, :, None, :] + radii[:, :, None, None] * u  # (B, n, K, 2)
    pts = np.concatenate([centers, disks.reshape(B, n * k, 2)], axis=1)
    w = np.concatenate([weights[:, :n], np.repeat(weights[:, n:] / k, k, axis=1)], axis=1)
    return pts, w


def exact_emd(jet_points: np.ndarray, jet_weights: np.ndarray, shape_points: np.ndarray,
              shape_weights: np.ndarray, R: float = 0.8, beta: float = 1.0,
              n_jobs: int | None = None) -> np.ndarray:
    """Exact normalised EMD ``(B,)`` between jets ``(B, M, 2), (B, M)`` and shapes
    ``(B, K, 2), (B, K)`` (zero weights = padding); rows whose shape has a non-finite
    parameter give NaN."""
    shape_points = np.asarray(shape_points, dtype=np.float64)
    shape_weights = np.asarray(shape_weights, dtype=np.float64)
    ok = (np.isfinite(shape_points).all(axis=(1, 2)) & np.isfinite(shape_weights).all(axis=1)
          & (shape_weights.sum(axis=1) > 0))
    out = np.full(len(ok), np.nan)
    if ok.any():
        out[ok] = emd_batch(np.asarray(jet_points)[ok], np.asarray(jet_weights)[ok],
                            shape_points[ok], shape_weights[ok], R=R, beta=beta, n_jobs=n_jobs)
    return out
