"""Event files: read (five layouts, auto-detected) and write (the physkit format).

Layouts read, by :func:`detect_format` name:

``"physkit"``
    HDF5, dataset ``constituents`` ``(N, M, 3)`` (pT, y, phi) zero-padded, optional
    ``labels`` ``(N,)``, ``jets`` ``(N, 4)`` (pT, eta, phi, m), ``weights`` ``(N,)`` and
    any other per-event datasets; file attribute ``physkit_format = 1``.
``"physkit-jagged"``
    the same, but ``constituents`` is a group holding awkward's ``to_buffers`` form of
    records ``{pt, y, phi}`` (attributes ``form`` (JSON) and ``length``, one dataset per
    buffer). Reading ``[start, stop)`` reads only those events' offsets and values.
``"energyflow"``
    ``.npz`` with ``X`` ``(N, M, >=3)`` (pT, y, phi, ...) and labels ``y``.
``"top-tagging"``
    the top-tagging reference data set (Kasieczka et al.): pandas HDF5 with columns
    ``E_i, PX_i, PY_i, PZ_i`` (i < 200), ``truth*``, ``ttv``, ``is_signal_new``; converted
    to (pT, y, phi). The published files hold key ``table`` in pandas' "table" format
    (``/table/table`` plus ``/table/_i_table``); "fixed" format files are read as well.
``"lhco"``
    LHC Olympics 2020 R&D: pandas HDF5 (key ``df``, integer column names) of
    ``N x 2101`` values: (pT, eta, phi) for 700 particles, then the label; eta is used
    as y. Either pandas storage format ("fixed" or "table") is read.

Every reader takes ``start``/``stop`` (Python slice semantics, step 1) and reads only
those rows. Pandas files are read with h5py alone. Bad input raises
:class:`~physkit.errors.EventFileError` naming the file, dataset and event.
"""
from __future__ import annotations

import io as _io
import json
import os
import pickle
import zipfile
from typing import Any, Mapping

import numpy as np
import torch

from .angles import wrap_angle
from .kinematics import ptyphi_from_epxpypz
from .errors import EventFileError
from .events import EmptyPolicy, Events, validate_constituents
from .h5files import atomic_h5

__all__ = ["FORMAT_VERSION", "FORMATS", "detect_format", "count_events", "read_events",
           "read_constituents", "read_labels", "read_dataset", "write_events"]

#: version written to (and accepted in) the ``physkit_format`` file attribute
FORMAT_VERSION = 1
FORMATS = ("physkit", "physkit-jagged", "energyflow", "top-tagging", "lhco")

_RESERVED = {"constituents", "labels", "jets", "weights"}
_TOP_NPART = 200
_LHCO_NPART = 700


# ===================================================================== helpers
def _slice(start, stop, n: int) -> tuple[int, int]:
    """Normalise ``start``/``stop`` (Python slice rules, negatives allowed) for length n."""
    s, e, _ = slice(start, stop).indices(n)
    return s, max(s, e)


def _open_h5(path):
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(f"not a readable HDF5 file ({exc})", path) from None


def _read_rows(ds, s: int, e: int, path, name: str, what: str = "rows") -> np.ndarray:
    try:
        return ds[s:e]
    except (OSError, RuntimeError) as exc:  # truncated / corrupt chunks
        raise EventFileError(f"cannot read {what} {s}:{e} ({exc})", path, name) from None


def _is_npz(path) -> bool:
    return zipfile.is_zipfile(os.fspath(path))


# ---------------------------------------------------------------- npz members
class _NpzMember:
    """One ``.npy`` member of an ``.npz``, read row-range by row-range without loading all.

    Rows ``[s, e)`` of a stored (``np.savez``) member cost only those bytes; a compressed
    (``np.savez_compressed``) member has to be decompressed from its start up to row ``e``.
    """

    def __init__(self, path, name: str):
        self.path = os.fspath(path)
        self.name = name
        try:
            self._zip = zipfile.ZipFile(self.path)
            self._f = self._zip.open(name + ".npy")
            version = np.lib.format.read_magic(self._f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(self._f)
        except (KeyError, zipfile.BadZipFile, ValueError, OSError) as exc:
            raise EventFileError(f"cannot read .npz member ({exc})", path, name) from None
        if fortran or dtype.hasobject:
            raise EventFileError("Fortran-ordered or object arrays are not supported", path, name)
        self.shape, self.dtype = tuple(shape), dtype
        self._data_start = self._f.tell()

    def __len__(self):
        return self.shape[0] if self.shape else 0

    def read(self, s: int, e: int) -> np.ndarray:
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        try:
            self._f.seek(self._data_start + s * row)  # stored members: no decompression
            buf = self._f.read((e - s) * row)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise EventFileError(f"cannot read rows {s}:{e} ({exc})", self.path, self.name) \
                from None
        if len(buf) != (e - s) * row:
            raise EventFileError(f"truncated member: rows {s}:{e} missing", self.path, self.name)
        return np.frombuffer(buf, dtype=self.dtype).reshape((e - s,) + self.shape[1:]).copy()

    def close(self):
        self._f.close()
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _npz_names(path) -> list[str]:
    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            return [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except zipfile.BadZipFile as exc:
        raise EventFileError(f"not a readable .npz file ({exc})", path) from None


# ---------------------------------------------------------------- pandas HDF5
class _SafeUnpickler(pickle.Unpickler):
    """Pandas stores column lists as protocol-0 pickles; allow plain data only."""

    def find_class(self, module, name):  # pragma: no cover - only on hostile input
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(raw) -> Any:
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes()
    return _SafeUnpickler(_io.BytesIO(bytes(raw))).load()


def _names(arr) -> list:
    out = []
    for v in np.asarray(arr).tolist():
        out.append(v.decode() if isinstance(v, bytes) else v)
    return out


class _PandasFrame:
    """Column access to a pandas ``DataFrame`` stored by ``to_hdf`` (fixed or table)."""

    def __init__(self, f, key: str, path):
        self.path, self.key = path, key
        g = f[key]
        kind = g.attrs.get("pandas_type", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        self.columns: dict[Any, tuple[Any, Any]] = {}  # name -> (dataset, field|None, col)
        if kind == "frame":
            for b in range(int(g.attrs["nblocks"])):
                ds = g[f"block{b}_values"]
                for j, name in enumerate(_names(g[f"block{b}_items"][()])):
                    self.columns[name] = (ds, None, j)
            self.n = int(g["axis1"].shape[0])
            self.order = _names(g["axis0"][()])
        elif kind == "frame_table":
            t = g["table"]
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
        else:
            raise EventFileError(f"unsupported pandas storage {kind!r}", path, key)

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
            rows = _read_rows(ds, s, e, self.path, self.key)
            block = rows[field] if field is not None else rows
            if block.ndim == 1:  # a data column of a "table" frame
                out[:, ks[0]] = block
            else:
                out[:, ks] = block[:, js]
        return out


def _pandas_keys(f) -> dict[str, str]:
    keys = {}
    for k, obj in f.items():
        if hasattr(obj, "attrs") and "pandas_type" in obj.attrs:
            keys[k] = obj.attrs["pandas_type"]
    return keys


def _pandas_layout(f, path) -> tuple[str, str] | None:
    """(format name, key) for a pandas file we know, or None."""
    for key in _pandas_keys(f):
        frame = _PandasFrame(f, key, path)
        if "PX_0" in frame.columns and "E_0" in frame.columns:
            return "top-tagging", key
        cols = list(frame.columns)
        if len(cols) == 3 * _LHCO_NPART + 1:
            return "lhco", key
    return None


# ===================================================================== detection
def detect_format(path) -> str:
    """Name of the layout of an event file, one of :data:`FORMATS`.

    Raises :class:`EventFileError` for files that are not HDF5 / ``.npz``, physkit files
    of an unknown ``physkit_format`` version, and HDF5 files of no known layout.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if _is_npz(path):
        if "X" not in _npz_names(path):
            raise EventFileError("a .npz event file needs an array 'X' (energyflow layout)",
                                 path, "X")
        return "energyflow"
    with _open_h5(path) as f:
        return _detect_h5(f, path)


def _detect_h5(f, path) -> str:
    import h5py

    if "physkit_format" in f.attrs:
        raw = f.attrs["physkit_format"]
        raw = raw.item() if isinstance(raw, np.generic) else raw
        try:
            version = int(raw)
        except (TypeError, ValueError):
            version = None
        if version != FORMAT_VERSION:
            raise EventFileError(f"unknown physkit_format version {raw!r} "
                                 f"(this physkit reads version {FORMAT_VERSION})", path)
        if "constituents" not in f:
            raise EventFileError("missing dataset", path, "constituents")
        if isinstance(f["constituents"], h5py.Group):
            g = f["constituents"]
            if "form" not in g.attrs or "length" not in g.attrs:
                raise EventFileError("jagged group lacks the awkward 'form'/'length' attributes",
                                     path, "constituents")
            return "physkit-jagged"
        return "physkit"
    try:
        layout = _pandas_layout(f, path)
    except EventFileError:
        raise
    except Exception as exc:  # malformed pandas metadata
        raise EventFileError(f"unreadable pandas metadata ({exc})", path) from None
    if layout is not None:
        return layout[0]
    if "constituents" in f:
        raise EventFileError("file has 'constituents' but no 'physkit_format' attribute; "
                             "write it with physkit.io.write_events", path)
    raise EventFileError(f"unrecognised event file layout (top-level keys: {sorted(f.keys())})",
                         path)


# ===================================================================== counting
def count_events(path) -> int:
    """Number of events in a file (reads metadata only)."""
    fmt = detect_format(path)
    if fmt == "energyflow":
        with _NpzMember(path, "X") as m:
            return len(m)
    with _open_h5(path) as f:
        if fmt == "physkit":
            return int(f["constituents"].shape[0])
        if fmt == "physkit-jagged":
            return int(f["constituents"].attrs["length"])
        _, key = _pandas_layout(f, path)
        return _PandasFrame(f, key, path).n


# ===================================================================== raw reads
def _jagged_leaves(g, path):
    """(offsets dataset, {field: data dataset}) of a physkit jagged group, or None."""
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


def _read_jagged(f, path, s: int, e: int) -> dict[str, np.ndarray]:
    """Flat columns and counts of events [s, e) of a jagged physkit file."""
    g = f["constituents"]
    dsname = "constituents"
    leaves = _jagged_leaves(g, path)
    if leaves is None:  # a form we don't slice by hand: materialise with awkward
        import awkward as ak

        arr = ak.from_buffers(g.attrs["form"], int(g.attrs["length"]),
                              {k: g[k][()] for k in g.keys()})[s:e]
        flat = {k: ak.to_numpy(ak.flatten(arr[k])) for k in ak.fields(arr)}
        flat["_counts"] = ak.to_numpy(ak.num(arr))
        return flat
    offsets_ds, data = leaves
    off = _read_rows(offsets_ds, s, e + 1, path, dsname, "offsets").astype(np.int64)
    if off.size != e - s + 1 or np.any(np.diff(off) < 0):
        raise EventFileError("corrupt offsets", path, dsname, s)
    flat = {k: _read_rows(ds, int(off[0]), int(off[-1]), path, dsname,
                          f"particles of events {s}:{e}, flat range")
            for k, ds in data.items()}
    flat["_counts"] = np.diff(off)
    return flat


def _pad_flat(flat: dict, fields: tuple[str, str, str]) -> np.ndarray:
    counts = flat["_counts"]
    n = counts.size
    m = max(int(counts.max()) if n else 0, 1)
    out = np.zeros((n, m, 3), dtype=np.float32)
    rows = np.repeat(np.arange(n), counts)
    cols = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    for k, name in enumerate(fields):
        out[rows, cols, k] = flat[name]
    return out


def _jagged_fields(flat: dict, path) -> tuple[str, str, str]:
    if "pt" in flat and "phi" in flat and ("y" in flat or "eta" in flat):
        return ("pt", "y" if "y" in flat else "eta", "phi")
    raise EventFileError(f"jagged records need fields (pt, y, phi), got "
                         f"{sorted(k for k in flat if k != '_counts')}", path, "constituents")


def _read_block(path, s, e, fmt: str | None = None) -> tuple[np.ndarray, str, int]:
    """(raw (n, M, 3) array, dataset name for messages, total events) for rows [s, e)."""
    fmt = fmt or detect_format(path)
    if fmt == "energyflow":
        with _NpzMember(path, "X") as m:
            n = len(m)
            s, e = _slice(s, e, n)
            if len(m.shape) != 3 or m.shape[2] < 3:
                raise EventFileError(f"expected shape (N, M, >=3) for (pT, y, phi, ...), got "
                                     f"{m.shape}", path, "X")
            return m.read(s, e)[..., :3], "X", n
    with _open_h5(path) as f:
        if fmt == "physkit":
            ds = f["constituents"]
            n = ds.shape[0]
            s, e = _slice(s, e, n)
            if ds.ndim != 3 or ds.shape[2] != 3:
                raise EventFileError(f"expected shape (N, M, 3) for (pT, y, phi), got "
                                     f"{ds.shape}", path, "constituents")
            return _read_rows(ds, s, e, path, "constituents"), "constituents", n
        if fmt == "physkit-jagged":
            n = int(f["constituents"].attrs["length"])
            s, e = _slice(s, e, n)
            flat = _read_jagged(f, path, s, e)
            return _pad_flat(flat, _jagged_fields(flat, path)), "constituents", n
        _, key = _pandas_layout(f, path)
        frame = _PandasFrame(f, key, path)
        n = frame.n
        s, e = _slice(s, e, n)
        if fmt == "top-tagging":
            npart = sum(1 for c in frame.columns if isinstance(c, str) and c.startswith("E_")
                        and c[2:].isdigit())
            cols = [f"{c}_{i}" for c in ("E", "PX", "PY", "PZ") for i in range(npart)]
            v = frame.read(cols, s, e).reshape(e - s, 4, npart)
            return ptyphi_from_epxpypz(v[:, 0], v[:, 1], v[:, 2], v[:, 3]), key, n
        # lhco: columns in stored order, (pT, eta, phi) x 700 then the label
        cols = frame.order[:3 * _LHCO_NPART]
        v = frame.read(cols, s, e).reshape(e - s, _LHCO_NPART, 3)
        v[..., 2] = np.where(v[..., 0] > 0, wrap_angle(v[..., 2]), 0.0)
        return v, key, n


def read_constituents(path, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """Raw padded constituents ``(n, M, 3)`` (pT, y, phi) of events ``[start, stop)``.

    Not validated (callers validate per event with
    :func:`physkit.events.validate_constituents`). Float32 for physkit/energyflow
    files as stored, float64 for the converted pandas layouts.
    """
    return _read_block(path, start, stop)[0]


# ===================================================================== public reads
def read_events(path, start: int | None = None, stop: int | None = None, *,
                empty: EmptyPolicy = "error", dtype: torch.dtype = torch.float32,
                device=None) -> Events:
    """Read events ``[start, stop)`` of any supported layout as validated :class:`Events`.

    ``empty="skip"`` drops events with no particles (labels from :func:`read_labels`
    then no longer line up), ``"zero"`` keeps them with zero weights. Raises
    :class:`EventFileError` naming the file, dataset and the global index of the first
    bad event.
    """
    fmt = detect_format(path)
    arr, name, n_total = _read_block(path, start, stop, fmt)
    s, _ = _slice(start, stop, n_total)
    keep = validate_constituents(arr, path=path, dataset=name, offset=s, empty=empty)
    if not keep.all():
        arr = arr[keep]
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    ev = Events.from_padded(np.ascontiguousarray(arr, dtype=np_dtype), validate=False,
                            device=device, dtype=dtype)
    return ev


def read_labels(path, start: int | None = None, stop: int | None = None) -> np.ndarray | None:
    """Labels of events ``[start, stop)`` as int64 ``(n,)``, or None if the file has none."""
    fmt = detect_format(path)
    if fmt == "energyflow":
        if "y" not in _npz_names(path):
            return None
        with _NpzMember(path, "y") as m:
            s, e = _slice(start, stop, len(m))
            return _as_labels(m.read(s, e), path, "y", s)
    with _open_h5(path) as f:
        if fmt in ("physkit", "physkit-jagged"):
            if "labels" not in f:
                return None
            ds = f["labels"]
            s, e = _slice(start, stop, ds.shape[0])
            return _as_labels(_read_rows(ds, s, e, path, "labels"), path, "labels", s)
        _, key = _pandas_layout(f, path)
        frame = _PandasFrame(f, key, path)
        s, e = _slice(start, stop, frame.n)
        col = "is_signal_new" if fmt == "top-tagging" else frame.order[3 * _LHCO_NPART]
        return _as_labels(frame.read([col], s, e)[:, 0], path, key, s)


def _as_labels(v: np.ndarray, path, name, offset: int) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim != 1:
        raise EventFileError(f"labels must be one per event, got shape {v.shape}", path, name)
    if np.issubdtype(v.dtype, np.floating):
        bad = ~np.isfinite(v) | (v != np.round(v))
        if bad.any():
            raise EventFileError("non-integer label", path, name,
                                 offset + int(np.flatnonzero(bad)[0]))
    return v.astype(np.int64)


def read_dataset(path, name: str, start: int | None = None,
                 stop: int | None = None) -> np.ndarray:
    """Rows ``[start, stop)`` of another per-event dataset (e.g. ``jets``, ``tau_kt``).

    For ``.npz`` files ``name`` is an array name; for pandas layouts a column name.
    """
    fmt = detect_format(path)
    if fmt == "energyflow":
        if name not in _npz_names(path):
            raise EventFileError("missing dataset", path, name)
        with _NpzMember(path, name) as m:
            s, e = _slice(start, stop, len(m))
            return m.read(s, e)
    with _open_h5(path) as f:
        if fmt in ("physkit", "physkit-jagged"):
            import h5py

            if name not in f:
                raise EventFileError("missing dataset", path, name)
            if not isinstance(f[name], h5py.Dataset):
                raise EventFileError("not a per-event dataset (use read_constituents / "
                                     "read_events for constituents)", path, name)
            ds = f[name]
            s, e = _slice(start, stop, ds.shape[0])
            return _read_rows(ds, s, e, path, name)
        _, key = _pandas_layout(f, path)
        frame = _PandasFrame(f, key, path)
        s, e = _slice(start, stop, frame.n)
        if name not in frame.columns:
            raise EventFileError(f"missing column {name!r}", path, key)
        return frame.read([name], s, e, dtype=np.float64)[:, 0]


# ===================================================================== writing
def _to_padded_array(events) -> np.ndarray:
    if isinstance(events, Events):
        return events.to_padded()
    if isinstance(events, torch.Tensor):
        return events.detach().cpu().numpy()
    try:
        import awkward as ak

        if isinstance(events, ak.Array):
            return Events.from_awkward(events, dtype=torch.float64, empty="zero").to_padded()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(events)


def write_events(path, events, labels=None, *, jets=None, weights=None,
                 extra: Mapping[str, Any] | None = None, attrs: Mapping[str, Any] | None = None,
                 jagged: bool = False, compression: str | None = "gzip") -> str:
    """Write events in the physkit format (``physkit_format = 1``); returns the path.

    ``events``: :class:`Events`, a padded ``(N, M, >=3)`` (pT, y, phi) array/tensor, or an
    awkward array of particle records. ``labels`` ``(N,)`` (stored int8 when it fits),
    ``jets`` ``(N, 4)`` (pT, eta, phi, m), ``weights`` ``(N,)``, ``extra``: more per-event
    datasets by name, ``attrs``: file attributes. ``jagged=True`` stores the constituents
    as awkward buffers (no padding). The file is written under a temporary name in the
    same directory and renamed at the end, so a failed write leaves no file behind.
    """
    path = os.fspath(path)
    arr = np.asarray(_to_padded_array(events))
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"events must be (N, M, 3) (pT, y, phi), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr[..., :3], dtype=np.float32)
    validate_constituents(arr, path=path, dataset="constituents", empty="zero")
    arr = arr.copy()
    arr[..., 2] = np.where(arr[..., 0] > 0, wrap_angle(arr[..., 2]), 0.0)
    n = arr.shape[0]

    per_event: dict[str, np.ndarray] = {}
    if labels is not None:
        lab = np.asarray(labels)
        if lab.size == 0 or (np.all(lab == np.round(lab)) and lab.min() >= -128
                             and lab.max() <= 127):
            lab = lab.astype(np.int8)
        per_event["labels"] = lab
    if jets is not None:
        per_event["jets"] = np.asarray(jets, dtype=np.float64)
        if per_event["jets"].ndim != 2 or per_event["jets"].shape[1] != 4:
            raise ValueError(f"jets must be (N, 4) (pT, eta, phi, m), got "
                             f"{per_event['jets'].shape}")
    if weights is not None:
        per_event["weights"] = np.asarray(weights, dtype=np.float64)
    for k, v in (extra or {}).items():
        if k in _RESERVED:
            raise ValueError(f"extra dataset name {k!r} is reserved")
        per_event[k] = np.asarray(v)
    for k, v in per_event.items():
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(f"dataset {k!r} has {v.shape[0] if v.ndim else 0} rows, "
                             f"expected {n} (one per event)")

    opts = {} if compression is None else {"compression": compression, "shuffle": True}
    with atomic_h5(path) as f:
        f.attrs["physkit_format"] = FORMAT_VERSION
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        if jagged:
            _write_jagged(f, arr, opts)
        else:
            m = arr.shape[1]
            rows = max(1, min(n, (1 << 18) // max(1, m * 3)))
            f.create_dataset("constituents", data=arr,
                             chunks=(rows, m, 3) if n and m else None, **opts)
            f["constituents"].attrs["columns"] = "pT, y, phi"
        for k, v in per_event.items():
            f.create_dataset(k, data=v, **(opts if v.size > 64 else {}))
    return path


def _write_jagged(f, arr: np.ndarray, opts: dict) -> None:
    import awkward as ak

    mask = arr[..., 0] > 0
    counts = mask.sum(axis=1)
    # keep each event's particles in their stored order (real ones only)
    order = np.argsort(~mask, axis=1, kind="stable")
    srt = np.take_along_axis(arr, order[..., None], axis=1)
    keep = np.arange(arr.shape[1])[None, :] < counts[:, None]
    flat = srt[keep]
    rec = ak.zip({"pt": flat[:, 0], "y": flat[:, 1], "phi": flat[:, 2]})
    jag = ak.to_packed(ak.unflatten(rec, counts))
    form, length, buffers = ak.to_buffers(jag)
    g = f.create_group("constituents")
    g.attrs["form"] = form.to_json()
    g.attrs["length"] = int(length)
    g.attrs["layout"] = "awkward to_buffers"
    for k, v in buffers.items():
        v = np.asarray(v)
        g.create_dataset(k, data=v, **(opts if v.size > 64 else {}))
