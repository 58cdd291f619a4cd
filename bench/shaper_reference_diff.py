"""Compare two versions of ``tests/data/shaper_reference.h5`` per case and observable.

Usage (from the repository root)::

    .venv/bin/python bench/shaper_reference_diff.py OLD.h5 [NEW.h5]

``NEW`` defaults to ``tests/data/shaper_reference.h5``. For every (case, observable) both files
hold, prints the share of jets whose value is lower / equal / higher in ``NEW`` (relative
tolerance 1e-9; NaN == NaN counts as equal), the median and max ratio new / old, and the share
of rows with status 1 (step limit) in each. Lower is a better fit: every reported value is an
exact EMD to the full jet.
"""
from __future__ import annotations

import argparse
import os

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-9


def diff_rows(old: h5py.File, new: h5py.File) -> list:
    """One dict per (case, observable) present in both files."""
    rows = []
    for case in sorted(set(old) & set(new)):
        for name in sorted(set(old[case]) & set(new[case])):
            vo, vn = old[case][name]["value"][()], new[case][name]["value"][()]
            so, sn = old[case][name]["status"][()], new[case][name]["status"][()]
            both = np.isfinite(vo) & np.isfinite(vn)
            same_nan = np.isnan(vo) & np.isnan(vn)
            rel = np.where(both, (vn - vo) / np.maximum(np.abs(vo), 1e-300), 0.0)
            q = vn[both] / np.where(vo[both] > 0, vo[both], np.nan)
            rows.append(dict(case=case, observable=name, n=len(vo),
                             lower=float(np.mean(both & (rel < -RTOL))),
                             equal=float(np.mean(same_nan | (both & (np.abs(rel) <= RTOL)))),
                             higher=float(np.mean(both & (rel > RTOL))),
                             mismatch_nan=int((np.isnan(vo) != np.isnan(vn)).sum()),
                             median=float(np.nanmedian(q)), max=float(np.nanmax(q)),
                             status1_old=float(np.mean(so == 1)),
                             status1_new=float(np.mean(sn == 1))))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new", nargs="?",
                    default=os.path.join(ROOT, "tests", "data", "shaper_reference.h5"))
    args = ap.parse_args(argv)
    with h5py.File(args.old, "r") as old, h5py.File(args.new, "r") as new:
        rows = diff_rows(old, new)
        print(f"old: commit {old.attrs.get('commit', '?')}; new: commit "
              f"{new.attrs.get('commit', '?')}\n")
    print("| case | observable | jets | lower / equal / higher | NaN mismatches | median / max "
          "ratio new/old | status 1: old, new |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['observable']} | {r['n']} | {r['lower']:.1%} / "
              f"{r['equal']:.1%} / {r['higher']:.1%} | {r['mismatch_nan']} | "
              f"{r['median']:.4f} / {r['max']:.3f} | {r['status1_old']:.1%}, "
              f"{r['status1_new']:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
