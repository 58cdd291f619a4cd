"""Issue 11 through the command line: every measured failure ends in exit status 1 and one
``physkit: error:`` line naming the file (no traceback), or in a correct result. The files
are made here (small); scoring uses a ``dataset:`` feature so no SHAPER fit is needed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from physkit.io import read_events, write_events
from physkit.pipeline.cli import main
from physkit.pipeline.results import NO_LABEL, ChunkStore, read_results

PHYSKIT = os.path.join(os.path.dirname(sys.executable), "physkit")
OBS = ["--observable", "1-subjettiness", "--no-progress"]


def _jets(n, m=4, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, m, 3), np.float32)
    x[:, :3, 0] = rng.uniform(1, 50, (n, 3))
    x[:, :3, 1:] = rng.normal(0, 0.3, (n, 3, 2))
    return x


def _raw(path, x, labels=None, **datasets):
    """An event file written with h5py directly (uncompressed, may hold anything)."""
    with h5py.File(path, "w") as f:
        f.attrs["physkit_format"] = 1
        f["constituents"] = x
        if labels is not None:
            f["labels"] = labels
        for k, v in datasets.items():
            f[k] = v
    return str(path)


def _cli(argv, capsys):
    """(exit status, stderr lines) of ``physkit argv`` run in-process."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def _fails_with(argv, capsys, *words):
    rc, err = _cli(argv, capsys)
    assert rc == 1 and len(err) == 1 and err[0].startswith("physkit: error: "), err
    assert "Traceback" not in err[0] and all(w in err[0] for w in words), err
    return err[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Events with labels and a feature ``f`` (40 events), and a detector model on ``f``."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    f = rng.normal(size=(40, 3))
    ev = _raw(d / "ev.h5", _jets(40), np.arange(40) % 2, f=f)
    model = str(d / "m.h5")
    assert main(["finder", "fit", ev, "--features", "dataset:f", "--estimator", "detector",
                 "--param", "n_components=1", "-o", model, "--no-progress"]) == 0
    return d, ev, model


def _score(ev, model, out, *more):
    return ["score", ev, "--model", model, "-o", out, "--no-progress", *more]


# --------------------------------------------------------------------- items 1, 2
def test_output_that_is_an_input_or_the_model_is_refused(files, tmp_path, capsys):
    d, ev, model = files
    mine = str(tmp_path / "ev.h5")
    shutil.copy(ev, mine)
    twin = str(tmp_path / "twin.h5")  # a hard link: same inode, another name
    os.link(mine, twin)
    before = {p: open(p, "rb").read() for p in (mine, model)}
    for argv in (["shape", mine, "-o", mine, *OBS],
                 ["shape", mine, "-o", twin, *OBS, "--overwrite"],
                 ["finder", "fit", mine, "--features", "dataset:f", "-o", mine, "--no-progress"],
                 _score(mine, model, mine, "--overwrite"),
                 _score(mine, model, model, "--overwrite")):
        _fails_with(argv, capsys, "also an input")
    assert {p: open(p, "rb").read() for p in (mine, model)} == before


def test_existing_output_needs_overwrite(files, tmp_path, capsys):
    d, ev, model = files
    out = str(tmp_path / "s.h5")
    assert _cli(_score(ev, model, out), capsys)[0] == 0
    before = open(out, "rb").read()
    _fails_with(_score(ev, model, out), capsys, out, "exists", "--overwrite")
    assert open(out, "rb").read() == before
    assert _cli(_score(ev, model, out, "--overwrite"), capsys)[0] == 0
    m2 = str(tmp_path / "m2.h5")
    fit = ["finder", "fit", ev, "--features", "dataset:f", "--estimator", "detector", "-o", m2,
           "--no-progress"]
    assert _cli(fit, capsys)[0] == 0
    _fails_with(fit, capsys, "exists")
    assert _cli(fit + ["--overwrite"], capsys)[0] == 0
    rep = str(tmp_path / "rep")
    assert _cli(["report", out, "-o", rep], capsys)[0] == 0
    _fails_with(["report", out, "-o", rep], capsys, "already holds a report")
    assert _cli(["report", out, "-o", rep, "--overwrite"], capsys)[0] == 0
    _fails_with(["report", out, "-o", out], capsys, "not a directory")
    for argv in (["shape"], ["score"], ["finder", "fit"], ["report"]):
        with pytest.raises(SystemExit):
            main(argv + ["--help"])
        assert "--overwrite" in capsys.readouterr().out


# --------------------------------------------------------------------- item 3
def test_labels_of_the_wrong_form_fail_their_file(files, tmp_path, capsys):
    d, ev, model = files
    x = _jets(40, seed=2)
    short = _raw(tmp_path / "short.h5", x, np.arange(30) % 2, f=np.zeros((40, 3)))
    nan = _raw(tmp_path / "nan.h5", x, np.where(np.arange(40) == 9, np.nan, 1.0),
               f=np.zeros((40, 3)))
    out = str(tmp_path / "o.h5")
    for bad, words in ((short, ("30 labels for 40 events",)), (nan, ("'labels'", "event 9"))):
        rc, err = _cli(_score(bad, model, out, "--overwrite"), capsys)
        assert rc == 1 and len(err) == 1 and all(w in err[0] for w in (bad,) + words), err
        rc, err = _cli(["score", bad, ev, "--model", model, "-o", out, "--no-progress",
                        "--overwrite"], capsys)
        assert rc == 1 and any(bad in e for e in err)  # reported, the other file completes
        r = read_results(out)
        assert set(r["source_file"]) == {ev} and r["labels"].shape == (40,)


def test_mixing_labelled_and_unlabelled_files_never_invents_labels(files, tmp_path, capsys):
    d, ev, model = files
    unl = _raw(tmp_path / "unl.h5", _jets(10, seed=3), f=np.zeros((10, 3)))
    out = str(tmp_path / "o.h5")
    assert _cli(["score", ev, unl, "--model", model, "-o", out, "--no-progress"],
                capsys)[0] == 0
    r = read_results(out)
    np.testing.assert_array_equal(r["labels"][:40], np.arange(40) % 2)
    assert (r["labels"][40:] == NO_LABEL).all()
    with h5py.File(out) as f:
        assert unl in f.attrs["unlabelled_files"]
    minus = _raw(tmp_path / "pm.h5", _jets(10, seed=4), np.array([1, 1, -1, 1, 1] * 2),
                 f=np.zeros((10, 3)))
    p = str(tmp_path / "p.h5")
    rc, err = _cli(["score", minus, unl, "--model", model, "-o", p, "--no-progress"], capsys)
    assert rc == 1 and f"{minus}: dataset 'labels': event 2: label -1" in err[0], err
    assert set(read_results(p)["source_file"]) == {unl}  # the file is left out, not relabelled
    assert _cli(["score", minus, "--model", model, "-o", str(tmp_path / "q.h5"),
                 "--no-progress"], capsys)[0] == 0  # -1 is a label like any other alone
    _fails_with(["finder", "fit", ev, unl, "--features", "dataset:f", "-o",
                 str(tmp_path / "m.h5"), "--no-progress"], capsys, unl, "'labels'",
                "--label-from labels")


# --------------------------------------------------------------------- items 6, 13, 14
@pytest.mark.parametrize("kind", ["2d", "4d", "4col", "scalar", "string", "complex",
                                  "offsets", "directory"])
def test_file_level_problems_are_errors_even_when_skipping(kind, files, tmp_path, capsys):
    d, ev, model = files
    p = str(tmp_path / f"{kind}.h5")
    x = _jets(20)
    data = {"2d": x[..., 0], "4d": x[..., None], "4col": np.concatenate([x, x[..., :1]], -1),
            "scalar": np.float32(1), "string": np.array([b"x"] * 20), "complex": x + 1j}
    if kind == "offsets":
        write_events(p, x, jagged=True)
        with h5py.File(p, "a") as f:
            g = f["constituents"]
            key = [k for k in g if k.endswith("-offsets")][0]
            g[key][3] = -7
    elif kind == "directory":
        os.mkdir(p)
    else:
        _raw(p, data[kind])
    out = str(tmp_path / "o.h5")
    _fails_with(["shape", p, "-o", out, *OBS, "--skip-bad-events"], capsys, p)
    assert not os.path.exists(out)
    if kind != "directory":
        _fails_with(["info", p], capsys, p)


def test_info_on_odd_label_datasets(tmp_path, capsys):
    x = _jets(6)
    for name, labels in (("str", np.array([b"a"] * 6)), ("scalar", np.int64(3)),
                         ("compound", np.zeros(6, dtype=[("a", "i4"), ("b", "f4")]))):
        p = _raw(tmp_path / f"{name}.h5", x, labels)
        _fails_with(["info", p], capsys, p, "'labels'")


def test_big_endian_file_runs_like_a_native_one(tmp_path, capsys):
    x = _jets(12)
    a = _raw(tmp_path / "native.h5", x.astype("<f8"))
    b = _raw(tmp_path / "big.h5", x.astype(">f8"))
    for p in (a, b):
        assert _cli(["shape", p, "-o", p[:-3] + "_s.h5", *OBS], capsys)[0] == 0
    ra, rb = read_results(a[:-3] + "_s.h5"), read_results(b[:-3] + "_s.h5")
    np.testing.assert_array_equal(ra["1-subjettiness/value"], rb["1-subjettiness/value"])


# --------------------------------------------------------------------- item 7
def test_report_events_must_match_the_results(files, tmp_path, capsys):
    d, ev, model = files
    out = str(tmp_path / "s.h5")
    p = _raw(tmp_path / "ev60.h5", _jets(60, seed=5), np.arange(60) % 2)
    assert _cli(["shape", p, "-o", out, *OBS], capsys)[0] == 0
    _fails_with(["report", out, "-o", tmp_path / "r1", "--events", ev], capsys, ev,
                "holds 40 events", "60 rows")
    flipped = _raw(tmp_path / "flip.h5", _jets(60, seed=5), 1 - np.arange(60) % 2)
    _fails_with(["report", out, "-o", tmp_path / "r2", "--events", flipped], capsys,
                "event 0", "label")
    copy = _raw(tmp_path / "copy.h5", _jets(60, seed=5), np.arange(60) % 2)
    assert _cli(["report", out, "-o", tmp_path / "r3", "--events", copy,
                 "--displays", "1"], capsys)[0] == 0


# --------------------------------------------------------------------- item 10
def test_resume_after_in_place_edit_equals_a_fresh_run(files, tmp_path, capsys, monkeypatch):
    import physkit.pipeline.features as features

    d, ev, model = files
    mine = str(tmp_path / "ev.h5")
    shutil.copy(ev, mine)
    out, ref = str(tmp_path / "o.h5"), str(tmp_path / "ref.h5")
    real, calls = features.score_chunk, []

    def interrupted(*a, **k):
        calls.append(a)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(features, "score_chunk", interrupted)
    assert _cli(_score(mine, model, out, "--chunk-size", "5"), capsys)[0] == 130
    monkeypatch.setattr(features, "score_chunk", real)
    st = os.stat(mine)
    with h5py.File(mine, "r+") as f:  # rows of 2 of the 4 finished chunks change; same size
        f["f"][0:10] = f["f"][0:10] * 3.0 + 1.0
    os.utime(mine, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(mine) == st.st_size
    rc, err = _cli(_score(mine, model, out, "--chunk-size", "5", "--resume"), capsys)
    assert rc == 0 and any("2 of 8 chunks already done; 2 redone" in e for e in err), err
    assert _cli(_score(mine, model, ref, "--chunk-size", "5"), capsys)[0] == 0
    a, b = read_results(out), read_results(ref)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------- items 15, 16
def test_unwritable_output_gives_one_line(files, tmp_path, capsys, monkeypatch):
    d, ev, model = files
    _fails_with(_score(ev, model, tmp_path / "nowhere" / "o.h5"), capsys, "does not exist")
    scores = str(tmp_path / "s.h5")
    assert _cli(_score(ev, model, scores), capsys)[0] == 0
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    _fails_with(_score(ev, model, ro / "o.h5"), capsys, "not writable")
    _fails_with(["report", scores, "-o", ro / "rep"], capsys, "not writable")
    monkeypatch.undo()
    import physkit.h5files as h5files

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("physkit.pipeline.results.atomic_h5", full)
    _fails_with(_score(ev, model, tmp_path / "full.h5"), capsys, "No space left", "--resume")
    monkeypatch.setattr("physkit.pipeline.modelfile.atomic_h5", full)
    _fails_with(["finder", "fit", ev, "--features", "dataset:f", "--estimator", "detector",
                 "-o", tmp_path / "m.h5", "--no-progress"], capsys, "No space left")
    assert h5files.atomic_h5 is not full


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    """2000 events whose score chunks (500 rows) take ~27 kB each, the merged file ~53 kB."""
    d = tmp_path_factory.mktemp("sized")
    rng = np.random.default_rng(7)
    ev = _raw(d / "ev.h5", _jets(2000, seed=7), np.arange(2000) % 2,
              f=rng.normal(size=(2000, 3)))
    model = str(d / "m.h5")
    assert main(["finder", "fit", ev, "--features", "dataset:f", "--estimator", "detector",
                 "-o", model, "--no-progress"]) == 0
    return ev, model


@pytest.mark.parametrize("limit_kb", [12, 40])  # fails writing a chunk / the final merge
def test_file_size_limit_is_an_error_not_a_crash(sized, tmp_path, limit_kb):
    """``ulimit -f`` (a full disk): exit 1 with one error line, no traceback or signal
    (HDF5 crashed at exit after a failed write), no final file; the completed chunks
    resume to the same bytes as an uninterrupted run."""
    ev, model = sized
    out = str(tmp_path / "o.h5")
    cmd = " ".join(_score(ev, model, out, "--chunk-size", "500"))
    r = subprocess.run(["bash", "-c", f"ulimit -f {limit_kb}; exec {PHYSKIT} {cmd}"],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith("physkit: error:"), lines
    assert "File too large" in lines[0] and "--resume" in lines[0]
    assert not os.path.exists(out) and not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    assert main(_score(ev, model, out, "--chunk-size", "500", "--resume")) == 0
    ref = str(tmp_path / "ref.h5")
    assert main(_score(ev, model, ref, "--chunk-size", "500")) == 0
    assert open(out, "rb").read() == open(ref, "rb").read()


def test_second_writer_of_one_output_is_refused(files, tmp_path, capsys):
    d, ev, model = files
    out = str(tmp_path / "o.h5")
    holder = ChunkStore(out, {"settings": {}})  # a run in progress (holds the lock)
    holder.write_chunk("x", {"v": np.zeros(2)})
    for extra in ((), ("--resume",), ("--overwrite",)):
        _fails_with(_score(ev, model, out, *extra), capsys, out, "another physkit run")
    assert holder.done("x") and os.path.isdir(out + ".partial")
    holder.close()
    assert _cli(_score(ev, model, out), capsys)[0] == 0


# --------------------------------------------------------------------- items 17, 18
def test_huge_features_are_refused_with_a_message(files, tmp_path, capsys):
    p = _raw(tmp_path / "huge.h5", _jets(40), np.arange(40) % 2,
             f=np.random.default_rng(0).normal(size=(40, 3)) * 1e200)
    for est in ("classifier", "detector"):
        _fails_with(["finder", "fit", p, "--features", "dataset:f", "--estimator", est,
                     "-o", tmp_path / f"{est}.h5", "--no-progress"], capsys, "rescale")


def test_empty_input_writes_groups_with_zero_rows(files, tmp_path, capsys):
    d, ev, model = files
    empty = _raw(tmp_path / "empty.h5", np.zeros((0, 4, 3), np.float32),
                 np.zeros(0, np.int8), f=np.zeros((0, 3)))
    s = str(tmp_path / "s.h5")
    assert _cli(["shape", empty, "-o", s, *OBS], capsys)[0] == 0
    r = read_results(s)
    for k in ("1-subjettiness/value", "1-subjettiness/status", "1-subjettiness/centers",
              "source_index", "labels"):
        assert r[k].shape[0] == 0, k
    assert r["1-subjettiness/centers"].shape == (0, 1, 2)
    sc = str(tmp_path / "sc.h5")
    assert _cli(_score(empty, model, sc), capsys)[0] == 0
    r = read_results(sc)
    assert r["score/value"].shape == (0,) and r["score/pvalue"].shape == (0,)
    assert len(read_events(empty)) == 0


def test_units_record_the_digest_a_resume_recomputes(files, tmp_path):
    """What a unit of work records of its input equals :func:`rows_digest` of the same rows
    (else a resume would redo every chunk)."""
    from physkit.io.read import rows_digest
    from physkit.pipeline.features import INPUT_DIGEST, score_chunk, shape_chunk

    d, ev, model = files
    assert shape_chunk(ev, 3, 9, observables=("1-subjettiness",))[INPUT_DIGEST] == \
        rows_digest(ev, 3, 9)
    assert score_chunk(ev, 0, 7, model_path=model)[INPUT_DIGEST] == \
        rows_digest(ev, 0, 7, ["f"])
    assert rows_digest(ev, 0, 7, ["f"]) != rows_digest(ev, 0, 7) != rows_digest(ev, 1, 7)
