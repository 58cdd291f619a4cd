"""Chunked runs of the pipeline: a pure unit of work over every event of the inputs, written
chunk by chunk into ``OUT.partial/`` (resumable) and merged into one results file.

The unit of work is ``unit(path, start, stop) -> {name: (n, ...) rows}``; it opens the files
itself, so :mod:`physkit.parallel` can run it in-process or on dask workers.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from ..errors import EventFileError
from .errors import CommandError, describe_exception, print_error

__all__ = ["DEFAULT_CHUNK", "run_chunked", "add_run_options", "check_output", "file_id"]

DEFAULT_CHUNK = 1000


def file_id(path) -> dict:
    """What identifies an input of a run in its manifest (path, size, modification time)."""
    try:
        st = os.stat(path)
        return {"path": os.fspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": os.fspath(path), "size": None, "mtime_ns": None}


def check_output(path: str) -> None:
    """Refuse an output path whose directory does not exist."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CommandError(f"{path}: output directory {d} does not exist")


def add_run_options(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    """The options every chunked command shares (chunking, dask, resume, bad events, device)."""
    g = p.add_argument_group("running")
    g.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"events per chunk (memory is bounded by it; default {DEFAULT_CHUNK})")
    g.add_argument("--scheduler", default=None, metavar="SPEC",
                   help="local:N (a dask LocalCluster of N worker processes), "
                        "tcp://HOST:PORT (a running dask scheduler); default: in-process")
    if resume:
        g.add_argument("--resume", action="store_true",
                       help="keep the completed chunks of an interrupted run (OUT.partial/)")
    g.add_argument("--skip-bad-events", action="store_true",
                   help="record bad events (NaN, negative pT, empty, unreadable) with status "
                        "3 and go on, instead of stopping at the first one")
    g.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_chunked(unit: Callable, inputs: Sequence[str], out: str, settings: dict, *,
                chunk_size: int = DEFAULT_CHUNK, scheduler=None, resume: bool = False,
                progress: bool = True, group_attrs: dict | None = None,
                extra_manifest: dict | None = None, reader: dict | None = None) -> int:
    """Run ``unit(path, start, stop) -> {name: rows}`` over all events of ``inputs`` into
    the results file ``out``; returns the exit status (0 ok, 1 some file failed).
    ``reader``: options of the input readers (ROOT files), for counting the events.

    A file that cannot be read or holds a bad event (without ``--skip-bad-events``) is
    reported in one line and left out; the others still complete. The results file is
    written when every chunk of the remaining files is done.
    """
    from ..io import count_events
    from ..parallel import ChunkFailure, iter_chunks, open_scheduler, plan_chunks
    from .results import ChunkStore

    inputs = [os.fspath(p) for p in inputs]
    failures: dict[int, str] = {}
    counts = []
    for i, p in enumerate(inputs):
        try:
            counts.append(int(count_events(p, **(reader or {}))))
        except (EventFileError, OSError) as exc:
            failures[i] = describe_exception(exc)
            print_error(failures[i])
            counts.append(0)
    chunks = plan_chunks(inputs, chunk_size, counts)
    manifest = {"inputs": [file_id(p) for p in inputs], "counts": counts,
                "chunk_size": int(chunk_size), "settings": settings, **(extra_manifest or {})}
    if not resume and os.path.isdir(out + ".partial"):
        print(f"physkit: starting over: removing the earlier partial run {out}.partial "
              f"(pass --resume to continue it instead)", file=sys.stderr)
    store = ChunkStore(out, manifest, resume=resume)
    todo = [c for c in chunks if not store.done(c.key)]
    done_events = sum(c.n for c in chunks) - sum(c.n for c in todo)
    if resume and done_events:
        print(f"physkit: resuming {out}: {len(chunks) - len(todo)} of {len(chunks)} chunks "
              f"already done", file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=sum(counts), initial=done_events, unit="ev", dynamic_ncols=True,
               disable=not progress, file=sys.stderr, desc=settings.get("command", "physkit"))
    with open_scheduler(scheduler) as client:
        for c, res in iter_chunks(unit, todo, client, catch=True):
            if c.file_index in failures:
                continue
            if isinstance(res, ChunkFailure):
                failures[c.file_index] = describe_exception(res.error, c.path, c.start, c.stop)
                bar.clear()
                print_error(failures[c.file_index])
                continue
            store.write_chunk(c.key, res)
            bar.update(c.n)
    bar.close()
    keep = [i for i in range(len(inputs)) if i not in failures]
    if not keep:
        if len(inputs) > 1:
            print_error(f"all {len(inputs)} input files failed; nothing written")
        return 1
    keys = [c.key for c in chunks if c.file_index not in failures]
    attrs = {"settings": settings, "inputs": [inputs[i] for i in keep],
             "failed_files": {inputs[i]: failures[i] for i in sorted(failures)}}
    store.finalize(keys, attrs=attrs, group_attrs=group_attrs)
    n_rows = sum(counts[i] for i in keep)
    if failures:
        print_error(f"wrote {out} ({n_rows} events) without {len(failures)} of {len(inputs)} "
             f"files that failed")
        return 1
    print(f"physkit: wrote {out} ({n_rows} events)", file=sys.stderr)
    return 0
