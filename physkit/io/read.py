"""Reading any supported event file: detect the layout, open the file once, read.

Every function takes ``start``/``stop`` (Python slice semantics, step 1) and reads only
those rows, and keyword ``options`` for the file's reader (ROOT files: ``tree``,
``particles``, ``labels``, ``level``; :mod:`physkit.io.root`). Bad input raises
:class:`~physkit.errors.EventFileError` naming the file, dataset and event.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..events import EmptyPolicy, Events, validate_constituents
from .formats import open_events
from .reader import EventBlock, PathLike, event_range

__all__ = ["read_block", "read_constituents", "read_events", "read_labels",
           "read_dataset", "count_events"]


def count_events(path: PathLike, **options: Any) -> int:
    """Number of events in a file (reads metadata only)."""
    with open_events(path, **options) as reader:
        return reader.n_events


def read_block(path: PathLike, start: int | None = None,
               stop: int | None = None, **options: Any) -> EventBlock:
    """Raw padded constituents of events ``[start, stop)``, the dataset name for
    messages and the number of events in the file, as an :class:`EventBlock`.

    Not validated (see :func:`read_constituents`).
    """
    with open_events(path, **options) as reader:
        return reader.read_block(start, stop)


def read_constituents(path: PathLike, start: int | None = None,
                      stop: int | None = None, **options: Any) -> np.ndarray:
    """Raw padded constituents ``(n, M, 3)`` (pT, y, phi) of events ``[start, stop)``.

    Not validated (callers validate per event with
    :func:`physkit.events.validate_constituents`). Float32 for physkit/energyflow
    files as stored, float64 for the converted pandas layouts.
    """
    return read_block(path, start, stop, **options).constituents


def read_events(path: PathLike, start: int | None = None, stop: int | None = None, *,
                empty: EmptyPolicy = "error", dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None, **options: Any) -> Events:
    """Read events ``[start, stop)`` of any supported layout as validated :class:`Events`.

    ``empty="skip"`` drops events with no particles (labels from :func:`read_labels`
    then no longer line up), ``"zero"`` keeps them with zero weights. Raises
    :class:`EventFileError` naming the file, dataset and the global index of the first
    bad event.

    Rows of event-level layouts (LHCO R&D, ROOT event trees) come back with
    :attr:`Events.level` ``"event"``: jet observables refuse them until they are
    clustered (:func:`physkit.jets.cluster`).
    """
    with open_events(path, **options) as reader:
        arr, name, n_total = reader.read_block(start, stop)
        level = "event" if reader.event_level else "jet"
    s, _ = event_range(start, stop, n_total)
    keep = validate_constituents(arr, path=path, dataset=name, offset=s, empty=empty)
    if not keep.all():
        arr = arr[keep]
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    events = Events.from_padded(np.ascontiguousarray(arr, dtype=np_dtype), validate=False,
                                device=device, dtype=dtype)
    events.level = level
    return events


def read_labels(path: PathLike, start: int | None = None,
                stop: int | None = None, **options: Any) -> np.ndarray | None:
    """Labels of events ``[start, stop)`` as int64 ``(n,)``, or None if the file has none."""
    with open_events(path, **options) as reader:
        return reader.read_labels(start, stop)


def read_dataset(path: PathLike, name: str, start: int | None = None,
                 stop: int | None = None, **options: Any) -> np.ndarray:
    """Rows ``[start, stop)`` of another per-event dataset (e.g. ``jets``, ``tau_kt``).

    For ``.npz`` files ``name`` is an array name; for pandas layouts a column name; for
    ROOT files a branch with one value per entry.
    """
    with open_events(path, **options) as reader:
        return reader.read_dataset(name, start, stop)
