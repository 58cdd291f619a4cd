"""The interface every event-file reader implements, and what all readers share.

A reader is built on one open file (opened once per call by
:func:`physkit.io.formats.open_events`) and reads row ranges ``[start, stop)`` (Python
slice rules, negatives allowed, step 1) of one layout:

* :meth:`EventReader.read_block`: padded constituents ``(n, M, 3)`` (pT, y, phi), zeros
  for padding, as an :class:`EventBlock` that also names the dataset for messages;
* :meth:`EventReader.read_labels`: one integer label per event (int64), or None;
* :meth:`EventReader.read_dataset`: rows of another per-event dataset / array / column.

Building a reader runs :meth:`EventReader.check`: the file-level checks (dtypes, shapes,
declared sizes against stored ones, labels one per event), on metadata only, so a
malformed file fails when opened, as a whole, before any row is read.

A :class:`Container` says how one kind of file (HDF5, zip, ...) is recognised, opened
and searched for the objects a reader can be built on.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, ClassVar, ContextManager, Iterator, NamedTuple, Protocol, Union

import numpy as np

from ..errors import EventFileError

__all__ = ["PathLike", "EventBlock", "Container", "EventReader", "event_range", "as_labels",
           "check_options", "check_labels", "as_real", "LABEL_MAX"]

#: largest label magnitude stored or read (labels are int64 in memory)
LABEL_MAX = np.iinfo(np.int64).max

PathLike = Union[str, os.PathLike]


class EventBlock(NamedTuple):
    """Padded constituents of a row range, as read (not validated)."""

    #: ``(n, M, 3)`` (pT, y, phi), zero-padded; float32 for physkit/energyflow files as
    #: stored, float64 for the converted pandas layouts
    constituents: np.ndarray
    #: dataset (or pandas key / array name) to name in error messages
    dataset: str
    #: number of events in the whole file
    n_events: int


class Container(Protocol):
    """One kind of file that holds events (HDF5, a zip of ``.npy``, ...)."""

    #: tried last, for any file no other container recognises (and then reports why not)
    catch_all: bool

    def recognises(self, path: str) -> bool:
        """Whether ``path`` looks like this kind of file (cheap, without opening it)."""

    def open(self, path: str) -> ContextManager[Any]:
        """The open file, closed on exit; :class:`EventFileError` if unreadable."""

    def candidates(self, handle: Any, path: str) -> Iterator[Any]:
        """Objects in the open file that a reader may be built on, in detection order."""

    def unrecognised(self, handle: Any, path: str) -> EventFileError:
        """The error for a file of this kind that no reader claims."""


def check_options(reader: type, options: dict, path: PathLike) -> None:
    """Refuse reader options that ``reader`` does not take, naming the file's layout."""
    unknown = sorted(set(options) - set(reader.option_names))
    if unknown:
        takes = (f"it takes {', '.join(reader.option_names)}" if reader.option_names
                 else "it takes none")
        raise EventFileError(f"reader option(s) {', '.join(unknown)} do not apply to a "
                             f"{reader.format_name!r} file ({takes})", path)


def event_range(start: int | None, stop: int | None, n: int) -> tuple[int, int]:
    """Normalise ``start``/``stop`` (Python slice rules, negatives allowed) for length n."""
    s, e, _ = slice(start, stop).indices(n)
    return s, max(s, e)


def check_labels(shape: tuple, dtype: Any, n_events: int, path: PathLike, name: Any) -> None:
    """File-level check of a labels dataset (metadata only): numbers, one per event."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.names is not None:
        raise EventFileError(f"labels must be integers, got dtype {dtype}", path, name)
    if len(shape) != 1:
        raise EventFileError(f"labels must be one per event, shape (N,), got shape "
                             f"{tuple(shape)}", path, name)
    if shape[0] != n_events:
        raise EventFileError(f"{shape[0]} labels for {n_events} events (one label per event)",
                             path, name)


def as_labels(v: np.ndarray, path: PathLike, name: Any, offset: int) -> np.ndarray:
    """Labels as int64 ``(n,)``: integer-valued, finite, within int64; the first bad one
    raises, naming its event."""
    v = np.asarray(v)
    if v.ndim != 1:
        raise EventFileError(f"labels must be one per event, got shape {v.shape}", path, name)
    check_labels(v.shape, v.dtype, v.shape[0], path, name)
    if v.dtype.kind == "f":
        bad = ~np.isfinite(v) | (v != np.round(v)) | (np.abs(v) >= 2.0 ** 63)
        why = "label is not an integer (or beyond the int64 range)"
    elif v.dtype.kind == "u":
        bad = v > LABEL_MAX
        why = f"label beyond the int64 range (> {LABEL_MAX})"
    else:
        bad = np.zeros(v.shape, bool)
        why = ""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EventFileError(f"{why}: {v[i].item()!r}", path, name, offset + i)
    return v.astype(np.int64)


def as_real(arr: np.ndarray) -> np.ndarray:
    """A real array in native byte order: integers as float64, float16 as float32, wider
    floats as float64, float32/float64 as they are."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and arr.dtype.itemsize > 8):
        return arr.astype(np.float64)
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        return arr.astype(np.float32)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


class EventReader(ABC):
    """Reads one event-file layout from an open file.

    Subclasses set :attr:`format_name` (the name :func:`physkit.io.detect_format`
    returns) and :attr:`container`, say in :meth:`sniff` which of the container's
    candidates they read, and are built on that candidate.
    """

    format_name: ClassVar[str]
    container: ClassVar[Container]
    #: True where a row is a whole event (LHCO R&D, ROOT event trees), not a jet: such rows
    #: are clustered (:func:`physkit.jets.cluster`) before any jet observable, never fitted
    #: as one jet (:func:`physkit.io.read_events` marks them ``level="event"``)
    event_level: bool = False
    #: keyword options the reader takes (e.g. ROOT's ``tree``); see :meth:`sniff`
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, source: Any, path: PathLike):
        self.source = source
        self.path = os.fspath(path)
        self.check()

    def check(self) -> None:
        """File-level checks on metadata, run when the reader is built; raise
        :class:`EventFileError` naming the file and dataset. Readers of layouts that can
        be malformed override it (the default checks nothing)."""

    @classmethod
    @abstractmethod
    def sniff(cls, candidate: Any, path: str) -> bool:
        """Whether this reader reads ``candidate``; raises for a malformed file of its kind.

        Readers with :attr:`option_names` are sniffed and built with the caller's options
        as keywords (``sniff(candidate, path, **options)``, ``cls(candidate, path,
        **options)``).
        """

    @classmethod
    @contextmanager
    def open(cls, path: PathLike, **options: Any) -> Iterator[EventReader]:
        """This reader on the file ``path`` (no detection of other layouts)."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        check_options(cls, options, path)
        with cls.container.open(path) as handle:
            for candidate in cls.container.candidates(handle, path):
                if cls.sniff(candidate, path, **options):
                    yield cls(candidate, path, **options)
                    return
            raise EventFileError(f"not a {cls.format_name!r} event file", path)

    @property
    @abstractmethod
    def n_events(self) -> int:
        """Number of events in the file (metadata only)."""

    @abstractmethod
    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        """Padded constituents of events ``[start, stop)``, not validated."""

    @abstractmethod
    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        """Labels of events ``[start, stop)`` as int64 ``(n,)``, or None without labels."""

    @abstractmethod
    def read_dataset(self, name: Any, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of another per-event dataset (array, column)."""

    @abstractmethod
    def dataset_names(self) -> list:
        """The names :meth:`read_dataset` accepts."""
