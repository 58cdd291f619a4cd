"""``.npz`` archives (``np.savez`` / ``np.savez_compressed``), read member by member.

An archive is opened once; a member is read row range by row range without loading it
all: rows ``[s, e)`` of a stored member cost only those bytes, a compressed member is
decompressed from its start up to row ``e``. C-ordered, non-object arrays only.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from ..errors import EventFileError, UnreadableRowsError
from .reader import PathLike

__all__ = ["NpzArchive", "NpzMember", "npz_names"]


def npz_names(path: PathLike) -> list[str]:
    """Array names in the ``.npz`` file ``path``."""
    with NpzArchive(path) as archive:
        return archive.names


class NpzArchive:
    """An open ``.npz`` file: its array :attr:`names` and :meth:`member` access."""

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        try:
            self.zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            raise EventFileError(f"not a readable .npz file ({exc})", path) from None
        self.names = [n[:-4] for n in self.zip.namelist() if n.endswith(".npy")]

    def member(self, name: str) -> NpzMember:
        """Array ``name`` (close it, or use it as a context manager)."""
        return NpzMember(self.path, name, archive=self.zip)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NpzMember:
    """One ``.npy`` member of an ``.npz``: :attr:`shape`, :attr:`dtype`, :meth:`read`.

    Opens the archive ``path`` itself unless given the open ``archive``.
    """

    def __init__(self, path: PathLike, name: str, archive: zipfile.ZipFile | None = None):
        self.path = os.fspath(path)
        self.name = name
        self._zip, self._owns_zip = archive, archive is None
        try:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.path)
            self._f = self._zip.open(name + ".npy")
            version = np.lib.format.read_magic(self._f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(self._f)
        except (KeyError, zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
            raise EventFileError(f"cannot read .npz member ({exc})", path, name) from None
        if fortran or dtype.hasobject:
            raise EventFileError("Fortran-ordered or object arrays are not supported", path, name)
        self.shape, self.dtype = tuple(shape), dtype
        self._data_start = self._f.tell()
        self._check_size(self._zip.getinfo(name + ".npy"))

    def _check_size(self, info: zipfile.ZipInfo) -> None:
        """The header's shape must fit the member's size, and that size its compressed
        bytes (so no read allocates for a claim)."""
        from .hdf5 import CLAIM_CHECK_BYTES, MAX_EXPANSION

        need = self._data_start + np.prod(self.shape, dtype=np.float64) * self.dtype.itemsize
        if need > info.file_size:
            self.close()
            raise EventFileError(f"header declares shape {self.shape} but the member holds "
                                 f"{info.file_size} bytes", self.path, self.name)
        if info.file_size > CLAIM_CHECK_BYTES and \
                info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
            self.close()
            raise EventFileError(f"declares {info.file_size} bytes compressed into "
                                 f"{info.compress_size}: not real data", self.path, self.name)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def read(self, s: int, e: int) -> np.ndarray:
        """Rows ``[s, e)`` (a copy)."""
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        try:
            self._f.seek(self._data_start + s * row)  # stored members: no decompression
            buf = self._f.read((e - s) * row)
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise UnreadableRowsError(f"cannot read rows {s}:{e} ({exc})", self.path,
                                      self.name) from None
        if len(buf) != (e - s) * row:
            raise UnreadableRowsError(f"truncated member: rows {s}:{e} missing", self.path,
                                      self.name)
        return np.frombuffer(buf, dtype=self.dtype).reshape((e - s,) + self.shape[1:]).copy()

    def close(self) -> None:
        self._f.close()
        if self._owns_zip:
            self._zip.close()

    def __enter__(self) -> NpzMember:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
