"""physkit HDF5, jagged: ``constituents`` is a group of awkward ``to_buffers`` buffers.

The group holds a list of records ``{pt, y, phi}`` (float32; pT in GeV, rapidity y,
phi in (-pi, pi]; ``eta`` is accepted in place of ``y``), one list per event, no
padding: attributes ``form`` (the awkward form, JSON) and ``length`` (events), one
dataset per buffer (``<form_key>-offsets`` ``(N + 1,)``, ``<form_key>-data`` per
field). Reading ``[start, stop)`` reads only those events' offsets and values; the
block is zero-padded to the longest event (at least 1 column), float32. Root attribute
``physkit_format = 1``; labels and other per-event datasets as in :mod:`.physkit_file`.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import EventFileError
from . import hdf5
from .physkit_file import PhyskitReader, physkit_constituents
from .reader import EventBlock, PathLike, event_range

__all__ = ["PhyskitJaggedReader", "jagged_leaves"]


def jagged_leaves(g: Any, path: PathLike) -> tuple[Any, dict[str, Any]] | None:
    """(offsets dataset, {field: data dataset}) of a physkit jagged group, or None.

    None for forms other than a list of records of plain numbers.
    """
    form = json.loads(g.attrs["form"])
    if form.get("class") not in ("ListOffsetArray", "ListOffsetArray64"):
        return None
    content = form["content"]
    if content.get("class") != "RecordArray":
        return None
    leaves = {}
    for field, sub in zip(content["fields"], content["contents"]):
        if sub.get("class") != "NumpyArray":
            return None
        leaves[field] = g[f"{sub['form_key']}-data"]
    return g[f"{form['form_key']}-offsets"], leaves


def _read_flat(g: Any, path: PathLike, s: int, e: int) -> dict[str, np.ndarray]:
    """Flat columns and counts (``_counts``) of events ``[s, e)`` of a jagged group."""
    dsname = "constituents"
    leaves = jagged_leaves(g, path)
    if leaves is None:  # a form we don't slice by hand: materialise with awkward
        import awkward as ak

        arr = ak.from_buffers(g.attrs["form"], int(g.attrs["length"]),
                              {k: g[k][()] for k in g.keys()})[s:e]
        flat = {k: ak.to_numpy(ak.flatten(arr[k])) for k in ak.fields(arr)}
        flat["_counts"] = ak.to_numpy(ak.num(arr))
        return flat
    offsets_ds, data = leaves
    off = hdf5.read_rows(offsets_ds, s, e + 1, path, dsname, "offsets").astype(np.int64)
    if off.size != e - s + 1 or np.any(np.diff(off) < 0):
        raise EventFileError("corrupt offsets", path, dsname, s)
    flat = {k: hdf5.read_rows(ds, int(off[0]), int(off[-1]), path, dsname,
                              f"particles of events {s}:{e}, flat range")
            for k, ds in data.items()}
    flat["_counts"] = np.diff(off)
    return flat


def _pt_y_phi_fields(flat: dict, path: PathLike) -> tuple[str, str, str]:
    if "pt" in flat and "phi" in flat and ("y" in flat or "eta" in flat):
        return ("pt", "y" if "y" in flat else "eta", "phi")
    raise EventFileError(f"jagged records need fields (pt, y, phi), got "
                         f"{sorted(k for k in flat if k != '_counts')}", path, "constituents")


def _pad(flat: dict, fields: tuple[str, str, str]) -> np.ndarray:
    """Zero-padded ``(n, max(1, longest), 3)`` float32 of the flat columns ``fields``."""
    counts = flat["_counts"]
    n = counts.size
    m = max(int(counts.max()) if n else 0, 1)
    out = np.zeros((n, m, 3), dtype=np.float32)
    rows = np.repeat(np.arange(n), counts)
    cols = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    for k, name in enumerate(fields):
        out[rows, cols, k] = flat[name]
    return out


class PhyskitJaggedReader(PhyskitReader):
    """Reads ``physkit-jagged`` files: awkward buffers of ``{pt, y, phi}`` records."""

    format_name = "physkit-jagged"

    @classmethod
    def sniff(cls, candidate: Any, path: str) -> bool:
        import h5py

        g = physkit_constituents(candidate, path)
        if g is None or not isinstance(g, h5py.Group):
            return False
        if "form" not in g.attrs or "length" not in g.attrs:
            raise EventFileError("jagged group lacks the awkward 'form'/'length' attributes",
                                 path, "constituents")
        return True

    @property
    def n_events(self) -> int:
        return int(self.file["constituents"].attrs["length"])

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        n = self.n_events
        s, e = event_range(start, stop, n)
        flat = _read_flat(self.file["constituents"], self.path, s, e)
        return EventBlock(_pad(flat, _pt_y_phi_fields(flat, self.path)), "constituents", n)
