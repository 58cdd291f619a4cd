"""shaper.plot_event: each observable in its own colour, a legend naming them, the values in
the title (three crosses, a ring and a disk can be told apart)."""
from __future__ import annotations

import numpy as np
import pytest

from shaper import ObservableResult, Results, plot_event


@pytest.fixture()
def ax():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _one_jet_results() -> tuple[np.ndarray, Results]:
    """A jet of three prongs and hand-made fits of three observables (no fitting here)."""
    jet = np.array([[[100.0, 0.0, 0.0], [60.0, 0.3, 0.1], [40.0, -0.2, 0.25],
                     [5.0, 0.05, -0.05]]], np.float32)
    c3 = np.array([[[0.0, 0.0], [0.3, 0.1], [-0.2, 0.25]]])
    res = {
        "3-subjettiness": ObservableResult(np.array([0.0123]), {
            "centers": c3, "weights": np.array([[0.5, 0.3, 0.2]])}, np.zeros(1, np.int8)),
        "1-ringiness": ObservableResult(np.array([0.2345]), {
            "centers": np.array([[[0.05, 0.1]]]), "weights": np.ones((1, 1)),
            "radii": np.array([[0.2]])}, np.zeros(1, np.int8)),
        "1-diskiness+pileup": ObservableResult(np.array([0.1234]), {
            "centers": np.array([[[0.05, 0.1]]]), "weights": np.ones((1, 1)),
            "radii": np.array([[0.3]]), "pileup_fraction": np.array([0.1])},
            np.zeros(1, np.int8)),
    }
    return jet, Results(res, {"R": 0.8})


def _color(artist) -> tuple:
    from matplotlib.colors import to_rgb

    c = artist.get_edgecolor()
    c = c[0] if np.ndim(c) == 2 else c
    return tuple(np.round(to_rgb(c), 3))


def test_one_colour_per_observable_with_a_legend(ax):
    from matplotlib.colors import to_rgb

    jet, res = _one_jet_results()
    plot_event(jet, res, 0, ax=ax)
    leg = ax.get_legend()
    assert leg is not None
    texts = [t.get_text() for t in leg.get_texts()]
    names = list(res)
    assert all(n in texts for n in names)
    handles = dict(zip(texts, leg.legend_handles))
    colors = {n: tuple(np.round(to_rgb(handles[n].get_color()), 3)) for n in names}
    assert len(set(colors.values())) == 3  # three different colours
    drawn = {_color(a) for a in [*ax.patches, *ax.collections[1:]]}  # [0]: the particles
    assert drawn == set(colors.values())  # every shape in its observable's colour
    particles = _color(ax.collections[0])
    assert particles not in drawn


def test_values_in_the_title(ax):
    jet, res = _one_jet_results()
    plot_event(jet, res, 0, ax=ax, observables=["1-ringiness", "3-subjettiness"])
    assert ax.get_title().splitlines() == ["1-ringiness = 0.2345", "3-subjettiness = 0.0123"]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "1-diskiness+pileup" not in texts and "1-ringiness" in texts


def test_colours_can_be_chosen(ax):
    from matplotlib.colors import to_rgb

    jet, res = _one_jet_results()
    plot_event(jet, res, 0, ax=ax, observables="1-ringiness", colors={"1-ringiness": "black"},
               legend=False)
    assert ax.get_legend() is None
    assert {_color(a) for a in ax.patches} == {tuple(to_rgb("black"))}
