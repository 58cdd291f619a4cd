"""Top-tagging reference data set (Kasieczka et al., arXiv:1902.09914): pandas HDF5.

One row per jet, columns ``E_i, PX_i, PY_i, PZ_i`` for particles ``i < 200`` (GeV,
zero for padding; the published files use float32), ``truthE, truthPX, truthPY,
truthPZ``, ``ttv`` and the label ``is_signal_new`` (1 = top). The published files hold
key ``table`` in pandas' "table" format (``/table/table`` plus ``/table/_i_table``);
"fixed" format files are read as well. The four-momenta are converted to
(pT, y, phi) float64 by :func:`physkit.kinematics.ptyphi_from_epxpypz` (padding stays
zero; E below ``|p|`` by rounding is treated as massless).
"""
from __future__ import annotations

from typing import Any

from ..kinematics import ptyphi_from_epxpypz
from .pandas_events import PandasEventReader
from .pandas_frame import PandasFrame
from .reader import EventBlock, event_range

__all__ = ["TopTaggingReader"]


class TopTaggingReader(PandasEventReader):
    """Reads ``top-tagging`` files: (E, PX, PY, PZ) x 200 columns, ``is_signal_new``."""

    format_name = "top-tagging"

    @classmethod
    def frame_matches(cls, frame: PandasFrame) -> bool:
        return "PX_0" in frame.columns and "E_0" in frame.columns

    def label_column(self) -> Any:
        return "is_signal_new"

    def n_particles(self) -> int:
        """Number of particle slots (columns ``E_0 .. E_{n-1}``; 200 in the reference)."""
        return sum(1 for c in self.frame.columns
                   if isinstance(c, str) and c.startswith("E_") and c[2:].isdigit())

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        n = self.frame.n
        s, e = event_range(start, stop, n)
        npart = self.n_particles()
        cols = [f"{c}_{i}" for c in ("E", "PX", "PY", "PZ") for i in range(npart)]
        v = self.frame.read(cols, s, e).reshape(e - s, 4, npart)
        return EventBlock(ptyphi_from_epxpypz(v[:, 0], v[:, 1], v[:, 2], v[:, 3]),
                          self.frame.key, n)
