"""Exclusive-kT seeds for shape fits, clustered for a whole batch in one compiled call.

:class:`KtSeeds` holds a batch of centred jets and returns, for any ``n``, the exclusive-kT
subjets (kt algorithm, E-scheme, R = 1000 as in fastjet-contrib's ``KT_Axes``; the same
numbers as fastjet's, :mod:`shaper.kt_kernel`) as centres ``(B, n, 2)`` in (y, phi) and pT
fractions ``(B, n)``. One clustering serves every ``n`` (the exclusive jets of any ``n`` are
read off its history), and :meth:`KtSeeds.joined` lets the
jets of several batches share it. A jet with ``<= n`` particles gets its particles as centres
(unused slots repeat the first particle with weight 0), so a point manifold fits it exactly.
Results are cached per ``n``.
"""
from __future__ import annotations

import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from physkit.events import Events
from physkit.fastjet_calls import massless_momenta


def _cluster(pt, y, phi, mask):
    """One exclusive-kT clustering (kt, R = 1000, E-scheme) of jets ``(B, M)`` (numpy), each
    alone (:func:`shaper.kt_kernel.cluster`): its history and the jets' particle counts
    ``(B,)``; serves every ``n`` (:func:`_exclusive_kt`). The particles' four-momenta are
    fastjet's input in ``KT_Axes`` (:func:`physkit.fastjet_calls.massless_momenta`)."""
    from .kt_kernel import cluster  # numba: compiled or loaded on first use

    counts = mask.sum(axis=1).astype(np.int64)
    p = massless_momenta(pt[mask], y[mask], phi[mask])
    return cluster(p["px"], p["py"], p["pz"], p["E"], counts), counts


def _exclusive_kt(clustered, n, rows):
    """Exclusive-kT subjets ``n`` of the clustered jets ``rows`` (indices ``(b,)``, each with
    more than ``n`` particles): centres ``(b, n, 2)`` (y, phi) and subjet pT ``(b, n)``."""
    from .kt_kernel import exclusive_jets

    (p4, parents), counts = clustered
    jets = exclusive_jets(p4, parents, counts, rows, n)
    jpx, jpy, jpz, je = (jets[..., k] for k in range(4))
    jpt = np.hypot(jpx, jpy)
    # not physkit.kinematics.rapidity: where E - pz rounds to below 1e-300 (|y| >~ 19) the
    # floor below gives a large finite y where rapidity() gives +-inf or NaN (0 here), and the
    # seeds must stay as they are bit for bit
    with np.errstate(divide="ignore", invalid="ignore"):
        jy = 0.5 * np.log((je + jpz) / np.maximum(je - jpz, 1e-300))
    jy = np.where(np.isfinite(jy), jy, 0.0)
    jphi = np.arctan2(jpy, jpx)
    return np.stack([jy, jphi], axis=-1), jpt


class KtSeeds:
    """Exclusive-kT subjets of a batch of centred jets: one clustering (on first use) serves
    every ``n``; results cached per ``n``. Thread-safe.

    Parameters
    ----------
    jets : Events
        Centred jets (``Events.centered()``), ``(B, M)``.
    """

    def __init__(self, jets: Events):
        self._jets = jets
        self._set_arrays(*(t.detach().cpu().double().numpy() for t in (jets.pt, jets.y,
                                                                          jets.phi)),
                         jets.mask.detach().cpu().numpy(), jets.device)

    def _set_arrays(self, pt, y, phi, mask, device):
        self._pt, self._y, self._phi, self._mask, self._device = pt, y, phi, mask, device
        self._cluster = None
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    @property
    def jets(self) -> Events:
        """The jets (:class:`physkit.events.Events`, built from the arrays on first use where
        this :class:`KtSeeds` was joined from others)."""
        if self._jets is None:
            t = (torch.from_numpy(a) for a in (self._pt, self._y, self._phi, self._mask))
            self._jets = Events(*t).to(self._device)
        return self._jets

    def __len__(self) -> int:
        return len(self._pt)

    @classmethod
    def joined(cls, parts: Sequence["KtSeeds"]) -> Tuple["KtSeeds", List["KtSeeds"]]:
        """One :class:`KtSeeds` over the jets of all ``parts`` (stacked in order, padded to the
        widest; one clustering for all of them), and a view of it per part that can stand in
        for that part (same jets, same subjets, bit for bit: every jet is clustered alone)."""
        arrays = [p._arrays() for p in parts]
        width = max(a[0].shape[1] for a in arrays)
        cols = [np.concatenate([np.pad(a[k], ((0, 0), (0, width - a[k].shape[1])))
                                for a in arrays]) for k in range(4)]
        whole = cls.__new__(cls)
        whole._jets = None
        whole._set_arrays(*cols, parts[0].jets.device)
        views, lo = [], 0
        for p in parts:
            views.append(_KtSeedsView(whole, slice(lo, lo + len(p)), p.jets))
            lo += len(p)
        return whole, views

    def _arrays(self):
        """``pt, y, phi`` (float64) and ``mask`` numpy arrays ``(B, M)``."""
        return self._pt, self._y, self._phi, self._mask

    def rows(self, rows: slice) -> "KtSeeds":
        """The seeds of the jets ``rows`` (a view sharing this clustering; its ``jets`` are
        taken on first use)."""
        return _KtSeedsView(self, rows)

    def subjets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(B, n, 2)`` (y, phi) and weights ``(B, n)`` on the simplex (subjet pT over
        the sum of the n subjets' pT; float64, on the jets' device).

        Subjets are ordered by decreasing pT. Jets with ``<= n`` particles: their particles,
        then weight-0 copies of the hardest particle.
        """
        with self._lock:
            if n not in self._cache:
                self._cache[n] = self._subjets(n)
            return self._cache[n]

    def _subjets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pt, y, phi, mask = self._pt, self._y, self._phi, self._mask
        b, m = pt.shape
        total = pt.sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        centers = np.zeros((b, n, 2))
        weights = np.zeros((b, n))
        counts = mask.sum(axis=1)
        big = counts > n
        if big.any():
            if self._cluster is None:
                self._cluster = _cluster(pt, y, phi, mask)
            c, w = _exclusive_kt(self._cluster, n, np.flatnonzero(big))
            order = np.argsort(-w, axis=1, kind="stable")
            centers[big] = np.take_along_axis(c, order[..., None], axis=1)
            w = np.take_along_axis(w, order, axis=1)
            # subjet pT are vector sums: normalise them to unit total (the simplex)
            weights[big] = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        small = ~big
        if small.any():
            centers[small], weights[small] = _particle_seeds(pt[small], y[small], phi[small],
                                                             mask[small], n, total[small])
        dev = self._device
        return torch.from_numpy(centers).to(dev), torch.from_numpy(weights).to(dev)


def _particle_seeds(pt, y, phi, mask, n, total):
    """Seeds of jets with ``<= n`` particles: the particles by decreasing pT (padding last),
    unused slots a weight-0 copy of the hardest particle."""
    m = pt.shape[1]
    ps = np.where(mask, pt, -1.0)
    order = np.argsort(-ps, axis=1, kind="stable")
    k = min(n, m)
    idx = order[:, :k]
    cy = np.take_along_axis(y, idx, axis=1)
    cphi = np.take_along_axis(phi, idx, axis=1)
    cw = np.take_along_axis(np.where(mask, pt, 0.0), idx, axis=1)
    cs = np.zeros((len(pt), n, 2))
    ws = np.zeros((len(pt), n))
    cs[:, :k, 0], cs[:, :k, 1], ws[:, :k] = cy, cphi, cw
    real = np.zeros((len(pt), n), dtype=bool)
    real[:, :k] = np.take_along_axis(mask, idx, axis=1)
    cs[~real] = np.broadcast_to(cs[:, :1], cs.shape)[~real]
    ws[~real] = 0.0
    return cs, ws / total[:, None]


class _KtSeedsView(KtSeeds):
    """Rows ``rows`` of a :class:`KtSeeds` (:meth:`KtSeeds.joined`, :meth:`KtSeeds.rows`),
    standing in for the seeds of ``jets`` (given, or those rows of the whole's jets, taken on
    first use)."""

    def __init__(self, whole: KtSeeds, rows: slice, jets: Optional[Events] = None):
        self._whole, self._rows, self._jets = whole, rows, jets

    @property
    def jets(self) -> Events:
        if self._jets is None:
            self._jets = self._whole.jets[self._rows]
        return self._jets

    def __len__(self) -> int:
        return len(range(*self._rows.indices(len(self._whole)))) if self._jets is None \
            else len(self._jets)

    def _arrays(self):
        return tuple(a[self._rows] for a in self._whole._arrays())

    def subjets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, w = self._whole.subjets(n)
        return c[self._rows], w[self._rows]
