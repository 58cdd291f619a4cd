"""physkit.jets: events clustered into jets, checked against fastjet called directly (one
event at a time, through its PseudoJet interface), on an LHCO-layout file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.io import read_events
from physkit.jets import Clustering, cluster
from eventfiles import lhco_events, write_lhco


def fastjet_direct(v: np.ndarray, algorithm: str, R: float, pt_min: float,
                   eta_max: float | None, n_jets: int | None):
    """Per event: [(pt, eta, phi, m, sorted constituent rows)] from fastjet's PseudoJet
    interface, hardest first (an independent path: no awkward, one event at a time)."""
    import fastjet

    alg = {"antikt": fastjet.antikt_algorithm, "kt": fastjet.kt_algorithm,
           "cambridge": fastjet.cambridge_algorithm}[algorithm]
    out = []
    for ev in v:
        rows = np.flatnonzero(ev[:, 0] > 0)
        parts = []
        for r in rows:
            pt, y, phi = ev[r]
            pj = fastjet.PseudoJet(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(y),
                                   pt * np.cosh(y))
            pj.set_user_index(int(r))
            parts.append(pj)
        cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(alg, R))
        jets = [j for j in fastjet.sorted_by_pt(cs.inclusive_jets(pt_min))
                if eta_max is None or abs(j.eta()) <= eta_max]
        if n_jets is not None:
            jets = jets[:n_jets]
        out.append([(j.pt(), j.eta(), j.phi_std(), j.m(),
                     sorted(c.user_index() for c in j.constituents())) for j in jets])
    return out


@pytest.mark.parametrize("algorithm,R,pt_min,eta_max,n_jets", [
    ("antikt", 1.0, 0.0, None, 2), ("antikt", 0.4, 20.0, 2.0, None),
    ("kt", 0.8, 5.0, None, 3), ("cambridge", 1.2, 0.0, 1.5, 1)])
def test_lhco_file_clustered_like_fastjet_directly(tmp_path, algorithm, R, pt_min, eta_max,
                                                   n_jets):
    v = lhco_events()
    path = write_lhco(tmp_path / "lhco.h5", v)
    events = read_events(path, empty="zero", dtype=torch.float64)
    assert events.level == "event"
    got = cluster(events, algorithm, R, pt_min=pt_min, eta_max=eta_max, n_jets=n_jets)
    want = fastjet_direct(v, algorithm, R, pt_min, eta_max, n_jets)
    expect_rows = [(e, j) for e, jets in enumerate(want) for j in range(len(jets))]
    assert list(zip(got.event_index, got.jet_index)) == expect_rows
    np.testing.assert_array_equal(got.events.origin, np.array(expect_rows).reshape(-1, 2))
    assert got.events.level == "jet" and len(got.events) == len(expect_rows)
    padded = got.events.to_padded()
    for row, (e, j) in enumerate(expect_rows):
        pt, eta, phi, m, members = want[e][j]
        np.testing.assert_allclose(got.momenta[row, :3], [pt, eta, phi], rtol=1e-9, atol=1e-9)
        assert got.momenta[row, 3] == pytest.approx(m, abs=1e-5 * pt)  # m^2 rounding
        mine = padded[row][padded[row][:, 0] > 0]
        theirs = v[e][members]  # the constituents as given, exactly
        order = np.lexsort(mine.T[::-1])
        np.testing.assert_array_equal(mine[order], theirs[np.lexsort(theirs.T[::-1])])


def test_cluster_takes_arrays_lists_and_awkward_alike():
    v = lhco_events(5, seed=7)[:, :200]
    ref = cluster(v, R=0.8, n_jets=2)
    lists = [ev[ev[:, 0] > 0] for ev in v]
    for other in (cluster(lists, R=0.8, n_jets=2),
                  cluster(Events.from_padded(v, empty="zero"), R=0.8, n_jets=2)):
        np.testing.assert_array_equal(other.event_index, ref.event_index)
        np.testing.assert_allclose(other.momenta, ref.momenta, rtol=1e-12)
        np.testing.assert_array_equal(other.events.to_padded(), ref.events.to_padded())
    none = cluster(v, R=0.8, pt_min=1e6)  # no jet passes: no rows, right shapes
    assert len(none.events) == 0 and none.momenta.shape == (0, 4)
    empty = cluster(np.zeros((0, 5, 3)))
    assert len(empty.events) == 0 and empty.events.origin.shape == (0, 2)


def test_clustering_settings_are_checked_in_one_place():
    assert Clustering.from_text("anti-kt:1.0", "leading:2") == Clustering("antikt", 1.0,
                                                                         n_jets=2)
    assert Clustering.from_text("CA:0.8", "all").algorithm == "cambridge"
    for bad, match in [(dict(algorithm="siscone"), "unknown clustering algorithm"),
                       (dict(R=0), "R must be a number > 0"),
                       (dict(pt_min=-1), "pt_min must be"),
                       (dict(eta_max=float("nan")), "eta_max must be"),
                       (dict(n_jets=0), "n_jets must be")]:
        with pytest.raises(ValueError, match=match):
            Clustering(**bad)
    for text, jets, match in [("antikt", None, "expected ALGORITHM:R"),
                              ("antikt:x", None, "R must be a number"),
                              ("antikt:1", "first:2", "expected leading:N")]:
        with pytest.raises(ValueError, match=match):
            Clustering.from_text(text, jets)


@pytest.mark.parametrize("jagged", [False, True])
def test_whole_events_stay_marked_when_written(tmp_path, jagged):
    """LHCO events written to a physkit file are still whole events (level attribute)."""
    from physkit.io import write_events

    v = lhco_events(4, seed=9)
    v[3, 0] = [10.0, 0.0, 0.0]
    events = read_events(write_lhco(tmp_path / "lhco.h5", v))
    copy = write_events(tmp_path / "copy.h5", events, jagged=jagged)
    assert read_events(copy).level == "event"
    jets = write_events(tmp_path / "jets.h5", cluster(events, R=0.4).events, jagged=jagged)
    assert read_events(jets).level == "jet"
