"""Scale-out: run a pure function over ``(path, start, stop)`` chunks of event files.

The unit of work is ``fn(path, start, stop) -> result``: a pure, picklable function (a
module-level function or a :func:`functools.partial` of one) that opens the file itself,
because h5py handles cannot cross processes. The same chunks run

- in-process (``scheduler=None``, the default),
- on a fresh dask.distributed ``LocalCluster`` of N single-threaded worker processes
  (``scheduler="local:N"``),
- on an existing dask cluster (``scheduler="tcp://HOST:PORT"`` or a ``distributed.Client``).

Results come back in chunk order whatever the scheduler, with at most ``max_in_flight``
chunks submitted and not yet consumed, so memory stays bounded by the chunk size.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["Chunk", "ChunkFailure", "chunk_ranges", "plan_chunks", "open_scheduler",
           "iter_chunks", "map_chunks"]

ChunkFn = Callable[[str, int, int], Any]


@dataclass(frozen=True)
class Chunk:
    """Events ``[start, stop)`` of input file number ``file_index`` (``path``)."""

    file_index: int
    path: str
    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def key(self) -> str:
        """Stable name of the chunk (used for completion marks in results files)."""
        return f"{self.file_index:05d}-{self.start:012d}-{self.stop:012d}"


@dataclass
class ChunkFailure:
    """What :func:`iter_chunks` yields for a chunk whose function raised (``catch=True``)."""

    error: BaseException

    def __str__(self) -> str:
        return str(self.error)


def chunk_ranges(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``[0, n)``, ``chunk_size`` events each
    (the last one shorter)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]


def plan_chunks(paths: Sequence, chunk_size: int,
                counts: Sequence[int] | None = None, *, start: int = 0,
                stop: int | None = None) -> list[Chunk]:
    """Chunks of every file in ``paths``, in file then event order.

    ``counts`` gives the number of events per file; by default it is read with
    :func:`physkit.io.count_events` (metadata only). ``start``/``stop``: only events
    ``[start, stop)`` of each file (clipped to its size; ``stop=None``: to its end).
    """
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"bad event range start={start}, stop={stop}: need "
                         f"0 <= start <= stop")
    if counts is None:
        from .io import count_events

        counts = [count_events(p) for p in paths]
    out = []
    for i, (p, n) in enumerate(zip(paths, counts)):
        first, last = min(start, int(n)), min(int(n), int(n) if stop is None else stop)
        out += [Chunk(i, os.fspath(p), first + s, first + e)
                for s, e in chunk_ranges(last - first, chunk_size)]
    return out


@contextlib.contextmanager
def open_scheduler(scheduler=None) -> Iterator[Any]:
    """Context manager giving a ``distributed.Client`` for ``scheduler``, or None in-process.

    ``scheduler``: None / ``"inprocess"`` (no dask), ``"local:N"`` (start a LocalCluster of
    N worker processes, one thread each, shut down on exit), ``"tcp://HOST:PORT"`` (connect
    to a running scheduler; the cluster is left running), or an existing ``Client`` (used
    as is).
    """
    if scheduler is None or scheduler in ("", "inprocess", "in-process", "none"):
        yield None
        return
    if not isinstance(scheduler, str):  # a distributed.Client already
        yield scheduler
        return
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"bad scheduler {scheduler!r}: expected local:N with N >= 1")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if "://" in scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    raise ValueError(f"bad scheduler {scheduler!r}: expected local:N, tcp://HOST:PORT or "
                     f"nothing (in-process)")


def _n_workers(client) -> int:
    try:
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:  # pragma: no cover - a scheduler that does not answer
        return 1


def iter_chunks(fn: ChunkFn, chunks: Iterable[Chunk], client=None, *, catch: bool = False,
                max_in_flight: int | None = None) -> Iterator[tuple[Chunk, Any]]:
    """Yield ``(chunk, fn(chunk.path, chunk.start, chunk.stop))`` in chunk order.

    ``client``: None runs in-process; a ``distributed.Client`` runs the chunks on its
    workers, keeping at most ``max_in_flight`` (default 2 per worker) submitted and not
    yet yielded. With ``catch=True`` an exception in ``fn`` is yielded as a
    :class:`ChunkFailure` instead of being raised, so other chunks still run.
    """
    chunks = list(chunks)
    if client is None:
        for c in chunks:
            try:
                out = fn(c.path, c.start, c.stop)
            except Exception as exc:
                if not catch:
                    raise
                out = ChunkFailure(exc)
            yield c, out
        return
    window = max_in_flight or 2 * _n_workers(client)
    futures: list = []
    nxt = 0

    def submit():
        nonlocal nxt
        c = chunks[nxt]
        futures.append(client.submit(fn, c.path, c.start, c.stop, pure=False))
        nxt += 1

    try:
        while nxt < min(window, len(chunks)):
            submit()
        for i, c in enumerate(chunks):
            fut = futures[i]
            try:
                out = fut.result()
            except Exception as exc:
                if not catch:
                    raise
                out = ChunkFailure(exc)
            futures[i] = None  # drop the reference: the cluster can free the result
            if nxt < len(chunks):
                submit()
            yield c, out
    finally:
        for f in futures:
            if f is not None:
                f.cancel()


def map_chunks(fn: ChunkFn, paths, chunk_size: int, scheduler=None, *,
               progress: bool = False) -> list:
    """``[fn(path, start, stop) for every chunk]`` over all files, in file/event order.

    ``paths``: one path or a list. ``scheduler``: see :func:`open_scheduler`
    (None = in-process, ``"local:N"``, ``"tcp://HOST:PORT"`` or a ``Client``). Results are
    identical whichever scheduler runs them (``fn`` is pure). ``progress`` shows a tqdm
    bar on stderr. For outputs too large to hold at once, use :func:`iter_chunks`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    chunks = plan_chunks(list(paths), chunk_size)
    out = []
    with open_scheduler(scheduler) as client:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(c.n for c in chunks), unit="ev", dynamic_ncols=True)
        for c, r in iter_chunks(fn, chunks, client):
            out.append(r)
            if bar is not None:
                bar.update(c.n)
        if bar is not None:
            bar.close()
    return out
