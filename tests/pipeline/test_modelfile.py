"""Model files: arrays + JSON only, version check, and no way for a file to run code."""
from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest

from physkit.pipeline.modelfile import (MODEL_FORMAT, ModelFileError, describe_model, load_model,
                               read_model_state, save_model)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (rng.random(300) < 0.5).astype(int)
    X[y == 1, 5] += 2.0
    return X, y


def test_roundtrip_finder_and_detector(tmp_path, data):
    from finder import FINDER, ResidualDetector

    X, y = data
    clf = FINDER(n_components=2, n_residual=2, random_state=0).fit(X, y)
    p = save_model(tmp_path / "c.h5", clf, pipeline={"features": [{"kind": "dataset",
                                                                   "name": "x"}]})
    back, pipe = load_model(p, return_pipeline=True)
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), rtol=1e-12)
    assert pipe["features"][0]["name"] == "x"
    det = ResidualDetector(n_components=2, random_state=0).fit(X[y == 0])
    q = save_model(tmp_path / "d.h5", det)
    np.testing.assert_allclose(load_model(q).anomaly_score(X), det.anomaly_score(X),
                               rtol=1e-12)
    np.testing.assert_allclose(load_model(q).pvalues(X), det.pvalues(X))
    assert "finder.ResidualDetector" in describe_model(q)
    with h5py.File(q) as f:  # only numeric datasets and string attributes in the file
        kinds = set()
        f.visititems(lambda n, o: kinds.add(o.dtype.kind) if isinstance(o, h5py.Dataset)
                     else None)
        assert kinds <= set("biuf")


def _write(path, version=MODEL_FORMAT, estimator="finder.ResidualDetector", meta=None,
           arrays=None):
    with h5py.File(path, "w") as f:
        f.attrs["physkit_model"] = version
        f.attrs["estimator"] = estimator
        f.attrs["meta"] = json.dumps(meta if meta is not None else {"estimator": estimator})
        f.attrs["pipeline"] = "{}"
        g = f.create_group("arrays")
        for k, v in (arrays or {}).items():
            g[k] = v
    return path


def test_version_mismatch_is_refused(tmp_path, data):
    from finder import ResidualDetector

    X, y = data
    p = save_model(tmp_path / "m.h5", ResidualDetector(random_state=0).fit(X))
    with h5py.File(p, "a") as f:
        f.attrs["physkit_model"] = MODEL_FORMAT + 1
    with pytest.raises(ModelFileError, match=r"version 2.*reads version 1 only"):
        load_model(p)
    with h5py.File(p, "a") as f:
        del f.attrs["physkit_model"]
    with pytest.raises(ModelFileError, match="not a physkit model file"):
        load_model(p)


class _Boom:
    """Unpickling this writes a marker file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_files_cannot_run_code(tmp_path):
    marker = str(tmp_path / "pwned")
    payload = np.frombuffer(pickle.dumps(_Boom(marker)), dtype=np.uint8)
    # 1. an estimator name pointing at arbitrary code
    p1 = _write(str(tmp_path / "a.h5"), estimator="os.system",
                meta={"estimator": "os.system"})
    with pytest.raises(ModelFileError, match="unknown estimator 'os.system'"):
        load_model(p1)
    # 2. a pickle stored as an opaque / object-like dataset
    p2 = str(tmp_path / "b.h5")
    _write(p2)
    with h5py.File(p2, "a") as f:
        f["arrays"].create_dataset("mean", data=np.void(payload.tobytes()))
    with pytest.raises(ModelFileError, match="not a numeric array"):
        load_model(p2)
    p3 = str(tmp_path / "c.h5")
    _write(p3)
    with h5py.File(p3, "a") as f:
        f["arrays"].create_dataset("mean", data=[payload.tobytes().hex()],
                                   dtype=h5py.string_dtype("ascii"))
    with pytest.raises(ModelFileError, match="not a numeric array"):
        load_model(p3)
    # 3. the pickle bytes as a numeric array: loaded as numbers, never unpickled
    p4 = _write(str(tmp_path / "d.h5"), arrays={"mean": payload})
    with pytest.raises(ModelFileError):
        load_model(p4)  # inconsistent state (missing arrays), but nothing executed
    # 4. metadata that is not JSON (e.g. a pickle string in 'meta')
    p5 = _write(str(tmp_path / "e.h5"))
    with h5py.File(p5, "a") as f:
        f.attrs["meta"] = np.void(pickle.dumps(_Boom(marker)))
    with pytest.raises(ModelFileError, match="must be a string"):
        load_model(p5)
    assert not os.path.exists(marker), "a model file executed code"


def test_modelfile_module_has_no_pickle():
    import physkit.pipeline.modelfile as m

    src = open(m.__file__).read()
    assert "import pickle" not in src and "pickle.load" not in src
    assert "np.load" not in src and "allow_pickle" not in src


def test_not_a_model_and_missing(tmp_path):
    p = str(tmp_path / "x.h5")
    with h5py.File(p, "w") as f:
        f["a"] = np.zeros(3)
    with pytest.raises(ModelFileError, match="not a physkit model"):
        read_model_state(p)
    with pytest.raises(FileNotFoundError):
        read_model_state(str(tmp_path / "none.h5"))


@pytest.mark.parametrize("kw", [dict(n_estimators=3, classifier="hgb", n_components=2),
                                dict(n_estimators=2, standardize="sample",
                                     mean_direction=False, n_components=[0, 2])])
def test_finder_ensembles_and_new_options_round_trip(tmp_path, data, kw):
    """Every member's filter and head, the within-class standardisation and the class-mean
    direction survive the model file; predictions are identical."""
    from finder import FINDER

    X, y = data
    clf = FINDER(random_state=0, **kw).fit(X, y)
    back = load_model(save_model(tmp_path / "e.h5", clf))
    assert len(back.members_) == len(clf.members_) == kw["n_estimators"]
    np.testing.assert_array_equal(back.decision_function(X), clf.decision_function(X))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.get_params() == clf.get_params()
    name, arrays, meta, _ = read_model_state(tmp_path / "e.h5")
    assert meta["format_version"] == 2 and "m1_components" in arrays


def test_finder_state_version_1_still_loads(tmp_path, data):
    """A model file written before ensembles (one member, arrays without the m0_ prefix,
    no standardize/mean_direction parameters) loads and predicts as it did."""
    from finder import FINDER

    X, y = data
    clf = FINDER(n_components=2, n_residual=2, standardize=None, mean_direction=False,
                 n_estimators=1, random_state=0).fit(X, y)
    arrays, meta = clf.get_model_state()
    old_arrays = {k[3:]: v for k, v in arrays.items()}  # drop "m0_"
    params = {k: v for k, v in meta["params"].items()
              if k not in ("standardize", "mean_direction", "n_estimators", "n_jobs",
                           "cv_repeats")}
    old_meta = {"estimator": "finder.FINDER", "format_version": 1, "params": params,
                "classes": meta["classes"], "classes_dtype": meta["classes_dtype"],
                "reference_class": meta["reference_class"],
                "n_features_in": meta["n_features_in"], "n_components": 2,
                "n_residual": int(arrays["m0_components"].shape[1]),
                "head": meta["members"][0]["head"]}
    back = FINDER.from_model_state(old_arrays, old_meta)
    np.testing.assert_array_equal(back.decision_function(X), clf.decision_function(X))
    assert back.standardize is None and back.mean_direction is False


def _wide_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 400))
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    X[20:, :3] += 2.0
    return X, y


def test_screened_finder_round_trip(tmp_path):
    """A screened FINDER (layout 3): the kept feature indices travel with the members, which
    see only those features; predictions are identical and describe_model names them."""
    from finder import FINDER

    X, y = _wide_data()
    clf = FINDER(screen=30, n_estimators=2, random_state=0).fit(X, y)
    back = load_model(save_model(tmp_path / "s.h5", clf))
    np.testing.assert_array_equal(back.screened_features_, clf.screened_features_)
    np.testing.assert_array_equal(back.decision_function(X), clf.decision_function(X))
    assert back.get_params() == clf.get_params()
    _, arrays, meta, _ = read_model_state(tmp_path / "s.h5")
    assert meta["format_version"] == 3 and meta["n_screened"] == 30
    assert arrays["m0_center"].shape == (30,) and arrays["feature_mean"].shape == (400,)
    assert "screened_features_: 30 of 400" in describe_model(tmp_path / "s.h5")
