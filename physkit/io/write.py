"""Writing events in the physkit HDF5 format (``physkit_format = 1``).

Constituents are stored as float32 (pT, y, phi), phi wrapped into (-pi, pi] and zero
for padding: dense (``constituents`` ``(N, M, 3)``, chunked, see
:mod:`.physkit_dense`) or jagged (awkward buffers, see :mod:`.physkit_jagged`); other
per-event datasets as in :mod:`.physkit_file`. Files are written whole or not at all
(:func:`physkit.h5files.atomic_h5`).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..angles import wrap_angle
from ..errors import EventFileError
from ..events import Events, check_real, validate_constituents
from ..h5files import atomic_h5
from .physkit_file import FORMAT_VERSION, RESERVED
from .reader import PathLike, as_labels

__all__ = ["write_events"]


def _to_padded_array(events) -> np.ndarray:
    if isinstance(events, Events):
        return events.to_padded()
    if isinstance(events, torch.Tensor):
        return events.detach().cpu().numpy()
    try:
        import awkward as ak

        if isinstance(events, ak.Array):
            return Events.from_awkward(events, dtype=torch.float64, empty="zero").to_padded()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(events)


def _constituents(events, path: str) -> np.ndarray:
    """Validated float32 ``(N, M, 3)`` (pT, y, phi), phi wrapped, zero for padding."""
    arr = np.asarray(_to_padded_array(events))
    check_real(arr.dtype, path, "constituents")  # no silent cast of bool / complex
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"events must be (N, M, 3) (pT, y, phi), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr[..., :3], dtype=np.float32)
    validate_constituents(arr, path=path, dataset="constituents", empty="zero")
    arr = arr.copy()
    arr[..., 2] = np.where(arr[..., 0] > 0, wrap_angle(arr[..., 2]), 0.0)
    return arr


def _labels(labels) -> np.ndarray:
    """Labels as stored: int8 when they fit, else int64; non-integer, non-finite, 2-D or
    out-of-int64 labels raise ValueError (the reader would refuse them)."""
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be one per event, shape (N,), got {lab.shape}")
    try:
        lab = as_labels(lab, "labels", None, 0)
    except EventFileError as exc:
        raise ValueError(exc.reason) from None
    if lab.size == 0 or (lab.min() >= -128 and lab.max() <= 127):
        return lab.astype(np.int8)
    return lab


def _per_event(n: int, labels, jets, weights,
               extra: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The per-event datasets by name, checked to hold one row per event."""
    per_event: dict[str, np.ndarray] = {}
    if labels is not None:
        per_event["labels"] = _labels(labels)
    if jets is not None:
        per_event["jets"] = np.asarray(jets, dtype=np.float64)
        if per_event["jets"].ndim != 2 or per_event["jets"].shape[1] != 4:
            raise ValueError(f"jets must be (N, 4) (pT, eta, phi, m), got "
                             f"{per_event['jets'].shape}")
    if weights is not None:
        per_event["weights"] = np.asarray(weights, dtype=np.float64)
    for k, v in (extra or {}).items():
        if k in RESERVED:
            raise ValueError(f"extra dataset name {k!r} is reserved")
        per_event[k] = np.asarray(v)
    for k, v in per_event.items():
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(f"dataset {k!r} has {v.shape[0] if v.ndim else 0} rows, "
                             f"expected {n} (one per event)")
    return per_event


def write_events(path: PathLike, events: Events | torch.Tensor | ArrayLike,
                 labels: ArrayLike | None = None, *, jets: ArrayLike | None = None,
                 weights: ArrayLike | None = None, extra: Mapping[str, ArrayLike] | None = None,
                 attrs: Mapping[str, Any] | None = None, jagged: bool = False,
                 compression: str | None = "gzip") -> str:
    """Write events in the physkit format (``physkit_format = 1``); returns the path.

    ``events``: :class:`Events`, a padded ``(N, M, >=3)`` (pT, y, phi) array/tensor, or an
    awkward array of particle records. ``labels`` ``(N,)`` integer-valued (stored int8
    when they fit, else int64; values beyond int64 are refused),
    ``jets`` ``(N, 4)`` (pT, eta, phi, m), ``weights`` ``(N,)``, ``extra``: more per-event
    datasets by name, ``attrs``: file attributes (whole events, :attr:`Events.level`
    ``"event"``, get ``level = "event"``). ``jagged=True`` stores the constituents
    as awkward buffers (no padding). The file is written under a temporary name in the
    same directory and renamed at the end, so a failed write leaves no file behind.
    """
    path = os.fspath(path)
    arr = _constituents(events, path)
    n = arr.shape[0]
    per_event = _per_event(n, labels, jets, weights, extra)

    opts = {} if compression is None else {"compression": compression, "shuffle": True}
    with atomic_h5(path) as f:
        f.attrs["physkit_format"] = FORMAT_VERSION
        if getattr(events, "level", "jet") == "event":  # whole events stay marked as such
            f.attrs["level"] = "event"
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        if jagged:
            _write_jagged(f, arr, opts)
        else:
            _write_dense(f, arr, opts)
        for k, v in per_event.items():
            f.create_dataset(k, data=v, **(opts if v.size > 64 else {}))
    return path


def _write_dense(f, arr: np.ndarray, opts: dict) -> None:
    n, m = arr.shape[:2]
    rows = max(1, min(n, (1 << 18) // max(1, m * 3)))
    f.create_dataset("constituents", data=arr, chunks=(rows, m, 3) if n and m else None,
                     **opts)
    f["constituents"].attrs["columns"] = "pT, y, phi"


def _write_jagged(f, arr: np.ndarray, opts: dict) -> None:
    import awkward as ak

    mask = arr[..., 0] > 0
    counts = mask.sum(axis=1)
    # keep each event's particles in their stored order (real ones only)
    order = np.argsort(~mask, axis=1, kind="stable")
    srt = np.take_along_axis(arr, order[..., None], axis=1)
    keep = np.arange(arr.shape[1])[None, :] < counts[:, None]
    flat = srt[keep]
    rec = ak.zip({"pt": flat[:, 0], "y": flat[:, 1], "phi": flat[:, 2]})
    jag = ak.to_packed(ak.unflatten(rec, counts))
    form, length, buffers = ak.to_buffers(jag)
    g = f.create_group("constituents")
    g.attrs["form"] = form.to_json()
    g.attrs["length"] = int(length)
    g.attrs["layout"] = "awkward to_buffers"
    for k, v in buffers.items():
        v = np.asarray(v)
        g.create_dataset(k, data=v, **(opts if v.size > 64 else {}))
