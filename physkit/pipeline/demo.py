"""``physkit demo``: the bundled sample through SHAPER and FINDER (what ``make run`` runs).

Steps (all through the same CLI code paths an analyst uses):

1. split ``data/jets_sample.h5`` into ``train.h5`` (even rows) and ``test.h5`` (odd rows);
2. ``physkit shape train.h5 --observable 2-subjettiness --observable 3-subjettiness``;
3. ``physkit finder fit train.h5 --features shape:train_shapes.h5`` (top vs QCD labels);
4. ``physkit score test.h5 --model model.h5`` (SHAPER recomputed on the test jets);
5. ``physkit report`` of the test scores; print the test AUCs of the FINDER score, of each
   observable alone and of the kT-axes tau_3/tau_2 stored in the sample (a baseline).
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

import numpy as np

__all__ = ["SAMPLE", "DEMO_OBSERVABLES", "run_demo"]

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "data", "jets_sample.h5")
DEMO_OBSERVABLES = ("2-subjettiness", "3-subjettiness")
#: what the sample's labels mean (its ``labels_meaning`` attribute); the demo's files keep it
LABELS_MEANING = "1 = top, 0 = QCD"


def run_demo(out_dir: str, main: Callable[[Sequence[str]], int], *,
             n_events: int | None = None, progress: bool = True,
             observables=DEMO_OBSERVABLES) -> int:
    """Run the demo into ``out_dir`` through ``main`` (the ``physkit`` entry point, e.g.
    :func:`physkit.pipeline.cli.main`); prints the AUCs; returns the exit status."""
    from ..io import read_constituents, read_dataset, read_labels, write_events
    from sklearn.metrics import roc_auc_score

    from .report import discriminant_auc
    from .results import read_results

    if not os.path.exists(SAMPLE):
        print(f"physkit: error: {SAMPLE}: no such file (run data/make_sample.py)",
              file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    arr = read_constituents(SAMPLE, 0, n_events)
    labels = read_labels(SAMPLE, 0, n_events)
    tau = read_dataset(SAMPLE, "tau_kt", 0, n_events)
    paths = {}
    for part, sl in (("train", slice(0, None, 2)), ("test", slice(1, None, 2))):
        paths[part] = write_events(os.path.join(out_dir, f"{part}.h5"), arr[sl], labels[sl],
                                   extra={"tau_kt": tau[sl]},
                                   attrs={"labels_meaning": LABELS_MEANING})
    print(f"demo: {len(arr)} jets of {SAMPLE} -> {len(arr[0::2])} train, {len(arr[1::2])} "
          f"test (labels: 1 = top, 0 = QCD)")
    quiet = [] if progress else ["--no-progress"]
    shapes = os.path.join(out_dir, "train_shapes.h5")
    model = os.path.join(out_dir, "model.h5")
    scores = os.path.join(out_dir, "test_scores.h5")
    obs = [a for o in observables for a in ("--observable", o)]
    again = ["--overwrite"]  # the demo's own outputs of an earlier run are replaced
    steps = [
        ["shape", paths["train"], "-o", shapes, *obs, "--chunk-size", "500", *quiet, *again],
        ["finder", "fit", paths["train"], "--features", f"shape:{shapes}", "-o", model, *quiet,
         *again],
        ["score", paths["test"], "--model", model, "-o", scores, "--chunk-size", "500",
         *quiet, *again],
        ["report", scores, "-o", os.path.join(out_dir, "report"), *again],
    ]
    for argv in steps:
        print("demo: physkit " + " ".join(argv), flush=True)
        rc = main(argv)
        if rc:
            return rc
    data = read_results(scores)
    y = data["labels"]
    print(f"\nTest-set ROC AUC, top vs QCD ({len(y)} jets; fit on the {len(arr[0::2])} "
          f"train jets):")
    ok = np.isfinite(data["score/value"])
    auc = float(roc_auc_score(y[ok], data["score/value"][ok]))  # not folded: higher = top
    print(f"  FINDER on SHAPER observables  {auc:.3f}")
    for o in observables:
        a, s = discriminant_auc(data[f"{o}/value"], y)
        print(f"  {o:<28} {a:.3f}  ({'lower' if s < 0 else 'higher'} = top-like)")
    if {"2-subjettiness", "3-subjettiness"} <= set(observables):
        with np.errstate(divide="ignore", invalid="ignore"):
            r32 = data["3-subjettiness/value"] / data["2-subjettiness/value"]
        a, s = discriminant_auc(r32, y)
        print(f"  {'tau_3/tau_2 (SHAPER, exact)':<28} {a:.3f}  "
              f"({'lower' if s < 0 else 'higher'} = top-like)")
    t = tau[1::2]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, _ = discriminant_auc(t[:, 2] / t[:, 1], y)
    print(f"  {'tau_3/tau_2 (kT axes)':<28} {a:.3f}  (baseline from the sample file)")
    print(f"\nplots: {os.path.join(out_dir, 'report', 'index.html')}")
    return 0
