"""End-to-end throughput and peak memory of the physkit batch pipeline.

Builds (once, in the git-ignored ``bench/.cache/``) a 10^6-event physkit file by resampling
the jets of ``data/jets_sample.h5`` with replacement (seed 0), plus a file of its first
``--n-shaper`` events. Then times, as subprocesses of the installed ``physkit`` console
script, in-process and with ``--scheduler local:2``:

- ``physkit shape`` (3-subjettiness) on the first ``--n-shaper`` events;
- ``physkit score`` with a FINDER classifier on SHAPER features (2- and 3-subjettiness,
  recomputed by ``score``) on the same events;
- ``physkit score`` with a FINDER classifier on the file's ``tau_kt`` features over all
  10^6 events (the pipeline machinery alone: chunked read, validation, scoring, chunked
  write, final merge), which shows that memory is bounded by the chunk size.

Events/s = events / wall-clock seconds of the whole command (start-up, cluster start and
the final merge included). Peak memory = the largest sum of RSS over the command's
process tree (dask workers included), sampled every 0.1 s with psutil.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python bench/pipeline_bench.py [--n-shaper 20000]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "bench", ".cache")
SAMPLE = os.path.join(ROOT, "data", "jets_sample.h5")
PHYSKIT = os.path.join(os.path.dirname(sys.executable), "physkit")


def make_resampled(path: str, n: int, seed: int = 0, block: int = 50000) -> str:
    """A physkit event file of ``n`` jets drawn with replacement from the sample."""
    import h5py

    if os.path.exists(path):
        return path
    with h5py.File(SAMPLE, "r") as f:
        cons = f["constituents"][()]
        labels = f["labels"][()]
        tau = f["tau_kt"][()]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(cons), n)
    tmp = path + ".tmp"
    m = cons.shape[1]
    with h5py.File(tmp, "w") as f:
        f.attrs["physkit_format"] = 1
        f.attrs["made_by"] = f"bench/pipeline_bench.py: {n} jets resampled from jets_sample.h5"
        c = f.create_dataset("constituents", (n, m, 3), "f4", chunks=(1024, m, 3),
                             compression="gzip", shuffle=True)
        lab = f.create_dataset("labels", (n,), "i1")
        t = f.create_dataset("tau_kt", (n, 4), "f8")
        for s in range(0, n, block):
            e = min(n, s + block)
            c[s:e] = cons[idx[s:e]]
            lab[s:e] = labels[idx[s:e]]
            t[s:e] = tau[idx[s:e]]
    os.replace(tmp, path)
    return path


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak tree RSS in MiB, return code) of a subprocess."""
    import psutil

    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss
                                             for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return wall, peak / 2**20, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=1_000_000)
    ap.add_argument("--n-shaper", type=int, default=20000,
                    help="events for the SHAPER-bound runs (a time box on 2 shared cores)")
    ap.add_argument("--chunk-size", type=int, default=10000)
    ap.add_argument("--modes", default="inprocess,local:2")
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    big = make_resampled(os.path.join(CACHE, f"resampled_{args.n_events}.h5"), args.n_events)
    small = make_resampled(os.path.join(CACHE, f"resampled_{args.n_shaper}.h5"), args.n_shaper)
    out = os.path.join(CACHE, "out")
    os.makedirs(out, exist_ok=True)
    # models (fitted once, on the bundled sample; not timed)
    shapes = os.path.join(out, "sample_shapes.h5")
    shape_model = os.path.join(out, "shape_model.h5")
    tau_model = os.path.join(out, "tau_model.h5")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for cmd in ([PHYSKIT, "shape", SAMPLE, "-o", shapes, "--observable", "2-subjettiness",
                 "--observable", "3-subjettiness", "--no-progress"],
                [PHYSKIT, "finder", "fit", SAMPLE, "--features", f"shape:{shapes}", "-o",
                 shape_model, "--no-progress"],
                [PHYSKIT, "finder", "fit", SAMPLE, "--features", "dataset:tau_kt", "-o",
                 tau_model, "--no-progress"]):
        if not os.path.exists(cmd[cmd.index("-o") + 1]):
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = []
    for mode in args.modes.split(","):
        sched = [] if mode == "inprocess" else ["--scheduler", mode]
        runs = [
            ("shape 3-subjettiness", args.n_shaper,
             [PHYSKIT, "shape", small, "-o", os.path.join(out, "s.h5"), "--observable",
              "3-subjettiness", "--chunk-size", str(min(args.chunk_size, 2000))]),
            ("score FINDER on SHAPER (2-,3-subjettiness)", args.n_shaper,
             [PHYSKIT, "score", small, "--model", shape_model, "-o",
              os.path.join(out, "sc.h5"), "--chunk-size", str(min(args.chunk_size, 2000))]),
            ("score FINDER on tau_kt (no SHAPER)", args.n_events,
             [PHYSKIT, "score", big, "--model", tau_model, "-o", os.path.join(out, "st.h5"),
              "--chunk-size", str(args.chunk_size)]),
        ]
        for name, n, cmd in runs:
            cmd = cmd + sched + ["--no-progress"]
            wall, peak, rc = measure(cmd)
            line = (f"| {name} | {mode} | {n} | {wall:.1f} | {n / wall:.0f} | {peak:.0f} | "
                    f"{'ok' if rc == 0 else f'exit {rc}'} |")
            print(line, flush=True)
            print("    " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                                   for c in cmd), flush=True)
            rows.append(line)
    print("\n| command | scheduler | events | wall s | events/s | peak RSS MiB | status |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
