"""physkit HDF5, jagged: ``constituents`` is a group of awkward ``to_buffers`` buffers.

The group holds a list of records ``{pt, y, phi}`` (float32; pT in GeV, rapidity y,
phi in (-pi, pi]; ``eta`` is accepted in place of ``y``), one list per event, no
padding: attributes ``form`` (the awkward form, JSON: a ``ListOffsetArray`` of a
``RecordArray`` of ``NumpyArray``) and ``length`` (events), one dataset per buffer
(``<form_key>-offsets`` ``(length + 1,)`` integers, ``<form_key>-data`` per field, all of
one length). Those are checked when the file is opened (so no attribute's claim is ever
allocated); the offsets of the events read are checked when they are read. Reading
``[start, stop)`` reads only those events' offsets and values; the block is zero-padded
to the longest event (at least 1 column). Root attribute ``physkit_format = 1``; labels
and other per-event datasets as in :mod:`.physkit_file`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EventFileError
from ..events import check_real
from . import hdf5
from .json_text import load_json
from .physkit_file import PhyskitReader, integer_attr, physkit_constituents
from .reader import EventBlock, PathLike, event_range

__all__ = ["PhyskitJaggedReader", "jagged_leaves", "check_offsets", "MAX_FORM_CHARS"]

#: longest ``form`` attribute read (a physkit form is a few hundred characters)
MAX_FORM_CHARS = 1 << 16
_LISTS = ("ListOffsetArray", "ListOffsetArray64", "ListOffsetArray32", "ListOffsetArrayU32")
_DS = "constituents"


def _form(g: Any, path: PathLike) -> dict:
    """The ``form`` attribute, parsed within bounds, as a dict."""
    try:
        form = load_json(hdf5.text_attr(g, "form", path, _DS), max_chars=MAX_FORM_CHARS)
    except ValueError as exc:
        if isinstance(exc, EventFileError):
            raise
        raise EventFileError(f"attribute 'form': {exc}", path, _DS) from None
    if not isinstance(form, dict):
        raise EventFileError("attribute 'form' is not an awkward form", path, _DS)
    return form


def _unsupported(path: PathLike) -> EventFileError:
    return EventFileError("unsupported awkward form (physkit reads a ListOffsetArray of a "
                          "RecordArray of NumpyArray, as write_events(jagged=True) writes)",
                          path, _DS)


def _buffer(g: Any, key: Any, suffix: str, path: PathLike) -> Any:
    import h5py

    ds = hdf5.member(g, f"{key}-{suffix}", path) if isinstance(key, str) else None
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
        raise EventFileError(f"missing or malformed buffer {key}-{suffix} (a 1-D dataset)",
                             path, _DS)
    hdf5.check_declared_size(ds, path, _DS)
    return ds


def jagged_leaves(g: Any, path: PathLike) -> tuple[Any, dict[str, Any]]:
    """(offsets dataset, {field: data dataset}) of a physkit jagged group, checked: the
    form, 1-D buffers, integer offsets, real data of one common length."""
    form = _form(g, path)
    content = form.get("content")
    if form.get("class") not in _LISTS or not isinstance(content, dict) or \
            content.get("class") != "RecordArray":
        raise _unsupported(path)
    fields, subs = content.get("fields"), content.get("contents")
    if not isinstance(fields, list) or not isinstance(subs, list) or len(fields) != len(subs):
        raise _unsupported(path)
    offsets = _buffer(g, form.get("form_key"), "offsets", path)
    if offsets.dtype.kind not in "iu":
        raise EventFileError(f"offsets must be integers, got dtype {offsets.dtype}", path, _DS)
    leaves = {}
    for field, sub in zip(fields, subs):
        if not isinstance(sub, dict) or sub.get("class") != "NumpyArray" or \
                not isinstance(field, str):
            raise _unsupported(path)
        leaves[field] = _buffer(g, sub.get("form_key"), "data", path)
        check_real(leaves[field].dtype, path, _DS)
    if len({ds.shape[0] for ds in leaves.values()}) > 1:
        raise EventFileError("data buffers of different lengths", path, _DS)
    return offsets, leaves


def _read_flat(g: Any, leaves: tuple, path: PathLike, s: int, e: int) -> dict[str, np.ndarray]:
    """Flat columns and counts (``_counts``) of events ``[s, e)`` of a jagged group; the
    offsets read must start at >= 0, never decrease and stay within the data."""
    offsets_ds, data = leaves
    off = hdf5.read_rows(offsets_ds, s, e + 1, path, _DS, "offsets").astype(np.int64)
    steps = check_offsets(off, leaves, path, s)
    flat = {k: hdf5.read_rows(ds, int(off[0]), int(off[-1]), path, _DS,
                              f"particles of events {s}:{e}, flat range")
            for k, ds in data.items()}
    flat["_counts"] = steps
    return flat


def check_offsets(off: np.ndarray, leaves: tuple, path: PathLike, s: int) -> np.ndarray:
    """Particle counts ``(len(off) - 1,)`` of events from ``s`` on, given their offsets
    ``off``; offsets that start below 0, decrease or run past the data raise
    :class:`EventFileError` (a problem of the file, not of some rows)."""
    n_data = min((ds.shape[0] for ds in leaves[1].values()), default=0)
    steps = np.diff(off)
    if off.size == 0 or off[0] < 0 or off[-1] > n_data or (steps < 0).any():
        bad = np.flatnonzero(steps < 0)
        raise EventFileError(f"corrupt offsets (they must rise from >= 0 to at most the "
                             f"{n_data} particles stored)", path, _DS,
                             s + int(bad[0]) if bad.size else s)
    return steps


def _pt_y_phi_fields(flat: dict, path: PathLike) -> tuple[str, str, str]:
    if "pt" in flat and "phi" in flat and ("y" in flat or "eta" in flat):
        return ("pt", "y" if "y" in flat else "eta", "phi")
    raise EventFileError(f"jagged records need fields (pt, y, phi), got "
                         f"{sorted(k for k in flat if k != '_counts')}", path, _DS)


def _pad(flat: dict, fields: tuple[str, str, str]) -> np.ndarray:
    """Zero-padded ``(n, max(1, longest), 3)`` of the flat columns ``fields`` (float32, or
    float64 if a column is wider)."""
    counts = flat["_counts"]
    n = counts.size
    m = max(int(counts.max()) if n else 0, 1)
    dtype = np.result_type(np.float32, *(flat[k].dtype for k in fields))
    out = np.zeros((n, m, 3), dtype=np.float64 if dtype.itemsize > 4 else np.float32)
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
                                 path, _DS)
        return True

    def check_constituents(self) -> None:
        """The form and buffers (:func:`jagged_leaves`), the (pt, y, phi) fields, and
        ``length`` an integer equal to the number of offsets less one."""
        g = self.file[_DS]
        self._leaves = jagged_leaves(g, self.path)
        _pt_y_phi_fields(self._leaves[1], self.path)
        length = integer_attr(g.attrs["length"])
        if length is None or length < 0:
            raise EventFileError(f"attribute 'length' must be an integer >= 0, got "
                                 f"{g.attrs['length']!r}", self.path, _DS)
        if self._leaves[0].shape[0] != length + 1:
            raise EventFileError(f"attribute 'length' says {length} events but the offsets "
                                 f"hold {self._leaves[0].shape[0] - 1}", self.path, _DS)
        self._length = length

    @property
    def n_events(self) -> int:
        return self._length

    def read_block(self, start: int | None = None, stop: int | None = None) -> EventBlock:
        n = self.n_events
        s, e = event_range(start, stop, n)
        flat = _read_flat(self.file[_DS], self._leaves, self.path, s, e)
        return EventBlock(_pad(flat, _pt_y_phi_fields(flat, self.path)), _DS, n)
