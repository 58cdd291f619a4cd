"""Draw a jet with its fitted SHAPER shapes over it."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

from physkit.events import Events

from .observables import from_name
from .results import Results


def _one_jet(event, index: int) -> Events:
    if isinstance(event, Events):
        return event[index] if len(event) > 1 else event
    a = event.detach().cpu().numpy() if isinstance(event, torch.Tensor) else np.asarray(event)
    if a.ndim == 2:
        a = a[None]
    elif a.shape[0] > 1:
        a = a[index:index + 1]
    return Events.from_padded(a.astype(np.float64), empty="zero")


def plot_event(event, results: Results, index: int = 0,
               observables: Optional[Union[str, Sequence[str]]] = None, ax=None,
               R: Optional[float] = None, title: bool = True):
    """Scatter a jet's particles (marker area proportional to pT) in (y, phi) and draw the
    fitted shape of each observable over them.

    Parameters
    ----------
    event : the events the results were computed on (``Events`` or padded ``(N, M, 3)``), or one
        jet ``(M, 3)``; ``index`` selects the jet in both ``event`` (when it holds many) and
        ``results``.
    results : :class:`shaper.Results` from :meth:`shaper.Shaper.compute`.
    observables : names to draw (default: all in ``results``).
    ax : matplotlib axes (default: a new figure). Returns the axes.
    """
    import matplotlib.pyplot as plt

    jet = _one_jet(event, index).trim()
    R = float(results.settings.get("R", 0.8) if R is None else R)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    m = jet.mask[0].cpu().numpy()
    pt = jet.pt[0].cpu().numpy()[m]
    y = jet.y[0].cpu().numpy()[m]
    phi = jet.phi[0].cpu().numpy()[m]
    axis = jet.axis()[0].cpu().numpy()
    size = 600.0 * pt / max(pt.sum(), 1e-300)
    ax.scatter(y, phi, s=size, color="tab:red", alpha=0.7, lw=0, zorder=12, label="particles")
    names = list(results) if observables is None else (
        [observables] if isinstance(observables, str) else list(observables))
    labels = []
    for name in names:
        r = results[name]
        row = {k: v[index] for k, v in r.params.items()}
        row["_axis"] = axis
        obs = results.observables.get(name) if results.observables else None
        (obs if obs is not None else from_name(name)).draw(ax, row, R)
        labels.append(f"{name} = {r.value[index]:.4f}")
    ax.set_xlim(axis[0] - 1.25 * R, axis[0] + 1.25 * R)
    ax.set_ylim(axis[1] - 1.25 * R, axis[1] + 1.25 * R)
    ax.set_aspect("equal")
    ax.set_xlabel("rapidity y")
    ax.set_ylabel(r"azimuth $\phi$")
    if title and labels:
        ax.set_title("\n".join(labels), fontsize=9)
    return ax
