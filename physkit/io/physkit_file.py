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
from .reader import EventReader, as_labels, event_range

__all__ = ["FORMAT_VERSION", "RESERVED", "physkit_constituents", "PhyskitReader"]

#: version written to (and accepted in) the ``physkit_format`` file attribute
FORMAT_VERSION = 1
#: dataset names with a fixed meaning (not allowed as ``extra`` datasets when writing)
RESERVED = {"constituents", "labels", "jets", "weights"}


def physkit_constituents(candidate: Any, path: str) -> Any:
    """The ``constituents`` object of a physkit file, or None if ``candidate`` is not one.

    Raises :class:`EventFileError` for an unknown ``physkit_format`` version or a
    missing ``constituents``.
    """
    import h5py

    if not isinstance(candidate, h5py.File) or "physkit_format" not in candidate.attrs:
        return None
    raw = candidate.attrs["physkit_format"]
    raw = raw.item() if isinstance(raw, np.generic) else raw
    try:
        version = int(raw)
    except (TypeError, ValueError):
        version = None
    if version != FORMAT_VERSION:
        raise EventFileError(f"unknown physkit_format version {raw!r} "
                             f"(this physkit reads version {FORMAT_VERSION})", path)
    if "constituents" not in candidate:
        raise EventFileError("missing dataset", path, "constituents")
    return candidate["constituents"]


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

    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        if "labels" not in self.file:
            return None
        ds = self.file["labels"]
        s, e = event_range(start, stop, ds.shape[0])
        return as_labels(hdf5.read_rows(ds, s, e, self.path, "labels"), self.path, "labels", s)

    def read_dataset(self, name: str, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        import h5py

        if name not in self.file:
            raise EventFileError("missing dataset", self.path, name)
        if not isinstance(self.file[name], h5py.Dataset):
            raise EventFileError("not a per-event dataset (use read_constituents / "
                                 "read_events for constituents)", self.path, name)
        ds = self.file[name]
        s, e = event_range(start, stop, ds.shape[0])
        return hdf5.read_rows(ds, s, e, self.path, name)

    def dataset_names(self) -> list[str]:
        import h5py

        return [k for k, obj in self.file.items() if isinstance(obj, h5py.Dataset)]
