"""Isotropy's cost against its quadrature: jets per second (wall) on 1 and ``--threads``
threads, jets per CPU-second, and the value's change per node count
(``Shaper(["isotropy"], n_eval_samples=k)`` samples ``4 k`` sunflower nodes).

Usage (from the repository root)::

    .venv/bin/python bench/shaper_isotropy_nodes.py [--n-jets 1000] [--seed 777] [--threads 2]
        [--eval-samples 1024,96,48,24] [--solvers direct,coarse-to-fine] [--repeats 3]

Held-out sample jets (half top, half QCD; ``bench/shaper_bench.pick_jets``); the first node
count is the reference of the relative differences (give a fine one first, e.g. 1024 = 4 096
nodes, to measure each count's distance from the continuous disk). ``--solvers``: ``direct``
is one exact EMD per jet at the reported quadrature (:func:`physkit.ot.emd_batch`: main's
path before issue 15 part h), ``coarse-to-fine`` the path isotropy takes now
(:func:`physkit.ot.multiscale.emd_batch_coarse_to_fine` through ``n_eval_samples // 16`` and
``// 4``). The reference row is computed once, by the first solver. For every other row the
solvers run alternately ``--repeats`` times per thread count (median jets/s reported), side by
side under the same load, and must agree to 1e-12 relative.
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


def _direct(self, obs, group):
    """Main's path: one exact EMD per jet at ``n_eval_samples`` (no coarse levels)."""
    return self.exact(obs, {}, group.x, group.z, self._pot_jobs(group))


def _run(ev, k: int, n_jobs: int, solver: str):
    """``(values, wall jets/s, CPU jets/s)`` of one isotropy computation."""
    import shaper.general as gen
    from shaper import Shaper

    own = gen.GeneralPath._exact_parameterless
    if solver == "direct":
        gen.GeneralPath._exact_parameterless = _direct
    try:
        sh = Shaper(["isotropy"], n_jobs=n_jobs, n_eval_samples=k)
        sh.compute(ev[:2])  # warm-up
        t, c = time.perf_counter(), time.process_time()
        v = np.asarray(sh.compute(ev)["isotropy"].value)
        return v, len(ev) / (time.perf_counter() - t), len(ev) / (time.process_time() - c)
    finally:
        gen.GeneralPath._exact_parameterless = own


def main(argv=None) -> int:
    import shaper_bench as sb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-jets", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--eval-samples", default="192,96,48,24",
                    help="n_eval_samples values (nodes = 4 x each); the first is the reference")
    ap.add_argument("--threads", type=int, default=2, help="n_jobs of the threaded run")
    ap.add_argument("--solvers", default="direct,coarse-to-fine")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    solvers = args.solvers.split(",")
    ev, *_ = sb.pick_jets(os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5"),
                          args.n_jets, args.seed)
    print(f"| nodes | solver | jets/s, 1 thread | jets/s, {args.threads} threads "
          "| jets per CPU-s | median / 99% / max relative difference to the first |")
    print("|---|---|---|---|---|---|")
    ks = [int(s) for s in args.eval_samples.split(",")]
    ref, rate = _run(ev, ks[0], args.threads, solvers[0])[:2]
    print(f"| {4 * ks[0]} (reference) | {solvers[0]} | -- | {rate:.0f} | -- | 0 |", flush=True)
    for k in ks[1:]:
        rates = {s: {1: [], args.threads: []} for s in solvers}
        cpu, values = {s: [] for s in solvers}, {}
        for _ in range(args.repeats):
            for n_jobs in (1, args.threads):
                for s in solvers:  # alternating: the same load for every solver
                    v, wall, c = _run(ev, k, n_jobs, s)
                    rates[s][n_jobs].append(wall)
                    if n_jobs == 1:
                        cpu[s].append(c)
                    if s in values:
                        assert np.array_equal(values[s], v), f"{s}: a value changed"
                    values[s] = v
        for s in solvers:
            np.testing.assert_allclose(values[s], values[solvers[0]], rtol=1e-12, atol=0)
            r = np.abs(values[s] / ref - 1)
            print(f"| {4 * k} | {s} | {np.median(rates[s][1]):.0f} "
                  f"| {np.median(rates[s][args.threads]):.0f} | {np.median(cpu[s]):.0f} "
                  f"| {np.median(r):.1e} / {np.quantile(r, 0.99):.1e} / {r.max():.1e} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
