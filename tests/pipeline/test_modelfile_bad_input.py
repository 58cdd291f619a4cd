"""Issue 11, model files: arrays checked against the metadata (shape, dtype, finiteness),
bounded JSON, no links followed, exact versions; a crafted file is refused with one
ModelFileError naming it, never a RecursionError, MemoryError or wrong numbers."""
from __future__ import annotations

import json
import shutil
import tracemalloc

import h5py
import numpy as np
import pytest

from physkit.pipeline.modelfile import (ModelFileError, load_model, read_model_state,
                                        save_model)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from finder import FINDER, ResidualDetector

    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.arange(120) % 2
    X[y == 1, 3] += 2
    clf = save_model(d / "clf.h5", FINDER(n_components=1, n_residual=2, random_state=0,
                                          classifier="svc").fit(X, y))
    det = save_model(d / "det.h5", ResidualDetector(n_components=1, random_state=0).fit(X))
    return d, clf, det, X


def _variant(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return str(dst)


def _meta(f, change):
    meta = json.loads(f.attrs["meta"])
    change(meta)
    f.attrs["meta"] = json.dumps(meta)


def _array(name, value):
    def edit(f):
        del f["arrays"][name]
        f["arrays"][name] = value
    return edit


def _refused(path, *words):
    for fn in (read_model_state, load_model):
        with pytest.raises(ModelFileError) as err:
            fn(path)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg and all(w in msg for w in words), msg


def test_saved_models_load_and_predict(models):
    d, clf, det, X = models
    assert np.isfinite(load_model(clf).predict_proba(X)).all()
    assert np.isfinite(load_model(det).pvalues(X)).all()


@pytest.mark.parametrize("which,edit,words", [
    ("det", _array("mean", np.full(4, np.nan)), ("'mean'", "NaN")),
    ("det", _array("components", np.full((4, 1), np.inf)), ("'components'", "NaN or inf")),
    ("det", _array("calibration_scores", np.array([1.0, np.nan, 2.0])), ("calibration",)),
    ("det", _array("calibration_scores", np.array([3.0, 1.0, 2.0])), ("sorted",)),
    ("det", _array("mean", np.zeros(1)), ("'mean'", "shape (1,)")),
    ("det", _array("mean", np.float64(0.5)), ("'mean'", "shape ()")),
    ("clf", _array("center", np.zeros(1)), ("'center'", "(1,)")),
    ("clf", _array("center", np.float64(0.0)), ("'center'",)),
    ("clf", _array("center", np.zeros(4, np.complex128)), ("not a numeric array",)),
    ("clf", lambda f: _meta(f, lambda m: m["head"].update(gamma=float("nan"))), ("gamma",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(classes=[0, 1, 2])), ("classes",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(n_features_in=7)), ("'center'",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(format_version=99)), ("format_version 99",)),
    ("det", lambda f: _meta(f, lambda m: m.update(threshold="x")), ("threshold",)),
])
def test_model_arrays_are_checked_against_metadata(models, tmp_path, which, edit, words):
    d, clf, det, X = models
    p = _variant(clf if which == "clf" else det, tmp_path / "m.h5", edit)
    _refused(p, *words)


@pytest.mark.parametrize("version", [1.5, "1", 2, True, np.array([1, 1])])
def test_exact_model_format_version(models, tmp_path, version):
    d, clf, det, X = models
    p = _variant(det, tmp_path / "v.h5", lambda f: f.attrs.__setitem__("physkit_model", version))
    _refused(p, "model format version")


def test_crafted_structure_is_refused(models, tmp_path):
    d, clf, det, X = models
    deep = "[" * 100000 + "]" * 100000
    cases = {
        "deep": (lambda f: f.attrs.__setitem__("pipeline", deep), ("nested",)),
        "utf8": (lambda f: f.attrs.__setitem__("meta", np.bytes_(b'{"a": "\xff\xfe"}')),
                 ("UTF-8",)),
        "soft": (lambda f: f["arrays"].__setitem__("loop", h5py.SoftLink("/arrays/loop")),
                 ("link",)),
        "external": (_external(det), ("link",)),
        "json": (lambda f: f.attrs.__setitem__("meta", "{not json"), ("malformed JSON",)),
    }
    for name, (edit, words) in cases.items():
        _refused(_variant(det, tmp_path / f"{name}.h5", edit), *words)


def _external(other):
    def edit(f):
        del f["arrays"]["mean"]
        f["arrays"]["mean"] = h5py.ExternalLink(str(other), "/arrays/mean")
    return edit


def test_declared_huge_dataset_allocates_nothing(models, tmp_path):
    d, clf, det, X = models

    def edit(f):
        del f["arrays"]["residual_components"]
        f["arrays"].create_dataset("residual_components", (10 ** 6, 10 ** 6), "f8",
                                   chunks=(1000, 1000))
    p = _variant(det, tmp_path / "huge.h5", edit)
    tracemalloc.start()
    try:
        _refused(p, "residual_components")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20, peak
