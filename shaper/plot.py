"""Draw a jet with its fitted SHAPER shapes over it: one colour per observable, a legend
naming them, the fitted values in the title."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from physkit.events import Events

from .observables import from_name
from .results import Results

__all__ = ["plot_event", "OBSERVABLE_COLORS", "PARTICLE_COLOR"]

#: colours given to the observables in turn (colour-blind friendly, none of them grey)
OBSERVABLE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                     "#882255", "#999933")
#: colour of the jet's particles
PARTICLE_COLOR = "0.35"


def _one_jet(event, index: int) -> Events:
    if isinstance(event, Events):
        return event[index] if len(event) > 1 else event
    a = event.detach().cpu().numpy() if isinstance(event, torch.Tensor) else np.asarray(event)
    if a.ndim == 2:
        a = a[None]
    elif a.shape[0] > 1:
        a = a[index:index + 1]
    return Events.from_padded(a.astype(np.float64), empty="zero")


def _artists(ax) -> list:
    return [*ax.patches, *ax.collections, *ax.lines]


def _recolor(artists, color) -> None:
    """Give artists an observable drew its colour (fills keep their transparency)."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    for a in artists:
        if isinstance(a, Patch):
            a.set_edgecolor(color)
            if a.get_fill():
                a.set_facecolor(color)
        elif isinstance(a, Collection):
            a.set_edgecolor(color)
            if len(a.get_facecolor()):
                a.set_facecolor(color)
        elif isinstance(a, Line2D):
            a.set_color(color)


def _names(results: Results, observables) -> list[str]:
    if observables is None:
        return list(results)
    return [observables] if isinstance(observables, str) else list(observables)


def plot_event(event, results: Results, index: int = 0,
               observables: Optional[Union[str, Sequence[str]]] = None, ax=None,
               R: Optional[float] = None, title: bool = True,
               colors: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
               legend: bool = True):
    """Scatter a jet's particles (marker area proportional to pT) in (y, phi) and draw the
    fitted shape of each observable over them, each observable in its own colour.

    Parameters
    ----------
    event : the events the results were computed on (``Events`` or padded ``(N, M, 3)``), or one
        jet ``(M, 3)``; ``index`` selects the jet in both ``event`` (when it holds many) and
        ``results``.
    results : :class:`shaper.Results` from :meth:`shaper.Shaper.compute`.
    observables : names to draw (default: all in ``results``).
    ax : matplotlib axes (default: a new figure). Returns the axes.
    R : jet radius of the view (default: the results' ``R``, else 0.8).
    title : put ``name = value`` of every drawn observable in the axes title.
    colors : a colour per observable (a sequence in drawing order or a name -> colour
        mapping); default :data:`OBSERVABLE_COLORS` in turn.
    legend : a legend below the axes naming the particles and each observable's colour.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    jet = _one_jet(event, index).trim()
    R = float(results.settings.get("R", 0.8) if R is None else R)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    m = jet.mask[0].cpu().numpy()
    pt = jet.pt[0].cpu().numpy()[m]
    y = jet.y[0].cpu().numpy()[m]
    phi = jet.phi[0].cpu().numpy()[m]
    axis = jet.axis()[0].cpu().numpy()
    size = 1200.0 * pt / max(pt.sum(), 1e-300)
    ax.scatter(y, phi, s=size, color=PARTICLE_COLOR, alpha=0.6, lw=0, zorder=12)
    handles = [Line2D([], [], ls="", marker="o", color=PARTICLE_COLOR, alpha=0.6,
                      label="particles (area ~ pT)")]
    values = []
    for k, name in enumerate(_names(results, observables)):
        color = (colors.get(name) if isinstance(colors, Mapping) else
                 colors[k % len(colors)] if colors else None) or \
            OBSERVABLE_COLORS[k % len(OBSERVABLE_COLORS)]
        r = results[name]
        row = {key: v[index] for key, v in r.params.items()}
        row["_axis"] = axis
        obs = results.observables.get(name) if results.observables else None
        before = {id(a) for a in _artists(ax)}
        (obs if obs is not None else from_name(name)).draw(ax, row, R)
        _recolor([a for a in _artists(ax) if id(a) not in before], color)
        handles.append(Line2D([], [], color=color, lw=2.5, marker="x", markersize=8,
                              label=name))
        values.append(f"{name} = {r.value[index]:.4f}")
    ax.set_xlim(axis[0] - 1.25 * R, axis[0] + 1.25 * R)
    ax.set_ylim(axis[1] - 1.25 * R, axis[1] + 1.25 * R)
    ax.set_aspect("equal")
    ax.set_xlabel("rapidity y")
    ax.set_ylabel(r"azimuth $\phi$")
    if title and values:
        ax.set_title("\n".join(values), fontsize=9)
    if legend:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  ncol=2, fontsize=8, frameon=False)
    return ax
