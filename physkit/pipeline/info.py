"""``physkit info FILE``: a plain-text summary of what an event file holds."""
from __future__ import annotations

import os

import numpy as np

from .. import io as pio
from ..io.npz import NpzMember, npz_names
from ..io.pandas_frame import PandasFrame
from ..io.physkit_jagged import check_offsets, jagged_leaves

__all__ = ["describe", "multiplicities"]

#: events read at a time when scanning multiplicities (bounded memory on large files)
CHUNK = 65536


def multiplicities(path, chunk: int = CHUNK) -> np.ndarray:
    """Number of particles (pT > 0) per event ``(N,)`` int64, read chunk by chunk.

    For jagged physkit files only the offsets are read.
    """
    fmt = pio.detect_format(path)
    if fmt == "physkit-jagged":
        import h5py

        with h5py.File(os.fspath(path), "r") as f:
            g = f["constituents"]
            leaves = jagged_leaves(g, path)
            return check_offsets(leaves[0][()].astype(np.int64), leaves, path, 0)
    n = pio.count_events(path)
    out = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        arr = pio.read_constituents(path, s, e)
        out[s:e] = (np.nan_to_num(arr[..., 0]) > 0).sum(axis=1)
    return out


def _fmt_attr(v) -> str:
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    s = str(v)
    return s if len(s) <= 200 else s[:197] + "..."


def _h5_lines(path) -> tuple[list[str], list[str]]:
    import h5py

    rows, attrs, frames = [], [], []
    with h5py.File(os.fspath(path), "r") as f:
        def visit(name, obj):
            if any(name.startswith(fr + "/") for fr in frames):
                return  # pandas internals: summarised by the frame line
            if isinstance(obj, h5py.Dataset):
                comp = f"  {obj.compression}" if obj.compression else ""
                rows.append(f"  {name:<28} {str(obj.shape):<18} {obj.dtype}{comp}")
            elif isinstance(obj, h5py.Group) and "pandas_type" in obj.attrs:
                frames.append(name)
                try:
                    fr = PandasFrame(f, name, path)
                    shape = f" ({fr.n} rows x {len(fr.columns)} columns)"
                except Exception:  # not a frame we can read: still list it
                    shape = ""
                rows.append(f"  {name + '/':<28} pandas {_fmt_attr(obj.attrs['pandas_type'])}"
                            f"{shape}")
        f.visititems(visit)
        for k, v in f.attrs.items():
            attrs.append(f"  {k}: {_fmt_attr(v)}")
    return rows, attrs


def _npz_lines(path) -> list[str]:
    rows = []
    for name in npz_names(path):
        with NpzMember(path, name) as m:
            rows.append(f"  {name:<28} {str(m.shape):<18} {m.dtype}")
    return rows


def _root_lines(path, limit: int = 40) -> list[str]:
    """One line per branch of the event tree the reader picked (name, type), the first
    ``limit`` of them."""
    with pio.open_events(path) as reader:
        tree = reader.source
        lines = [f"  tree {tree.name}: particles {reader.dataset}"]
        branches = tree.tree.items(recursive=True, full_paths=False)
        for name, b in branches[:limit]:
            lines.append(f"  {name:<28} {b.typename}")
        if len(branches) > limit:
            lines.append(f"  ... and {len(branches) - limit} more branches")
    return lines


def describe(path) -> str:
    """Multi-line description of an event file.

    Format, datasets (shape, dtype, compression), number of events, particle
    multiplicity (min / median / mean / max), label counts and file attributes.
    Raises :class:`~physkit.errors.EventFileError` for unreadable files.
    """
    path = os.fspath(path)
    fmt = pio.detect_format(path)
    n = pio.count_events(path)
    lines = [f"file:    {path} ({os.path.getsize(path) / 1e6:.2f} MB)",
             f"format:  {fmt}", f"events:  {n}"]
    if fmt == "energyflow":
        rows, attrs = _npz_lines(path), []
    elif fmt == "root":
        rows, attrs = _root_lines(path), []
    else:
        rows, attrs = _h5_lines(path)
    with pio.open_events(path) as reader:
        event_level = reader.event_level
    if event_level:
        lines.append("rows:    whole events (event-level layout): jet commands need "
                     "--cluster ALG:R, e.g. --cluster antikt:1.0 --jets leading:2")
    lines.append("datasets:" if fmt != "root" else "branches:")
    lines += rows
    if n:
        mult = multiplicities(path)
        lines.append(f"particles per event: min {mult.min()}, median {np.median(mult):g}, "
                     f"mean {mult.mean():.1f}, max {mult.max()}; "
                     f"{int((mult == 0).sum())} empty")
    labels = pio.read_labels(path)
    if labels is None:
        lines.append("labels:  none")
    else:
        vals, cnt = np.unique(labels, return_counts=True)
        lines.append("labels:  " + (", ".join(f"{v}: {c}" for v, c in zip(vals, cnt))
                                    or "(no events)"))
    if attrs:
        lines.append("attributes:")
        lines += attrs
    return "\n".join(lines)
