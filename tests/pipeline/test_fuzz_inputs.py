"""Issue 11: hypothesis fuzzing of event files (dtypes, shapes, attributes, declared
lengths, labels) and model files (metadata, arrays, links) through ``read_events``,
``read_labels``, ``load_model`` and the command line's entry points.

Every call must end in a clean error (EventFileError / ModelFileError / one
``physkit: error:`` line, exit status 1) or a correct result, never another exception or
a traceback, and must not allocate more than :data:`BOUND_MIB` (tracemalloc peak: a
claim such as ``length = 10**12`` must not be allocated). The fast suite runs a few
dozen examples; ``-m slow`` runs many more.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import tracemalloc

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physkit.errors import EventFileError
from physkit.io import count_events, read_events, read_labels, write_events
from physkit.pipeline.cli import main
from physkit.pipeline.modelfile import ModelFileError, load_model, save_model

BOUND_MIB = 64
_COUNTER = itertools.count()
FAST = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

DTYPES = ["<f4", "<f8", ">f8", "<f2", "<i4", "|u1", "|b1", "<c8", "|S3", "compound"]
SPECIAL = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e8, 1e30, 6e7, 101.0, -3.5]
LABEL_FORMS = ["none", "ok", "short", "long", "2d", "scalar", "nan", "half", "u64big",
               "bool", "str", "minus1"]


# ===================================================================== event files
@st.composite
def event_specs(draw):
    """What to write: layout, array shape/dtype/values, attributes, labels, claims."""
    return {
        "layout": draw(st.sampled_from(["dense", "dense", "jagged", "npz", "claim"])),
        "shape": draw(st.lists(st.integers(0, 5), min_size=0, max_size=4)),
        "dtype": draw(st.sampled_from(DTYPES)),
        "specials": draw(st.lists(st.sampled_from(SPECIAL), max_size=3)),
        "seed": draw(st.integers(0, 2 ** 31)),
        "version": draw(st.sampled_from([1, 1, 1, 1.5, "1", 2, None])),
        "labels": draw(st.sampled_from(LABEL_FORMS)),
        "length": draw(st.sampled_from([None, None, 10 ** 12, -1, "3", 2.5, 0])),
        "offsets": draw(st.sampled_from([None, None, "decrease", "negative", "huge"])),
        "form": draw(st.sampled_from([None, None, "deep", "junk", "class", "[]"])),
    }


def _values(spec, shape):
    rng = np.random.default_rng(spec["seed"])
    v = np.abs(rng.normal(0, 2, shape)) if shape else np.float64(1.0)
    v = np.asarray(v, np.float64)
    for s in spec["specials"]:
        if v.size:
            v.reshape(-1)[rng.integers(v.size)] = s
    return v


def _as_dtype(v, name):
    if name == "compound":
        out = np.zeros(v.shape, dtype=[("a", "f4"), ("b", "f4")])
        with np.errstate(all="ignore"):
            out["a"] = np.nan_to_num(v)
        return out
    if name == "|S3":
        return np.full(v.shape, b"1.5")
    with np.errstate(all="ignore"):
        return np.nan_to_num(v, posinf=1e9, neginf=-1e9).astype(name) \
            if name[1] in "iub" else v.astype(name)


def _labels(form, n, seed):
    y = np.random.default_rng(seed).integers(0, 2, max(n, 0))
    return {"none": None, "ok": y.astype(np.int8), "short": y[:-1] if n else np.zeros(1),
            "long": np.r_[y, 1], "2d": np.stack([y, y], 1), "scalar": np.int64(1),
            "nan": np.where(np.arange(len(y)) == 0, np.nan, y), "half": y + 0.5,
            "u64big": np.full(len(y), 2 ** 63 + 1, np.uint64), "bool": y.astype(bool),
            "str": np.full(len(y), b"a"), "minus1": y - 1}[form]


def _dense(path, spec):
    arr = _as_dtype(_values(spec, spec["shape"]), spec["dtype"])
    with h5py.File(path, "w") as f:
        if spec["version"] is not None:
            f.attrs["physkit_format"] = spec["version"]
        if spec["layout"] == "claim":
            f.create_dataset("constituents", (10 ** 9, 50, 3), "f4", chunks=(100, 50, 3))
        else:
            f["constituents"] = arr
        n = spec["shape"][0] if spec["shape"] else 0
        labels = _labels(spec["labels"], n, spec["seed"])
        if labels is not None:
            f["labels"] = labels


def _jagged(path, spec):
    n = spec["shape"][0] if spec["shape"] else 3
    x = np.zeros((n, 3, 3), np.float32)
    x[:, :2, 0] = 5.0
    x[:, :2, 2] = np.random.default_rng(spec["seed"]).uniform(-3, 3, (n, 2))
    write_events(path, x, jagged=True)
    with h5py.File(path, "a") as f:
        g = f["constituents"]
        key = [k for k in g if k.endswith("-offsets")][0]
        data = sorted(k for k in g if k.endswith("-data"))
        for i, v in enumerate(spec["specials"]):  # NaN, huge phi, negative pT, ...
            ds = g[data[i % len(data)]]
            if ds.shape[0]:
                ds[spec["seed"] % ds.shape[0]] = v
        if spec["length"] is not None:
            g.attrs["length"] = spec["length"]
        off = g[key][()]
        if spec["offsets"] and off.size > 2:
            off[1] = {"decrease": off[0] - 1, "negative": -5, "huge": 10 ** 12}[spec["offsets"]]
            g[key][...] = off
        if spec["form"]:
            g.attrs["form"] = {"deep": "[" * 5000 + "]" * 5000, "junk": "{x",
                               "class": json.dumps({"class": "IndexedArray"}),
                               "[]": "[]"}[spec["form"]]
        labels = _labels(spec["labels"], n, spec["seed"])
        if labels is not None:
            f["labels"] = labels


def _npz(path, spec):
    arr = _as_dtype(_values(spec, spec["shape"]), spec["dtype"])
    n = spec["shape"][0] if spec["shape"] else 0
    labels = _labels(spec["labels"], n, spec["seed"])
    with open(path, "wb") as fh:
        np.savez(fh, X=arr, **({} if labels is None else {"y": labels}))


def _write(directory, spec) -> str:
    k = next(_COUNTER)
    if spec["layout"] == "npz":
        path = os.path.join(directory, f"e{k}.npz")
        _npz(path, spec)
    else:
        path = os.path.join(directory, f"e{k}.h5")
        (_jagged if spec["layout"] == "jagged" else _dense)(path, spec)
    return path


def _bounded(fn):
    """``fn()``'s value or its exception, asserting the tracemalloc peak stays bounded."""
    tracemalloc.start()
    try:
        return fn()
    except Exception as exc:  # returned for the caller to judge
        return exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
        assert peak < BOUND_MIB, f"allocated {peak:.0f} MiB"


def _clean_error(exc, path, kinds=(EventFileError,)):
    assert isinstance(exc, kinds), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert "\n" not in msg and os.path.basename(path) in msg, msg


def _check_read(path):
    n = _bounded(lambda: count_events(path))
    if isinstance(n, Exception):
        _clean_error(n, path)
        return None
    ev = _bounded(lambda: read_events(path))
    if isinstance(ev, Exception):
        _clean_error(ev, path)
    else:  # a correct result: validated, wrapped, one row per event
        assert len(ev) == n
        assert (ev.pt >= 0).all() and ev.pt.isfinite().all()
        assert (ev.phi.abs() <= float(np.float32(np.pi))).all()
        assert ev.y.isfinite().all() and (ev.y.abs() <= 10).all()
    lab = _bounded(lambda: read_labels(path))
    if isinstance(lab, Exception):
        _clean_error(lab, path)
    elif lab is not None:
        assert lab.dtype == np.int64 and lab.shape == (n,)
    return n


def _cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue().strip().splitlines()


def _check_cli(path, out, n):
    rc, err = _cli(["shape", path, "-o", out, "--observable", "1-subjettiness",
                    "--no-progress", "--overwrite", "--skip-bad-events"])
    assert not any("Traceback" in e for e in err), err
    if rc == 0:
        from physkit.pipeline.results import read_results

        r = read_results(out)
        assert n is not None and r["source_index"].shape == (n,)
        ok = r["event_problem"] == 0
        assert np.isfinite(r["1-subjettiness/value"][ok]).all()
    else:
        assert rc == 1 and len(err) == 1 and err[0].startswith("physkit: error:"), err
    rc, err = _cli(["info", path])
    assert rc in (0, 1) and (rc == 0 or (len(err) == 1 and "physkit: error:" in err[0])), err


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz"))


def _event_case(scratch, spec):
    path = _write(scratch, spec)
    n = _check_read(path)
    _check_cli(path, os.path.join(scratch, "out.h5"), n)


@FAST
@given(spec=event_specs())
def test_fuzz_event_files(scratch, spec):
    _event_case(scratch, spec)


@pytest.mark.slow
@SLOW
@given(spec=event_specs())
def test_fuzz_event_files_long(scratch, spec):
    _event_case(scratch, spec)


# ===================================================================== model files
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10 ** 13) |
                    st.floats(allow_nan=True) | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) |
                    st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=6)


@st.composite
def model_edits(draw):
    """One edit of a saved model: an attribute, a metadata key, or an array."""
    kind = draw(st.sampled_from(["attr", "meta", "head", "array", "drop", "extra", "link"]))
    return {"kind": kind, "which": draw(st.sampled_from(["det", "clf"])),
            "attr": draw(st.sampled_from(["physkit_model", "estimator", "meta", "pipeline"])),
            "key": draw(st.sampled_from(["n_features_in", "n_components", "n_residual",
                                         "classes", "classes_dtype", "reference_class",
                                         "format_version", "noise_floor", "threshold",
                                         "estimator", "head", "params"])),
            "head_key": draw(st.sampled_from(["kind", "gamma", "intercept", "platt_a"])),
            "value": draw(JSON),
            "shape": draw(st.lists(st.integers(0, 6), max_size=3)),
            "dtype": draw(st.sampled_from(["<f8", ">f8", "<i2", "|b1", "<c16", "|S2"])),
            "special": draw(st.sampled_from([None, np.nan, np.inf, 1e300])),
            "index": draw(st.integers(0, 20))}


def _edit_model(f, e):
    names = sorted(f["arrays"])
    name = names[e["index"] % len(names)]
    if e["kind"] == "attr":
        v = e["value"]
        if e["attr"] in ("meta", "pipeline") or isinstance(v, (dict, list)):
            v = json.dumps(v)
        f.attrs[e["attr"]] = 1.5 if v is None else v
    elif e["kind"] in ("meta", "head"):
        meta = json.loads(f.attrs["meta"])
        target = meta["head"] if e["kind"] == "head" and "head" in meta else meta
        key = e["head_key"] if e["kind"] == "head" else e["key"]
        if key == "params":  # the constructor's parameters: only the unused ones
            meta["params"]["random_state"] = e["value"]
        else:
            target[key] = e["value"]
        f.attrs["meta"] = json.dumps(meta)
    elif e["kind"] == "array":
        v = np.random.default_rng(e["index"]).normal(size=e["shape"])
        if e["special"] is not None and v.size:
            v.reshape(-1)[0] = e["special"]
        del f["arrays"][name]
        f["arrays"][name] = _as_dtype(v, e["dtype"])
    elif e["kind"] == "drop":
        del f["arrays"][name]
    elif e["kind"] == "extra":
        f["arrays"]["extra"] = np.zeros(e["shape"])
    else:
        del f["arrays"][name]
        f["arrays"][name] = h5py.SoftLink(f"/arrays/{name}")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from finder import FINDER, ResidualDetector

    d = tmp_path_factory.mktemp("fuzzmodels")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.arange(60) % 2
    ev = write_events(d / "ev.h5", np.tile([[[5.0, 0.1, 0.2]]], (10, 1, 1)).astype(np.float32),
                      extra={"f": X[:10]})
    det = save_model(d / "det.h5", ResidualDetector(n_components=1, random_state=0).fit(X),
                     pipeline={"features": [{"kind": "dataset", "name": "f"}],
                               "estimator": "finder.ResidualDetector"})
    clf = save_model(d / "clf.h5", FINDER(n_components=1, n_residual=1, random_state=0,
                                          classifier="svc").fit(X, y),
                     pipeline={"features": [{"kind": "dataset", "name": "f"}],
                               "estimator": "finder.FINDER"})
    return str(d), {"det": det, "clf": clf}, ev, X[:10]


def _model_case(model_files, e):
    d, bases, ev, X = model_files
    path = os.path.join(d, f"m{next(_COUNTER)}.h5")
    shutil.copy(bases[e["which"]], path)
    with h5py.File(path, "a") as f:
        _edit_model(f, e)
    est = _bounded(lambda: load_model(path))
    if isinstance(est, Exception):
        _clean_error(est, path, (ModelFileError,))
    else:  # accepted: it predicts finite numbers
        out = est.anomaly_score(X) if e["which"] == "det" else est.predict_proba(X)
        assert np.isfinite(out).all()
    rc, err = _cli(["score", ev, "--model", path, "-o", os.path.join(d, "s.h5"),
                    "--no-progress", "--overwrite"])
    assert not any("Traceback" in x for x in err), err
    assert rc == 0 or (rc == 1 and len(err) == 1 and err[0].startswith("physkit: error:")), err


@FAST
@given(e=model_edits())
def test_fuzz_model_files(model_files, e):
    _model_case(model_files, e)


@pytest.mark.slow
@SLOW
@given(e=model_edits())
def test_fuzz_model_files_long(model_files, e):
    _model_case(model_files, e)
