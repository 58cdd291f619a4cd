"""Isotropy's cost against its quadrature: jets per second (wall) on 1 and ``--threads``
threads, jets per CPU-second, and the value's change per node count
(``Shaper(["isotropy"], n_eval_samples=k)`` samples ``4 k`` sunflower nodes).

Usage (from the repository root)::

    .venv/bin/python bench/shaper_isotropy_nodes.py [--n-jets 1000] [--seed 777] [--threads 2]

Held-out sample jets (half top, half QCD; ``bench/shaper_bench.pick_jets``); the first node
count is the reference of the relative differences (give a fine one first, e.g. 1024 = 4 096
nodes, to measure each count's distance from the continuous disk).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    import shaper_bench as sb
    from shaper import Shaper

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-jets", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--eval-samples", default="192,96,48,24",
                    help="n_eval_samples values (nodes = 4 x each); the first is the reference")
    ap.add_argument("--threads", type=int, default=2, help="n_jobs of the threaded run")
    args = ap.parse_args(argv)
    ev, *_ = sb.pick_jets(os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5"),
                          args.n_jets, args.seed)
    ref = None
    print(f"| nodes | jets/s, 1 thread | jets/s, {args.threads} threads | jets per CPU-s "
          "| median / 99% / max relative difference to the first |")
    print("|---|---|---|---|---|")
    for k in (int(s) for s in args.eval_samples.split(",")):
        rates, values = [], []
        for n_jobs in (1, args.threads):
            sh = Shaper(["isotropy"], n_jobs=n_jobs, n_eval_samples=k)
            sh.compute(ev[:2])  # warm-up
            t, c = time.perf_counter(), time.process_time()
            values.append(sh.compute(ev)["isotropy"].value)
            rates.append((len(ev) / (time.perf_counter() - t), len(ev) / (time.process_time() - c)))
        assert np.array_equal(values[0], values[1]), "thread count changed a value"
        v = values[0]
        ref = v if ref is None else ref
        r = np.abs(v / ref - 1)
        print(f"| {4 * k} | {rates[0][0]:.0f} | {rates[1][0]:.0f} | {rates[0][1]:.0f} "
              f"| {np.median(r):.1e} / {np.quantile(r, 0.99):.1e} / {r.max():.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
