"""Reading any supported event file: detect the layout, open the file once, read.

Every function takes ``start``/``stop`` (Python slice semantics, step 1) and reads only
those rows, and keyword ``options`` for the file's reader (ROOT files: ``tree``,
``particles``, ``labels``, ``level``; :mod:`physkit.io.root`). Bad input raises
:class:`~physkit.errors.EventFileError` naming the file, dataset and event: file-level
problems (dtypes, shapes, declared sizes, labels not one per event) when the file is
opened, per-event problems when the rows are validated, unreadable rows
(:class:`~physkit.errors.UnreadableRowsError`) when they are read.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch

from ..angles import wrap_angle
from ..errors import UnreadableRowsError
from ..events import EmptyPolicy, Events, validate_constituents
from .formats import open_events
from .reader import EventBlock, PathLike, as_real, event_range

__all__ = ["read_block", "read_constituents", "read_events", "read_labels",
           "read_dataset", "count_events", "rows_digest", "array_digest", "combine_digests",
           "UNREADABLE_DIGEST"]


def count_events(path: PathLike, **options: Any) -> int:
    """Number of events in a file (reads metadata only)."""
    with open_events(path, **options) as reader:
        return reader.n_events


def read_block(path: PathLike, start: int | None = None,
               stop: int | None = None, **options: Any) -> EventBlock:
    """Raw padded constituents of events ``[start, stop)``, the dataset name for
    messages and the number of events in the file, as an :class:`EventBlock`.

    Not validated per event (see :func:`read_constituents`); real numbers in native byte
    order (:func:`~physkit.io.reader.as_real`).
    """
    with open_events(path, **options) as reader:
        block = reader.read_block(start, stop)
    return block._replace(constituents=as_real(block.constituents))


def read_constituents(path: PathLike, start: int | None = None,
                      stop: int | None = None, **options: Any) -> np.ndarray:
    """Raw padded constituents ``(n, M, 3)`` (pT, y, phi) of events ``[start, stop)``.

    Not validated per event (callers validate with
    :func:`physkit.events.validate_constituents`). Float32 for physkit/energyflow
    files as stored (float64 if stored so), float64 for the converted pandas layouts;
    native byte order.
    """
    return read_block(path, start, stop, **options).constituents


def read_events(path: PathLike, start: int | None = None, stop: int | None = None, *,
                empty: EmptyPolicy = "error", dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None, **options: Any) -> Events:
    """Read events ``[start, stop)`` of any supported layout as validated :class:`Events`.

    ``empty="skip"`` drops events with no particles (labels from :func:`read_labels`
    then no longer line up), ``"zero"`` keeps them with zero weights. Azimuths are
    wrapped into ``(-pi, pi]`` in the stored precision before the cast to ``dtype``.
    Raises :class:`EventFileError` naming the file, dataset and the global index of the
    first bad event.

    Rows of event-level layouts (LHCO R&D, ROOT event trees) come back with
    :attr:`Events.level` ``"event"``: jet observables refuse them until they are
    clustered (:func:`physkit.jets.cluster`).
    """
    with open_events(path, **options) as reader:
        arr, name, n_total = reader.read_block(start, stop)
        level = "event" if reader.event_level else "jet"
    arr = as_real(arr)
    s, _ = event_range(start, stop, n_total)
    keep = validate_constituents(arr, path=path, dataset=name, offset=s, empty=empty)
    if not keep.all():
        arr = arr[keep]
    arr = arr.copy()
    arr[..., 2] = np.where(arr[..., 0] > 0, wrap_angle(arr[..., 2]), 0.0)
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


#: what a digest records for rows that could not be read (a corrupt chunk)
UNREADABLE_DIGEST = "unreadable"


def array_digest(a: np.ndarray | None) -> str:
    """BLAKE2b digest (hex) of an array's dtype, shape and bytes (``"none"`` for None)."""
    if a is None:
        return "none"
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(f"{a.dtype.str}:{a.shape};".encode(), digest_size=16)
    h.update(a.reshape(-1).view(np.uint8) if a.dtype.kind != "O"
             else repr(a.tolist()).encode())
    return h.hexdigest()


def combine_digests(parts: dict[str, str]) -> str:
    """One digest (hex) of named digests, independent of their order."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(parts):
        h.update(f"{name}={parts[name]};".encode())
    return h.hexdigest()


def rows_digest(path: PathLike, start: int, stop: int, datasets: Sequence[str] = (),
                **options: Any) -> str:
    """Digest of what a chunk of work reads from rows ``[start, stop)``: the constituents
    block (:func:`read_block`), the labels (:func:`read_labels`) and the per-event
    ``datasets`` (:func:`read_dataset`), each by :func:`array_digest`, combined by
    :func:`combine_digests` under the names ``constituents``, ``labels`` and
    ``dataset NAME``; unreadable constituents rows digest as :data:`UNREADABLE_DIGEST`.

    Identifies a chunk's input by content: a unit of work that records the same parts of
    the arrays it read gets the same digest, and a resumed run redoes the chunks whose
    digest changed. ``options``: the reader's options (:func:`read_block`).
    """
    try:
        block = read_block(path, start, stop, **options)
        parts = {"constituents": array_digest(block.constituents)}
    except UnreadableRowsError:
        parts = {"constituents": UNREADABLE_DIGEST}
    parts["labels"] = array_digest(read_labels(path, start, stop, **options))
    for name in datasets:
        parts[f"dataset {name}"] = array_digest(read_dataset(path, name, start, stop,
                                                             **options))
    return combine_digests(parts)
