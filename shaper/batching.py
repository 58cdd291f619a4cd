"""Batching that keeps every jet's numbers independent of the other jets of a call.

A jet is computed at a padded width set by its own multiplicity (:func:`padded_width`), with
its particles real-first (:func:`real_first`), so every reduction over its particles runs in the
same order whatever batch it is in; jets of one width are fitted together
(:func:`width_groups`). Shape nodes are padded to multiples of 16 (:func:`align_nodes`) so
every row spans whole SIMD vectors (see :mod:`physkit.simd`). Rows are independent, so how
they are split into buckets (:func:`buckets`) and threads (:func:`thread_map`) does not
change any result. :func:`pinned_torch_threads` sets torch's intra-op thread count for the
duration of a fit.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

import torch

from physkit.events import Events

__all__ = ["padded_width", "real_first", "width_groups", "pad_to", "centred_frame",
           "fixed_width_frame", "align_nodes", "aligned_width", "buckets", "thread_map",
           "pinned_torch_threads"]


def padded_width(n_particles: torch.Tensor) -> torch.Tensor:
    """Padded width ``(B,)`` int64 at which each jet is computed: its multiplicity rounded up to
    a multiple of 32 (of 64 above 256 particles). It depends on the jet's own multiplicity
    only, so every reduction over a jet's particles runs in the same order whatever batch the
    jet is in, and each row of a batched tensor spans whole SIMD vectors (see
    :mod:`physkit.simd`)."""
    n = n_particles.to(torch.int64).clamp_min(1)
    step = torch.where(n > 256, 64, 32)
    return (n + step - 1) // step * step


def real_first(ev: Events) -> Tuple[Events, torch.Tensor]:
    """Jets ``(B, M)`` with their real particles first (stable), and the permutation
    ``order (B, M)`` applied (``sorted[:, j] = ev[:, order[:, j]]``)."""
    order = torch.argsort((~ev.mask).to(torch.int8), dim=1, stable=True)
    ev = Events(*(torch.gather(t, 1, order) for t in (ev.pt, ev.y, ev.phi)),
                torch.gather(ev.mask, 1, order))
    return ev, order


def width_groups(n_particles: torch.Tensor) -> List[Tuple[torch.Tensor, int]]:
    """Jets grouped by :func:`padded_width`: ``(rows (b,) int64, width)`` per width, ascending."""
    widths = padded_width(n_particles)
    return [(torch.nonzero(widths == w).squeeze(1), int(w)) for w in torch.unique(widths).tolist()]


def pad_to(ev: Events, width: int) -> Events:
    """Jets with real particles first, cut or zero-padded to ``width`` columns."""
    m = ev.shape[1]
    if m >= width:
        return Events(ev.pt[:, :width], ev.y[:, :width], ev.phi[:, :width], ev.mask[:, :width])
    pad = width - m

    def grow(t):
        return torch.nn.functional.pad(t, (0, pad))

    return Events(grow(ev.pt), grow(ev.y), grow(ev.phi),
                  torch.nn.functional.pad(ev.mask, (0, pad), value=False))


def centred_frame(ev: Events) -> Tuple[torch.Tensor, Events]:
    """Axis ``(B, 2)`` and centred jets (:meth:`Events.axis`, :meth:`Events.centered`)."""
    axis = ev.axis()
    return axis, ev.centered(axis)


def fixed_width_frame(ev: Events) -> Tuple[torch.Tensor, Events, torch.Tensor]:
    """Axis ``(B, 2)``, centred jets and their weights ``(B, M)``, each jet computed at its
    :func:`padded_width` (particles sorted real-first); jets come back at the widest width."""
    ev, _ = real_first(ev)
    groups = width_groups(ev.n_particles())
    top = groups[-1][1]
    B = len(ev)
    axis = torch.empty(B, 2, dtype=ev.pt.dtype, device=ev.pt.device)
    cen = pad_to(ev, top)
    pt, y, phi, mask = cen.pt.clone(), cen.y.clone(), cen.phi.clone(), cen.mask.clone()
    z = torch.zeros_like(pt)
    for rows, w in groups:
        axis[rows], c = centred_frame(pad_to(ev[rows], w))
        y[rows, :w], phi[rows, :w] = c.y, c.phi
        z[rows, :w] = c.weights()
    return axis, Events(pt, y, phi, mask), z


def align_nodes(y: torch.Tensor, b: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad a shape's nodes ``y (B, K, 2)``, weights ``b (B, K)`` with masked zero-weight nodes to a
    multiple of 16 columns; returns ``(y, b, mask (B, K'))``. Every row of the flow's tensors then
    spans whole SIMD vectors: torch's vectorised kernels (exp, log) round differently from
    their scalar tails, and which row lands in the tail depends on the batch."""
    k = y.shape[1]
    pad = (-k) % 16
    mask = torch.ones(y.shape[0], k + pad, dtype=torch.bool, device=y.device)
    if pad:
        y = torch.nn.functional.pad(y, (0, 0, 0, pad))
        b = torch.nn.functional.pad(b, (0, pad))
        mask[:, k:] = False
    return y, b, mask


def aligned_width(k: int) -> int:
    """Columns of ``k`` nodes after :func:`align_nodes`."""
    return k + (-k) % 16


def buckets(order: torch.Tensor, bucket_size: int, workers: int) -> List[torch.Tensor]:
    """Split the rows ``order (n,)`` into consecutive buckets of at most ``bucket_size`` rows,
    at least one per worker thread."""
    n = order.shape[0]
    size = max(1, min(bucket_size, -(-n // max(1, workers))))
    return [order[lo:lo + size] for lo in range(0, n, size)]


@contextmanager
def thread_map(workers: int) -> Iterator[Callable[..., list]]:
    """``map(fn, items) -> list`` (in order) over ``workers`` threads; serial for one worker.
    torch kernels release the GIL, so threads run side by side."""
    if workers <= 1:
        yield lambda fn, items: [fn(i) for i in items]
        return
    with ThreadPoolExecutor(workers) as pool:
        yield lambda fn, items: list(pool.map(fn, items))


# torch's intra-op thread count is process-wide. Concurrent fits (dask worker threads, a
# thread pool) that each saved and restored it on their own would put the others back to all
# cores mid-fit (intra-op threading on these small kernels is many times slower on a loaded
# machine). The first caller in pins it, the last one out restores it.
_PIN_LOCK = threading.Lock()
_PIN_USERS = 0
_PIN_SAVED = 0


def _pin_threads(n: int) -> None:
    global _PIN_USERS, _PIN_SAVED
    with _PIN_LOCK:
        if _PIN_USERS == 0:
            _PIN_SAVED = torch.get_num_threads()
            torch.set_num_threads(int(n))
        _PIN_USERS += 1


def _unpin_threads() -> None:
    global _PIN_USERS
    with _PIN_LOCK:
        _PIN_USERS -= 1
        if _PIN_USERS == 0:
            torch.set_num_threads(_PIN_SAVED)


@contextmanager
def pinned_torch_threads(n: Optional[int]) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (shared by concurrent
    blocks; restored when the last one leaves); ``None``: left as it is."""
    if n is None:
        yield
        return
    _pin_threads(n)
    try:
        yield
    finally:
        _unpin_threads()
