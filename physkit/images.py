"""Jet images: pT-weighted pixel histograms of jets in the (y, phi) plane.

One batched ``scatter_add`` over all particles of all jets (no loop over events).
"""
from __future__ import annotations

import numpy as np
import torch

from .events import Events


def pixelate(events: Events, npix: int = 20, R: float = 0.8, center: bool = True,
             normalize: bool = True) -> np.ndarray:
    """Jet images ``(B, npix, npix)`` (float32 numpy).

    Pixel ``[b, i, j]`` sums the pT of jet ``b``'s particles with rapidity in the ``i``-th
    and azimuth in the ``j``-th of ``npix`` equal bins spanning ``[-R, R]`` (rows = y,
    columns = phi; a particle exactly on the upper edge ``R`` goes into the last bin,
    particles outside the window are dropped).

    Parameters
    ----------
    events : :class:`physkit.events.Events` of ``B`` jets.
    npix : pixels per side. R : half-width of the window in (y, phi) (jet radius).
    center : measure (y, phi) from the pT-weighted jet axis (``events.centered()``) first;
        with ``False`` the coordinates are used as stored.
    normalize : divide each image by the jet's total pT, so pixels hold energy fractions
        ``z_i`` (an image sums to the pT fraction inside the window, 1 when the whole jet
        fits); ``False`` keeps pT in the events' unit. Empty jets give all-zero images.
    """
    if npix < 1:
        raise ValueError(f"npix must be >= 1, got {npix}")
    if not R > 0:
        raise ValueError(f"R must be > 0, got {R}")
    ev = events.centered() if center else events
    B, M = ev.shape
    w = ev.weights() if normalize else ev.pt
    scale = npix / (2.0 * R)
    iy = torch.floor((ev.y + R) * scale).long()
    ip = torch.floor((ev.phi + R) * scale).long()
    # the closed upper edge belongs to the last bin
    iy = torch.where((ev.y == R) & (iy == npix), iy - 1, iy)
    ip = torch.where((ev.phi == R) & (ip == npix), ip - 1, ip)
    inside = ev.mask & (iy >= 0) & (iy < npix) & (ip >= 0) & (ip < npix)
    batch = torch.arange(B, device=ev.device)[:, None].expand(B, M)
    flat = (batch * npix + iy.clamp(0, npix - 1)) * npix + ip.clamp(0, npix - 1)
    vals = torch.where(inside, w, torch.zeros_like(w))
    img = torch.zeros(B * npix * npix, dtype=w.dtype, device=ev.device)
    img.scatter_add_(0, flat.reshape(-1), vals.reshape(-1))
    return img.reshape(B, npix, npix).to(torch.float32).cpu().numpy()
