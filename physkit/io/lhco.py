"""LHC Olympics 2020 R&D data set: pandas HDF5, ``N x 2101`` values.

Key ``df``, integer column names ``0 .. 2100``: (pT, eta, phi) for 700 particles
(GeV; zero-padded), then the label (1 = signal). Either pandas storage format
("fixed" or "table") is read. Columns are taken in the frame's stored order; eta is
used as y (massless particles), phi is wrapped into (-pi, pi] (zero for padding).
The block is float64. Rows are whole events (:attr:`LHCOReader.event_level`): cluster them
into jets (:func:`physkit.jets.cluster`) before any jet observable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..angles import wrap_angle
from .pandas_events import PandasEventReader
from .pandas_frame import PandasFrame
from .reader import EventBlock, event_range

__all__ = ["LHCOReader", "LHCO_NPART"]

#: particle slots per event
LHCO_NPART = 700


class LHCOReader(PandasEventReader):
    """Reads ``lhco`` files: (pT, eta, phi) x 700 columns, then the label."""

    format_name = "lhco"
    event_level = True  # rows are whole events (up to 700 particles), not jets

    @classmethod
    def frame_matches(cls, frame: PandasFrame) -> bool:
        return len(frame.columns) == 3 * LHCO_NPART + 1

    def label_column(self) -> Any:
        return self.frame.order[3 * LHCO_NPART]

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        n = self.frame.n
        s, e = event_range(start, stop, n)
        cols = self.frame.order[:3 * LHCO_NPART]
        v = self.frame.read(cols, s, e).reshape(e - s, LHCO_NPART, 3)
        v[..., 2] = np.where(v[..., 0] > 0, wrap_angle(v[..., 2]), 0.0)
        return EventBlock(v, self.frame.key, n)
