"""Best-of-N wall time, shared by the bench scripts."""
import time


def best(fn, repeat: int) -> float:
    """The least wall time (s) of ``repeat`` calls of ``fn()``."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
