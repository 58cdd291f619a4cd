"""The physkit command line: help, shape / fit / score / info, bad input handling."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.io import read_events, write_events
from physkit.pipeline.results import read_results

PHYSKIT = os.path.join(os.path.dirname(sys.executable), "physkit")


@pytest.mark.parametrize("argv", [[], ["shape"], ["finder"], ["finder", "fit"], ["score"],
                                  ["report"], ["demo"], ["info"]])
def test_help_for_every_command(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: physkit")
    if argv[-1:] in (["shape"], ["score"]):
        assert "--resume" in out and "--scheduler" in out and "--chunk-size" in out


def test_console_script_entry_point():
    r = subprocess.run([PHYSKIT, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "shape" in r.stdout and "finder" in r.stdout


def _raw_file(path, arr, labels=None):
    """An event file written with h5py directly (so it may hold bad values)."""
    with h5py.File(path, "w") as f:
        f.attrs["physkit_format"] = 1
        f["constituents"] = arr
        if labels is not None:
            f["labels"] = labels
    return str(path)


def test_shape_matches_direct_shaper_and_records_rows(sample_path, tmp_path):
    from shaper import Shaper

    out = str(tmp_path / "s.h5")
    assert main(["shape", sample_path, "-o", out, "--observable", "3-subjettiness",
                 "--chunk-size", "30", "--no-progress"]) == 0
    ref = Shaper(["3-subjettiness"], progress=False).compute(read_events(sample_path, 0, 30))
    r = read_results(out, ["source_index", "source_file", "3-subjettiness", "labels"],
                     0, 30)
    np.testing.assert_array_equal(r["3-subjettiness/value"], ref["3-subjettiness"].value)
    np.testing.assert_array_equal(r["3-subjettiness/centers"],
                                  ref["3-subjettiness"].params["centers"])
    np.testing.assert_array_equal(r["3-subjettiness/status"], ref["3-subjettiness"].status)
    full = read_results(out, ["source_index", "source_file", "3-subjettiness/value"])
    n = full["source_index"].size
    assert n == 2000  # the sample: one row per event, in input order
    np.testing.assert_array_equal(full["source_index"], np.arange(n))
    assert set(full["source_file"]) == {sample_path}
    assert np.isfinite(full["3-subjettiness/value"]).all()
    with h5py.File(out) as f:
        assert f.attrs["physkit_results"] == 1
        assert f["3-subjettiness"].attrs["R"] == 0.8
        assert "settings" in f.attrs


@pytest.fixture(scope="module")
def sample_head(tmp_path_factory):
    """The first 24 sample jets (or synthetic ones), with labels and a feature dataset."""
    from conftest import SAMPLE, synthetic_jets

    d = tmp_path_factory.mktemp("cli")
    if os.path.exists(SAMPLE):
        ev = read_events(SAMPLE, 0, 24).to_padded()
        with h5py.File(SAMPLE) as f:
            labels, tau = f["labels"][:24], f["tau_kt"][:24]
    else:  # pragma: no cover
        ev = synthetic_jets(24, 20, seed=3)
        labels = np.arange(24) % 2
        tau = np.random.default_rng(0).random((24, 4))
    p = write_events(str(d / "head.h5"), ev, labels, extra={"tau_kt": tau})
    return d, p, np.asarray(ev, np.float32), labels


def test_bad_event_one_line_then_skip_bad_events(sample_head, tmp_path, capsys):
    d, good, arr, labels = sample_head
    bad = arr[:10].copy()
    bad[4, 2, 1] = np.nan
    bad[7, :, 0] = 0.0  # empty event
    p = _raw_file(tmp_path / "nan.h5", bad, labels[:10])
    out = str(tmp_path / "o.h5")
    rc = main(["shape", p, "-o", out, "--observable", "2-subjettiness", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and not os.path.exists(out)
    assert len(err) == 1
    assert "nan.h5" in err[0] and "dataset 'constituents'" in err[0] and "event 4" in err[0]
    rc = main(["shape", p, "-o", out, "--observable", "2-subjettiness", "--no-progress",
               "--skip-bad-events"])
    assert rc == 0
    r = read_results(out)
    np.testing.assert_array_equal(r["event_problem"], [0, 0, 0, 0, 1, 0, 0, 4, 0, 0])
    st = r["2-subjettiness/status"]
    assert st[4] == 3 and st[7] == 3 and np.isin(np.delete(st, [4, 7]), (0, 1)).all()
    v = r["2-subjettiness/value"]
    assert np.isnan(v[[4, 7]]).all() and np.isfinite(np.delete(v, [4, 7])).all()
    np.testing.assert_array_equal(r["labels"], labels[:10])


@pytest.fixture(scope="module")
def tau_model(sample_head):
    d, p, arr, labels = sample_head
    model = str(d / "m.h5")
    assert main(["finder", "fit", p, "--features", "dataset:tau_kt", "--param", "n_residual=2",
                 "--param", "n_components=1", "-o", model, "--no-progress"]) == 0
    return model


@pytest.mark.parametrize("kind", ["missing", "truncated", "shape", "notfound"])
def test_bad_files_fail_with_one_line(kind, sample_head, tau_model, tmp_path, capsys):
    d, good, arr, labels = sample_head
    p = str(tmp_path / f"{kind}.h5")
    if kind == "missing":
        with h5py.File(p, "w") as f:
            f.attrs["physkit_format"] = 1
            f["labels"] = labels
        expect = "dataset 'constituents'"
    elif kind == "truncated":
        raw = open(good, "rb").read()
        with open(p, "wb") as fh:
            fh.write(raw[: len(raw) // 2])
        expect = "truncated.h5"
    elif kind == "shape":
        _raw_file(p, arr[:, :, :2])
        expect = "(N, M, 3)"
    else:
        p = str(tmp_path / "nowhere.h5")
        expect = "no such file"
    out = str(tmp_path / "o.h5")
    rc = main(["score", p, "--model", tau_model, "-o", out, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and not os.path.exists(out)
    assert len(err) == 1 and os.path.basename(p) in err[0] and expect in err[0], err


def test_multi_file_run_reports_failing_file_and_completes_others(sample_head, tau_model,
                                                                   tmp_path, capsys):
    d, good, arr, labels = sample_head
    bad = arr[:6].copy()
    bad[3, 0, 0] = -5.0
    pbad = _raw_file(tmp_path / "neg.h5", bad, labels[:6])
    out = str(tmp_path / "o.h5")
    rc = main(["score", pbad, good, "--model", tau_model, "-o", out, "--no-progress",
               "--chunk-size", "5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "neg.h5: dataset 'constituents': event 3: negative pT" in err
    r = read_results(out)
    assert set(r["source_file"]) == {good}
    np.testing.assert_array_equal(r["source_index"], np.arange(24))
    assert (r["score/status"] == 0).all() and np.isfinite(r["score/value"]).all()
    with h5py.File(out) as f:
        assert "neg.h5" in f.attrs["failed_files"]


def test_fit_score_image_and_efp_features(sample_head, tmp_path):
    pytest.importorskip("energyflow")
    d, p, arr, labels = sample_head
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", p, "--features", "image:8", "--features", "efp:d<=2",
                 "--estimator", "detector", "--param", "n_components=2", "-o", model,
                 "--no-progress"]) == 0
    out = str(tmp_path / "s.h5")
    assert main(["score", p, "--model", model, "-o", out, "--no-progress"]) == 0
    r = read_results(out)
    from finder import ResidualDetector
    from physkit.images import pixelate
    import energyflow as ef

    X = np.concatenate([pixelate(read_events(p), npix=8).reshape(24, -1),
                        ef.EFPSet("d<=2", measure="hadr", beta=1, normed=True,
                                  coords="ptyphim").batch_compute(arr.astype(np.float64))],
                       axis=1)
    # padding does not change EFPs: event 0 trimmed to its real particles gives the same row
    real = arr[0][arr[0, :, 0] > 0].astype(np.float64)
    np.testing.assert_allclose(
        ef.EFPSet("d<=2", measure="hadr", beta=1, normed=True, coords="ptyphim").compute(real),
        X[0, 64:], rtol=1e-10)
    det = ResidualDetector(n_components=2, random_state=0).fit(X)
    np.testing.assert_allclose(r["score/value"], det.anomaly_score(X), rtol=1e-6, atol=1e-12)
    assert np.isfinite(r["score/pvalue"]).all()


def test_fit_on_shape_results_then_score_recomputes_shapes(sample_head, tmp_path):
    d, p, arr, labels = sample_head
    shapes = str(tmp_path / "sh.h5")
    assert main(["shape", p, "-o", shapes, "--observable", "2-subjettiness",
                 "--observable", "3-subjettiness", "--no-progress"]) == 0
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{shapes}", "--param",
                 "n_residual=1", "--param", "n_components=1", "-o", model,
                 "--no-progress"]) == 0
    out = str(tmp_path / "sc.h5")
    assert main(["score", p, "--model", model, "-o", out, "--no-progress"]) == 0
    a, b = read_results(shapes), read_results(out)
    for o in ("2-subjettiness", "3-subjettiness"):  # same chunk -> same SHAPER values
        np.testing.assert_array_equal(a[f"{o}/value"], b[f"{o}/value"])
    from physkit.pipeline.modelfile import load_model

    est = load_model(model)
    X = np.stack([a["2-subjettiness/value"], a["3-subjettiness/value"]], axis=1)
    np.testing.assert_allclose(b["score/value"], est.predict_proba(X)[:, 1])
    # a shape results file for other events is refused
    rc = main(["finder", "fit", p, p, "--features", f"shape:{shapes}", "-o", model,
               "--no-progress"])
    assert rc == 1
    other = write_events(str(tmp_path / "other.h5"), arr, labels)
    assert main(["finder", "fit", other, "--features", f"shape:{shapes}", "-o", model,
                 "--no-progress"]) == 1
    assert main(["finder", "fit", p, "--features", "dataset:tau_kt", "--param", "bogus=1",
                 "-o", model, "--no-progress"]) == 1


def test_info_on_each_kind_of_file(sample_head, tau_model, tmp_path, capsys):
    d, p, arr, labels = sample_head
    out = str(tmp_path / "s.h5")
    assert main(["score", p, "--model", tau_model, "-o", out, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", p, out, tau_model]) == 0
    txt = capsys.readouterr().out
    assert "events:  24" in txt
    assert "physkit results" in txt and "rows:    24" in txt and "group score" in txt
    assert "estimator: finder.FINDER" in txt
    from physkit.pipeline.results import ChunkStore

    ChunkStore(str(tmp_path / "half.h5"), {"chunk_size": 10, "counts": [24],
                                          "settings": {"command": "x"}})
    assert main(["info", str(tmp_path / "half.h5")]) == 0
    assert "0 of 3 chunks done" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "nothing.h5")]) == 1


def test_pipeline_modules_do_not_import_shaper_or_finder():
    code = ("import sys, physkit, physkit.pipeline.cli, physkit.pipeline.features, "
            "physkit.pipeline.report, physkit.pipeline.results, physkit.parallel, "
            "physkit.pipeline.modelfile, physkit.pipeline.demo, physkit.pipeline.commands; "
            "bad = [m for m in ('shaper', 'finder') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_corrupt_hdf5_chunk_one_line_or_skipped(sample_head, tau_model, tmp_path, capsys):
    """A damaged compressed HDF5 chunk: one error line; with --skip-bad-events its rows are
    recorded as unreadable (event_problem 5, status 3) and the other rows are scored."""
    d, good, arr, labels = sample_head
    p = str(tmp_path / "corrupt.h5")
    with h5py.File(p, "w") as f:
        f.attrs["physkit_format"] = 1
        f.create_dataset("constituents", data=arr, chunks=(8,) + arr.shape[1:],
                         compression="gzip")
        f["labels"] = labels
        with h5py.File(good) as g:
            f["tau_kt"] = g["tau_kt"][()]
        info = f["constituents"].id.get_chunk_info(1)  # rows 8..15
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff" * 64)
    out = str(tmp_path / "o.h5")
    rc = main(["score", p, "--model", tau_model, "-o", out, "--chunk-size", "8",
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "corrupt.h5" in err[0] and "constituents" in err[0]
    assert main(["score", p, "--model", tau_model, "-o", out, "--chunk-size", "8",
                 "--no-progress", "--skip-bad-events"]) == 0
    r = read_results(out)
    bad = np.zeros(24, bool)
    bad[8:16] = True
    assert (r["event_problem"][bad] == 5).all() and (r["event_problem"][~bad] == 0).all()
    assert (r["score/status"][bad] == 3).all() and (r["score/status"][~bad] == 0).all()
    assert np.isfinite(r["score/value"][~bad]).all()


def test_model_with_two_shape_specs_scores(sample_head, tmp_path):
    """Two shape: specs (different results files, one with other R/beta) are recomputed at
    scoring time, all of them (this used to fail with KeyError on the second)."""
    from finder import FINDER
    from shaper import Shaper

    d, p, arr, labels = sample_head
    s2, s3 = str(tmp_path / "s2.h5"), str(tmp_path / "s3.h5")
    assert main(["shape", p, "-o", s2, "--observable", "2-subjettiness", "--no-progress"]) == 0
    assert main(["shape", p, "-o", s3, "--observable", "3-subjettiness", "--beta", "2",
                 "--no-progress"]) == 0
    model, scores = str(tmp_path / "m.h5"), str(tmp_path / "sc.h5")
    assert main(["finder", "fit", p, "--features", f"shape:{s2}", "--features", f"shape:{s3}",
                 "--param", "n_components=1", "--param", "n_residual=1", "-o", model,
                 "--no-progress"]) == 0
    assert main(["score", p, "--model", model, "-o", scores, "--no-progress"]) == 0
    r = read_results(scores)
    ev = read_events(p)
    t2 = Shaper(["2-subjettiness"], progress=False).compute(ev)["2-subjettiness"].value
    t3 = Shaper(["3-subjettiness"], beta=2.0, progress=False).compute(ev)["3-subjettiness"].value
    np.testing.assert_array_equal(r["2-subjettiness/value"], t2)
    np.testing.assert_array_equal(r["3-subjettiness/value"], t3)
    X = np.stack([t2, t3], axis=1)
    want = FINDER(n_components=1, n_residual=1, random_state=0).fit(X, labels)
    np.testing.assert_allclose(r["score/value"], want.predict_proba(X)[:, 1], rtol=1e-12)


def test_one_observable_with_two_settings_is_refused(sample_head, tmp_path, capsys):
    d, p, arr, labels = sample_head
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    assert main(["shape", p, "-o", a, "--observable", "2-subjettiness", "--no-progress"]) == 0
    assert main(["shape", p, "-o", b, "--observable", "2-subjettiness", "--R", "0.4",
                 "--no-progress"]) == 0
    capsys.readouterr()
    rc = main(["finder", "fit", p, "--features", f"shape:{a}", "--features", f"shape:{b}",
               "-o", str(tmp_path / "m.h5"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "2-subjettiness" in err[0] and "R, beta" in err[0]
