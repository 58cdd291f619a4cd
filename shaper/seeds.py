"""Exclusive-kT seeds for shape fits, clustered for a whole batch in one fastjet call.

:class:`KtSeeds` holds a batch of centred jets and returns, for any ``n``, the exclusive-kT
subjets (kt algorithm, E-scheme, R = 1000 as in fastjet-contrib's ``KT_Axes``) as centres
``(B, n, 2)`` in (y, phi) and pT fractions ``(B, n)``. A jet with ``<= n`` particles gets its
particles as centres (unused slots repeat the first particle with weight 0), so a point
manifold fits it exactly. Results are cached per ``n``.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

from physkit.events import Events


_BANNER_OFF = False
_FASTJET_LOCK = threading.Lock()


def _quiet_banner(fastjet) -> None:
    """Stop fastjet's C++ banner (printed on stdout at the first clustering) -- once; a library
    must keep stdout clean. A null banner stream is fastjet's documented way to silence it."""
    global _BANNER_OFF
    if _BANNER_OFF:
        return
    try:
        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    except Exception:  # pragma: no cover - other fastjet builds: the banner is cosmetic
        pass
    _BANNER_OFF = True


def _exclusive_kt(pt, y, phi, mask, n):
    """Exclusive-kT subjets of jets that all have more than ``n`` particles (numpy, (b, M))."""
    import awkward as ak
    import fastjet

    counts = mask.sum(axis=1)
    sel = mask
    px = ak.unflatten((pt * np.cos(phi))[sel], counts)
    py = ak.unflatten((pt * np.sin(phi))[sel], counts)
    pz = ak.unflatten((pt * np.sinh(y))[sel], counts)
    e = ak.unflatten((pt * np.cosh(y))[sel], counts)
    arr = ak.zip({"px": px, "py": py, "pz": pz, "E": e})
    _quiet_banner(fastjet)
    jd = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0, fastjet.E_scheme)
    # fastjet's awkward layer warns "dcut and exclusive jets ... interpreted with care" on every
    # exclusive_jets call: its check compares the JetDefinition object (not its algorithm) with
    # kt/C-A, so it fires for the kt algorithm too. Exclusive kT jets are well defined, so the
    # warning is harmless here: silenced for this call only, by its message. fastjet also
    # replaces warnings.formatwarning process-wide when it warns; restored after.
    # (catch_warnings swaps process-wide state: one thread at a time, Shaper fits width
    # groups in threads)
    with _FASTJET_LOCK:
        fmt = warnings.formatwarning
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="dcut and exclusive jets")
                cs = fastjet.ClusterSequence(arr, jd)
                jets = cs.exclusive_jets(n_jets=n)
        finally:
            warnings.formatwarning = fmt
    jpx = ak.to_numpy(jets.px).reshape(-1, n)
    jpy = ak.to_numpy(jets.py).reshape(-1, n)
    jpz = ak.to_numpy(jets.pz).reshape(-1, n)
    je = ak.to_numpy(jets.E).reshape(-1, n)
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
    """Exclusive-kT subjets of a batch of centred jets (cached per ``n``).

    Parameters
    ----------
    jets : Events
        Centred jets (``Events.centered()``), ``(B, M)``.
    """

    def __init__(self, jets: Events):
        self.jets = jets
        self._pt = jets.pt.detach().cpu().double().numpy()
        self._y = jets.y.detach().cpu().double().numpy()
        self._phi = jets.phi.detach().cpu().double().numpy()
        self._mask = jets.mask.detach().cpu().numpy()
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.jets)

    def subjets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(B, n, 2)`` (y, phi) and weights ``(B, n)`` on the simplex (subjet pT over
        the sum of the n subjets' pT; float64, on the jets' device).

        Subjets are ordered by decreasing pT. Jets with ``<= n`` particles: their particles,
        then weight-0 copies of the hardest particle.
        """
        if n in self._cache:
            return self._cache[n]
        pt, y, phi, mask = self._pt, self._y, self._phi, self._mask
        b, m = pt.shape
        total = pt.sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        centers = np.zeros((b, n, 2))
        weights = np.zeros((b, n))
        counts = mask.sum(axis=1)
        big = counts > n
        if big.any():
            c, w = _exclusive_kt(pt[big], y[big], phi[big], mask[big], n)
            order = np.argsort(-w, axis=1, kind="stable")
            centers[big] = np.take_along_axis(c, order[..., None], axis=1)
            w = np.take_along_axis(w, order, axis=1)
            # subjet pT are vector sums: normalise them to unit total (the simplex)
            weights[big] = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        small = ~big
        if small.any():
            # particles sorted by pT (padding last), first n of them
            ps = np.where(mask[small], pt[small], -1.0)
            order = np.argsort(-ps, axis=1, kind="stable")
            k = min(n, m)
            idx = order[:, :k]
            cy = np.take_along_axis(y[small], idx, axis=1)
            cphi = np.take_along_axis(phi[small], idx, axis=1)
            cw = np.take_along_axis(np.where(mask[small], pt[small], 0.0), idx, axis=1)
            cs = np.zeros((small.sum(), n, 2))
            ws = np.zeros((small.sum(), n))
            cs[:, :k, 0], cs[:, :k, 1], ws[:, :k] = cy, cphi, cw
            real = np.zeros((small.sum(), n), dtype=bool)
            real[:, :k] = np.take_along_axis(mask[small], idx, axis=1)
            # unused slots: copy the hardest particle, weight 0
            cs[~real] = np.broadcast_to(cs[:, :1], cs.shape)[~real]
            ws[~real] = 0.0
            centers[small] = cs
            weights[small] = ws / total[small, None]
        dev = self.jets.device
        out = (torch.from_numpy(centers).to(dev), torch.from_numpy(weights).to(dev))
        self._cache[n] = out
        return out
