"""Events -> jets: sequential-recombination clustering with fastjet, batched.

:func:`cluster` clusters every event of a batch in one call of fastjet's awkward interface
(no Python loop over events): anti-kT, kT or Cambridge/Aachen with radius ``R``, E-scheme
recombination; jets with ``pT >= pt_min`` and ``|eta| <= eta_max`` are kept, ordered by
decreasing pT, the leading ``n_jets`` per event. Each jet becomes one row of
:class:`~physkit.events.Events` holding its constituents as they were given (pT, y, phi),
with :attr:`~physkit.events.Events.origin` = (event index, jet index) -- the jet index
counts the selected jets of the event, hardest first.

Particles are clustered as massless four-vectors with the given (pT, y, phi)
(``px = pT cos phi``, ``pz = pT sinh y``, ``E = pT cosh y``): the layouts physkit reads
store (pT, y, phi) or massless (pT, eta, phi).

:class:`Clustering` holds (and checks, in one place) the settings; it parses the command
line's ``--cluster antikt:1.0`` and ``--jets leading:2``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .events import Events, pad_jagged

__all__ = ["ALGORITHMS", "Clustering", "ClusteredJets", "cluster"]

#: algorithm names (and accepted aliases) -> fastjet's algorithm attribute
ALGORITHMS = {"antikt": "antikt_algorithm", "kt": "kt_algorithm",
              "cambridge": "cambridge_algorithm"}
_ALIASES = {"anti-kt": "antikt", "akt": "antikt", "ca": "cambridge", "c/a": "cambridge",
            "cambridge-aachen": "cambridge", "cambridge_aachen": "cambridge"}
_FASTJET_LOCK = threading.Lock()
_BANNER_OFF = False


@dataclass(frozen=True)
class Clustering:
    """Jet clustering settings.

    algorithm : ``"antikt"``, ``"kt"`` or ``"cambridge"`` (aliases ``"anti-kt"``, ``"ca"``,
        ``"c/a"``; case-insensitive).
    R : jet radius (> 0).
    pt_min : smallest jet pT kept (same unit as the particles' pT, usually GeV; >= 0).
    eta_max : largest jet |eta| kept (None: no cut).
    n_jets : keep the leading ``n_jets`` jets of each event (None: all that pass the cuts).
    """

    algorithm: str = "antikt"
    R: float = 1.0
    pt_min: float = 0.0
    eta_max: float | None = None
    n_jets: int | None = None

    def __post_init__(self) -> None:
        alg = str(self.algorithm).strip().lower()
        alg = _ALIASES.get(alg, alg)
        if alg not in ALGORITHMS:
            raise ValueError(f"unknown clustering algorithm {self.algorithm!r}; use one of "
                             f"{', '.join(ALGORITHMS)}")
        object.__setattr__(self, "algorithm", alg)
        object.__setattr__(self, "R", _number("R", self.R, lambda v: v > 0, "> 0"))
        object.__setattr__(self, "pt_min",
                           _number("pt_min", self.pt_min, lambda v: v >= 0, ">= 0"))
        if self.eta_max is not None:
            object.__setattr__(self, "eta_max",
                               _number("eta_max", self.eta_max, lambda v: v > 0, "> 0"))
        if self.n_jets is not None:
            if isinstance(self.n_jets, bool) or int(self.n_jets) != self.n_jets or \
                    self.n_jets < 1:
                raise ValueError(f"n_jets must be an integer >= 1 or None, got "
                                 f"{self.n_jets!r}")
            object.__setattr__(self, "n_jets", int(self.n_jets))

    @classmethod
    def from_text(cls, cluster: str, jets: str | None = None, *, pt_min: float = 0.0,
                  eta_max: float | None = None) -> "Clustering":
        """From the command line's ``--cluster ALG:R`` (e.g. ``antikt:1.0``) and
        ``--jets leading:N | all``."""
        alg, sep, radius = str(cluster).partition(":")
        if not sep or not radius:
            raise ValueError(f"bad --cluster {cluster!r}: expected ALGORITHM:R, e.g. "
                             f"antikt:1.0 (algorithms: {', '.join(ALGORITHMS)})")
        try:
            R = float(radius)
        except ValueError:
            raise ValueError(f"bad --cluster {cluster!r}: R must be a number") from None
        return cls(alg, R, pt_min, eta_max, _parse_jets(jets))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (stored with results and model files)."""
        return asdict(self)


def _parse_jets(text: str | None) -> int | None:
    if text is None or str(text).strip().lower() == "all":
        return None
    kind, sep, n = str(text).partition(":")
    if kind.strip().lower() != "leading" or not sep or not n.strip().isdigit():
        raise ValueError(f"bad --jets {text!r}: expected leading:N (e.g. leading:2) or all")
    return int(n)


def _number(name: str, value, ok, requirement: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be a number {requirement}, got {value!r}")
    return v


class ClusteredJets(NamedTuple):
    """The jets of a batch of events, one row per jet."""

    #: constituents (pT, y, phi) as given, one row per jet; ``origin`` (event, jet index)
    events: Events
    #: ``(n_jets,)`` int64: the event each jet comes from (row of the input)
    event_index: np.ndarray
    #: ``(n_jets,)`` int64: the jet's rank in its event (0 = hardest selected jet)
    jet_index: np.ndarray
    #: ``(n_jets, 4)`` float64: the jets' (pT, eta, phi, mass), E-scheme sums
    momenta: np.ndarray
    #: the settings the jets were made with
    clustering: Clustering


def _quiet_banner(fastjet) -> None:
    """Stop fastjet's C++ banner on stdout (once); a library must keep stdout clean."""
    global _BANNER_OFF
    if not _BANNER_OFF:
        try:
            fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
        except Exception:  # pragma: no cover - other fastjet builds: cosmetic only
            pass
        _BANNER_OFF = True


def _particles(events) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (N,), flat (P, 3) float64 (pT, y, phi))`` of the real particles, row after
    row, from Events (any level), a padded array or anything :meth:`Events.as_jets` reads."""
    if not isinstance(events, Events):
        events = Events.as_jets(events, dtype=torch.float64, empty="zero")
    mask = events.mask.cpu().numpy()
    cols = [getattr(events, k).detach().cpu().numpy().astype(np.float64)[mask]
            for k in ("pt", "y", "phi")]
    return mask.sum(axis=1).astype(np.int64), np.stack(cols, axis=1)


def _run_fastjet(counts: np.ndarray, flat: np.ndarray, spec: Clustering):
    """fastjet on every event at once: ``(jets (events -> jets records px, py, pz, E),
    constituent indices (events -> jets -> index into the event's particles))``."""
    import awkward as ak
    import fastjet

    pt, y, phi = flat[:, 0], flat[:, 1], flat[:, 2]
    cols = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(y),
            "E": pt * np.cosh(y)}
    arr = ak.zip({k: ak.unflatten(v, counts) for k, v in cols.items()})
    _quiet_banner(fastjet)
    jd = fastjet.JetDefinition(getattr(fastjet, ALGORITHMS[spec.algorithm]), spec.R)
    with _FASTJET_LOCK:  # fastjet's awkward layer swaps process-wide warning state
        cs = fastjet.ClusterSequence(arr, jd)
        return cs.inclusive_jets(min_pt=spec.pt_min), cs.constituent_index(min_pt=spec.pt_min)


def cluster(events, algorithm: str = "antikt", R: float = 1.0, *, pt_min: float = 0.0,
            eta_max: float | None = None, n_jets: int | None = None,
            dtype: torch.dtype | None = None) -> ClusteredJets:
    """Cluster each event into jets (module docstring); one output row per selected jet.

    Parameters
    ----------
    events : :class:`~physkit.events.Events` (whole events, e.g. from
        :func:`physkit.io.read_events` on an LHCO or ROOT file), a padded ``(N, M, 3)``
        (pT, y, phi) array, a list of ``(M_i, 3)`` arrays or awkward particle records.
    algorithm, R, pt_min, eta_max, n_jets : see :class:`Clustering` (or pass
        ``algorithm=Clustering(...)``).
    dtype : dtype of the returned constituents (default: the input's, float64 for
        non-Events input).

    Returns
    -------
    :class:`ClusteredJets`: ``events`` (rows are jets, :attr:`~Events.level` ``"jet"``,
    ``origin`` set), ``event_index``, ``jet_index``, the jets' ``momenta`` and the
    ``clustering`` settings.
    """
    spec = algorithm if isinstance(algorithm, Clustering) else Clustering(
        algorithm, R, pt_min, eta_max, n_jets)
    import awkward as ak

    counts, flat = _particles(events)
    if len(counts) == 0:
        empty = np.zeros(0, np.int64)
        out = Events.from_padded(np.zeros((0, 1, 3)), validate=False, dtype=dtype)
        out.origin = np.zeros((0, 2), np.int64)
        return ClusteredJets(out, empty, empty, np.zeros((0, 4)), spec)
    jets, index = _run_fastjet(counts, flat, spec)
    jpt = np.hypot(jets.px, jets.py)
    order = ak.argsort(jpt, axis=1, ascending=False, stable=True)
    jets, index, jpt = jets[order], index[order], jpt[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        jeta = np.arcsinh(jets.pz / jpt)
    if spec.eta_max is not None:
        keep = abs(jeta) <= spec.eta_max
        jets, index, jpt, jeta = jets[keep], index[keep], jpt[keep], jeta[keep]
    if spec.n_jets is not None:
        jets, index = jets[:, :spec.n_jets], index[:, :spec.n_jets]
        jpt, jeta = jpt[:, :spec.n_jets], jeta[:, :spec.n_jets]
    per_event = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
    event_index = np.repeat(np.arange(len(counts)), per_event)
    jet_index = np.arange(int(per_event.sum())) - np.repeat(np.cumsum(per_event) - per_event,
                                                            per_event)
    firsts = np.cumsum(counts) - counts  # each event's first particle in ``flat``
    per_jet = ak.to_numpy(ak.flatten(ak.num(index, axis=2))).astype(np.int64)
    take = ak.to_numpy(ak.flatten(index, axis=None)).astype(np.int64) + np.repeat(
        firsts[event_index], per_jet)
    arr = pad_jagged(per_jet, *flat[take].T)
    want = dtype or (events.dtype if isinstance(events, Events) else torch.float64)
    np_dtype = torch.empty((), dtype=want).numpy().dtype
    out = Events.from_padded(arr.astype(np_dtype), validate=False, dtype=want,
                             device=events.device if isinstance(events, Events) else None)
    out.origin = np.stack([event_index, jet_index], axis=1)
    momenta = _momenta(jets, jpt, jeta)
    return ClusteredJets(out, event_index, jet_index, momenta, spec)


def _momenta(jets, jpt, jeta) -> np.ndarray:
    """``(n, 4)`` (pT, eta, phi, mass) of the selected jets (flattened)."""
    import awkward as ak

    flat = {k: ak.to_numpy(ak.flatten(v)).astype(np.float64) for k, v in (
        ("px", jets.px), ("py", jets.py), ("pz", jets.pz), ("E", jets.E),
        ("pt", jpt), ("eta", jeta))}
    m2 = flat["E"] ** 2 - flat["px"] ** 2 - flat["py"] ** 2 - flat["pz"] ** 2
    return np.stack([flat["pt"], flat["eta"], np.arctan2(flat["py"], flat["px"]),
                     np.sqrt(np.maximum(m2, 0.0))], axis=1)
