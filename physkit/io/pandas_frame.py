"""Pandas ``DataFrame`` objects stored by ``DataFrame.to_hdf``, read with h5py alone.

Either storage format is read:

``"fixed"`` (``pandas_type = "frame"``)
    ``axis0`` (column names), ``axis1`` (index), and per dtype block ``block{b}_items``
    (its column names) with ``block{b}_values`` ``(rows, columns)``.
``"table"`` (``pandas_type = "frame_table"``)
    a compound dataset ``table`` with fields ``index``, ``values_block_{k}``
    ``(rows, columns)`` and one field per data column; the column names of a block are
    a protocol-0 pickle in the attribute ``values_block_{k}_kind`` and the column order
    in ``non_index_axes`` (also pickled). Those pickles are read by
    :class:`_SafeUnpickler`, which loads plain data only.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from ..errors import EventFileError
from . import hdf5
from .reader import PathLike

__all__ = ["PandasFrame", "pandas_keys"]


class _SafeUnpickler(pickle.Unpickler):
    """Pandas stores column lists as protocol-0 pickles; allow plain data only."""

    def find_class(self, module, name):  # pragma: no cover - only on hostile input
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(raw) -> Any:
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes()
    return _SafeUnpickler(io.BytesIO(bytes(raw))).load()


def _names(arr) -> list:
    out = []
    for v in np.asarray(arr).tolist():
        out.append(v.decode() if isinstance(v, bytes) else v)
    return out


def pandas_keys(f: Any) -> dict[str, Any]:
    """Top-level keys of an open HDF5 file that hold pandas objects -> their pandas_type."""
    keys = {}
    for k, obj in f.items():
        if hasattr(obj, "attrs") and "pandas_type" in obj.attrs:
            keys[k] = obj.attrs["pandas_type"]
    return keys


class PandasFrame:
    """Column access to the frame under ``key`` of the open HDF5 file ``f``.

    :attr:`columns` maps a column name to where it is stored, :attr:`order` lists the
    names in the frame's column order, :attr:`n` is the number of rows.
    """

    def __init__(self, f: Any, key: str, path: PathLike):
        self.path, self.key = path, key
        g = f[key]
        kind = g.attrs.get("pandas_type", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        self.columns: dict[Any, tuple[Any, Any, Any]] = {}  # name -> (dataset, field|None, col)
        if kind == "frame":
            self._read_fixed_layout(g)
        elif kind == "frame_table":
            self._read_table_layout(g)
        else:
            raise EventFileError(f"unsupported pandas storage {kind!r}", path, key)

    def _read_fixed_layout(self, g) -> None:
        self.n = int(g["axis1"].shape[0])
        for b in range(int(g.attrs["nblocks"])):
            ds = g[f"block{b}_values"]
            names = _names(g[f"block{b}_items"][()])
            if ds.shape != (self.n, len(names)):
                raise EventFileError(f"block{b}_values has shape {ds.shape}, expected "
                                     f"{(self.n, len(names))} ({self.n} rows)", self.path,
                                     self.key)
            hdf5.check_declared_size(ds, self.path, self.key)
            for j, name in enumerate(names):
                self.columns[name] = (ds, None, j)
        self.order = _names(g["axis0"][()])

    def _read_table_layout(self, g) -> None:
        t = g["table"]
        if t.dtype.names is None or t.ndim != 1:
            raise EventFileError("pandas 'table' is not a 1-D compound dataset", self.path,
                                 self.key)
        hdf5.check_declared_size(t, self.path, self.key)
        for field in t.dtype.names:
            if field == "index":
                continue
            if field.startswith("values_block_"):
                names = _unpickle(t.attrs[f"{field}_kind"])
                for j, name in enumerate(names):
                    self.columns[name] = (t, field, j)
            else:  # a data column: its own field
                self.columns[field] = (t, field, None)
        self.n = int(t.shape[0])
        self.order = list(self.columns)
        if "non_index_axes" in g.attrs:
            axes = dict((int(a), list(c)) for a, c in _unpickle(g.attrs["non_index_axes"]))
            if 1 in axes and set(axes[1]) == set(self.columns):
                self.order = axes[1]

    def read(self, names, s: int, e: int, dtype=np.float64) -> np.ndarray:
        """Columns ``names`` of rows ``[s, e)`` as an ``(e - s, len(names))`` array."""
        out = np.empty((e - s, len(names)), dtype=dtype)
        groups: dict = {}  # (dataset, field) -> (output positions, block columns)
        for k, name in enumerate(names):
            if name not in self.columns:
                raise EventFileError(f"missing column {name!r}", self.path, self.key)
            ds, field, j = self.columns[name]
            g = groups.setdefault((ds.name, field), (ds, field, [], []))
            g[2].append(k)
            g[3].append(j)
        for ds, field, ks, js in groups.values():
            rows = hdf5.read_rows(ds, s, e, self.path, self.key)
            block = rows[field] if field is not None else rows
            if block.dtype.kind not in "biuf" or block.dtype.names is not None:
                raise EventFileError(f"column(s) {[names[k] for k in ks][:3]} hold "
                                     f"{block.dtype}, not numbers", self.path, self.key)
            if block.ndim == 1:  # a data column of a "table" frame
                out[:, ks[0]] = block
            else:
                out[:, ks] = block[:, js]
        return out
