"""HDF5 access shared by the HDF5 readers: opening a file, reading a row range.

Both turn h5py's errors into :class:`~physkit.errors.EventFileError` naming the file
(and the dataset): a file that is not HDF5, truncated or corrupt chunks.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import EventFileError
from .reader import PathLike

__all__ = ["open_h5", "read_rows"]


def open_h5(path: PathLike) -> Any:
    """``h5py.File`` open for reading; FileNotFoundError if missing, else EventFileError."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(f"not a readable HDF5 file ({exc})", path) from None


def read_rows(ds: Any, s: int, e: int, path: PathLike, name: Any,
              what: str = "rows") -> np.ndarray:
    """``ds[s:e]``; unreadable (truncated / corrupt) chunks raise EventFileError."""
    try:
        return ds[s:e]
    except (OSError, RuntimeError) as exc:  # truncated / corrupt chunks
        raise EventFileError(f"cannot read {what} {s}:{e} ({exc})", path, name) from None
