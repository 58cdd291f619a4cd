"""Results files: written chunk by chunk, resumable, renamed into place when complete.

Layout of a finished results file (HDF5, file attribute ``physkit_results = 1``):

- one group per observable (or per score), holding ``value`` ``(N,)``, one dataset per
  fitted parameter ``(N, ...)`` and ``status`` ``(N,)`` int8 (:class:`Status`), with the
  run's settings for it as group attributes; a run over no events writes the same groups
  with zero rows;
- top-level ``source_file`` ``(N,)`` (the input file of each row, as given) and
  ``source_index`` ``(N,)`` int64 (the row's event index in that file), ``event_problem``
  ``(N,)`` int8 (:data:`physkit.events.EVENT_PROBLEMS` code, 0 = fine) and ``labels``
  ``(N,)`` when the inputs had them; in a run that mixes files with and without labels,
  the rows of the unlabelled files get :data:`NO_LABEL` (-1) and the file attribute
  ``unlabelled_files`` lists those files;
- the run's settings as file attributes (``settings``: JSON).

While a run is in progress the output lives in the directory ``OUT.h5.partial/``:
``lock`` (held with ``flock`` by the one run writing there: a second run on the same
output is refused), ``manifest.json`` (inputs, event counts and settings, fixed at the
start) and one small HDF5 file per finished chunk, written under a temporary name and
renamed, so the rename is the chunk's completion mark and a run killed at any moment
leaves every completed chunk readable. Each chunk file records, as its root attribute
``input_digest``, a BLAKE2b digest of the input rows the chunk read; ``resume=True``
keeps the completed chunks of a matching manifest, and the runner redoes those whose
input digest no longer matches (an input edited in place). :meth:`ChunkStore.finalize`
concatenates the chunks (in order, one at a time) into ``OUT.h5`` under a temporary name
and renames it, so ``OUT.h5`` exists only when complete.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Iterable, Mapping

import numpy as np

from ..h5files import atomic_h5, has_root_attr
from ..io.physkit_file import integer_attr
from ..status import Status

__all__ = ["RESULTS_FORMAT", "NO_LABEL", "Status", "ChunkStore", "ResultsFormatError",
           "RunLockedError", "is_results_file", "read_results", "result_groups",
           "results_settings", "describe_results", "partial_progress", "write_results",
           "SHAPE_VALUE"]

#: version written to (and required in) the ``physkit_results`` file attribute
RESULTS_FORMAT = 1
#: ``labels`` value of rows from unlabelled files in a run that mixes labelled and
#: unlabelled files (such a run refuses input files that use -1 as a label)
NO_LABEL = -1

#: top-level per-row datasets (not observables); ``jet_index`` and ``jet`` (pT, eta, phi,
#: mass) for jets clustered from events (or taken from events -> jets -> particles arrays)
ROW_DATASETS = ("source_file", "source_index", "jet_index", "jet", "event_problem", "labels")
#: what a SHAPER group's ``value`` is (its ``value`` attribute)
SHAPE_VALUE = "exact EMD between the jet and its fitted shape"

_MANIFEST = "manifest.json"
_LOCK = "lock"
_DIGEST = "input_digest"


class ResultsFormatError(ValueError):
    """A results file (or partial run directory) that is not what this physkit writes."""


class RunLockedError(ResultsFormatError):
    """Another live run holds the lock of the partial directory of the same output."""


def _take_lock(directory: str, out: str) -> int:
    """Create ``directory`` and hold ``directory/lock`` (``flock``, released when the
    process ends); returns its descriptor. A lock held by another process raises
    :class:`RunLockedError`."""
    import fcntl

    for _ in range(10):  # the directory may vanish (a finishing run) between open and lock
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, _LOCK)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise RunLockedError(
                f"{out}: another physkit run{f' (pid {owner})' if owner else ''} is writing "
                f"it ({directory}/ is locked); wait for it to finish or choose another "
                f"output") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)
    raise RunLockedError(f"{out}: could not lock {directory}/ (it keeps disappearing)")


# ===================================================================== writing
def _atomic_h5(path: str, write, *, in_memory: bool = False) -> None:
    """Call ``write(h5py.File)`` on a temporary file next to ``path``, then rename it."""
    with atomic_h5(path, track_order=True, in_memory=in_memory) as f:
        write(f)


def _in_child(fn) -> None:
    """Run ``fn()`` in a forked child process (POSIX; in-process elsewhere): a write that
    fails there (a full disk, a file-size limit) or crashes HDF5 leaves this process's
    HDF5 untouched; the child's error comes back as ``OSError`` with its message."""
    if not hasattr(os, "fork"):  # pragma: no cover - not POSIX
        fn()
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code; HDF5's complaints
        code = 0  # about a failed write go nowhere, its message goes up the pipe
        try:
            os.close(r)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            fn()
        except BaseException as exc:
            errno = getattr(exc, "errno", None)
            text = os.strerror(errno) if isinstance(errno, int) and errno else str(exc)
            os.write(w, text.encode(errors="replace")[:4000])
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        message = fh.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise OSError(f"the writer died of signal {os.WTERMSIG(status)} {message}".strip())
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(message or "the writer failed")


def _write_array(parent, name: str, arr: np.ndarray, compress: bool) -> None:
    arr = np.asarray(arr)
    if arr.dtype.kind == "O":
        raise TypeError(f"dataset {name!r}: object arrays are not stored")
    if arr.dtype.kind == "U":  # fixed-length byte strings holding UTF-8
        arr = np.char.encode(arr, "utf-8")
    opts = {"compression": "gzip", "shuffle": True} if compress and arr.size > 256 else {}
    parent.create_dataset(name, data=arr, **opts)


def _jsonable_attr(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    if v is None:
        return "null"
    return v


class ChunkStore:
    """The in-progress output of a chunked run: ``OUT.h5.partial/`` (see module docstring).

    Parameters
    ----------
    path : the final results file ``OUT.h5``.
    manifest : JSON-able description of the run (inputs, counts, settings, chunk size). On
        ``resume`` it must equal the stored one, otherwise :class:`ResultsFormatError`.
    resume : keep the completed chunks of an earlier run with the same manifest. Without
        it, an earlier partial directory is emptied and the run starts over.

    The store holds the directory's lock from construction until :meth:`finalize` or
    :meth:`close` (use it as a context manager); a second store on the same output
    raises :class:`RunLockedError` meanwhile.
    """

    def __init__(self, path, manifest: Mapping[str, Any], *, resume: bool = False):
        self.path = os.fspath(path)
        self.dir = self.path + ".partial"
        self.manifest = json.loads(json.dumps(dict(manifest), sort_keys=True))
        mpath = os.path.join(self.dir, _MANIFEST)
        self._lock = None
        self._lock = _take_lock(self.dir, self.path)
        #: whether an earlier partial run was found and discarded (started over)
        self.started_over = False
        try:
            self._remove_stale_final_tmp()
            if resume and os.path.exists(mpath):
                self._check_manifest(mpath)
            else:
                self.started_over = os.path.exists(mpath)
                self._start_over(mpath)
        except BaseException:
            self.close()
            raise

    def _check_manifest(self, mpath: str) -> None:
        try:
            with open(mpath) as fh:
                old = json.load(fh)
        except ValueError:
            old = {}
        if old != self.manifest:
            diff = sorted(k for k in set(old) | set(self.manifest)
                          if old.get(k) != self.manifest.get(k))
            raise ResultsFormatError(
                f"{self.dir}: cannot resume: the earlier run had different {', '.join(diff)}"
                f" (run without --resume to start over)")

    def _start_over(self, mpath: str) -> None:
        """Empty the directory (all but the lock) and write the manifest."""
        for name in os.listdir(self.dir):
            if name != _LOCK:
                p = os.path.join(self.dir, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        tmp = mpath + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.manifest, fh, sort_keys=True, indent=1)
        os.replace(tmp, mpath)

    def abandon(self) -> None:
        """Remove the partial directory if no chunk was completed (nothing to resume), and
        release the lock."""
        if not self.completed():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.close()

    def close(self) -> None:
        """Release the lock (the partial directory stays for a later ``--resume``)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> "ChunkStore":
        return self

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __exit__(self, *exc) -> None:
        self.close()

    def _remove_stale_final_tmp(self) -> None:
        """Remove temporary final files left by a run killed while finalizing."""
        d = os.path.dirname(os.path.abspath(self.path))
        prefix = "." + os.path.basename(self.path) + "."
        for name in os.listdir(d):
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(d, name))
                except OSError:  # pragma: no cover - raced with someone else
                    pass

    def _chunk_path(self, key: str) -> str:
        return os.path.join(self.dir, f"chunk-{key}.h5")

    def done(self, key: str) -> bool:
        """Whether chunk ``key`` is complete (its file exists under its final name)."""
        return os.path.exists(self._chunk_path(key))

    def completed(self) -> list[str]:
        """Keys of the completed chunks."""
        return sorted(n[6:-3] for n in os.listdir(self.dir)
                      if n.startswith("chunk-") and n.endswith(".h5"))

    def input_digest(self, key: str) -> str | None:
        """The ``input_digest`` recorded with completed chunk ``key`` (None if absent)."""
        import h5py

        try:
            with h5py.File(self._chunk_path(key), "r") as f:
                v = f.attrs.get(_DIGEST)
        except OSError:
            return None
        return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)

    def discard(self, key: str) -> None:
        """Forget completed chunk ``key`` (it will be redone)."""
        try:
            os.unlink(self._chunk_path(key))
        except FileNotFoundError:
            pass

    def write_chunk(self, key: str, arrays: Mapping[str, np.ndarray],
                    attrs: Mapping[str, Any] | None = None, *,
                    input_digest: str | None = None) -> None:
        """Store one chunk atomically: ``arrays`` maps ``"group/dataset"`` or top-level
        names to arrays whose first axis is the chunk's rows; ``attrs`` maps group names
        (``""`` for the file) to attribute dicts; ``input_digest`` (of the input rows the
        chunk read) is recorded with it."""
        if input_digest is not None:
            attrs = dict(attrs or {})
            attrs[""] = {**attrs.get("", {}), _DIGEST: input_digest}
        def write(f):
            for name, arr in arrays.items():
                grp, _, ds = name.rpartition("/")
                parent = f.require_group(grp) if grp else f
                _write_array(parent, ds, arr, compress=False)
            for grp, a in (attrs or {}).items():
                obj = f.require_group(grp) if grp else f
                for k, v in a.items():
                    obj.attrs[k] = _jsonable_attr(v)
        _atomic_h5(self._chunk_path(key), write, in_memory=True)  # small: failures are clean

    def _scan(self, keys: list) -> tuple[dict, list, dict]:
        """Datasets ``{name: (dtype, row shape)}`` (the widest strings win), rows per chunk
        and group attributes (the first chunk's win) of chunks ``keys``."""
        import h5py

        specs: dict[str, tuple] = {}
        rows = []
        gattrs: dict[str, dict] = {}
        for k in keys:
            with h5py.File(self._chunk_path(k), "r") as f:
                n = None

                def visit(name, obj):
                    nonlocal n
                    if isinstance(obj, h5py.Dataset):
                        if name not in specs:
                            specs[name] = (obj.dtype, obj.shape[1:])
                        elif (obj.dtype.kind == "S" and
                              obj.dtype.itemsize > specs[name][0].itemsize):
                            specs[name] = (obj.dtype, specs[name][1])  # widest strings
                        if specs[name][1] != obj.shape[1:]:
                            raise ResultsFormatError(
                                f"{self._chunk_path(k)}: dataset {name!r} has shape "
                                f"{obj.shape}, other chunks {specs[name][1]}")
                        if n is None:
                            n = obj.shape[0]
                    elif isinstance(obj, h5py.Group):
                        gattrs.setdefault(name, {}).update(
                            {a: v for a, v in obj.attrs.items()
                             if a not in gattrs.get(name, {})})
                f.visititems(visit)
                rows.append(int(n or 0))
        return specs, rows, gattrs

    def finalize(self, keys: Iterable[str], attrs: Mapping[str, Any] | None = None,
                 group_attrs: Mapping[str, Mapping[str, Any]] | None = None,
                 fill: Mapping[str, Any] | None = None) -> str:
        """Concatenate chunks ``keys`` (in this order) into the final file; returns its path.

        A dataset missing from some chunks (e.g. parameters of a chunk whose events were
        all bad) is filled there with ``fill[name]`` if given, else NaN (floats), 0
        (integers) or ``b""`` (strings). Group attributes stored with the chunks are kept
        (the first chunk's win); ``group_attrs`` adds more. Removes the partial directory
        afterwards and releases the lock.
        """
        import h5py

        fill = dict(fill or {})
        keys = list(keys)
        specs, rows, gattrs = self._scan(keys)
        total = int(sum(rows))
        flush_rows = 65536
        offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

        def write(out):
            out.attrs["physkit_results"] = RESULTS_FORMAT
            for k, v in (attrs or {}).items():
                out.attrs[k] = _jsonable_attr(v)
            order = sorted(specs, key=lambda s: (s.count("/") > 0, s))
            for name in order:
                dtype, tail = specs[name]
                grp, _, ds = name.rpartition("/")
                parent = out.require_group(grp) if grp else out
                chunk_rows = max(1, min(total, flush_rows)) if total else None
                opts = {}
                if total:
                    opts = {"chunks": (chunk_rows,) + tuple(tail), "compression": "gzip",
                            "shuffle": True}
                if dtype.kind == "f":
                    opts["fillvalue"] = np.nan
                parent.create_dataset(ds, shape=(total,) + tuple(tail), dtype=dtype, **opts)
            for grp, a in gattrs.items():
                obj = out.require_group(grp)
                for kk, v in a.items():
                    obj.attrs[kk] = v
            for grp, a in (group_attrs or {}).items():
                obj = out.require_group(grp)
                for kk, v in a.items():
                    obj.attrs[kk] = _jsonable_attr(v)
            # copy the chunks in order, buffering rows up to one HDF5 chunk per write
            buf: dict[str, list] = {name: [] for name in specs}
            filled, pos = 0, 0

            def flush():
                nonlocal filled, pos
                for name in specs:
                    if buf[name]:
                        out[name][pos:pos + filled] = np.concatenate(buf[name])
                    buf[name] = []
                pos += filled
                filled = 0

            for i, k in enumerate(keys):
                nrow = int(offsets[i + 1] - offsets[i])
                if nrow == 0:
                    continue
                with h5py.File(self._chunk_path(k), "r") as f:
                    for name, (dtype, tail) in specs.items():
                        if name in f:
                            a = f[name][()]
                        else:
                            a = np.zeros((nrow,) + tuple(tail), dtype=dtype)
                            if name in fill:
                                a[...] = fill[name]
                            elif dtype.kind == "f":
                                a[...] = np.nan
                        buf[name].append(a)
                filled += nrow
                if filled >= flush_rows:
                    flush()
            flush()
        try:  # large: written by a child process, so a failing write cannot crash this one
            _in_child(lambda: _atomic_h5(self.path, write))
        except OSError:
            self._remove_stale_final_tmp()
            raise
        shutil.rmtree(self.dir)
        self.close()
        return self.path


def write_results(results, path, *, events=None, origin=None, labels=None,
                  source_file=None, clustering=None, settings: Mapping[str, Any] | None = None,
                  overwrite: bool = False) -> str:
    """Write in-memory SHAPER results (:class:`shaper.Results` of
    :meth:`shaper.Shaper.compute`) as a results file, the layout ``physkit shape`` writes,
    so ``physkit report``, ``physkit info`` (and, with ``source_file``, ``finder fit
    --features shape:PATH``) read it. Written whole or not at all; returns ``path``.

    Parameters
    ----------
    results : mapping observable name -> result with ``value (N,)``, ``params`` (name ->
        ``(N, ...)``) and ``status (N,)`` (gradients are not stored).
    events : the :class:`~physkit.events.Events` the results were computed on, or the
        :class:`~physkit.jets.ClusteredJets` they came from: their ``origin`` (jets
        clustered from events, or from events -> jets -> particles arrays) gives
        ``source_index`` (the event) and ``jet_index`` per row.
    origin : ``(N, 2)`` (event index, jet index) instead of ``events``; without either,
        ``source_index`` is the row number.
    labels : ``(N,)`` integer labels.
    source_file : the event file (or ``(N,)`` files) the rows were read from; the report
        draws its event displays from it (jets: clustered again with ``clustering``).
    clustering : how jets were clustered from the events of ``source_file``
        (:class:`~physkit.jets.Clustering` or its dict; taken from ``ClusteredJets``).
    settings : the run's settings (default: ``results.settings``, the Shaper's).
    overwrite : replace an existing ``path`` (default: FileExistsError).
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    names = list(results)
    n = len(results[names[0]].value) if names else 0
    if clustering is None and hasattr(events, "clustering"):  # ClusteredJets
        clustering = events.clustering
    events = getattr(events, "events", events)
    if origin is None and events is not None:
        origin = getattr(events, "origin", None)
    if origin is not None and source_file is not None and clustering is None:
        raise ValueError("write_results: rows are jets of events (origin given) and "
                         "source_file names the events: pass clustering= (how the jets were "
                         "made) so that they can be found again, or leave source_file out")
    rows: dict[str, np.ndarray] = {"source_index": np.arange(n, dtype=np.int64)}
    if origin is not None:
        origin = np.asarray(origin, dtype=np.int64).reshape(-1, 2)
        rows["source_index"], rows["jet_index"] = origin[:, 0], origin[:, 1]
    if source_file is not None:
        rows["source_file"] = np.broadcast_to(np.asarray(source_file, dtype=str), (n,))
    if labels is not None:
        rows["labels"] = np.asarray(labels, dtype=np.int64)
    for k, v in rows.items():
        if len(v) != n:
            raise ValueError(f"write_results: {k} has {len(v)} rows, the results {n}")
    run = dict(settings if settings is not None else getattr(results, "settings", {}) or {})
    run.setdefault("command", "shape")
    run.setdefault("observables", names)
    if clustering is not None:
        run["clustering"] = dict(getattr(clustering, "to_dict", lambda: clustering)())

    def write(f):
        f.attrs["physkit_results"] = RESULTS_FORMAT
        f.attrs["settings"] = _jsonable_attr(run)
        for k, v in rows.items():
            _write_array(f, k, v, compress=True)
        for name in names:
            r, g = results[name], f.create_group(name)
            _write_array(g, "value", np.asarray(r.value, dtype=np.float64), compress=True)
            for k, v in r.params.items():
                _write_array(g, k, np.asarray(v, dtype=np.float64), compress=True)
            _write_array(g, "status", np.asarray(r.status, dtype=np.int8), compress=True)
            for k, v in {"observable": name, "R": run.get("R"), "beta": run.get("beta"),
                         "value": SHAPE_VALUE}.items():
                g.attrs[k] = _jsonable_attr(v)
    _atomic_h5(path, write)
    return path


def partial_progress(path) -> tuple[int, dict]:
    """(number of completed chunks, manifest) of the partial run for results file ``path``
    (or of the ``.partial`` directory itself)."""
    d = os.fspath(path)
    if not d.endswith(".partial"):
        d += ".partial"
    with open(os.path.join(d, _MANIFEST)) as fh:
        manifest = json.load(fh)
    n = sum(1 for x in os.listdir(d) if x.startswith("chunk-") and x.endswith(".h5"))
    return n, manifest


# ===================================================================== reading
def is_results_file(path) -> bool:
    """Whether ``path`` is an HDF5 file with the ``physkit_results`` attribute."""
    return has_root_attr(path, "physkit_results")


def _open(path):
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        if os.path.isdir(path + ".partial"):
            raise ResultsFormatError(f"{path}: not complete (a partial run is in "
                                     f"{path}.partial; finish it with --resume)")
        raise FileNotFoundError(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ResultsFormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    v = f.attrs.get("physkit_results")
    if v is None:
        f.close()
        raise ResultsFormatError(f"{path}: not a physkit results file (no 'physkit_results' "
                                 f"attribute)")
    if integer_attr(v) != RESULTS_FORMAT:
        f.close()
        shown = v.item() if isinstance(v, np.generic) else v
        raise ResultsFormatError(f"{path}: results format version {shown!r}, this physkit "
                                 f"reads version {RESULTS_FORMAT}")
    return f


def result_groups(path) -> list[str]:
    """Names of the observable / score groups of a results file, in file order."""
    import h5py

    with _open(path) as f:
        return [k for k, v in f.items() if isinstance(v, h5py.Group) and "value" in v]


def results_settings(path) -> dict:
    """The run's settings: file attributes, JSON-decoded where they hold JSON."""
    with _open(path) as f:
        return {k: _decode_attr(v) for k, v in f.attrs.items()}


def _decode_attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_results(path, names: Iterable[str] | None = None, start: int | None = None,
                 stop: int | None = None) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of a results file as ``{"group/dataset" or name: array}``.

    ``names`` selects datasets (``"3-subjettiness/value"``, a whole group
    ``"3-subjettiness"``, or ``"source_index"``); default all. Strings come back as
    ``str`` arrays.
    """
    import h5py

    out = {}
    with _open(path) as f:
        want = list(names) if names is not None else list(f.keys())
        for name in want:
            if name not in f:
                raise KeyError(f"{path}: no dataset or group {name!r} "
                               f"(has {sorted(f.keys())})")
            obj = f[name]
            items = ([(f"{name}/{k}", v) for k, v in obj.items()]
                     if isinstance(obj, h5py.Group) else [(name, obj)])
            for k, ds in items:
                a = ds[start:stop]
                if ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype) is not None:
                    a = np.char.decode(np.asarray(a, dtype=bytes), "utf-8")
                out[k] = a
    return out


def describe_results(path) -> str:
    """Multi-line description of a results file (``physkit info``)."""
    import h5py

    path = os.fspath(path)
    lines = [f"file:    {path} ({os.path.getsize(path) / 1e6:.2f} MB)",
             f"format:  physkit results (version {RESULTS_FORMAT})"]
    with _open(path) as f:
        n = f["source_index"].shape[0] if "source_index" in f else 0
        lines.append(f"rows:    {n}")
        if "source_file" in f and n:
            files, counts = np.unique(read_results(path, ["source_file"])["source_file"],
                                      return_counts=True)
            lines.append("inputs:  " + ", ".join(f"{a} ({c} rows)" for a, c in zip(files, counts)))
        if "event_problem" in f and n:
            from ..status import EVENT_PROBLEMS

            codes, cnt = np.unique(f["event_problem"][()], return_counts=True)
            bad = [f"{EVENT_PROBLEMS.get(int(c), c)}: {k}" for c, k in zip(codes, cnt) if c]
            lines.append("bad events: " + (", ".join(bad) if bad else "none"))
        if "labels" in f:
            vals, cnt = np.unique(f["labels"][()], return_counts=True)
            lines.append("labels:  " + ", ".join(f"{v}: {c}" for v, c in zip(vals, cnt)))
        for g in [k for k, v in f.items() if isinstance(v, h5py.Group) and "value" in v]:
            grp = f[g]
            val = grp["value"][()]
            fin = val[np.isfinite(val)]
            stat = ""
            if "status" in grp:
                codes, cnt = np.unique(grp["status"][()], return_counts=True)
                names = {int(s): s.name.lower() for s in Status}
                stat = "; status " + ", ".join(f"{names.get(int(c), c)}: {k}"
                                               for c, k in zip(codes, cnt))
            rng = (f"min {fin.min():.4g}, median {np.median(fin):.4g}, max {fin.max():.4g}"
                   if fin.size else "no finite values")
            params = [f"{k}{tuple(v.shape[1:])}" for k, v in grp.items()
                      if k not in ("value", "status")]
            lines.append(f"group {g}: {rng}{stat}")
            if params:
                lines.append(f"  parameters: {', '.join(params)}")
            for k, v in grp.attrs.items():
                lines.append(f"  {k}: {_decode_attr(v)}")
        lines.append("settings:")
        for k, v in f.attrs.items():
            lines.append(f"  {k}: {_decode_attr(v)}")
    return "\n".join(lines)
