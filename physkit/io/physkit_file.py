"""What the two physkit HDF5 layouts share: the version attribute and per-event datasets.

A physkit file carries the root attribute ``physkit_format`` (:data:`FORMAT_VERSION`)
and the constituents under ``constituents`` (a dataset: :mod:`.physkit_dense`; a group
of awkward buffers: :mod:`.physkit_jagged`). Other top-level datasets hold one row per
event: ``labels`` ``(N,)`` (int8 when it fits), ``jets`` ``(N, 4)`` (pT, eta, phi, m),
``weights`` ``(N,)``, and any others by name (e.g. ``tau_kt``). The root attribute
``level = "event"`` marks rows that are whole events (never fitted as one jet).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EventFileError
from . import hdf5
from .containers import HDF5
from .reader import EventReader, as_labels, check_labels, event_range

__all__ = ["FORMAT_VERSION", "RESERVED", "physkit_constituents", "PhyskitReader",
           "integer_attr"]

#: version written to (and accepted in) the ``physkit_format`` file attribute
FORMAT_VERSION = 1
#: dataset names with a fixed meaning (not allowed as ``extra`` datasets when writing)
RESERVED = {"constituents", "labels", "jets", "weights"}


def integer_attr(raw: Any) -> int | None:
    """An HDF5 attribute value as an int if it is one integer (not a bool, float or
    string; a one-element array counts), else None."""
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(())[()]
    if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, np.integer)):
        return None
    return int(raw)


def physkit_constituents(candidate: Any, path: str) -> Any:
    """The ``constituents`` object of a physkit file, or None if ``candidate`` is not one.

    Raises :class:`EventFileError` for a ``physkit_format`` other than the integer
    :data:`FORMAT_VERSION` (1.5, "1", 2 are all refused), a missing or unopenable
    ``constituents``.
    """
    import h5py

    if not isinstance(candidate, h5py.File) or "physkit_format" not in candidate.attrs:
        return None
    raw = candidate.attrs["physkit_format"]
    if integer_attr(raw) != FORMAT_VERSION:
        shown = raw.item() if isinstance(raw, np.generic) else raw
        raise EventFileError(f"unknown physkit_format version {shown!r} "
                             f"(this physkit reads version {FORMAT_VERSION})", path)
    constituents = hdf5.member(candidate, "constituents", path)
    if constituents is None:
        raise EventFileError("missing dataset", path, "constituents")
    return constituents


class PhyskitReader(EventReader):
    """Labels and per-event datasets of a physkit file (built on the open ``h5py.File``)."""

    container = HDF5

    @property
    def file(self) -> Any:
        return self.source

    @property
    def event_level(self) -> bool:  # type: ignore[override]
        """Whether rows are whole events: root attribute ``level = "event"`` (written by
        :func:`physkit.io.write_events` for event-level :class:`~physkit.events.Events`)."""
        level = self.file.attrs.get("level", "jet")
        return (level.decode() if isinstance(level, bytes) else str(level)) == "event"

    def check(self) -> None:
        """The constituents (:meth:`check_constituents`), then the labels: a dataset of
        numbers, one per event."""
        self.check_constituents()
        ds = self._per_event("labels")
        if ds is not None:
            check_labels(ds.shape, ds.dtype, self.n_events, self.path, "labels")

    def check_constituents(self) -> None:
        """File-level checks of ``constituents`` (each layout's own)."""

    def _per_event(self, name: str) -> Any:
        """Dataset ``name`` (None if absent); a group, a scalar or a dataset whose size
        is not real raises."""
        import h5py

        ds = hdf5.member(self.file, name, self.path)
        if ds is None:
            return None
        if not isinstance(ds, h5py.Dataset):
            raise EventFileError("not a per-event dataset (use read_constituents / "
                                 "read_events for constituents)", self.path, name)
        if ds.ndim == 0:
            raise EventFileError("a scalar, not one row per event", self.path, name)
        hdf5.check_declared_size(ds, self.path, name)
        return ds

    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        ds = self._per_event("labels")
        if ds is None:
            return None
        s, e = event_range(start, stop, ds.shape[0])
        return as_labels(hdf5.read_rows(ds, s, e, self.path, "labels"), self.path, "labels", s)

    def read_dataset(self, name: str, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        ds = self._per_event(name)
        if ds is None:
            raise EventFileError("missing dataset", self.path, name)
        if ds.shape[0] != self.n_events:
            raise EventFileError(f"{ds.shape[0]} rows for {self.n_events} events (one row "
                                 f"per event)", self.path, name)
        s, e = event_range(start, stop, ds.shape[0])
        return hdf5.read_rows(ds, s, e, self.path, name)

    def dataset_names(self) -> list[str]:
        import h5py

        return [k for k, obj in self.file.items() if isinstance(obj, h5py.Dataset)]
