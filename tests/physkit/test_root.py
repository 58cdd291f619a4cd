"""ROOT input (physkit.io.root): files written with uproot in the test, read back equal to
the HDF5 path; common layouts found without options; bad input named by file, tree, branch
and entry; only the asked entries read; rows are whole events unless level='jet'."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import physkit.io as pio
from physkit.errors import EventFileError
from physkit.events import Events
from physkit.io import read_events, read_labels, write_events
from eventfiles import write_root

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")


def _trim(a: np.ndarray) -> np.ndarray:
    m = max(int((a[..., 0] > 0).sum(axis=1).max()), 1)
    return a[:, :m]


@pytest.mark.parametrize("fixed", [False, True])
def test_root_reads_back_equal_to_hdf5(tmp_path, make_jets, fixed):
    """Flat (fixed-size ``float[M]``) and jagged branches give the events the physkit HDF5
    file of the same jets gives, slice by slice."""
    x = make_jets(25, 16, seed=5)
    lab = np.arange(25) % 2
    h5 = write_events(tmp_path / "jets.h5", x, lab)
    root = write_root(tmp_path / "jets.root", x, lab, fixed=fixed)
    for s, e in [(None, None), (3, 11), (-4, None), (24, 25)]:
        a = read_events(h5, s, e, dtype=torch.float64)
        b = read_events(root, s, e, dtype=torch.float64, level="jet")
        np.testing.assert_array_equal(_trim(a.to_padded()), _trim(b.to_padded()))
        np.testing.assert_array_equal(read_labels(root, s, e), read_labels(h5, s, e))
    assert pio.count_events(root) == 25 and pio.detect_format(root) == "root"


def test_rapidity_from_mass_and_cartesian_branches(tmp_path, make_jets):
    """With a mass branch y is the rapidity of (pt, eta, phi, m), as vector computes it (not
    eta); px/py/pz/E branches give the same (pT, y, phi)."""
    vector = pytest.importorskip("vector")
    x = make_jets(10, 12, seed=6).astype(np.float64)
    real = x[..., 0] > 0
    mass = np.where(real, np.random.default_rng(0).uniform(0.1, 5.0, x.shape[:2]), 0.0)
    eta = x[..., 1]
    p4 = np.concatenate([x, mass[..., None]], -1)
    f1 = write_root(tmp_path / "m.root", p4, coords=("pt", "eta", "phi", "mass"),
                    prefix="PFCands_")
    got = np.zeros_like(x)
    padded = read_events(f1, level="jet", dtype=torch.float64).to_padded()
    got[:, :padded.shape[1]] = padded
    v = vector.array({"pt": x[..., 0][real], "eta": eta[real], "phi": x[..., 2][real],
                      "mass": mass[real]})
    np.testing.assert_allclose(got[..., 1][real], v.rapidity, rtol=1e-12, atol=1e-12)
    assert np.abs(got[..., 1][real] - eta[real]).max() > 1e-3  # the mass does matter here
    cart = np.stack([v.px, v.py, v.pz, v.E], -1)
    full = np.zeros(x.shape[:2] + (4,))
    full[real] = cart
    f2 = write_root(tmp_path / "c.root", full, coords=("Px", "Py", "Pz", "E"),
                    prefix="Particle_", mask=real)
    got2 = read_events(f2, level="jet", dtype=torch.float64).to_padded()
    np.testing.assert_allclose(got2, got[:, :got2.shape[1]], rtol=1e-10, atol=1e-10)


def test_nanoaod_layout_found_among_several_collections(tmp_path, make_jets):
    """A NanoAOD-like tree (Jet_*, PFCands_*, nPFCands, labels) reads PFCands_ without
    options; an explicit prefix or branch mapping picks another collection."""
    x = make_jets(8, 10, seed=7)
    jets = make_jets(8, 3, seed=8)
    path = tmp_path / "nano.root"
    real, realj = x[..., 0] > 0, jets[..., 0] > 0
    pf = ak.zip({c: ak.unflatten(x[..., k][real], real.sum(1))
                 for k, c in enumerate(("pt", "eta", "phi"))})
    jet = ak.zip({c: ak.unflatten(jets[..., k][realj], realj.sum(1))
                  for k, c in enumerate(("pt", "eta", "phi"))})
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Jet": ak.type(jet), "PFCands": ak.type(pf), "run": np.int32,
                            "is_signal": np.int8})
        f["Events"].extend({"Jet": jet, "PFCands": pf, "run": np.ones(8, np.int32),
                            "is_signal": (np.arange(8) % 2).astype(np.int8)})
    with pio.open_events(path) as r:
        assert r.dataset == "Events/PFCands_{pt,eta,phi}" and r.event_level
        assert set(r.dataset_names()) >= {"run", "is_signal", "nJet", "nPFCands"}
    np.testing.assert_array_equal(read_labels(path), np.arange(8) % 2)
    got = read_events(path, level="jet").to_padded()
    np.testing.assert_array_equal(_trim(got), _trim(x))
    for particles in ("Jet_", {"pt": "Jet_pt", "eta": "Jet_eta", "phi": "Jet_phi"},
                      "pt=Jet_pt,eta=Jet_eta,phi=Jet_phi"):
        got = read_events(path, particles=particles, level="jet").to_padded()
        np.testing.assert_array_equal(_trim(got), _trim(jets))
    np.testing.assert_array_equal(pio.read_dataset(path, "run", 2, 5), [1, 1, 1])


def test_root_rows_are_events_until_clustered(tmp_path, make_jets):
    """By default entries are whole events: Events.as_jets (hence SHAPER) refuses them with
    a message that says how to cluster; physkit.jets.cluster takes them."""
    from physkit.jets import cluster

    path = write_root(tmp_path / "ev.root", make_jets(6, 30, seed=9, n_prongs=3))
    ev = read_events(path)
    assert ev.level == "event" and ev[1:3].level == "event"
    with pytest.raises(ValueError, match=r"cluster.*physkit\.jets\.cluster"):
        Events.as_jets(ev)
    jets = cluster(ev, "antikt", 0.4, n_jets=2)
    assert Events.as_jets(jets.events) is jets.events
    assert set(jets.event_index) <= set(range(6))


def test_bad_root_input_names_file_tree_branch_and_entry(tmp_path, make_jets):
    x = make_jets(12, 8, seed=10).astype(np.float64)
    x[7, 2, 1] = np.nan
    path = write_root(tmp_path / "bad.root", x)
    with pytest.raises(EventFileError, match=r"bad\.root: dataset 'Events/part_\{pt,eta,phi\}'"
                                             r": event 7: non-finite"):
        read_events(path, level="jet")
    np.testing.assert_array_equal(_trim(read_events(path, 0, 7, level="jet").to_padded()),
                                  _trim(x[:7].astype(np.float32)))
    # branches of one collection with different lengths in an entry
    bad = tmp_path / "ragged.root"
    pt = ak.Array([[1.0, 2.0], [3.0]])
    eta = ak.Array([[0.1, 0.2], [0.3, 0.4]])
    with uproot.recreate(bad) as f:
        f.mktree("t", {"c_pt": ak.type(pt), "c_eta": ak.type(eta), "c_phi": ak.type(eta)})
        f["t"].extend({"c_pt": pt, "c_eta": eta, "c_phi": eta})
    with pytest.raises(EventFileError, match=r"ragged\.root: dataset 't/c_\{pt,eta,phi\}': "
                                             r"event 1: branch c_eta has 2 values, c_pt 1"):
        pio.read_block(bad)
    with pytest.raises(EventFileError, match="no branch nope"):
        read_events(path, particles={"pt": "nope", "eta": "part_eta", "phi": "part_phi"})
    with pytest.raises(EventFileError, match="no TTree with a particle collection"):
        read_events(path, tree="Other")
    with pytest.raises(EventFileError, match="level must be 'event' or 'jet'"):
        read_events(path, level="jets")
    h5 = write_events(tmp_path / "j.h5", x[:3])
    with pytest.raises(EventFileError, match="tree apply to root files, not to this one"):
        read_events(h5, tree="Events")
    cut = tmp_path / "cut.root"
    cut.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.raises(EventFileError, match=r"cut\.root: "):
        read_events(cut)


def test_only_the_asked_entries_are_read(tmp_path, make_jets, monkeypatch):
    """Chunked reading: read_block(s, e) asks uproot for entries [s, e) only."""
    path = write_root(tmp_path / "big.root", make_jets(40, 8, seed=11))
    from uproot.behaviors.TBranch import HasBranches

    asked = []
    real = HasBranches.arrays

    def spy(self, *args, entry_start=None, entry_stop=None, **kwargs):
        asked.append((entry_start, entry_stop))
        return real(self, *args, entry_start=entry_start, entry_stop=entry_stop, **kwargs)

    monkeypatch.setattr(HasBranches, "arrays", spy)
    block = pio.read_block(path, 10, 14)
    assert block.constituents.shape[0] == 4 and asked == [(10, 14)]
