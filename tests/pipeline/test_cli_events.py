"""The command line on event-level and ROOT inputs: whole events refused without
--cluster, clustered runs keep (event, jet) per row and equal the Python path, ROOT files
through every command, in-memory Results written for physkit report."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from physkit.io import read_events, write_events
from physkit.jets import cluster
from physkit.pipeline.cli import main
from physkit.pipeline.results import read_results, write_results
from eventfiles import lhco_events, write_lhco, write_root


@pytest.fixture(scope="module")
def lhco(tmp_path_factory):
    d = tmp_path_factory.mktemp("lhco")
    v = lhco_events(10, seed=5)
    v[3, :3] = [[40.0, 0.1, 0.2], [30.0, 0.3, 0.1], [1.0, -1.0, 2.0]]  # not empty here
    return d, write_lhco(d / "lhco.h5", v), v


def test_event_level_file_refused_without_clustering(lhco, tmp_path, capsys):
    d, path, _ = lhco
    for argv in (["shape", path, "-o", str(tmp_path / "s.h5"), "--observable", "2-subjettiness"],
                 ["finder", "fit", path, "--features", "image:4", "-o", str(tmp_path / "m.h5")],
                 ["shape", path, "-o", str(tmp_path / "s.h5"), "--observable",
                  "2-subjettiness", "--jets", "leading:2"]):
        assert main(argv + ["--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "--cluster" in err and not os.listdir(tmp_path)
    assert main(["shape", path, "-o", str(tmp_path / "s.h5"), "--observable", "2-subjettiness",
                 "--cluster", "antikt", "--no-progress"]) == 1
    assert "expected ALGORITHM:R" in capsys.readouterr().err


def test_clustered_shape_equals_python_path_and_keeps_event_and_jet(lhco, tmp_path):
    from shaper import Shaper

    d, path, v = lhco
    out = str(tmp_path / "s.h5")
    assert main(["shape", path, "-o", out, "--observable", "2-Subjettiness", "--cluster",
                 "antikt:1.0", "--jets", "leading:2", "--jet-pt-min", "20", "--chunk-size", "4",
                 "--no-progress"]) == 0
    r = read_results(out)
    jets = cluster(read_events(path, dtype=torch.float64), "antikt", 1.0, pt_min=20.0,
                   n_jets=2)
    np.testing.assert_array_equal(r["source_index"], jets.event_index)
    np.testing.assert_array_equal(r["jet_index"], jets.jet_index)
    np.testing.assert_allclose(r["jet"], jets.momenta, rtol=1e-12)
    np.testing.assert_array_equal(r["labels"], (np.arange(10) % 2)[jets.event_index])
    ref = Shaper(["2-subjettiness"], progress=False).compute(jets.events)["2-subjettiness"]
    np.testing.assert_allclose(r["2-Subjettiness/value"], ref.value, rtol=1e-6, atol=1e-9)
    # the model remembers the clustering: score clusters the same way
    model, scores = str(tmp_path / "m.h5"), str(tmp_path / "sc.h5")
    assert main(["finder", "fit", path, "--features", f"shape:{out}", "--cluster", "antikt:1.0",
                 "--jets", "leading:2", "--jet-pt-min", "20", "-o", model,
                 "--param", "n_components=1", "--param", "n_residual=1", "--no-progress"]) == 0
    assert main(["score", path, "--model", model, "-o", scores, "--no-progress"]) == 0
    s = read_results(scores)
    np.testing.assert_array_equal(s["jet_index"], jets.jet_index)
    np.testing.assert_allclose(s["2-Subjettiness/value"], r["2-Subjettiness/value"])
    assert main(["finder", "fit", path, "--features", f"shape:{out}", "-o", model,
                 "--cluster", "kt:1.0", "--no-progress"]) == 1


def test_root_file_through_the_commands(tmp_path, make_jets, capsys):
    """A ROOT tree of jets (--level jet) gives the numbers of the HDF5 file of the same jets;
    as events (the default) it is refused without --cluster."""
    x = make_jets(12, 16, seed=13)
    lab = np.arange(12) % 2
    h5 = write_events(tmp_path / "j.h5", x, lab)
    root = write_root(tmp_path / "j.root", x, lab, prefix="PFCands_")
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    assert main(["shape", str(h5), "-o", a, "--observable", "2-subjettiness", "--no-progress"]) == 0
    assert main(["shape", str(root), "-o", b, "--observable", "2-subjettiness",
                 "--no-progress"]) == 1
    assert "--level jet" in capsys.readouterr().err
    assert main(["shape", str(root), "-o", b, "--observable", "2-subjettiness", "--level", "jet",
                 "--tree", "Events", "--particles", "PFCands_", "--no-progress"]) == 0
    ra, rb = read_results(a), read_results(b)
    np.testing.assert_array_equal(rb["2-subjettiness/value"], ra["2-subjettiness/value"])
    np.testing.assert_array_equal(rb["labels"], lab)
    assert main(["info", str(root)]) == 0
    assert "Events/PFCands_{pt,eta,phi}" in capsys.readouterr().out
    assert main(["shape", str(h5), "-o", str(tmp_path / "c.h5"), "--observable",
                 "2-subjettiness", "--tree", "x", "--no-progress"]) == 1
    assert "apply to root files" in capsys.readouterr().err


def test_write_results_feeds_report_and_info(tmp_path, make_jets):
    from shaper import Shaper

    x = make_jets(10, 16, seed=14)
    src = write_events(tmp_path / "j.h5", x, np.arange(10) % 2)
    events = read_events(src)
    res = Shaper(["2-subjettiness"], progress=False).compute(events)
    out = write_results(res, tmp_path / "r.h5", labels=np.arange(10) % 2, source_file=str(src))
    r = read_results(out)
    np.testing.assert_array_equal(r["2-subjettiness/value"], res["2-subjettiness"].value)
    np.testing.assert_array_equal(r["2-subjettiness/centers"],
                                  res["2-subjettiness"].params["centers"])
    np.testing.assert_array_equal(r["source_index"], np.arange(10))
    with pytest.raises(FileExistsError):
        write_results(res, out)
    assert main(["report", out, "-o", str(tmp_path / "rep")]) == 0
    assert any(n.startswith("event_") for n in os.listdir(tmp_path / "rep"))
    assert main(["info", out]) == 0
    jets = cluster(events, R=0.3, n_jets=2)
    res = Shaper(["2-subjettiness"], progress=False).compute(jets.events)
    r = read_results(write_results(res, tmp_path / "j2.h5", events=jets.events))
    np.testing.assert_array_equal(r["source_index"], jets.event_index)
    np.testing.assert_array_equal(r["jet_index"], jets.jet_index)
