"""Chunked runs of the pipeline: a pure unit of work over every event of the inputs, written
chunk by chunk into ``OUT.partial/`` (resumable) and merged into one results file.

The unit of work is ``unit(path, start, stop) -> {name: (n, ...) rows}``; it opens the files
itself, so :mod:`physkit.parallel` can run it in-process or on dask workers.

Run-level rules, one place (:func:`check_output`, :func:`run_chunked`):

- the output is never one of the inputs or the model (same inode: hard links and symbolic
  links count), its directory must exist and be writable;
- an existing output is replaced only with ``--overwrite``, or by ``--resume`` of the
  interrupted run that left ``OUT.partial/``;
- one run writes an output at a time: ``OUT.partial/lock`` is held (``flock``) while it runs;
- inputs are identified by what the run reads: each finished chunk records a digest of its
  input rows, and ``--resume`` redoes the chunks whose input changed since;
- each input's labels are checked when it is opened (one integer per event) and as they
  are read; a run that mixes labelled and unlabelled files gives the unlabelled rows
  ``labels = -1`` (``NO_LABEL``) and fails a labelled input that itself uses -1.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
from typing import Callable, Sequence

import numpy as np

from ..errors import EventFileError, one_line
from .errors import CommandError, describe_exception, print_error

__all__ = ["DEFAULT_CHUNK", "run_chunked", "add_run_options", "event_range", "check_output",
           "file_digest", "same_file"]

DEFAULT_CHUNK = 1000


def file_digest(path) -> str:
    """BLAKE2b digest (hex) of a whole file's bytes (identifies a model file in a run)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_file(a, b) -> bool:
    """Whether ``a`` and ``b`` are one file (same device and inode); False if either is
    missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def writable_directory(d: str, path) -> None:
    """Refuse an output ``path`` whose directory ``d`` is missing or not writable."""
    if not os.path.isdir(d):
        raise CommandError(f"{path}: output directory {d} does not exist")
    if not os.access(d, os.W_OK | os.X_OK):
        raise CommandError(f"{path}: output directory {d} is not writable")


def check_output(path, sources: Sequence = (), *, overwrite: bool = False) -> None:
    """Refuse the output file ``path`` if its directory is missing or read-only, if it is
    a directory, if it is one of ``sources`` (inputs, model: same inode) or, unless
    ``overwrite``, if it exists."""
    path = os.fspath(path)
    writable_directory(os.path.dirname(os.path.abspath(path)), path)
    if os.path.isdir(path):
        raise CommandError(f"{path}: is a directory; -o takes a file name")
    for src in sources:
        if same_file(path, src):
            raise CommandError(f"{path}: the output is also an input ({src}); writing it "
                               f"would destroy that input: choose another output")
    if os.path.exists(path) and not overwrite:
        raise CommandError(f"{path}: exists; pass --overwrite to replace it")


def add_run_options(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    """The options every chunked command shares (chunking, dask, resume, overwrite, bad
    events, device)."""
    g = p.add_argument_group("running")
    g.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"events per chunk (memory is bounded by it; default {DEFAULT_CHUNK})")
    g.add_argument("--scheduler", default=None, metavar="SPEC",
                   help="local:N (a dask LocalCluster of N worker processes), "
                        "tcp://HOST:PORT (a running dask scheduler); default: in-process")
    if resume:
        g.add_argument("--resume", action="store_true",
                       help="keep the completed chunks of an interrupted run (OUT.partial/); "
                            "chunks whose input changed since are redone")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (without it an existing output is "
                        "refused; the output may never be an input or the model)")
    g.add_argument("--skip-bad-events", action="store_true",
                   help="record bad events (NaN, negative pT, empty, unreadable) with status "
                        "3 and go on, instead of stopping at the first one")
    g.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = p.add_argument_group("event range (try a command on part of a big file)")
    e.add_argument("--start", type=_event_index, default=0, metavar="I",
                   help="first event of each input file to use (default 0)")
    e.add_argument("--stop", type=_event_index, default=None, metavar="J",
                   help="use events up to J (exclusive) of each input file, e.g. --stop 1000 "
                        "for the first 1000 (default: to the end)")


def _event_index(text: str) -> int:
    """argparse type of ``--start``/``--stop``: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an event index (integer >= 0), got {text!r}")
    return value


def event_range(args) -> tuple[int, int | None]:
    """``(start, stop)`` of ``--start``/``--stop`` (``stop`` None: to the end); CommandError
    when ``stop <= start``."""
    start, stop = getattr(args, "start", 0) or 0, getattr(args, "stop", None)
    if stop is not None and stop <= start:
        raise CommandError(f"--stop {stop} must be greater than --start {start}")
    return start, stop


# ===================================================================== planning
def _plan_file(path: str, options: dict) -> tuple[int, bool]:
    """(events, has labels) of one input, from its metadata (opening it runs the reader's
    file-level checks: labels one integer per event, ...); ``options``: reader options."""
    from ..io import open_events

    with open_events(path, **options) as reader:
        return reader.n_events, reader.read_labels(0, 0) is not None


def _plan_inputs(inputs: Sequence[str], failures: dict, options: dict
                 ) -> tuple[list[int], list[bool]]:
    """Event counts and whether each input has labels; unreadable inputs go to
    ``failures`` (reported) with 0 events."""
    counts, labelled = [], []
    for i, p in enumerate(inputs):
        try:
            n, has = _plan_file(p, options)
        except (EventFileError, OSError) as exc:
            failures[i] = describe_exception(exc)
            print_error(failures[i])
            n, has = 0, False
        counts.append(int(n))
        labelled.append(has)
    return counts, labelled


def _uses_no_label(c, rows: dict) -> str | None:
    """The error for a chunk of a labelled file that uses the NO_LABEL value in a run that
    mixes labelled and unlabelled files (None if it does not)."""
    from .results import NO_LABEL

    labels = rows.get("labels")
    if labels is None or not (labels == NO_LABEL).any():
        return None
    i = c.start + int(np.flatnonzero(labels == NO_LABEL)[0])
    return (f"{c.path}: dataset 'labels': event {i}: label {NO_LABEL} marks the rows of "
            f"unlabelled files in a run that mixes labelled and unlabelled files; run them "
            f"separately")


def _labels_meaning(paths: Sequence[str]) -> str | None:
    """The ``labels_meaning`` file attribute of the HDF5 inputs (e.g. ``"1 = top, 0 =
    QCD"``) when those that carry one agree; None otherwise."""
    import h5py

    found = set()
    for p in paths:
        try:
            if not h5py.is_hdf5(p):
                continue
            with h5py.File(p, "r") as f:
                v = f.attrs.get("labels_meaning")
        except (OSError, ValueError):
            continue
        if isinstance(v, (bytes, str)):
            found.add(v.decode(errors="replace") if isinstance(v, bytes) else v)
    return found.pop() if len(found) == 1 else None


# ===================================================================== digests
def _digested(unit: Callable, datasets: Sequence[str], options: dict, path: str, start: int,
              stop: int):
    """``(digest of the input rows, unit(path, start, stop))``, run where the unit runs:
    the digest the unit recorded of what it read (``INPUT_DIGEST``), else one of a second
    read (:func:`physkit.io.read.rows_digest`)."""
    from ..io.read import rows_digest
    from .features import INPUT_DIGEST

    rows = dict(unit(path, start, stop))
    digest = rows.pop(INPUT_DIGEST, None)
    return digest or rows_digest(path, start, stop, datasets, **options), rows


def _changed_chunks(store, done: list, client, datasets: Sequence[str], options: dict,
                    progress: bool) -> list:
    """The completed chunks whose input rows no longer have their recorded digest."""
    from tqdm import tqdm

    from ..io.read import rows_digest
    from ..parallel import ChunkFailure, iter_chunks

    fn = functools.partial(rows_digest, datasets=tuple(datasets), **options)
    changed = []
    bar = tqdm(total=sum(c.n for c in done), unit="ev", dynamic_ncols=True, file=sys.stderr,
               disable=not progress, desc="checking inputs")
    for c, digest in iter_chunks(fn, done, client, catch=True):
        if isinstance(digest, ChunkFailure) or digest != store.input_digest(c.key):
            changed.append(c)
        bar.update(c.n)
    bar.close()
    return changed


# ===================================================================== running
def _write_failure(out: str, exc: BaseException) -> CommandError:
    reason = getattr(exc, "strerror", None) or one_line(exc)
    return CommandError(f"{out}: cannot write ({reason}); completed chunks stay in "
                        f"{out}.partial/: free space or fix permissions, then rerun with "
                        f"--resume")


def _run_chunks(unit, todo, store, client, failures, bar, mixed: bool = False) -> None:
    """Run the ``todo`` chunks, store each result with its input digest; a failing chunk
    (or, in a ``mixed`` run, one whose labels use the NO_LABEL value) marks its file
    failed (reported once)."""
    from ..parallel import ChunkFailure, iter_chunks

    for c, res in iter_chunks(unit, todo, client, catch=True):
        if c.file_index in failures:
            continue
        problem = (describe_exception(res.error, c.path, c.start, c.stop)
                   if isinstance(res, ChunkFailure) else
                   _uses_no_label(c, res[1]) if mixed else None)
        if problem:
            failures[c.file_index] = problem
            bar.clear()
            print_error(problem)
            continue
        digest, rows = res
        try:
            store.write_chunk(c.key, rows, input_digest=digest)
        except (OSError, RuntimeError) as exc:
            raise _write_failure(store.path, exc) from None
        bar.update(c.n)


def _resume_plan(store, chunks, client, datasets, options: dict, resume: bool,
                 progress: bool) -> list:
    """The chunks still to run: all but the completed ones whose input is unchanged."""
    done = [c for c in chunks if store.done(c.key)]
    if resume and done:
        changed = _changed_chunks(store, done, client, datasets, options, progress)
        for c in changed:
            store.discard(c.key)
        print(f"physkit: resuming {store.path}: {len(done) - len(changed)} of {len(chunks)} "
              f"chunks already done" + (f"; {len(changed)} redone, their input changed"
                                         if changed else ""), file=sys.stderr)
    return [c for c in chunks if not store.done(c.key)]


def run_chunked(unit: Callable, inputs: Sequence[str], out: str, settings: dict, *,
                chunk_size: int = DEFAULT_CHUNK, scheduler=None, resume: bool = False,
                overwrite: bool = False, progress: bool = True,
                group_attrs: dict | None = None, extra_manifest: dict | None = None,
                sources: Sequence[str] = (), digest_datasets: Sequence[str] = (),
                reader: dict | None = None, start: int = 0, stop: int | None = None) -> int:
    """Run ``unit(path, start, stop) -> {name: rows}`` over all events of ``inputs`` into
    the results file ``out``; returns the exit status (0 ok, 1 some file failed).

    ``sources``: other files the run reads (a model), which ``out`` may not be either;
    ``digest_datasets``: per-event datasets the unit reads besides the constituents and
    labels (they enter each chunk's input digest); ``reader``: options of the input
    readers (ROOT files); ``start``/``stop``: only events ``[start, stop)`` of each input
    (:func:`physkit.parallel.plan_chunks`). A file that cannot be read or holds a
    bad event (without ``--skip-bad-events``) is reported in one line and left out; the
    others still complete. The results file is written when every chunk of the remaining
    files is done.
    """
    from tqdm import tqdm

    from ..parallel import Chunk, open_scheduler, plan_chunks
    from .results import NO_LABEL, ChunkStore

    inputs, out = [os.fspath(p) for p in inputs], os.fspath(out)
    partial = out + ".partial"
    resuming = resume and os.path.exists(os.path.join(partial, "manifest.json"))
    check_output(out, [*inputs, *sources], overwrite=overwrite or resuming)
    existed = os.path.exists(out)
    failures: dict[int, str] = {}
    reader = dict(reader or {})
    counts, labelled = _plan_inputs(inputs, failures, reader)
    chunks = plan_chunks(inputs, chunk_size, counts, start=start, stop=stop)
    selected = [sum(c.n for c in chunks if c.file_index == i) for i in range(len(inputs))]
    if sum(counts) and not sum(selected):
        raise CommandError(f"--start {start}: no events selected (the inputs hold "
                           f"{max(counts)} events at most)")
    manifest = {"inputs": [{"path": p} for p in inputs], "counts": counts,
                "chunk_size": int(chunk_size), "settings": settings, **(extra_manifest or {})}
    if start or stop is not None:
        manifest["event_range"] = [start, stop]
    unit = functools.partial(_digested, unit, tuple(digest_datasets), reader)
    with ChunkStore(out, manifest, resume=resume) as store, \
            open_scheduler(scheduler) as client:
        if store.started_over:
            print(f"physkit: starting over: removed the earlier partial run {partial} "
                  f"(pass --resume to continue it instead)", file=sys.stderr)
        todo = _resume_plan(store, chunks, client, digest_datasets, reader, resume, progress)
        bar = tqdm(total=sum(selected), initial=sum(selected) - sum(c.n for c in todo), unit="ev",
                   dynamic_ncols=True, disable=not progress, file=sys.stderr,
                   desc=settings.get("command", "physkit"))
        _run_chunks(unit, todo, store, client, failures, bar,
                    mixed={labelled[i] for i in range(len(inputs)) if i not in failures}
                    == {True, False})
        bar.close()
        keep = [i for i in range(len(inputs)) if i not in failures]
        if not keep:
            store.abandon()
            if len(inputs) > 1:
                print_error(f"all {len(inputs)} input files failed; nothing written")
            return 1
        keys = [c.key for c in chunks if c.file_index not in failures]
        if not keys:  # no events at all: one empty chunk gives the datasets their layout
            empty = Chunk(keep[0], inputs[keep[0]], 0, 0)
            _run_chunks(unit, [empty], store, None, failures, tqdm(disable=True))
            if keep[0] in failures:
                store.abandon()
                return 1
            keys = [empty.key]
        mixed = {labelled[i] for i in keep} == {True, False}
        attrs = {"settings": settings, "inputs": [inputs[i] for i in keep],
                 "failed_files": {inputs[i]: failures[i] for i in sorted(failures)}}
        if mixed:
            attrs["unlabelled_files"] = [inputs[i] for i in keep if not labelled[i]]
        meaning = _labels_meaning([inputs[i] for i in keep])
        if meaning:
            attrs["labels_meaning"] = meaning
        if os.path.exists(out) and not (existed or overwrite):
            raise CommandError(f"{out}: was created by someone else during this run; pass "
                               f"--overwrite to replace it (finished chunks are kept: rerun "
                               f"with --resume)")
        try:
            store.finalize(keys, attrs=attrs, group_attrs=group_attrs,
                           fill={"labels": NO_LABEL} if mixed else None)
        except (OSError, RuntimeError) as exc:
            raise _write_failure(out, exc) from None
    n_rows = sum(selected[i] for i in keep)
    if failures:
        print_error(f"wrote {out} ({n_rows} events) without {len(failures)} of {len(inputs)} "
                    f"files that failed")
        return 1
    print(f"physkit: wrote {out} ({n_rows} events)", file=sys.stderr)
    return 0
