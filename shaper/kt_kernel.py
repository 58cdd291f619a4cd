"""Exclusive-kT clustering of jets, compiled (numba): the kT seeds of :mod:`shaper.seeds`.

:func:`cluster` clusters each jet of a batch alone with the kt algorithm, E-scheme
recombination and R = 1000, as fastjet-contrib's ``KT_Axes`` asks fastjet for, and records the
clustering history; :func:`exclusive_jets` reads the exclusive jets of any ``n`` off it (one
clustering serves every ``n``).

The numbers follow fastjet's (``ClusterSequence`` with the default strategy) bit for bit:

* a jet's rapidity, azimuth and kt^2 come from its four-momentum as fastjet's ``PseudoJet``
  computes them: ``kt2 = px^2 + py^2``; ``phi = atan2(py, px)`` moved into ``[0, 2 pi)``
  (0 where ``kt2 = 0``); ``y = 0.5 log((kt2 + max(0, m^2)) / (E + |pz|)^2)`` with the sign of
  ``pz`` turned over, ``m^2 = (E + pz)(E - pz) - kt2``; where ``kt2 = 0`` and ``E = |pz|``,
  ``y = +-(1e5 + |pz|)``;
* pair distance ``d_ij = min(kt2_i, kt2_j) dR_ij^2 / R^2`` with ``dR^2 = dy^2 + dphi^2``,
  ``dphi = |phi_i - phi_j|`` taken as ``2 pi - dphi`` above pi; beam distance ``kt2_i``;
  merged four-momenta add component by component;
* the search is fastjet's plain N^2 one (cached nearest neighbours; the same table order,
  the same updates after each merge, the first minimum wins), which fastjet itself runs for
  jets of fewer than 75 particles (``N2Plain``); for larger jets fastjet runs a tiled search
  that merges the same pairs in the same order unless two distances tie exactly, where its
  tie-breaking may differ;
* the history and the exclusive jets as ``ClusterSequence.history()`` and
  ``exclusive_jets_up_to(n)`` give them (the same jets in the same order).

Conventions: particle four-momenta ``px, py, pz, E`` flat ``(P,)`` arrays (GeV), jet after
jet, ``counts (B,)`` particles per jet. History entry ``h`` of a jet: ``h < N`` its
particle ``h``; ``N <= h < 2N`` the ``(h - N)``-th step, a merge of ``parents[h, 0] <
parents[h, 1]`` or a beam step (``parents[h, 1] = -1``). The functions are ``nogil``.
"""
from __future__ import annotations

import math

import numpy as np

from .point_kernel import jit

#: fastjet's rapidity cap for a particle along the beam (``PseudoJet``'s ``MaxRap``)
MAX_RAP = 1e5
#: the kt radius of fastjet-contrib's ``KT_Axes`` (so large that pairs always merge first)
KT_R = 1000.0
_PI = math.pi
_TWO_PI = 2.0 * math.pi
#: parent of a beam step
BEAM = -1

__all__ = ["cluster", "exclusive_jets", "rap_phi", "MAX_RAP", "KT_R", "BEAM"]


@jit
def rap_phi(px, py, pz, e):
    """Rapidity, azimuth in ``[0, 2 pi)`` and ``kt2`` of one four-momentum, as fastjet's
    ``PseudoJet`` computes them (module docstring)."""
    kt2 = px * px + py * py
    phi = 0.0 if kt2 == 0.0 else math.atan2(py, px)
    if phi < 0.0:
        phi += _TWO_PI
    if phi >= _TWO_PI:
        phi -= _TWO_PI
    if e == abs(pz) and kt2 == 0.0:
        rap = MAX_RAP + abs(pz)
        return (rap if pz >= 0.0 else -rap), phi, kt2
    m2 = (e + pz) * (e - pz) - kt2
    m2 = m2 if 0.0 < m2 else 0.0
    ep = e + abs(pz)
    rap = 0.5 * math.log((kt2 + m2) / (ep * ep))
    return (-rap if pz > 0.0 else rap), phi, kt2


@jit(inline="always")
def _dist(rap, phi, a, b):
    """``dR^2`` of table entries ``a`` and ``b``."""
    dphi = abs(phi[a] - phi[b])
    deta = rap[a] - rap[b]
    if dphi > _PI:
        dphi = _TWO_PI - dphi
    return dphi * dphi + deta * deta


@jit(inline="always")
def _dij(kt2, nn, nn_dist, a):
    """``d_ij * R^2`` of table entry ``a`` with its nearest neighbour (``kt2 * R^2`` without
    one)."""
    k = kt2[a]
    if nn[a] >= 0 and kt2[nn[a]] < k:
        k = kt2[nn[a]]
    return nn_dist[a] * k


@jit(inline="always")
def _set_nn(rap, phi, nn, nn_dist, a, n, r2):
    """Nearest neighbour of entry ``a`` among entries ``0..n-1`` (the first at the least
    distance; none beyond ``R``)."""
    best, who = r2, -1
    for b in range(n):
        if b != a:
            d = _dist(rap, phi, a, b)
            if d < best:
                best, who = d, b
    nn[a], nn_dist[a] = who, best


@jit(inline="always")
def _set_entry(p4, h, rap, phi, kt2, hist, nn, nn_dist, a, r2):
    """Table entry ``a`` := history entry ``h`` (its kinematics; no neighbour yet)."""
    rap[a], phi[a], kt2[a] = rap_phi(p4[h, 0], p4[h, 1], p4[h, 2], p4[h, 3])
    hist[a], nn[a], nn_dist[a] = h, -1, r2


@jit
def _cluster_one(p4, parents, N, r2, tab, itab):
    """Cluster one jet: ``p4 (2N, 4)`` with its particles in rows ``0..N-1`` (the merged
    jets are written below them), ``parents (2N, 2)`` filled from row ``N``; ``tab (5, N)``
    and ``itab (2, N)`` work space (rapidity, azimuth, kt2, neighbour distance, d_ij;
    history entry, neighbour)."""
    rap, phi, kt2, nn_dist, dij = tab[0], tab[1], tab[2], tab[3], tab[4]
    hist, nn = itab[0], itab[1]
    for a in range(N):
        _set_entry(p4, a, rap, phi, kt2, hist, nn, nn_dist, a, r2)
    for a in range(1, N):  # neighbours among the entries before, cross-checked
        best, who = r2, -1
        for b in range(a):
            d = _dist(rap, phi, a, b)
            if d < best:
                best, who = d, b
            if d < nn_dist[b]:
                nn_dist[b], nn[b] = d, a
        nn[a], nn_dist[a] = who, best
    for a in range(N):
        dij[a] = _dij(kt2, nn, nn_dist, a)
    n = N
    for step in range(N, 2 * N):
        ja = 0
        for a in range(1, n):
            if dij[a] < dij[ja]:
                ja = a
        jb = nn[ja]
        if jb >= 0:
            if ja < jb:
                ja, jb = jb, ja
            ha, hb = hist[ja], hist[jb]
            for k in range(4):
                p4[step, k] = p4[ha, k] + p4[hb, k]
            parents[step, 0], parents[step, 1] = min(ha, hb), max(ha, hb)
            _set_entry(p4, step, rap, phi, kt2, hist, nn, nn_dist, jb, r2)
        else:
            parents[step, 0], parents[step, 1] = hist[ja], BEAM
        n -= 1
        # the last entry moves into ja's place
        rap[ja], phi[ja], kt2[ja], nn_dist[ja], dij[ja] = (rap[n], phi[n], kt2[n],
                                                            nn_dist[n], dij[n])
        hist[ja], nn[ja] = hist[n], nn[n]
        for i in range(n):
            if nn[i] == ja or (jb >= 0 and nn[i] == jb):
                _set_nn(rap, phi, nn, nn_dist, i, n, r2)
                dij[i] = _dij(kt2, nn, nn_dist, i)
            if jb >= 0:
                d = _dist(rap, phi, i, jb)
                if d < nn_dist[i] and i != jb:
                    nn_dist[i], nn[i] = d, jb
                    dij[i] = _dij(kt2, nn, nn_dist, i)
                if d < nn_dist[jb] and i != jb:
                    nn_dist[jb], nn[jb] = d, i
            if nn[i] == n:
                nn[i] = ja
        if jb >= 0:
            dij[jb] = _dij(kt2, nn, nn_dist, jb)


@jit
def cluster(px, py, pz, e, counts, R=KT_R):
    """kt clustering (E-scheme, radius ``R``) of each jet alone: four-momenta ``(P,)`` flat,
    jet after jet, ``counts (B,)`` particles per jet. Returns the history: four-momenta
    ``(B, 2M, 4)`` (px, py, pz, E; ``M`` the most particles of a jet) and parents
    ``(B, 2M, 2)`` (module docstring; rows ``2N..2M-1`` of a jet unused)."""
    B = counts.shape[0]
    M = 1
    for b in range(B):
        M = max(M, counts[b])
    p4 = np.empty((B, 2 * M, 4))
    parents = np.full((B, 2 * M, 2), -2, np.int64)
    tab = np.empty((5, M))
    itab = np.empty((2, M), np.int64)
    r2 = R * R
    lo = 0
    for b in range(B):
        N = counts[b]
        for i in range(N):
            p4[b, i, 0], p4[b, i, 1] = px[lo + i], py[lo + i]
            p4[b, i, 2], p4[b, i, 3] = pz[lo + i], e[lo + i]
        lo += N
        _cluster_one(p4[b], parents[b], N, r2, tab, itab)
    return p4, parents


@jit
def exclusive_jets(p4, parents, counts, rows, n):
    """Four-momenta ``(len(rows), n, 4)`` of the ``n`` exclusive jets of the jets ``rows``
    (each with at least ``n`` particles), in fastjet's ``exclusive_jets_up_to`` order: the
    jets present after ``N - n`` steps, in the order of the later steps that consume them."""
    out = np.empty((rows.shape[0], n, 4))
    for r in range(rows.shape[0]):
        b = rows[r]
        N = counts[b]
        stop = 2 * N - n
        k = 0
        for h in range(stop, 2 * N):
            for side in range(2):
                p = parents[b, h, side]
                if p < stop and (side == 0 or p > 0):
                    out[r, k] = p4[b, p]
                    k += 1
    return out
