"""physkit finder search on the shipped dijet slice (data/make_dijets.py slice): scores for
every event, folds, selections, report plots, and clear errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.pipeline.results import read_results, results_settings

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")
SLICE = {k: os.path.join(DATA, f"dijets_slice_{k}.h5") for k in ("data", "reference")}


@pytest.fixture(scope="module")
def search_file(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("search") / "scores.h5")
    rc = main(["finder", "search", SLICE["data"], "--reference", SLICE["reference"],
               "--features", "dataset:features", "--folds", "3", "--param", "n_estimators=1",
               "-o", out, "--no-progress"])
    assert rc == 0
    return out


def test_search_scores_every_event_out_of_fold(search_file):
    r = read_results(search_file)
    n = len(r["source_index"])
    assert n == 4000 and np.isfinite(r["score/value"]).all()
    is_data = r["search/is_data"] == 1
    assert is_data.sum() == 2000 and set(np.unique(r["search/fold"])) == {0, 1, 2}
    sel = r["search/selected_0.1"] == 1
    assert not sel[~is_data].any() and 180 <= sel.sum() <= 230
    # the slice holds 2% signal among the data events: the search enriches it
    truth = r["labels"]
    assert truth[sel].mean() > 2 * truth[is_data].mean()
    s = results_settings(search_file)["settings"]
    assert s["command"] == "search" and s["folds"] == 3


def test_search_report_has_roc_and_sic(search_file, tmp_path):
    assert main(["report", search_file, "-o", str(tmp_path / "rep"), "--displays", "0"]) == 0
    files = os.listdir(tmp_path / "rep")
    assert {"search_scores.png", "search_roc.png", "search_sic.png"} <= set(files)
    assert "max SIC" in open(tmp_path / "rep" / "index.html").read()


def test_search_errors_name_the_problem(tmp_path, capsys):
    out = str(tmp_path / "x.h5")
    rc = main(["finder", "search", SLICE["data"], "--reference", SLICE["reference"],
               "--features", "dataset:nope", "-o", out, "--no-progress"])
    assert rc == 1 and "nope" in capsys.readouterr().err
    rc = main(["finder", "search", SLICE["data"], "--reference", SLICE["reference"],
               "--features", "dataset:features", "--folds", "1", "-o", out, "--no-progress"])
    assert rc == 1 and "n_folds" in capsys.readouterr().err
    rc = main(["finder", "search", SLICE["data"], "--reference", SLICE["reference"],
               "--features", "dataset:features", "--param", "n_estimater=2", "-o", out,
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "n_estimater" in err and "n_estimators" in err and "features" not in err
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_search_event_range_and_overwrite(search_file, tmp_path, capsys):
    """--start/--stop pick the same events of every input; an existing output is refused
    without --overwrite; the rows name their events."""
    out = str(tmp_path / "part.h5")
    argv = ["finder", "search", SLICE["data"], "--reference", SLICE["reference"],
            "--features", "dataset:features", "--folds", "2", "--param", "n_estimators=1",
            "--start", "100", "--stop", "400", "-o", out, "--no-progress"]
    assert main(argv) == 0
    r = read_results(out)
    assert len(r["source_index"]) == 600
    assert np.array_equal(r["source_index"], np.r_[np.arange(100, 400), np.arange(100, 400)])
    assert results_settings(out)["settings"]["events"] == [100, 400]
    capsys.readouterr()
    assert main(argv) == 1 and "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
