"""What the input checks of issue 11 cost: per-chunk input digests, the label check before a
run, and a whole ``physkit score`` run with and without the digests, side by side.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python bench/input_checks_bench.py [--events N]``

Figures (wall-clock, best of ``--repeat``):

- ``read`` vs ``digest`` per chunk: :func:`physkit.io.read_block` of each chunk (what a unit
  of work reads first) against :func:`physkit.io.read.rows_digest` of the same chunk (the
  same rows read again plus the labels and the feature dataset, BLAKE2b-hashed: what a
  ``--resume`` does per finished chunk);
- the planning of a file before a run (``_plan_file``: events and whether it has labels,
  the reader's file-level checks included) against :func:`physkit.io.count_events`;
- ``physkit score`` (a ResidualDetector on a 4-column feature dataset, the cheapest model,
  so the checks weigh most) in-process with the digests (each unit hashes the arrays it
  read) and with the hashing replaced by a constant; the ratio is the digests' share of a
  run; and ``--resume`` of a finished set of chunks (every chunk's input read again and
  its digest checked, then the merge) against the fresh run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from best_time import best  # noqa: E402  (bench/, the script's own folder)
from physkit.io import count_events, read_block  # noqa: E402
from physkit.io.read import rows_digest  # noqa: E402
from physkit.pipeline import runner  # noqa: E402
from physkit.pipeline.cli import main  # noqa: E402


def make_file(path: str, n: int, m: int = 50, compression=None) -> str:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["physkit_format"] = 1
        c = f.create_dataset("constituents", (n, m, 3), "f4", chunks=(1000, m, 3),
                             compression=compression)
        for s in range(0, n, 20000):
            e = min(n, s + 20000)
            a = np.zeros((e - s, m, 3), np.float32)
            a[:, :30, 0] = rng.uniform(1, 50, (e - s, 30))
            a[:, :30, 1:] = rng.normal(0, 0.3, (e - s, 30, 2))
            c[s:e] = a
        f["labels"] = rng.integers(0, 2, n).astype(np.int8)
        f["feat"] = rng.normal(size=(n, 4))
    return path


def per_chunk(path: str, n: int, chunk: int, repeat: int) -> tuple[float, float]:
    ranges = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    t_read = best(lambda: [read_block(path, s, e) for s, e in ranges], repeat)
    t_dig = best(lambda: [rows_digest(path, s, e, ("feat",)) for s, e in ranges], repeat)
    return t_read, t_dig


def score_runs(path: str, model: str, d: str, chunk: int, repeat: int) -> dict:
    argv = ["score", path, "--model", model, "--chunk-size", str(chunk), "--no-progress",
            "--overwrite"]
    import physkit.io.read as io_read

    real = io_read.array_digest, io_read.combine_digests
    out = {}
    out["with"] = best(lambda: main(argv + ["-o", os.path.join(d, "a.h5")]), repeat)
    io_read.array_digest = lambda a: "-"  # the units' digests become constants
    io_read.combine_digests = lambda parts: "-"
    try:
        out["without"] = best(lambda: main(argv + ["-o", os.path.join(d, "b.h5")]), repeat)
    finally:
        io_read.array_digest, io_read.combine_digests = real

    # a finished partial run (every chunk done, stopped before the merge), then --resume:
    # it checks every chunk's digest and merges
    from physkit.pipeline import results

    fin = results.ChunkStore.finalize

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    results.ChunkStore.finalize = interrupt
    try:
        main(argv + ["-o", os.path.join(d, "c.h5")])
    finally:
        results.ChunkStore.finalize = fin
    t = time.perf_counter()
    assert main(argv + ["-o", os.path.join(d, "c.h5"), "--resume"]) == 0
    out["resume_check"] = time.perf_counter() - t
    return out


def run(n: int, chunk: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        for comp in (None, "gzip"):
            p = make_file(os.path.join(d, f"ev_{comp}.h5"), n, compression=comp)
            t_read, t_dig = per_chunk(p, n, chunk, repeat)
            t_count = best(lambda: count_events(p), repeat)
            t_labels = best(lambda: runner._plan_file(p, {}), repeat)
            print(f"{n} events, chunks of {chunk}, {comp or 'uncompressed'} "
                  f"({os.path.getsize(p) / 1e6:.0f} MB):")
            print(f"  read_block of every chunk     {t_read:8.3f} s")
            print(f"  rows_digest of every chunk    {t_dig:8.3f} s   digest/read = "
                  f"{t_dig / t_read:.2f}")
            print(f"  planning of the file          {t_labels * 1e3:8.2f} ms  "
                  f"(count_events {t_count * 1e3:.2f} ms)")
        model = os.path.join(d, "m.h5")
        assert main(["finder", "fit", p, "--features", "dataset:feat", "--estimator",
                     "detector", "-o", model, "--no-progress", "--chunk-size",
                     str(chunk)]) == 0
        r = score_runs(p, model, d, chunk, repeat)
        print(f"physkit score, {n} events (detector on dataset:feat, gzip file):")
        print(f"  with digests {r['with']:.2f} s, without {r['without']:.2f} s: "
              f"ratio {r['with'] / r['without']:.2f}")
        print(f"  --resume of a finished partial run (every digest checked, then the "
              f"merge): {r['resume_check']:.2f} s = {r['resume_check'] / r['with']:.2f} of "
              f"the fresh run")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk-size", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    run(a.events, a.chunk_size, a.repeat)
