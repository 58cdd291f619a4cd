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
    # finite, but its square overflows: the detector's scores were inf (fuzzing found it)
    ("det", _array("mean", np.array([1e300, 0.0, 0.0, 0.0])), ("'mean'", "1e+300")),
    ("det", _array("calibration_scores", np.array([1.0, np.nan, 2.0])), ("calibration",)),
    ("det", _array("calibration_scores", np.array([3.0, 1.0, 2.0])), ("sorted",)),
    ("det", _array("mean", np.zeros(1)), ("'mean'", "shape (1,)")),
    ("det", _array("mean", np.float64(0.5)), ("'mean'", "shape ()")),
    ("clf", _array("m0_center", np.zeros(1)), ("'m0_center'", "(1,)")),
    ("clf", _array("m0_center", np.float64(0.0)), ("'m0_center'",)),
    ("clf", _array("m0_center", np.zeros(4, np.complex128)), ("not a numeric array",)),
    ("clf", lambda f: _meta(f, lambda m: m["members"][0]["head"].update(gamma=float("nan"))),
     ("gamma",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(members=[])), ("members",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(classes=[0, 1, 2])), ("classes",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(n_features_in=7)), ("'m0_center'",)),
    ("clf", lambda f: _meta(f, lambda m: m.update(format_version=99)), ("format_version 99",)),
    ("det", lambda f: _meta(f, lambda m: m.update(threshold="x")), ("threshold",)),
])
def test_model_arrays_are_checked_against_metadata(models, tmp_path, which, edit, words):
    d, clf, det, X = models
    p = _variant(clf if which == "clf" else det, tmp_path / "m.h5", edit)
    _refused(p, *words)


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    from finder import FINDER

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 200))
    y = np.arange(30) % 2
    X[y == 1, :2] += 2
    return save_model(tmp_path_factory.mktemp("models") / "scr.h5",
                      FINDER(screen=12, n_estimators=1, random_state=0).fit(X, y))


@pytest.mark.parametrize("edit,words", [
    (_array("screened_features", np.arange(11)), ("'screened_features'", "(12,)")),
    (_array("screened_features", np.arange(12.0)), ("screened_features", "integer")),
    (_array("screened_features", np.r_[0:11, 200]), ("screened_features", "200 input")),
    (_array("screened_features", np.r_[5, 0:11]), ("screened_features", "increasing")),
    (_array("screened_features", np.r_[-1, 1:12]), ("screened_features",)),
    (lambda f: _meta(f, lambda m: m.pop("n_screened")), ("n_screened",)),
    (lambda f: _meta(f, lambda m: m.update(n_screened=500)), ("n_screened", "n_features_in")),
    (lambda f: _meta(f, lambda m: m.update(format_version=2)), ("unexpected", "screened")),
])
def test_screened_state_is_checked(screened, tmp_path, edit, words):
    assert load_model(screened).screened_features_.shape == (12,)
    _refused(_variant(screened, tmp_path / "m.h5", edit), *words)


def test_tree_head_that_loops_is_refused(tmp_path):
    """A gradient-boosting head whose node points back to an earlier node would walk
    forever at predict time: refused when the file is read."""
    from finder import FINDER

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(400, 3)), np.arange(400) % 2
    X[y == 1, 0] += 1
    src = save_model(tmp_path / "hgb.h5", FINDER(classifier="hgb", n_estimators=1,
                                                 random_state=0).fit(X, y))
    assert np.isfinite(load_model(src).predict_proba(X)).all()

    def loop(f):
        left = f["arrays"]["m0_head_node_left"][...]
        leaf = f["arrays"]["m0_head_node_is_leaf"][...]
        left[np.flatnonzero(leaf == 0)[1]] = 0
        _array("m0_head_node_left", left)(f)
    _refused(_variant(src, tmp_path / "loop.h5", loop), "m0_head_node_left", "outside")


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
