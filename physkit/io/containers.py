"""The kinds of file events are read from, and where a reader may find them inside.

``HDF5``
    candidates: the file itself (the physkit layouts keep events at the root), then
    each top-level pandas frame (:class:`~physkit.io.pandas_frame.PandasFrame`, in
    key order). The catch-all: a file no other container recognises is opened as HDF5.
``NPZ``
    a zip of ``.npy`` arrays; the one candidate is the open
    :class:`~physkit.io.npz.NpzArchive`.
"""
from __future__ import annotations

import zipfile
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import EventFileError
from .hdf5 import open_h5
from .npz import NpzArchive
from .pandas_frame import PandasFrame, pandas_keys

__all__ = ["HDF5", "NPZ"]


@contextmanager
def _pandas_metadata_errors(path: str) -> Iterator[None]:
    """Errors other than EventFileError while reading pandas metadata -> EventFileError."""
    try:
        yield
    except EventFileError:
        raise
    except Exception as exc:  # malformed pandas metadata
        raise EventFileError(f"unreadable pandas metadata ({exc})", path) from None


class HDF5Container:
    """HDF5 files (physkit layouts at the root, community layouts as pandas frames)."""

    catch_all = True

    def recognises(self, path: str) -> bool:
        return True

    def open(self, path: str) -> Any:
        return open_h5(path)

    def candidates(self, f: Any, path: str) -> Iterator[Any]:
        yield f
        with _pandas_metadata_errors(path):
            keys = list(pandas_keys(f))
        for key in keys:
            with _pandas_metadata_errors(path):
                frame = PandasFrame(f, key, path)
            yield frame

    def unrecognised(self, f: Any, path: str) -> EventFileError:
        if "constituents" in f:
            return EventFileError("file has 'constituents' but no 'physkit_format' attribute; "
                                  "write it with physkit.io.write_events", path)
        return EventFileError(f"unrecognised event file layout (top-level keys: "
                              f"{sorted(f.keys())})", path)


class NpzContainer:
    """``.npz`` files (a zip of ``.npy`` arrays)."""

    catch_all = False

    def recognises(self, path: str) -> bool:
        return zipfile.is_zipfile(path)

    def open(self, path: str) -> NpzArchive:
        return NpzArchive(path)

    def candidates(self, archive: NpzArchive, path: str) -> Iterator[Any]:
        yield archive

    def unrecognised(self, archive: NpzArchive, path: str) -> EventFileError:
        return EventFileError("a .npz event file needs an array 'X' (energyflow layout)",
                              path, "X")


HDF5 = HDF5Container()
NPZ = NpzContainer()
