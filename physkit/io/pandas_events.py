"""What the layouts stored as one pandas frame share: one row per event.

A reader of such a layout is built on the :class:`~physkit.io.pandas_frame.PandasFrame`
it recognises (:meth:`PandasEventReader.frame_matches`); messages name the frame's
key. Per-event datasets are the frame's columns, read as float64.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ..errors import EventFileError
from .containers import HDF5
from .pandas_frame import PandasFrame
from .reader import EventReader, as_labels, event_range

__all__ = ["PandasEventReader"]


class PandasEventReader(EventReader):
    """Base of the readers of pandas-frame layouts (one row per event)."""

    container = HDF5

    @classmethod
    @abstractmethod
    def frame_matches(cls, frame: PandasFrame) -> bool:
        """Whether ``frame`` has this layout's columns."""

    @abstractmethod
    def label_column(self) -> Any:
        """Name of the column holding the labels."""

    @classmethod
    def sniff(cls, candidate: Any, path: str) -> bool:
        return isinstance(candidate, PandasFrame) and cls.frame_matches(candidate)

    @property
    def frame(self) -> PandasFrame:
        return self.source

    @property
    def n_events(self) -> int:
        return self.frame.n

    def read_labels(self, start: int | None = None,
                    stop: int | None = None) -> np.ndarray | None:
        s, e = event_range(start, stop, self.frame.n)
        col = self.label_column()
        return as_labels(self.frame.read([col], s, e)[:, 0], self.path, self.frame.key, s)

    def read_dataset(self, name: Any, start: int | None = None,
                     stop: int | None = None) -> np.ndarray:
        s, e = event_range(start, stop, self.frame.n)
        if name not in self.frame.columns:
            raise EventFileError(f"missing column {name!r}", self.path, self.frame.key)
        return self.frame.read([name], s, e, dtype=np.float64)[:, 0]

    def dataset_names(self) -> list:
        return list(self.frame.order)
