"""Model files: a fitted FINDER estimator as plain arrays plus JSON metadata (HDF5).

Layout: file attribute ``physkit_model`` (format version, the integer :data:`MODEL_FORMAT`
exactly), ``estimator`` (one of :data:`ESTIMATORS`), ``meta`` (the estimator's JSON
metadata, whose ``format_version`` must be one of :data:`STATE_FORMATS`) and ``pipeline`` (JSON: the feature
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
           "fitted_lines", "model_summary", "MAX_ARRAY_BYTES", "STATE_FORMATS"]

#: version written to (and required in) the ``physkit_model`` attribute
MODEL_FORMAT = 1
#: versions of each estimator's state layout (``meta["format_version"]``) this physkit
#: reads (FINDER 1: one filter + head, before ensembles; 2: ``members``, arrays ``m{i}_*``;
#: 3: as 2 on the ``n_screened`` features listed in ``screened_features``)
STATE_FORMATS = {"finder.FINDER": (1, 2, 3), "finder.ResidualDetector": (1,)}
#: most ensemble members a FINDER model file may declare
MAX_MEMBERS = 1000
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


def _check_classes(meta: Mapping, path) -> None:
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


def _finder_members(meta: Mapping, path) -> list[tuple[str, Any, dict]]:
    """``[(array prefix, residual size (int or a size name), head metadata)]`` per member:
    version 1 has one unprefixed member described at the top level, version 2 a
    ``members`` list whose arrays are ``m{i}_*``."""
    if meta.get("format_version") == 1:
        m = _count(meta, "n_residual", 1, path)
        _count(meta, "n_components", 0, path)
        head = meta.get("head")
        return [("", m, head if isinstance(head, dict) else {})]
    members = meta.get("members")
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS or \
            not all(isinstance(mm, dict) for mm in members):
        raise _fail(path, f"metadata 'members' must be a list of 1 to {MAX_MEMBERS} objects")
    out = []
    for i, mm in enumerate(members):
        _count(mm, "n_components", 0, path)
        head = mm.get("head")
        out.append((f"m{i}_", f"m{i}", head if isinstance(head, dict) else {}))
    return out


def _head_shapes(head: Mapping, pre: str, m, path) -> dict[str, tuple]:
    """Expected arrays of one FINDER head (``m``: its input size) under prefix ``pre``."""
    kind, h = head.get("kind"), f"{pre}head_"
    if kind == "svc":
        shapes = {h + "support_vectors": (pre + "S", m), h + "dual_coef": (pre + "S",)}
        for k in ("intercept", "platt_a", "platt_b"):
            _number(head, k, path)
    elif kind == "nystroem":
        shapes = {h + "components": (pre + "K", m), h + "normalization": (pre + "K", pre + "K"),
                  h + "coef": (pre + "K",)}
        _number(head, "intercept", path)
    elif kind == "torch":
        shapes = {h + "param_W1": (m, pre + "h"), h + "param_b1": (pre + "h",),
                  h + "param_w2": (pre + "h",), h + "param_b2": (1,), h + "mean": (m,),
                  h + "scale": (m,)}
    elif kind == "hgb":
        from finder.heads import HGBHead

        shapes = {f"{h}node_{k}": (pre + "nodes",) for k in HGBHead.FIELDS}
        shapes[h + "offsets"] = (pre + "trees",)
        _number(head, "baseline", path)
    else:
        raise _fail(path, f"unknown FINDER head kind {kind!r} (svc, nystroem, torch, hgb)")
    if kind in ("svc", "nystroem"):
        _number(head, "gamma", path, positive=True)
    return shapes


def _finder_shapes(meta: Mapping, path) -> dict[str, tuple]:
    """Expected array shapes of a FINDER state (str = a size shared by name)."""
    P = _count(meta, "n_features_in", 1, path)
    _check_classes(meta, path)
    shapes, Pm = {}, P  # Pm: the features the members see
    if meta.get("format_version") == 3:
        Pm = _count(meta, "n_screened", 1, path)
        if Pm > P:
            raise _fail(path, f"metadata 'n_screened' ({Pm}) exceeds 'n_features_in' ({P})")
        shapes["screened_features"] = (Pm,)
    for pre, m, head in _finder_members(meta, path):
        shapes.update({pre + "center": (Pm,), pre + "components": (Pm, m),
                       pre + "explained_variance": (pre + "r",),
                       pre + "residual_variance": (m,)})
        shapes.update(_head_shapes(head, pre, m, path))
    if (meta.get("params") or {}).get("standardize") == "feature":
        shapes.update(feature_mean=(P,), feature_scale=(P,))
    return shapes


def _check_screen(arrays: Mapping[str, np.ndarray], meta: Mapping, path) -> None:
    """Screened FINDER states: ``screened_features`` are increasing integer indices of the
    ``n_features_in`` input features."""
    keep = arrays.get("screened_features")
    if keep is None:
        return
    P = meta["n_features_in"]
    if keep.dtype.kind not in "iu" or (np.diff(keep) <= 0).any() or \
            (len(keep) and (keep[0] < 0 or keep[-1] >= P)):
        raise _fail(path, f"array 'screened_features' must hold increasing integer indices "
                          f"of the {P} input features")


def _check_trees(arrays: Mapping[str, np.ndarray], meta: Mapping, path) -> None:
    """Gradient-boosting heads: every tree's inner nodes point to later nodes of the same
    tree (so a walk ends) and to features of the head's input."""
    for pre, _, head in _finder_members(meta, path):
        if head.get("kind") != "hgb":
            continue
        h = f"{pre}head_"
        off = np.asarray(arrays[h + "offsets"])
        n = len(arrays[h + "node_value"])
        p = np.shape(arrays[pre + "components"])[1]
        if off.dtype.kind not in "iu" or (len(off) and (off[0] != 0 or off[-1] >= n)) or \
                (np.diff(off) <= 0).any() or (not len(off) and n):
            raise _fail(path, f"array '{h}offsets' does not split the nodes into trees")
        leaf = np.asarray(arrays[h + "node_is_leaf"])
        inner = np.flatnonzero(leaf == 0)
        end = np.r_[off, n][np.searchsorted(off, inner, side="right")]
        for k in ("left", "right"):
            c = np.asarray(arrays[f"{h}node_{k}"])
            if c.dtype.kind not in "iu" or ((c[inner] <= inner) | (c[inner] >= end)).any():
                raise _fail(path, f"array '{h}node_{k}' points outside its tree")
        f = np.asarray(arrays[h + "node_feature_idx"])
        if not np.isin(leaf, (0, 1)).all() or f.dtype.kind not in "iu" or \
                ((f[inner] < 0) | (f[inner] >= p)).any():
            raise _fail(path, f"arrays '{h}node_is_leaf' / '{h}node_feature_idx' do not "
                              f"describe trees over the head's {p} inputs")


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


#: largest magnitude a stored model number may have: fitted means, scales and weights are far
#: smaller; a larger one overflows to inf once squared or multiplied with a feature
MAX_MAGNITUDE = 1e100


def _check_values(name: str, arrays: Mapping[str, np.ndarray], path) -> None:
    for k, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _fail(path, f"array '{k}' holds NaN or inf")
        if a.dtype.kind == "f" and a.size and np.abs(a).max() > MAX_MAGNITUDE:
            raise _fail(path, f"array '{k}' holds {np.abs(a).max():.3g} in magnitude, beyond "
                              f"{MAX_MAGNITUDE:g}: not a fitted model's number (scores would "
                              f"overflow)")
    positive = ("feature_scale", "head_scale") if name == "finder.FINDER" else ()
    for k in arrays:
        if k.endswith(positive) and not (arrays[k] > 0).all():
            raise _fail(path, f"array '{k}' must be positive")
    cal = arrays.get("calibration_scores") if name == "finder.ResidualDetector" else None
    if cal is not None and (np.diff(cal) < 0).any():
        raise _fail(path, "array 'calibration_scores' must be sorted")


def check_state(name: str, arrays: Mapping[str, Any], meta: Mapping, *, path=None) -> None:
    """Check an estimator state against its metadata; raise :class:`ModelFileError`.

    ``arrays`` maps names to arrays, or to shapes only (checked before reading). The
    metadata must carry a ``format_version`` of :data:`STATE_FORMATS` and the sizes the
    arrays are checked against (features, components, classes, heads); arrays must be
    finite, scales positive, detector calibration scores sorted and tree heads trees.
    """
    version, known = meta.get("format_version"), STATE_FORMATS.get(name, ())
    if isinstance(version, bool) or not isinstance(version, int) or version not in known:
        raise _fail(path, f"estimator state format_version {version!r}; this physkit reads "
                          f"version {' and '.join(map(str, known))} of {name}")
    if not isinstance(meta.get("params", {}), dict):
        raise _fail(path, "metadata 'params' must be a JSON object")
    expected = (_finder_shapes if name == "finder.FINDER" else _detector_shapes)(meta, path)
    shapes = {k: (tuple(v) if isinstance(v, tuple) else np.shape(v)) for k, v in arrays.items()}
    _match(expected, shapes, path)
    if not all(isinstance(v, tuple) for v in arrays.values()):
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        _check_values(name, arrays, path)
        if name == "finder.FINDER":
            _check_screen(arrays, meta, path)
            _check_trees(arrays, meta, path)


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


def _head_text(head: Mapping, arrays: Mapping[str, np.ndarray], pre: str = "") -> str:
    """One line on a FINDER head (arrays under ``pre``): its kind and fitted size."""
    kind, h = head.get("kind"), f"{pre}head_"
    if kind == "svc":
        n = len(arrays.get(h + "support_vectors", ()))
        return f"svc (RBF kernel SVC, {n} support vectors, gamma {head.get('gamma', 0):.4g})"
    if kind == "nystroem":
        n = len(arrays.get(h + "components", ()))
        return f"nystroem ({n} landmarks, gamma {head.get('gamma', 0):.4g}, logistic)"
    if kind == "torch":
        n = np.shape(arrays[h + "param_b1"])[0] if h + "param_b1" in arrays else 0
        return f"torch (one hidden layer of {n} tanh units, logistic)"
    if kind == "hgb":
        return f"hgb (gradient-boosted trees, {len(arrays.get(h + 'offsets', ()))} trees)"
    return str(kind)


def _finder_lines(arrays: Mapping[str, np.ndarray], meta: Mapping) -> list[str]:
    req = meta.get("params") or {}
    if meta.get("format_version") == 1:
        members, pre = [{"n_components": meta.get("n_components"), "head": meta.get("head")}], ""
    else:
        members, pre = meta.get("members") or [{}], "m0_"
    first = members[0]
    fitted = {"n_components": first.get("n_components"),
              "n_residual": np.shape(arrays.get(pre + "components", ((),)))[1]}
    lines = []
    for k, v in fitted.items():
        asked = f" (requested {req[k]})" if k in req and req[k] != v else ""
        lines.append(f"{k}_: {v}{asked}")
    if "screened_features" in arrays:
        lines.append(f"screened_features_: {len(arrays['screened_features'])} of "
                     f"{meta.get('n_features_in')} features (largest |Welch t|)")
    if len(members) > 1:
        lines.append(f"members: {len(members)} (scores averaged; values above: the first)")
    lines.append(f"classes_: {meta.get('classes')} (reference class "
                 f"{meta.get('reference_class')})")
    lines.append("head_: " + _head_text(first.get("head") or {}, arrays, pre))
    return lines


def fitted_lines(name: str, arrays: Mapping[str, np.ndarray], meta: Mapping) -> list[str]:
    """What the fit chose (trailing-underscore values), one ``key: value`` line each, with
    the requested value beside it where the two differ."""
    req = meta.get("params") or {}
    if name == "finder.FINDER":
        return _finder_lines(arrays, meta)
    asked = req.get("n_components")
    lines = [f"n_components_: {meta.get('n_components')}" +
             (f" (requested {asked})" if asked != meta.get("n_components") else "")]
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
