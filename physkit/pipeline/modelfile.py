"""Model files: a fitted FINDER estimator as plain arrays plus JSON metadata (HDF5).

Layout: file attribute ``physkit_model`` (format version, must equal :data:`MODEL_FORMAT`),
``estimator`` (one of :data:`ESTIMATORS`), ``meta`` (the estimator's JSON metadata) and
``pipeline`` (JSON: the feature specification and training summary); group ``arrays``
holds one numeric dataset per array of the estimator's state.

Nothing in a model file is ever executed: there is no pickle anywhere (HDF5 numeric
arrays and JSON strings only), object / variable-length / opaque datasets are refused,
and the estimator class comes from a fixed table of names, never from an import path in
the file. A file from an untrusted source can at worst give wrong numbers.
"""
from __future__ import annotations

import importlib
import json
import os
from typing import Any, Mapping

import numpy as np

from ..h5files import atomic_h5, has_root_attr

__all__ = ["MODEL_FORMAT", "ESTIMATORS", "ModelFileError", "save_model", "load_model",
           "read_model_state", "is_model_file", "describe_model"]

#: version written to (and required in) the ``physkit_model`` attribute
MODEL_FORMAT = 1

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
    path = os.fspath(path)
    with atomic_h5(path) as f:
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


def _attr_str(f, name: str, path: str) -> str:
    if name not in f.attrs:
        raise ModelFileError(f"{path}: model file has no '{name}' attribute")
    v = f.attrs[name]
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    if not isinstance(v, str):
        raise ModelFileError(f"{path}: attribute '{name}' must be a string, got {type(v).__name__}")
    return v


def read_model_state(path) -> tuple[str, dict[str, np.ndarray], dict, dict]:
    """``(estimator name, arrays, meta, pipeline)`` of a model file, checked but not built.

    Raises :class:`ModelFileError` for a missing or different ``physkit_model`` version,
    an unknown estimator name, non-numeric datasets or malformed JSON.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "physkit_model" not in f.attrs:
            raise ModelFileError(f"{path}: not a physkit model file (no 'physkit_model' "
                                 f"attribute)")
        try:
            version = int(f.attrs["physkit_model"])
        except (TypeError, ValueError):
            version = None
        if version != MODEL_FORMAT:
            raw = f.attrs["physkit_model"]
            shown = raw.item() if isinstance(raw, np.generic) else raw
            raise ModelFileError(f"{path}: model format version {shown!r}; "
                                 f"this physkit reads version {MODEL_FORMAT} only (refit the "
                                 f"model with this version)")
        name = _attr_str(f, "estimator", path)
        if name not in ESTIMATORS:
            raise ModelFileError(f"{path}: unknown estimator {name!r} (known: "
                                 f"{sorted(ESTIMATORS)})")
        try:
            meta = json.loads(_attr_str(f, "meta", path))
            pipeline = json.loads(_attr_str(f, "pipeline", path))
        except ValueError as exc:
            raise ModelFileError(f"{path}: malformed JSON metadata ({exc})") from None
        if not isinstance(meta, dict) or not isinstance(pipeline, dict):
            raise ModelFileError(f"{path}: metadata must be JSON objects")
        if meta.get("estimator") != name:
            raise ModelFileError(f"{path}: metadata names estimator {meta.get('estimator')!r}, "
                                 f"file attribute {name!r}")
        if "arrays" not in f or not isinstance(f["arrays"], h5py.Group):
            raise ModelFileError(f"{path}: model file has no 'arrays' group")
        arrays = {}
        for k, ds in f["arrays"].items():
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf":
                raise ModelFileError(f"{path}: dataset 'arrays/{k}' is not a numeric array "
                                     f"(dtype {getattr(ds, 'dtype', type(ds).__name__)}); "
                                     f"refusing to load")
            arrays[k] = ds[()]
    return name, arrays, meta, pipeline


def load_model(path, *, return_pipeline: bool = False):
    """The fitted estimator stored in ``path`` (and its pipeline metadata if asked)."""
    name, arrays, meta, pipeline = read_model_state(path)
    module, cls = ESTIMATORS[name]
    est_cls = getattr(importlib.import_module(module), cls)
    try:
        est = est_cls.from_model_state(arrays, meta)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{os.fspath(path)}: inconsistent model state ({exc!r})") from None
    return (est, pipeline) if return_pipeline else est


def is_model_file(path) -> bool:
    """Whether ``path`` is an HDF5 file with the ``physkit_model`` attribute."""
    return has_root_attr(path, "physkit_model")


def describe_model(path) -> str:
    """Multi-line description of a model file (``physkit info``)."""
    name, arrays, meta, pipeline = read_model_state(path)
    lines = [f"file:      {os.fspath(path)} ({os.path.getsize(path) / 1e3:.1f} kB)",
             f"format:    physkit model (version {MODEL_FORMAT})",
             f"estimator: {name}"]
    if "n_features_in" in meta:
        lines.append(f"features in: {meta['n_features_in']}")
    for k in ("features", "label_from", "n_train", "train_files"):
        if k in pipeline:
            lines.append(f"{k}: {json.dumps(pipeline[k])}")
    params = meta.get("params", {})
    if params:
        lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    lines.append("arrays:")
    lines += [f"  {k:<24} {str(v.shape):<14} {v.dtype}" for k, v in arrays.items()]
    return "\n".join(lines)
