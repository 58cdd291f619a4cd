"""The exact point path on held-out jets, and against an older version of itself in one process.

Usage (from the repository root)::

    .venv/bin/python bench/shaper_points_heldout.py [--old DIR] [--ab-reps 8] FILE.h5 ...

For each FILE (``data/make_sample.py`` output; every jet; the bench sample ``data/jets_sample.h5``
as ``bench/shaper_bench.py --only points`` picks it: 2 000 jets, seed 2302): physkit's
``Shaper(["2-subjettiness", "3-subjettiness"])`` (1 thread) against fastjet-contrib
``OnePass_KT_Axes`` and ``MultiPass_Axes(100)`` (``bench/fastjet_nsub.py``): jets above
``ref x (1 + 1e-6)``, the worst ratio.

``--old DIR``: DIR holds an older commit's ``shaper`` package under the name ``shaper_old``
(``git archive OLD shaper | tar -x -C /tmp/x && mv /tmp/x/shaper /tmp/x/shaper_old``); it is
run on the same jets (per-jet values compared: lower / higher beyond 1e-9 relative), and on the
first FILE the two versions and OnePass are timed alternating (``--ab-reps`` rounds, 1 thread,
process CPU seconds: the same load for all three).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from fastjet_nsub import nsubjettiness
from shaper_bench import pick_jets

NAMES = ["2-subjettiness", "3-subjettiness"]
SLACK = 1e-6


def jets_of(path: str):
    """Centred Events of ``path``: the bench's 2 000 sample jets, or every jet of a new file."""
    if os.path.basename(path) == "jets_sample.h5":
        return pick_jets(path, 2000, 2302)[0]
    from physkit.io import read_labels

    lab = read_labels(path)
    return pick_jets(path, len(lab), 0)[0]


def values(shaper_cls, ev):
    """tau_2, tau_3 ``(B, 2)`` of one 1-thread call of ``shaper_cls``."""
    res = shaper_cls(NAMES, n_jobs=1, progress=False).compute(ev)
    return np.stack([np.asarray(res[k].value, dtype=np.float64) for k in NAMES], 1)


def above(v, ref):
    """``(jets above ref (1 + SLACK) per column, worst ratio per column)``."""
    return (v > ref * (1 + SLACK)).sum(0), (v / ref).max(0)


def ab_timing(ev, classes: dict, reps: int) -> dict:
    """Process CPU seconds (min, median) of each Shaper class and of OnePass, alternating."""
    sh = {k: c(NAMES, n_jobs=1, progress=False) for k, c in classes.items()}
    for s in sh.values():
        s.compute(ev[:2])
    cpu: dict = {k: [] for k in [*sh, "OnePass"]}
    for _ in range(reps):
        for k, s in sh.items():
            c0 = time.process_time()
            s.compute(ev)
            cpu[k].append(time.process_time() - c0)
        cpu["OnePass"].append(nsubjettiness(ev, "OnePass_KT_Axes", (2, 3), R=0.8)[2])
    return {k: (min(v), float(np.median(v))) for k, v in cpu.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--old", default=None, help="folder holding the older shaper_old package")
    ap.add_argument("--ab-reps", type=int, default=8)
    args = ap.parse_args(argv)
    from shaper import Shaper

    classes = {"new": Shaper}
    if args.old:
        sys.path.insert(0, args.old)
        from shaper_old import Shaper as OldShaper
        classes = {"old": OldShaper, "new": Shaper}
    print("| jets | version | tau_2 / tau_3 above OnePass | above MultiPass(100) | worst / MP |")
    print("|---|---|---|---|---|")
    for i, path in enumerate(args.files):
        ev = jets_of(path)
        one = nsubjettiness(ev, "OnePass_KT_Axes", (2, 3), R=0.8)[0]
        multi = nsubjettiness(ev, "MultiPass_Axes", (2, 3), R=0.8, n_pass=100)[0]
        got = {k: values(c, ev) for k, c in classes.items()}
        for k, v in got.items():
            (a1, _), (a2, w2) = above(v, one), above(v, multi)
            print(f"| {path} ({len(ev)}) | {k} | {a1[0]} / {a1[1]} | {a2[0]} / {a2[1]} | "
                  f"{w2[0]:.5f} / {w2[1]:.5f} |", flush=True)
        if "old" in got:
            r = got["new"] / got["old"] - 1
            print(f"|  | new vs old per jet | lower {(r < -1e-9).sum(0).tolist()}, higher "
                  f"{(r > 1e-9).sum(0).tolist()} (largest rise {r.max(0).tolist()}) | | |")
        if i == 0 and len(classes) > 1:
            t = ab_timing(ev, classes, args.ab_reps)
            print(f"\nalternating, 1 thread, process CPU s (min, median): {t}; OnePass / new "
                  f"(best) {t['OnePass'][0] / t['new'][0]:.3f}x, OnePass / old "
                  f"{t['OnePass'][0] / t['old'][0]:.3f}x; load {os.getloadavg()[0]:.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
