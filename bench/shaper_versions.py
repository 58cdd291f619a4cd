"""Two checkouts of physkit side by side: CPU time and values of general-path observables.

Usage (from the repository root; OTHER is another checkout, e.g. ``git archive main`` unpacked,
run with this checkout's ``.venv``)::

    .venv/bin/python bench/shaper_versions.py --other /tmp/main \
        --observables 2-point-diskiness,1-point-ringiness --rounds 3

Each round runs, for every observable, one fresh process per checkout in alternating order
(``Shaper([obs], n_jobs=threads).compute`` on the bench's jets, ``pick_jets`` seed 2302, or
held-out jets with ``--held-out``; an untimed warm-up on 2 jets first) and records its
process CPU time. Prints per observable the median CPU time of each checkout, their ratio
(other / this: > 1 means this checkout is faster) and the per-jet values compared (share
identical, higher / lower than the other by more than 1e-4 relative, max relative difference).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = r"""
import sys, time, json
root, obs, n, seed, held, threads, out = sys.argv[1:8]
sys.path.insert(0, root); sys.path.insert(0, {bench!r})
import numpy as np, torch
import physkit, shaper  # this root's, before the bench modules put theirs on sys.path
torch.set_num_threads(int(threads))
if held == "1":
    from shaper_settings import held_out_jets
    ev = held_out_jets({data!r}, int(n), int(seed))[0]
else:
    from shaper_bench import pick_jets
    ev = pick_jets({data!r}, int(n), int(seed))[0]
from shaper import Shaper
assert shaper.__file__.startswith(root) and physkit.__file__.startswith(root), shaper.__file__
sh = Shaper([obs], n_jobs=int(threads))
sh.compute(ev[:2])
t0 = time.process_time()
r = sh.compute(ev)[obs]
cpu = time.process_time() - t0
np.save(out, np.asarray(r.value, dtype=np.float64))
print(json.dumps(dict(cpu=cpu)))
"""


def run_one(root: str, obs: str, args, out: str) -> float:
    """CPU seconds of one fresh process fitting ``obs`` with the checkout at ``root``."""
    code = _CHILD.format(bench=HERE, data=args.data)
    cmd = [sys.executable, "-c", code, root, obs, str(args.n_jets),
           str(args.seed if not args.held_out else 777), "1" if args.held_out else "0",
           str(args.threads), out]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["cpu"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", required=True, help="the other checkout's root")
    ap.add_argument("--observables", default="2-point-diskiness")
    ap.add_argument("--n-jets", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2302)
    ap.add_argument("--held-out", action="store_true", help="held-out jets (seed 777)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "jets_sample.h5"))
    args = ap.parse_args(argv)
    roots = {"this": ROOT, "other": os.path.abspath(args.other)}
    print(f"this = {ROOT}, other = {roots['other']}; {args.n_jets} "
          f"{'held-out' if args.held_out else 'bench'} jets, {args.threads} threads, "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f} at the start")
    print("| observable | CPU s this (median) | CPU s other (median) | other / this | "
          "values identical | higher / lower than other (1e-4) | max rel. difference |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for obs in args.observables.split(","):
            cpu = {k: [] for k in roots}
            vals = {}
            for r in range(args.rounds):
                order = list(roots) if r % 2 == 0 else list(roots)[::-1]
                for k in order:
                    out = os.path.join(tmp, f"{k}.npy")
                    cpu[k].append(run_one(roots[k], obs, args, out))
                    vals[k] = np.load(out)
            a, b = vals["this"], vals["other"]
            rel = (a - b) / b
            mt, mo = np.median(cpu["this"]), np.median(cpu["other"])
            print(f"| {obs} | {mt:.2f} ({', '.join(f'{t:.2f}' for t in cpu['this'])}) | "
                  f"{mo:.2f} ({', '.join(f'{t:.2f}' for t in cpu['other'])}) | {mo / mt:.2f} | "
                  f"{np.mean(a == b):.1%} | {np.mean(rel > 1e-4):.1%} / {np.mean(rel < -1e-4):.1%}"
                  f" | {np.abs(rel).max():.1e} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
