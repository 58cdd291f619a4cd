"""SHAPER general-path settings compared on held-out sample jets (how the defaults were chosen).

Usage (from the repository root)::

    .venv/bin/python bench/shaper_settings.py [--n-jets 200] [--observable 2-point-diskiness]

The jets are drawn from ``data/jets_sample.h5`` (half top, half QCD, seed 777) **excluding** the
200 jets that ``bench/shaper_bench.py`` compares with pyshaper, so the settings are not tuned on
the benchmark's jets. Each configuration of :class:`shaper.Shaper` runs on the same jets (2
threads, untimed 2-jet warm-up) and the table reports CPU seconds and the mean and median of
the reported values -- exact EMDs to the full jets, so lower is a better fit -- plus, per jet,
the share better / worse than the first configuration (the defaults).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

#: (label, Shaper keyword arguments); the first row is the reference
CONFIGS = [
    ("defaults (lr 0.04, 100 steps; coarse 32 for beta >= 1)", {}),
    ("coarse 32", {"coarse_points": 32}),
    ("full jets in the flow", {"coarse_points": None}),
    ("+ 10 polish steps on the full jets", {"polish_steps": 10}),
    ("lr 0.02", {"lr": 0.02}),
    ("lr 0.03", {"lr": 0.03}),
    ("lr 0.05", {"lr": 0.05}),
    ("150 steps", {"steps": 150}),
    ("eps 0.02", {"eps": 0.02}),
    ("previous defaults (full jets, lr 0.02, buckets of 64)",
     {"coarse_points": None, "lr": 0.02, "bucket_size": 64}),
]


def held_out_jets(path: str, n_jets: int, seed: int = 777):
    import torch

    from physkit.io import read_events, read_labels
    from shaper_bench import pick_jets

    _, _, _, bench_idx = pick_jets(path, 200, 2302)
    labels = read_labels(path)
    rest = np.setdiff1d(np.arange(len(labels)), bench_idx)
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([
        rng.choice(rest[labels[rest] == lab], k, replace=False)
        for lab, k in ((1, n_jets // 2), (0, n_jets - n_jets // 2))]))
    ev = read_events(path, dtype=torch.float64)[torch.as_tensor(idx)].trim()
    return ev.centered(), idx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-jets", type=int, default=200)
    ap.add_argument("--observable", default="2-point-diskiness")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--R", type=float, default=0.8)
    ap.add_argument("--only", default=None,
                    help="comma-separated row numbers of CONFIGS to run (0 = defaults, always run)")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "jets_sample.h5"))
    args = ap.parse_args(argv)

    from shaper import Shaper

    ev, _ = held_out_jets(args.data, args.n_jets)
    rows, ref = [], None
    configs = CONFIGS
    if args.only:
        keep = {0} | {int(i) for i in args.only.split(",")}
        configs = [c for i, c in enumerate(CONFIGS) if i in keep]
    for label, kw in configs:
        sh = Shaper([args.observable], R=args.R, beta=args.beta, n_jobs=args.threads,
                    progress=False, **kw)
        sh.compute(ev[:2])
        t0, c0 = time.perf_counter(), time.process_time()
        v = sh.compute(ev)[args.observable].value
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if ref is None:
            ref = v
        q = v / ref
        rows.append((label, wall, cpu, v.mean(), np.median(v), np.mean(q < 1 - 1e-4),
                     np.mean(q > 1 + 1e-4)))
        print(f"{label}: {cpu:.2f} CPU-s, mean {v.mean():.5f}", flush=True)
    print(f"\n{args.observable}, R = {args.R}, beta = {args.beta}, {len(ev)} held-out jets, "
          f"{args.threads} threads\n")
    print("| configuration | wall s | CPU s | mean value | median value | better / worse than defaults |")
    print("|---|---|---|---|---|---|")
    for label, wall, cpu, mean, med, better, worse in rows:
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {mean:.5f} | {med:.5f} | "
              f"{better:.0%} / {worse:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
