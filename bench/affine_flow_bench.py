"""The compiled exact flow of rings and disks (shaper.affine_flow) side by side with the torch path.

Usage (from the repository root)::

    .venv/bin/python bench/affine_flow_bench.py [--n-jets 200] [--threads 2,1] [--repeats 3]
        [--observables 1-ringiness,1-diskiness] [--beta 1] [--profile]

On ``--n-jets`` bench jets (``bench/shaper_bench.py``'s ``pick_jets``: half top, half QCD, fixed
seed, centred), for each observable and thread count, runs ``Shaper([name])`` (defaults, CPU)
with ``flow_engine="auto"`` (the compiled engine) and ``flow_engine="torch"`` alternately
``--repeats`` times after an untimed warm-up, and prints a markdown table: jets/s by wall time
of each (median of the repeats), their ratio, the jets per process-CPU second times the
threads (the rate an unloaded machine would give with perfect scaling; the fair one on a
loaded machine), the share of jets whose engine value is no
higher than the torch path's (+1e-9 relative), the largest relative difference, the share of
rows at the step limit (status 1) of each. ``--profile``: cProfile of one engine run on 1
thread (top functions by own time).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def run(ev, name: str, threads: int, engine: str, beta: float):
    """``(value (B,), status (B,), wall_s, cpu_s)`` of one timed ``Shaper.compute``."""
    from shaper import Shaper

    sh = Shaper([name], beta=beta, n_jobs=threads, flow_engine=engine)
    t0, c0 = time.perf_counter(), time.process_time()
    res = sh.compute(ev)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return (np.asarray(res[name].value, dtype=np.float64), np.asarray(res[name].status), wall,
            cpu)


def main(argv=None) -> int:
    from shaper import Shaper
    from shaper_bench import pick_jets

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-jets", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2302)
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--observables", default="1-ringiness,1-diskiness")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    ev = pick_jets(os.path.join(ROOT, "data", "jets_sample.h5"), args.n_jets, args.seed)[0]
    names = [n for n in args.observables.split(",") if n]
    threads = [int(t) for t in args.threads.split(",") if t]
    for name in names:  # warm-up: numba compilation / cache load, torch's first calls
        for engine in ("auto", "torch"):
            Shaper([name], beta=args.beta, n_jobs=1, flow_engine=engine).compute(ev[:4])
    lines = [f"{len(ev)} jets, beta = {args.beta}, median of {args.repeats} alternating runs",
             "", "| observable | threads | jets/s engine | jets/s torch | speed-up | threads x "
             "jets per CPU-s: engine, torch | engine <= torch (+1e-9 rel) | max rel diff | "
             "status 1: engine, torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for th in threads:
            walls = {"auto": [], "torch": []}
            cpus = {"auto": [], "torch": []}
            out = {}
            for _ in range(args.repeats):
                for engine in ("auto", "torch"):
                    v, st, wall, cpu = run(ev, name, th, engine, args.beta)
                    walls[engine].append(wall)
                    cpus[engine].append(cpu)
                    out[engine] = (v, st)
            (ve, se), (vt, stt) = out["auto"], out["torch"]
            je, jt = len(ev) / np.median(walls["auto"]), len(ev) / np.median(walls["torch"])
            ce, ct = (th * len(ev) / np.median(cpus[k]) for k in ("auto", "torch"))
            rel = (ve - vt) / np.abs(vt)
            lines.append(f"| {name} | {th} | {je:.0f} | {jt:.0f} | {je / jt:.2f} | "
                         f"{ce:.0f}, {ct:.0f} | "
                         f"{np.mean(rel <= 1e-9):.1%} | {np.abs(rel).max():.1e} | "
                         f"{np.mean(se == 1):.1%}, {np.mean(stt == 1):.1%} |")
            print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    if args.profile:
        for name in names:
            sh = Shaper([name], beta=args.beta, n_jobs=1)
            pr = cProfile.Profile()
            pr.enable()
            sh.compute(ev)
            pr.disable()
            print(f"\nprofile, {name}, 1 thread:")
            pstats.Stats(pr).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
