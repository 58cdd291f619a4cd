"""Model files: a fitted FINDER estimator as plain arrays plus JSON metadata (HDF5).

Layout: file attribute ``physkit_model`` (format version, the integer :data:`MODEL_FORMAT`
exactly), ``estimator`` (one of :data:`ESTIMATORS`), ``meta`` (the estimator's JSON
metadata, whose ``format_version`` must be 1) and ``pipeline`` (JSON: the feature
specification and training summary); group ``arrays`` holds one numeric dataset per array
of the estimator's state.

Nothing in a model file is ever executed: there is no pickle anywhere (HDF5 numeric
arrays and JSON strings only), object / variable-length / opaque datasets are refused,
and the estimator class comes from a fixed table of names, never from an import path in
the file. Nothing in it is followed or trusted either: soft and external links are
refused, JSON is parsed within size and depth bounds, every array's shape is checked
against the metadata (:func:`check_state`) before it is read and its values (finite,
scales positive, calibration sorted) after, within :data:`MAX_ARRAY_BYTES` in all. A file
from an untrusted source can at worst be refused.
"""
from __future__ import annotations

import importlib
import json
import math
import os
from typing import Any, Mapping

import numpy as np

from ..errors import EventFileError
from ..h5files import atomic_h5, has_root_attr
from ..io.hdf5 import check_declared_size, text_attr
from ..io.json_text import load_json
from ..io.physkit_file import integer_attr

__all__ = ["MODEL_FORMAT", "ESTIMATORS", "ModelFileError", "save_model", "load_model",
           "read_model_state", "check_state", "is_model_file", "describe_model",
           "fitted_lines", "model_summary", "MAX_ARRAY_BYTES"]

#: version written to (and required in) the ``physkit_model`` attribute
MODEL_FORMAT = 1
#: version of the estimators' state layout (``meta["format_version"]``) this physkit reads
STATE_FORMAT = 1
#: most bytes of arrays a model file may hold
MAX_ARRAY_BYTES = 4 << 30
#: longest JSON attribute read
MAX_JSON_CHARS = 16 << 20

#: estimator names a model file may name -> (module, class); nothing else is loaded
ESTIMATORS = {
    "finder.FINDER": ("finder", "FINDER"),
    "finder.ResidualDetector": ("finder", "ResidualDetector"),
}


class ModelFileError(ValueError):
    """A model file this physkit cannot (or will not) load; the message says why."""


def save_model(path, estimator, *, pipeline: Mapping[str, Any] | None = None) -> str:
    """Write a fitted estimator (anything with ``get_model_state()``) to ``path``.

    ``pipeline``: JSON-able extra metadata (e.g. the feature specification). Written
    under a temporary name and renamed. Returns the path.
    """
    arrays, meta = estimator.get_model_state()
    name = meta.get("estimator")
    if name not in ESTIMATORS:
        raise ModelFileError(f"estimator {name!r} cannot be stored (known: {sorted(ESTIMATORS)})")
    check_state(name, arrays, meta)  # what load_model would refuse is not written
    path = os.fspath(path)
    with atomic_h5(path, in_memory=True) as f:  # a failing write is a clean OSError
        f.attrs["physkit_model"] = MODEL_FORMAT
        f.attrs["estimator"] = name
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        f.attrs["pipeline"] = json.dumps(dict(pipeline or {}), sort_keys=True)
        g = f.create_group("arrays")
        for k, v in arrays.items():
            a = np.asarray(v)
            if a.dtype.kind not in "biuf":
                raise ModelFileError(f"array {k!r} has dtype {a.dtype}; only numeric "
                                     f"arrays are stored")
            g.create_dataset(k, data=a)
    return path


def _json_attr(f, name: str, path: str) -> dict:
    try:
        value = load_json(text_attr(f, name, path), max_chars=MAX_JSON_CHARS)
    except EventFileError as exc:
        raise ModelFileError(f"{path}: {exc.reason}") from None
    except ValueError as exc:
        raise ModelFileError(f"{path}: attribute '{name}': {exc}") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: attribute '{name}' must hold a JSON object")
    return value


def _datasets(f, path: str) -> dict[str, Any]:
    """The datasets of group ``arrays`` (hard links to numeric datasets only)."""
    import h5py

    if not isinstance(f.get("arrays", getlink=True), h5py.HardLink) or \
            not isinstance(f["arrays"], h5py.Group):
        raise ModelFileError(f"{path}: model file has no 'arrays' group (links are not "
                             f"followed)")
    g, out = f["arrays"], {}
    for k in g.keys():
        if not isinstance(g.get(k, getlink=True), h5py.HardLink):
            raise ModelFileError(f"{path}: 'arrays/{k}' is a link; model files hold their "
                                 f"arrays themselves (links are not followed)")
        ds = g[k]
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf" or \
                ds.dtype.names is not None:
            raise ModelFileError(f"{path}: dataset 'arrays/{k}' is not a numeric array "
                                 f"(dtype {getattr(ds, 'dtype', type(ds).__name__)}); "
                                 f"refusing to load")
        out[k] = ds
    return out


def _read_arrays(datasets: dict, path: str) -> dict[str, np.ndarray]:
    """Read checked datasets within :data:`MAX_ARRAY_BYTES`, as native arrays."""
    total = sum(float(np.prod(ds.shape)) * ds.dtype.itemsize for ds in datasets.values())
    if total > MAX_ARRAY_BYTES:
        raise ModelFileError(f"{path}: arrays of {total / 1e9:.1f} GB (at most "
                             f"{MAX_ARRAY_BYTES / 1e9:.1f} GB)")
    out = {}
    for k, ds in datasets.items():
        try:
            check_declared_size(ds, path, f"arrays/{k}")
            a = ds[()]
        except EventFileError as exc:
            raise ModelFileError(str(exc)) from None
        out[k] = np.asarray(a).astype(a.dtype.newbyteorder("="))
    return out


def read_model_state(path) -> tuple[str, dict[str, np.ndarray], dict, dict]:
    """``(estimator name, arrays, meta, pipeline)`` of a model file, checked but not built.

    Raises :class:`ModelFileError` for a missing or different ``physkit_model`` version,
    an unknown estimator name, links, non-numeric datasets, malformed or oversized JSON,
    and arrays that do not match the metadata (:func:`check_state`).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        with f:
            return _read_state(f, path)
    except (KeyError, RuntimeError, OSError, UnicodeDecodeError, TypeError) as exc:
        raise ModelFileError(f"{path}: unreadable model file ({exc})") from None


def _read_state(f, path: str) -> tuple[str, dict[str, np.ndarray], dict, dict]:
    if "physkit_model" not in f.attrs:
        raise ModelFileError(f"{path}: not a physkit model file (no 'physkit_model' "
                             f"attribute)")
    raw = f.attrs["physkit_model"]
    if integer_attr(raw) != MODEL_FORMAT:
        shown = raw.item() if isinstance(raw, np.generic) else raw
        raise ModelFileError(f"{path}: model format version {shown!r}; this physkit reads "
                             f"version {MODEL_FORMAT} only (refit the model with this "
                             f"version)")
    try:
        name = text_attr(f, "estimator", path)
    except EventFileError as exc:
        raise ModelFileError(f"{path}: {exc.reason}") from None
    if name not in ESTIMATORS:
        raise ModelFileError(f"{path}: unknown estimator {name!r} (known: "
                             f"{sorted(ESTIMATORS)})")
    meta, pipeline = _json_attr(f, "meta", path), _json_attr(f, "pipeline", path)
    if meta.get("estimator") != name:
        raise ModelFileError(f"{path}: metadata names estimator {meta.get('estimator')!r}, "
                             f"file attribute {name!r}")
    datasets = _datasets(f, path)
    check_state(name, {k: ds.shape for k, ds in datasets.items()}, meta, path=path)
    arrays = _read_arrays(datasets, path)
    check_state(name, arrays, meta, path=path)
    return name, arrays, meta, pipeline


# ===================================================================== state checks
def _fail(path, msg: str) -> ModelFileError:
    return ModelFileError(f"{path}: {msg}" if path else msg)


def _count(meta: Mapping, key: str, low: int, path) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise _fail(path, f"metadata '{key}' must be an integer >= {low}, got {v!r}")
    return v


def _number(meta: Mapping, key: str, path, positive: bool = False) -> float:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (positive and v <= 0):
        raise _fail(path, f"metadata '{key}' must be a finite{' positive' if positive else ''}"
                          f" number, got {v!r}")
    return float(v)


def _finder_shapes(meta: Mapping, path) -> dict[str, tuple]:
    """Expected array shapes of a FINDER state (str = a size shared by name)."""
    P, m = _count(meta, "n_features_in", 1, path), _count(meta, "n_residual", 1, path)
    _count(meta, "n_components", 0, path)
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) != 2 or classes[0] == classes[1] or \
            meta.get("reference_class") not in classes or \
            not all(isinstance(c, (int, float, str)) and not isinstance(c, bool)
                    for c in classes):
        raise _fail(path, f"metadata 'classes' must be two distinct labels including "
                          f"'reference_class', got {classes!r}")
    try:
        np.asarray(classes, dtype=np.dtype(str(meta.get("classes_dtype"))))
    except (TypeError, ValueError):
        raise _fail(path, f"metadata 'classes_dtype' {meta.get('classes_dtype')!r} does not "
                          f"hold the classes") from None
    shapes = {"center": (P,), "components": (P, m), "explained_variance": ("r",),
              "residual_variance": (m,)}
    if (meta.get("params") or {}).get("standardize") == "feature":
        shapes.update(feature_mean=(P,), feature_scale=(P,))
    head = meta.get("head") if isinstance(meta.get("head"), dict) else {}
    kind = head.get("kind")
    if kind == "svc":
        shapes.update(head_support_vectors=("S", m), head_dual_coef=("S",))
        for k in ("intercept", "platt_a", "platt_b"):
            _number(head, k, path)
    elif kind == "nystroem":
        shapes.update(head_components=("K", m), head_normalization=("K", "K"),
                      head_coef=("K",))
        _number(head, "intercept", path)
    elif kind == "torch":
        shapes.update(head_param_W1=(m, "h"), head_param_b1=("h",), head_param_w2=("h",),
                      head_param_b2=(1,), head_mean=(m,), head_scale=(m,))
    else:
        raise _fail(path, f"unknown FINDER head kind {kind!r} (svc, nystroem, torch)")
    if kind in ("svc", "nystroem"):
        _number(head, "gamma", path, positive=True)
    return shapes


def _detector_shapes(meta: Mapping, path) -> dict[str, tuple]:
    """Expected array shapes of a ResidualDetector state."""
    P, k = _count(meta, "n_features_in", 1, path), _count(meta, "n_components", 0, path)
    _number(meta, "noise_floor", path, positive=True)
    _number(meta, "threshold", path)
    return {"mean": (P,), "components": (P, k), "residual_components": (P, "q"),
            "residual_variance": ("q",), "explained_variance": ("r",),
            "calibration_scores": ("n",)}


def _match(expected: Mapping[str, tuple], shapes: Mapping[str, tuple], path) -> None:
    if set(expected) != set(shapes):
        missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
        raise _fail(path, f"arrays do not match the metadata (missing {missing}, "
                          f"unexpected {extra})")
    sizes: dict[str, int] = {}
    for name, dims in expected.items():
        shape = tuple(shapes[name])
        ok = len(shape) == len(dims) and all(
            sizes.setdefault(d, n) == n if isinstance(d, str) else d == n
            for d, n in zip(dims, shape))
        if not ok:
            want = "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
            raise _fail(path, f"array '{name}' has shape {shape}, the metadata needs {want}")


def _check_values(name: str, arrays: Mapping[str, np.ndarray], path) -> None:
    for k, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _fail(path, f"array '{k}' holds NaN or inf")
    positive = ("feature_scale", "head_scale") if name == "finder.FINDER" else ()
    for k in positive:
        if k in arrays and not (arrays[k] > 0).all():
            raise _fail(path, f"array '{k}' must be positive")
    cal = arrays.get("calibration_scores") if name == "finder.ResidualDetector" else None
    if cal is not None and (np.diff(cal) < 0).any():
        raise _fail(path, "array 'calibration_scores' must be sorted")


def check_state(name: str, arrays: Mapping[str, Any], meta: Mapping, *, path=None) -> None:
    """Check an estimator state against its metadata; raise :class:`ModelFileError`.

    ``arrays`` maps names to arrays, or to shapes only (checked before reading). The
    metadata must carry ``format_version`` 1 and the sizes the arrays are checked
    against (features, components, classes, head); arrays must be finite, scales
    positive and detector calibration scores sorted.
    """
    version = meta.get("format_version")
    if isinstance(version, bool) or version != STATE_FORMAT or not isinstance(version, int):
        raise _fail(path, f"estimator state format_version {version!r}; this physkit reads "
                          f"version {STATE_FORMAT} only")
    if not isinstance(meta.get("params", {}), dict):
        raise _fail(path, "metadata 'params' must be a JSON object")
    expected = (_finder_shapes if name == "finder.FINDER" else _detector_shapes)(meta, path)
    shapes = {k: (tuple(v) if isinstance(v, tuple) else np.shape(v)) for k, v in arrays.items()}
    _match(expected, shapes, path)
    if not all(isinstance(v, tuple) for v in arrays.values()):
        _check_values(name, {k: np.asarray(v) for k, v in arrays.items()}, path)


def load_model(path, *, return_pipeline: bool = False):
    """The fitted estimator stored in ``path`` (and its pipeline metadata if asked)."""
    name, arrays, meta, pipeline = read_model_state(path)
    module, cls = ESTIMATORS[name]
    est_cls = getattr(importlib.import_module(module), cls)
    try:
        est = est_cls.from_model_state(arrays, meta)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFileError(f"{os.fspath(path)}: inconsistent model state ({exc!r})") from None
    return (est, pipeline) if return_pipeline else est


def is_model_file(path) -> bool:
    """Whether ``path`` is an HDF5 file with the ``physkit_model`` attribute."""
    return has_root_attr(path, "physkit_model")


def _head_text(head: Mapping, arrays: Mapping[str, np.ndarray]) -> str:
    """One line on a FINDER head: its kind and fitted size."""
    kind = head.get("kind")
    if kind == "svc":
        n = len(arrays.get("head_support_vectors", ()))
        return f"svc (RBF kernel SVC, {n} support vectors, gamma {head.get('gamma', 0):.4g})"
    if kind == "nystroem":
        n = len(arrays.get("head_components", ()))
        return f"nystroem ({n} landmarks, gamma {head.get('gamma', 0):.4g}, logistic)"
    if kind == "torch":
        n = np.shape(arrays.get("head_param_b1", ()))[0] if "head_param_b1" in arrays else 0
        return f"torch (one hidden layer of {n} tanh units, logistic)"
    return str(kind)


def fitted_lines(name: str, arrays: Mapping[str, np.ndarray], meta: Mapping) -> list[str]:
    """What the fit chose (trailing-underscore values), one ``key: value`` line each, with
    the requested value beside it where the two differ."""
    req = meta.get("params") or {}
    lines = []
    if name == "finder.FINDER":
        for k in ("n_components", "n_residual"):
            asked = f" (requested {req[k]})" if k in req and req[k] != meta.get(k) else ""
            lines.append(f"{k}_: {meta.get(k)}{asked}")
        lines.append(f"classes_: {meta.get('classes')} (reference class "
                     f"{meta.get('reference_class')})")
        lines.append("head_: " + _head_text(meta.get("head") or {}, arrays))
    else:
        asked = req.get("n_components")
        lines.append(f"n_components_: {meta.get('n_components')}" +
                     (f" (requested {asked})" if asked != meta.get("n_components") else ""))
        q = np.shape(arrays["residual_components"])[1] if "residual_components" in arrays else 0
        lines.append(f"residual dimensions: {q}")
        lines.append(f"threshold_: {meta.get('threshold'):.6g} (contamination "
                     f"{req.get('contamination')}); noise_floor_: {meta.get('noise_floor'):.3g}")
    return lines


def model_summary(name: str, arrays: Mapping[str, np.ndarray], meta: Mapping,
                  pipeline: Mapping) -> str:
    """One line: estimator, features, fitted sizes (the report shows it)."""
    names = pipeline.get("feature_names") or []
    feats = f"{meta.get('n_features_in')} features" + (
        f" ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})" if names else "")
    fitted = "; ".join(fitted_lines(name, arrays, meta)).replace("_:", "_ =")
    n = pipeline.get("n_train")
    return f"{name} on {feats}; {fitted}" + (f"; trained on {n} events" if n else "")


def describe_model(path) -> str:
    """Multi-line description of a model file (``physkit info``): the estimator, the
    values its fit chose, the features and training data, the requested parameters and
    the stored arrays."""
    name, arrays, meta, pipeline = read_model_state(path)
    lines = [f"file:      {os.fspath(path)} ({os.path.getsize(path) / 1e3:.1f} kB)",
             f"format:    physkit model (version {MODEL_FORMAT})",
             f"estimator: {name}"]
    if "n_features_in" in meta:
        names = pipeline.get("feature_names")
        lines.append(f"features in: {meta['n_features_in']}" +
                     (f" ({', '.join(names)})" if names else ""))
    lines.append("fitted:")
    lines += [f"  {line}" for line in fitted_lines(name, arrays, meta)]
    for k in ("features", "label_from", "reference_label", "n_train", "train_files",
              "train_events", "clustering"):
        if pipeline.get(k) is not None:
            lines.append(f"{k}: {json.dumps(pipeline[k])}")
    params = meta.get("params", {})
    if params:
        lines.append("requested parameters: " +
                     ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    lines.append("arrays:")
    lines += [f"  {k:<24} {str(v.shape):<14} {v.dtype}" for k, v in arrays.items()]
    return "\n".join(lines)
