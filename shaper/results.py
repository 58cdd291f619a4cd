"""Results of a SHAPER run: per observable, the value, fitted parameters and status per jet."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import numpy as np


@dataclass
class ObservableResult:
    """One observable on ``N`` jets.

    value : ``(N,)`` float64 -- exact EMD between each jet and its fitted shape.
    params : name -> ``(N, ...)`` numpy array, named as the observable's parameters;
        positions (e.g. ``centers``) in the input events' own (y, phi), phi in (-pi, pi].
    status : ``(N,)`` int8 -- :class:`physkit.flow.Status` (0 converged, 1 max steps,
        2 non-finite, 3 bad input: an empty jet, whose value and parameters are NaN, as
        in the command line's results files).
    grads : optional, ``{"pt": (N, M), "points": (N, M, 2)}`` -- d value / d pT_i (per GeV when
        pT is in GeV) and d value / d(y_i, phi_i) at the fitted shape, padded like the input:
        exact (sub)gradients of the reported EMD with the shape held fixed -- the derivative of
        the observable where the fit is a local optimum (envelope theorem). n-subjettiness:
        from the nearest-centre assignment; other manifolds: from the exact plan and dual
        potentials (:func:`physkit.ot.emd_batch_grads`).
    """

    value: np.ndarray
    params: Dict[str, np.ndarray]
    status: np.ndarray
    grads: Optional[Dict[str, np.ndarray]] = None

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, idx) -> "ObservableResult":
        g = None if self.grads is None else {k: v[idx] for k, v in self.grads.items()}
        return ObservableResult(self.value[idx], {k: v[idx] for k, v in self.params.items()},
                                self.status[idx], g)


@dataclass
class Results(Mapping):
    """Mapping observable name -> :class:`ObservableResult` (all over the same ``N`` jets)."""

    results: Dict[str, ObservableResult] = field(default_factory=dict)
    settings: Dict[str, object] = field(default_factory=dict)
    #: name -> the fitted :class:`shaper.observables.Observable` (for drawing; not in to_dict)
    observables: Dict[str, object] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> ObservableResult:
        return self.results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def n_jets(self) -> int:
        return len(next(iter(self.results.values()))) if self.results else 0

    @staticmethod
    def concat(parts: List["Results"]) -> "Results":
        """Concatenate results over consecutive chunks of jets (same observables in each).

        Gradients, when present, are padded to the largest multiplicity among the chunks.
        """
        parts = [p for p in parts if len(p)]
        if not parts:
            return Results()
        names = list(parts[0])
        out = {}
        for name in names:
            rs = [p[name] for p in parts]
            params = {k: np.concatenate([r.params[k] for r in rs]) for k in rs[0].params}
            grads = None
            if all(r.grads is not None for r in rs):
                m = max(r.grads["pt"].shape[1] for r in rs)
                grads = {}
                for k in rs[0].grads:
                    padded = []
                    for r in rs:
                        g = r.grads[k]
                        pad = [(0, 0)] * g.ndim
                        pad[1] = (0, m - g.shape[1])
                        padded.append(np.pad(g, pad))
                    grads[k] = np.concatenate(padded)
            out[name] = ObservableResult(np.concatenate([r.value for r in rs]), params,
                                         np.concatenate([r.status for r in rs]), grads)
        return Results(out, dict(parts[0].settings), dict(parts[0].observables))

    def to_dict(self) -> Dict[str, np.ndarray]:
        """Flat arrays ``"<observable>/value"``, ``"<observable>/status"``,
        ``"<observable>/<param>"`` (and ``"<observable>/grad_<k>"`` when present)."""
        flat = {}
        for name, r in self.results.items():
            flat[f"{name}/value"] = r.value
            flat[f"{name}/status"] = r.status
            for k, v in r.params.items():
                flat[f"{name}/{k}"] = v
            for k, v in (r.grads or {}).items():
                flat[f"{name}/grad_{k}"] = v
        return flat

    def __repr__(self) -> str:
        return f"Results(n_jets={self.n_jets}, observables={list(self.results)})"
