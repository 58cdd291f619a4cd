"""physkit HDF5, dense: ``constituents`` is one dataset ``(N, M, 3)``.

Per event, ``M`` rows (pT, y, phi), float32 as written by
:func:`physkit.io.write_events`: pT in GeV, rapidity y, phi in (-pi, pi], sorted as
stored, zero-padded at the end (padding rows are all zeros). Read as stored, not
converted. Root attribute ``physkit_format = 1``; labels and other per-event datasets
as in :mod:`.physkit_file`.
"""
from __future__ import annotations

from typing import Any

from ..errors import EventFileError
from ..events import check_real
from . import hdf5
from .physkit_file import PhyskitReader, physkit_constituents
from .reader import EventBlock, event_range

__all__ = ["PhyskitDenseReader"]


class PhyskitDenseReader(PhyskitReader):
    """Reads ``physkit`` files: ``constituents`` ``(N, M, 3)`` (pT, y, phi), zero-padded."""

    format_name = "physkit"

    @classmethod
    def sniff(cls, candidate: Any, path: str) -> bool:
        import h5py

        constituents = physkit_constituents(candidate, path)
        return constituents is not None and not isinstance(constituents, h5py.Group)

    def check_constituents(self) -> None:
        """``(N, M, 3)``, real numbers, a declared size its stored bytes can hold."""
        ds = self.file["constituents"]
        if ds.ndim != 3 or ds.shape[2] != 3:
            raise EventFileError(f"expected shape (N, M, 3) for (pT, y, phi), got "
                                 f"{ds.shape}", self.path, "constituents")
        check_real(ds.dtype, self.path, "constituents")
        hdf5.check_declared_size(ds, self.path, "constituents")

    @property
    def n_events(self) -> int:
        return int(self.file["constituents"].shape[0])

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        ds = self.file["constituents"]
        n = ds.shape[0]
        s, e = event_range(start, stop, n)
        return EventBlock(hdf5.read_rows(ds, s, e, self.path, "constituents"), "constituents", n)
