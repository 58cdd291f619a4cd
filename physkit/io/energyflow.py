"""energyflow ``.npz``: ``X`` ``(N, M, >=3)`` and labels ``y`` ``(N,)``.

The layout of energyflow's data sets (e.g. ``qg_jets``): per event ``M`` rows
(pT, y, phi, ...) (pT in GeV, rapidity y, phi; extra columns such as the PDG id are
ignored), zero-padded; labels ``y`` (float or int, integral values). Arrays are read
as stored (dtype of ``X``, no conversion); stored (``np.savez``) members are sliced
without decompressing, compressed ones from their start up to the last row read.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EventFileError
from ..events import check_real
from .containers import NPZ
from .npz import NpzArchive
from .reader import EventBlock, EventReader, as_labels, check_labels, event_range

__all__ = ["EnergyflowReader"]


class EnergyflowReader(EventReader):
    """Reads ``energyflow`` ``.npz`` files (built on the open :class:`NpzArchive`)."""

    format_name = "energyflow"
    container = NPZ

    @classmethod
    def sniff(cls, candidate: Any, path: str) -> bool:
        return isinstance(candidate, NpzArchive) and "X" in candidate.names

    @property
    def archive(self) -> NpzArchive:
        return self.source

    def check(self) -> None:
        """``X`` ``(N, M, >=3)`` of real numbers; labels ``y``, if any, one number per event."""
        with self.archive.member("X") as m:
            if len(m.shape) != 3 or m.shape[2] < 3:
                raise EventFileError(f"expected shape (N, M, >=3) for (pT, y, phi, ...), got "
                                     f"{m.shape}", self.path, "X")
            check_real(m.dtype, self.path, "X")
            self._n = len(m)
        if "y" in self.archive.names:
            with self.archive.member("y") as m:
                check_labels(m.shape, m.dtype, self._n, self.path, "y")

    @property
    def n_events(self) -> int:
        return self._n

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        with self.archive.member("X") as m:
            s, e = event_range(start, stop, self._n)
            return EventBlock(m.read(s, e)[..., :3], "X", self._n)

    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        if "y" not in self.archive.names:
            return None
        with self.archive.member("y") as m:
            s, e = event_range(start, stop, len(m))
            return as_labels(m.read(s, e), self.path, "y", s)

    def read_dataset(self, name: str, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        if name not in self.archive.names:
            raise EventFileError("missing dataset", self.path, name)
        with self.archive.member(name) as m:
            if len(m.shape) == 0 or m.shape[0] != self._n:
                raise EventFileError(f"shape {m.shape}: not one row per event ({self._n} "
                                     f"events)", self.path, name)
            s, e = event_range(start, stop, len(m))
            return m.read(s, e)

    def dataset_names(self) -> list[str]:
        return list(self.archive.names)
