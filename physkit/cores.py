"""How many CPU cores this process may use, and worker counts derived from it."""
from __future__ import annotations

import os

__all__ = ["available_cores", "n_workers"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def n_workers(n_jobs: int | None) -> int:
    """Worker threads for ``n_jobs``: None or -1 means every available core; else ``>= 1``."""
    if n_jobs is None or n_jobs == -1:
        return available_cores()
    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1, -1 or None, got {n_jobs}")
    return int(n_jobs)
