"""HDF5 access shared by the HDF5 readers: opening a file, getting a member, checking what
a dataset declares, reading a row range.

All of them turn h5py's errors into :class:`~physkit.errors.EventFileError` naming the
file (and the dataset): a directory or a file that is not HDF5, a broken or cyclic link,
a dataset whose declared size its stored bytes cannot hold, truncated or corrupt chunks
(:class:`~physkit.errors.UnreadableRowsError`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import EventFileError, UnreadableRowsError
from .reader import PathLike

__all__ = ["open_h5", "member", "check_declared_size", "read_rows", "text_attr",
           "MAX_EXPANSION", "CLAIM_CHECK_BYTES"]

#: largest ratio of a dataset's logical size to its stored bytes taken as real (deflate,
#: the strongest filter physkit writes, stays below ~1030:1 even on all-zero data)
MAX_EXPANSION = 1100
#: datasets declaring more bytes than this are checked against their stored bytes
CLAIM_CHECK_BYTES = 64 << 20


def open_h5(path: PathLike) -> Any:
    """``h5py.File`` open for reading; FileNotFoundError if missing, else EventFileError."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if os.path.isdir(path):
        raise EventFileError("is a directory, not an event file", path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(f"not a readable HDF5 file ({_h5_reason(exc)})", path) from None


def _h5_reason(exc: BaseException) -> str:
    """The useful part of an h5py error message (HDF5's own text spans several lines)."""
    text = str(exc)
    if "error message = '" in text:
        return text.split("error message = '", 1)[1].split("'", 1)[0]
    return text


def member(group: Any, name: str, path: PathLike) -> Any:
    """``group[name]``, or None if absent; a broken or cyclic link raises EventFileError."""
    try:
        if name not in group:
            return None
        return group[name]
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        raise EventFileError(f"cannot open ({' '.join(str(exc).split())})", path, name) from None


def check_declared_size(ds: Any, path: PathLike, name: Any) -> None:
    """Refuse a dataset whose declared shape its stored bytes cannot hold.

    A dataset declaring more than :data:`CLAIM_CHECK_BYTES` must store at least
    ``1 / MAX_EXPANSION`` of them: HDF5 lets a small file declare any shape (unwritten
    chunks read as the fill value), and a reader must not allocate for such a claim.
    Virtual and external-storage datasets are not checked.
    """
    logical = int(np.prod(ds.shape, dtype=np.float64) * ds.dtype.itemsize) if ds.shape else 0
    if logical <= CLAIM_CHECK_BYTES or ds.is_virtual or ds.external:
        return
    stored = int(ds.id.get_storage_size())
    if stored * MAX_EXPANSION < logical:
        raise EventFileError(f"declares shape {ds.shape} ({logical / 1e6:.0f} MB) but stores "
                             f"only {stored} bytes: unwritten or corrupt", path, name)


def read_rows(ds: Any, s: int, e: int, path: PathLike, name: Any,
              what: str = "rows") -> np.ndarray:
    """``ds[s:e]``; unreadable (truncated / corrupt) chunks raise UnreadableRowsError."""
    try:
        return ds[s:e]
    except (OSError, RuntimeError) as exc:  # truncated / corrupt chunks
        raise UnreadableRowsError(f"cannot read {what} {s}:{e} ({exc})", path, name) from None


def text_attr(obj: Any, name: str, path: PathLike, dataset: Any = None) -> str:
    """Attribute ``name`` of ``obj`` as text; missing, non-text or invalid UTF-8 raises
    EventFileError naming the attribute."""
    try:
        v = obj.attrs[name]
    except KeyError:
        raise EventFileError(f"missing attribute {name!r}", path, dataset) from None
    except UnicodeDecodeError:
        raise EventFileError(f"attribute {name!r} is not valid UTF-8 text", path,
                             dataset) from None
    except (OSError, RuntimeError, TypeError, ValueError) as exc:
        raise EventFileError(f"unreadable attribute {name!r} ({exc})", path, dataset) from None
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "SUO":
        v = v.reshape(())[()]
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            raise EventFileError(f"attribute {name!r} is not valid UTF-8 text", path,
                                 dataset) from None
    if not isinstance(v, str):
        raise EventFileError(f"attribute {name!r} must be a string, got {type(v).__name__}",
                             path, dataset)
    try:
        v.encode("utf-8")  # h5py maps undecodable bytes to lone surrogates
    except UnicodeEncodeError:
        raise EventFileError(f"attribute {name!r} is not valid UTF-8 text", path,
                             dataset) from None
    return v
