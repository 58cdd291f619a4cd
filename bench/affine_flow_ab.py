"""The compiled engine's rates (1-ringiness, 1-diskiness) of several source trees side by side.

Usage (from the repository root)::

    git archive <commit> | tar -x -C /tmp/tree_a     # one exported tree per version
    .venv/bin/python bench/affine_flow_ab.py /tmp/tree_a /tmp/tree_b [...] [--repeats 3]
        [--n-jets 200]

Each repeat runs every tree once, in turn, in a subprocess of its own (the tree first on
``sys.path``; an untimed warm-up for numba's cache and torch's first calls), which times
``Shaper([name], n_jobs=t).compute`` (defaults: ``flow_engine="auto"``, CPU) on the bench jets
(``bench/shaper_bench.py``'s ``pick_jets``, this repository's sample) for each observable and
``t`` = 2, 1 threads. Prints per observable and thread count, per tree: jets/s by wall time and
threads x jets per process-CPU second (medians of the repeats), and each later tree's values
against the first tree's (max relative difference, share of bit-equal values).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5")
NAMES = ("1-ringiness", "1-diskiness")
THREADS = (2, 1)

CHILD = r'''
import json, os, sys, time
sys.path.insert(0, os.environ["TREE"])
sys.path.insert(0, os.path.join(os.environ["TREE"], "bench"))
import numpy as np
from shaper import Shaper
from shaper_bench import pick_jets
ev = pick_jets(os.environ["SAMPLE"], int(os.environ["NJ"]), 2302)[0]
out = {}
for name in json.loads(os.environ["NAMES"]):
    Shaper([name], n_jobs=1).compute(ev[:4])
    for th in json.loads(os.environ["THREADS"]):
        sh = Shaper([name], n_jobs=th)
        t0, c0 = time.perf_counter(), time.process_time()
        r = sh.compute(ev)
        out[f"{name}/{th}"] = (time.perf_counter() - t0, time.process_time() - c0,
                               np.asarray(r[name].value, dtype=np.float64).tolist())
print("JSON" + json.dumps(out))
'''


def run_tree(tree: str, n_jets: int) -> dict:
    """``{"name/threads": (wall_s, cpu_s, values)}`` of one subprocess on ``tree``."""
    env = dict(os.environ, TREE=tree, NJ=str(n_jets), SAMPLE=SAMPLE, NAMES=json.dumps(NAMES),
               THREADS=json.dumps(THREADS))
    o = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    lines = [ln for ln in o.stdout.splitlines() if ln.startswith("JSON")]
    if not lines:
        raise RuntimeError(f"{tree}: no result\n{o.stderr[-3000:]}")
    return json.loads(lines[0][4:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-jets", type=int, default=200)
    args = ap.parse_args(argv)
    res: dict = {t: [] for t in args.trees}
    for _ in range(args.repeats):
        for t in args.trees:
            res[t].append(run_tree(t, args.n_jets))
    first = args.trees[0]
    for key in res[first][0]:
        th = int(key.split("/")[1])
        row = [key]
        for t in args.trees:
            wall = np.median([r[key][0] for r in res[t]])
            cpu = np.median([r[key][1] for r in res[t]])
            row.append(f"{os.path.basename(t.rstrip('/'))}: {args.n_jets / wall:.0f} jets/s wall, "
                       f"{th * args.n_jets / cpu:.0f} threads x jets/CPU-s")
        va = np.array(res[first][-1][key][2])
        for t in args.trees[1:]:
            vb = np.array(res[t][-1][key][2])
            row.append(f"{os.path.basename(t.rstrip('/'))} vs first: max rel diff "
                       f"{np.max(np.abs(va - vb) / np.abs(va)):.2e}, equal {np.mean(va == vb):.1%}")
        print(" | ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
