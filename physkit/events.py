"""The event data model: a batch of jets as padded ``(B, M)`` tensors with a mask.

Conventions (energyflow's): columns ``(pT, y, phi)``; zero pT marks padding; azimuth is
periodic and kept in ``(-pi, pi]``. Weights of a jet are ``z_i = pT_i / sum_j pT_j``.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from .angles import wrap_angle
from .errors import EventFileError
from .simd import aligned
from .status import EVENT_PROBLEMS, MAX_ABS_PHI, MAX_ABS_RAPIDITY, EventProblem

EmptyPolicy = Literal["error", "skip", "zero"]

__all__ = ["EmptyPolicy", "EVENT_LEVEL_MESSAGE", "event_problems", "check_real",
           "validate_constituents", "pad_jagged", "pad_arrays", "Events"]


def check_real(dtype, path=None, dataset: str | None = None) -> None:
    """Refuse constituents of a dtype that is not a real number (bool, complex, strings,
    compound, object): :class:`EventFileError` naming ``path`` and ``dataset``."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf" or dtype.names is not None:
        kind = {"b": "bool", "c": "complex", "S": "string", "U": "string", "O": "object",
                "V": "compound" if dtype.names else "opaque"}.get(dtype.kind, str(dtype))
        raise EventFileError(f"constituents must be real numbers (integer or float), got "
                             f"{kind} dtype {dtype}", path, dataset)


#: why whole events are refused where jets are expected, and how to cluster them
EVENT_LEVEL_MESSAGE = (
    "these rows are whole events (from an event-level file such as LHC Olympics R&D or a "
    "ROOT event tree), not jets: cluster them into jets first, e.g. "
    "physkit.jets.cluster(events, 'antikt', R=1.0, n_jets=2) in Python or "
    "--cluster antikt:1.0 --jets leading:2 on the command line")


def pad_jagged(counts: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """Padded ``(N, M, C)`` float64 from per-row ``counts (N,)`` and flat columns ``(sum
    counts,)`` each (row after row); zeros for padding, ``M = max(counts, 1)``."""
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    m = max(int(counts.max()) if n else 0, 1)
    out = np.zeros((n, m, len(columns)))
    real = np.arange(m) < counts[:, None]  # (N, M): row r's first counts[r] slots
    for k, c in enumerate(columns):  # a boolean-mask write per column: sequential, fast
        out[..., k][real] = c
    return out


def pad_arrays(arrays) -> np.ndarray:
    """Padded ``(N, M, 3)`` float64 (pT, y, phi) from a sequence of ``(M_i, 3+)`` arrays
    (energyflow's list-of-events layout; columns after the third are ignored)."""
    parts = []
    for i, a in enumerate(arrays):
        if not isinstance(a, (np.ndarray, torch.Tensor, list, tuple)):
            raise TypeError(f"jet {i}: expected an (M, 3) array of (pT, y, phi), got "
                            f"{type(a).__name__}")
        a = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
        if a.ndim != 2 or a.shape[1] < 3:
            raise ValueError(f"jet {i}: expected an (M, 3) array of (pT, y, phi), got shape "
                             f"{a.shape}")
        parts.append(a[:, :3].astype(np.float64))
    counts = np.array([len(a) for a in parts], dtype=np.int64)
    flat = np.concatenate(parts) if parts else np.zeros((0, 3))
    return pad_jagged(counts, flat[:, 0], flat[:, 1], flat[:, 2])


def event_problems(arr: np.ndarray) -> np.ndarray:
    """Per-event problem codes ``(N,)`` int8 for a padded ``(N, M, 3)`` (pT, y, phi) array.

    0 = fine; otherwise the first problem found, in this order: 1 non-finite, 2 negative
    pT, 3 |y| > 10 on a real particle, 6 |phi| > 100 on a real particle, 4 no particles
    (:class:`~physkit.status.EventProblem`).
    """
    arr = arr[..., :3]
    codes = np.zeros(arr.shape[0], dtype=np.int8)
    finite = np.isfinite(arr).all(axis=(1, 2))
    all_finite = bool(finite.all())  # the usual case: no NaN/inf masking needed
    pt = arr[..., 0] if all_finite else np.where(np.isfinite(arr[..., 0]), arr[..., 0], 0.0)
    y = arr[..., 1] if all_finite else np.nan_to_num(arr[..., 1])
    phi = arr[..., 2] if all_finite else np.nan_to_num(arr[..., 2])
    real = pt > 0

    checks = [
        (EventProblem.NONFINITE, ~finite),
        (EventProblem.NEGATIVE_PT, (pt < 0).any(axis=1)),
        (EventProblem.LARGE_RAPIDITY, (real & (np.abs(y) > MAX_ABS_RAPIDITY)).any(axis=1)),
        (EventProblem.LARGE_AZIMUTH, (real & (np.abs(phi) > MAX_ABS_PHI)).any(axis=1)),
        (EventProblem.EMPTY, real.sum(axis=1) == 0),
    ]
    for code, bad in reversed(checks):  # earliest check wins
        codes[bad] = code
    return codes


def validate_constituents(arr: np.ndarray, *, path=None, dataset: str | None = None,
                          offset: int = 0, empty: EmptyPolicy = "error") -> np.ndarray:
    """Check a padded ``(N, M, 3)`` (pT, y, phi) array and return the events to keep.

    Raises :class:`EventFileError` naming ``path``, ``dataset`` and the first offending
    event (``offset`` is added to local indices, for chunked reads) for: a dtype that is
    not real, wrong rank or columns, NaN/inf, negative pT, |y| > 10 or |phi| > 100 on a
    real particle, and events with no particles unless ``empty`` is ``"skip"`` (drop
    them) or ``"zero"`` (keep them; their weights are all zero). Returns a boolean
    keep-mask ``(N,)``.
    """
    if empty not in ("error", "skip", "zero"):
        raise ValueError(f"empty must be 'error', 'skip' or 'zero', not {empty!r}")
    check_real(arr.dtype, path, dataset)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise EventFileError(f"expected shape (N, M, 3) for (pT, y, phi), got {arr.shape}",
                             path, dataset)
    codes = event_problems(arr)
    fatal = (codes > 0) & (codes != EventProblem.EMPTY) if empty != "error" else codes > 0
    idx = np.flatnonzero(fatal)
    if idx.size:
        code = int(codes[idx[0]])
        reason = EVENT_PROBLEMS[code]
        if code == EventProblem.EMPTY:
            reason += " (pass empty='skip' or empty='zero' to allow)"
        raise EventFileError(reason, path, dataset, offset + int(idx[0]))
    if empty == "skip":
        return codes == 0
    return np.ones(arr.shape[0], dtype=bool)


class Events:
    """A batch of jets as padded tensors.

    Attributes
    ----------
    pt, y, phi : torch.Tensor, shape ``(B, M)``
        Transverse momentum (any unit, usually GeV), rapidity, azimuth in ``(-pi, pi]``.
        Padding entries hold zeros.
    mask : torch.Tensor of bool, shape ``(B, M)``
        True for real particles (``pt > 0``).
    level : str
        ``"jet"`` (each row one jet) or ``"event"`` (each row a whole event, read from an
        event-level file: :meth:`as_jets`, and so SHAPER, refuse it until it is clustered
        by :func:`physkit.jets.cluster`).
    origin : np.ndarray of int64, shape ``(B, 2)``, or None
        (event index, jet index) of each row, for jets clustered from events or taken from
        events -> jets -> particles arrays.
    """

    level: str = "jet"
    origin: np.ndarray | None = None

    def __init__(self, pt: torch.Tensor, y: torch.Tensor, phi: torch.Tensor,
                 mask: torch.Tensor | None = None):
        if not (pt.shape == y.shape == phi.shape) or pt.dim() != 2:
            raise ValueError(f"pt, y, phi must share a (B, M) shape, got "
                             f"{tuple(pt.shape)}, {tuple(y.shape)}, {tuple(phi.shape)}")
        if mask is None:
            mask = pt > 0
        self.mask = mask.to(torch.bool)
        zero = torch.zeros((), dtype=pt.dtype, device=pt.device)
        self.pt = torch.where(self.mask, pt, zero)
        self.y = torch.where(self.mask, y, zero)
        self.phi = torch.where(self.mask, phi, zero)

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_padded(cls, array, *, dtype: torch.dtype | None = None, device=None,
                    validate: bool = True, empty: EmptyPolicy = "error") -> "Events":
        """From a padded ``(B, M, 3)`` array of (pT, y, phi), zero pT marking padding.

        ``dtype`` defaults to the array's floating type (float32 stays float32; integers
        become float64). Azimuths are wrapped into ``(-pi, pi]`` (exactly, in float64,
        whatever the dtype). Bool, complex and other non-real arrays are refused.
        """
        if isinstance(array, torch.Tensor):
            t = array
            if t.is_complex() or t.dtype == torch.bool:
                raise EventFileError(f"constituents must be real numbers, got {t.dtype}")
            if not t.is_floating_point():
                t = t.to(torch.float64)
            if validate:
                keep = validate_constituents(t.detach().cpu().numpy(), empty=empty)
                t = t[torch.as_tensor(keep, device=t.device)]
        else:
            a = np.asarray(array)
            check_real(a.dtype)
            if not a.dtype.isnative:
                a = a.astype(a.dtype.newbyteorder("="))
            if not np.issubdtype(a.dtype, np.floating):
                a = a.astype(np.float64)
            if validate:
                keep = validate_constituents(a, empty=empty)
                if not keep.all():
                    a = a[keep]
            t = torch.from_numpy(np.ascontiguousarray(a[..., :3]))
        t = t.to(device=device, dtype=dtype or t.dtype)
        if t.dim() != 3 or t.shape[-1] < 3:
            raise ValueError(f"expected (B, M, 3), got {tuple(t.shape)}")
        phi = t[..., 2]
        if not bool(((phi > -math.pi) & (phi <= math.pi)).all()):  # else already wrapped
            phi = wrap_angle(phi, exact=True)
        return cls(t[..., 0], t[..., 1], phi)

    @classmethod
    def from_awkward(cls, array, *, dtype: torch.dtype = torch.float32, device=None,
                     empty: EmptyPolicy = "error") -> "Events":
        """From a jagged ``ak.Array`` of particle records, one row per jet.

        Records in any coordinate system ``vector`` knows, or physkit's ``(pt, y, phi)``
        (:func:`physkit.records.ptyphi`: rapidity from the four-momentum when a mass or an
        energy is given, ``y = eta`` for three-vectors). Events -> particles: one row per
        outer entry. Events -> jets -> particles (e.g. coffea's ``FatJet.constituents``):
        one row per jet, and :attr:`origin` gives each row's (event index, jet index).
        """
        import awkward as ak

        from .records import ptyphi

        if not isinstance(array, ak.Array):
            array = ak.Array(array)
        origin = None
        if array.ndim == 3:
            n_jets = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
            origin = np.stack([np.repeat(np.arange(len(n_jets)), n_jets),
                               np.arange(int(n_jets.sum())) - np.repeat(
                                   np.cumsum(n_jets) - n_jets, n_jets)], axis=1)
            array = ak.flatten(array, axis=1)
        elif array.ndim != 2:
            raise ValueError(f"expected particle records nested as events -> particles or "
                             f"events -> jets -> particles, got {array.ndim} list levels")
        pt, y, phi = ptyphi(array)
        arr = pad_jagged(ak.to_numpy(ak.num(pt, axis=1)),
                         *(ak.to_numpy(ak.flatten(c, axis=1)) for c in (pt, y, phi)))
        arr[~np.isfinite(arr[..., 1]) & (arr[..., 0] == 0), 1] = 0.0
        keep = validate_constituents(arr, empty=empty)
        if not keep.all():
            arr = arr[keep]
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        ev = cls.from_padded(arr.astype(np_dtype), device=device, validate=False)
        if origin is not None:
            ev.origin = origin[keep]
        return ev

    @classmethod
    def as_jets(cls, jets, *, dtype: torch.dtype | None = None, device=None,
                empty: EmptyPolicy = "error") -> "Events":
        """Any jet input as :class:`Events` (what :class:`shaper.Shaper` accepts).

        ``jets``: :class:`Events` (returned as they are), a padded ``(N, M, 3+)`` array or
        tensor of (pT, y, phi, ...), a sequence of ``(M_i, 3+)`` arrays (energyflow's
        layout; extra columns such as the PDG id are ignored), or awkward / vector particle
        records (:meth:`from_awkward`). ``dtype`` (default: the input's float type),
        ``device`` and ``empty`` apply to converted inputs.

        Raises ValueError for events read from an event-level file (:attr:`level`
        ``"event"``): whole events are not jets; cluster them first
        (:func:`physkit.jets.cluster`).
        """
        if isinstance(jets, Events):
            ev = jets
        elif isinstance(jets, (np.ndarray, torch.Tensor)):
            ev = cls.from_padded(jets, dtype=dtype, device=device, empty=empty)
        elif isinstance(jets, (list, tuple)):
            ev = cls.from_padded(pad_arrays(jets), dtype=dtype, device=device, empty=empty)
        elif type(jets).__module__.split(".")[0] in ("awkward", "vector", "coffea"):
            ev = cls.from_awkward(jets, dtype=dtype or torch.float32, device=device,
                                  empty=empty)
        else:
            raise TypeError(f"jets must be physkit Events, a padded (N, M, 3) (pT, y, phi) "
                            f"array, a list of (M_i, 3) arrays or an awkward array of "
                            f"particle records; got {type(jets).__name__}")
        if ev.level == "event":
            raise ValueError(EVENT_LEVEL_MESSAGE)
        return ev

    # ---------------------------------------------------------------- views
    def __len__(self) -> int:
        return self.pt.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pt.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.pt.dtype

    @property
    def device(self) -> torch.device:
        return self.pt.device

    def __getitem__(self, idx) -> "Events":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return self._carry(Events(self.pt[idx], self.y[idx], self.phi[idx], self.mask[idx]),
                           idx)

    def __repr__(self) -> str:
        return (f"Events(B={len(self)}, M={self.shape[1]}, dtype={self.dtype}, "
                f"device={self.device})")

    def _carry(self, new: "Events", idx=None) -> "Events":
        """``new`` with this batch's :attr:`level` and :attr:`origin` (rows ``idx``)."""
        new.level = self.level
        if self.origin is not None:
            if isinstance(idx, torch.Tensor):
                idx = idx.detach().cpu().numpy()
            new.origin = self.origin if idx is None else self.origin[idx]
        return new

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Events":
        f = lambda t: t.to(device=device, dtype=dtype or t.dtype)  # noqa: E731
        return self._carry(Events(f(self.pt), f(self.y), f(self.phi),
                                  self.mask.to(device=device)))

    def n_particles(self) -> torch.Tensor:
        """Number of real particles per jet, ``(B,)`` int64."""
        return self.mask.sum(dim=1)

    def trim(self) -> "Events":
        """Drop padding columns beyond the largest multiplicity in this batch."""
        m = max(int(self.n_particles().max()) if len(self) else 0, 1)
        if m == self.shape[1]:
            return self
        # real particles may sit anywhere in a row: move them to the front first
        order = torch.argsort((~self.mask).to(torch.int8), dim=1, stable=True)
        g = lambda t: torch.gather(t, 1, order)[:, :m]  # noqa: E731
        return self._carry(Events(g(self.pt), g(self.y), g(self.phi), g(self.mask)))

    def points(self) -> torch.Tensor:
        """Particle positions ``(B, M, 2)`` as (y, phi)."""
        return torch.stack([self.y, self.phi], dim=-1)

    def weights(self) -> torch.Tensor:
        """Energy fractions ``z_i = pT_i / sum pT`` ``(B, M)``; zero on padding and on empty jets."""
        total = self.pt.sum(dim=1, keepdim=True)
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(total > 0, self.pt / safe, torch.zeros_like(self.pt))

    def axis(self) -> torch.Tensor:
        """pT-weighted jet axis ``(B, 2)`` as (y, phi), phi in ``(-pi, pi]``.

        The azimuth is averaged as wrapped offsets from the pT-weighted circular mean,
        so jets straddling phi = ±pi get the right axis. A jet's axis does not depend on
        the other jets in the batch (the ``(B,)`` ``atan2`` goes through
        :func:`physkit.simd.aligned`).
        """
        z = self.weights()
        y0 = (z * self.y).sum(dim=1)
        ref = aligned(torch.atan2, (z * torch.sin(self.phi)).sum(1),
                      (z * torch.cos(self.phi)).sum(1))
        dphi = wrap_angle(self.phi - ref[:, None])
        phi0 = wrap_angle(ref + (z * dphi).sum(dim=1))
        return torch.stack([y0, phi0], dim=-1)

    def centered(self, axis: torch.Tensor | None = None) -> "Events":
        """Jets with (y, phi) measured from ``axis`` ``(B, 2)`` (default: their pT-weighted
        :meth:`axis`), phi wrapped to ``(-pi, pi]``."""
        ax = self.axis() if axis is None else axis
        return self._carry(Events(self.pt, self.y - ax[:, :1], wrap_angle(self.phi - ax[:, 1:]),
                                  self.mask))

    # ---------------------------------------------------------------- exports
    def to_padded(self) -> np.ndarray:
        """Padded ``(B, M, 3)`` numpy array of (pT, y, phi)."""
        return torch.stack([self.pt, self.y, self.phi], dim=-1).detach().cpu().numpy()

    def to_awkward(self):
        """Jagged ``ak.Array`` of records ``{pt, y, phi}`` (padding removed)."""
        import awkward as ak

        m = self.mask.cpu().numpy()
        counts = m.sum(axis=1)
        cols = {k: getattr(self, k).detach().cpu().numpy()[m] for k in ("pt", "y", "phi")}
        flat = ak.zip(cols)
        return ak.unflatten(flat, counts)
