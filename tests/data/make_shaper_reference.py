"""Regenerate ``tests/data/shaper_reference.h5``: SHAPER values, parameters and statuses on
the bundled sample, the regression reference of ``tests/shaper/test_reference_values.py``.

Run from the repository root with the project's venv::

    .venv/bin/python tests/data/make_shaper_reference.py

The file stores, for each case (observable set, R, beta), ``value``, ``status`` and every
fitted parameter of every jet of ``data/jets_sample.h5``. It records the git commit it
was made at (attribute ``commit``). Regenerate it only when a change of SHAPER's numbers
is intended, and say so in the commit message.
"""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "data", "jets_sample.h5")
OUT = os.path.join(ROOT, "tests", "data", "shaper_reference.h5")

#: (case name, observables fitted in one call, R, beta)
CASES = [
    ("points", ["1-subjettiness", "2-subjettiness", "3-subjettiness"], 0.8, 1.0),
    ("points_b2", ["2-subjettiness", "3-subjettiness"], 0.8, 2.0),
    ("general", ["1-ringiness", "1-diskiness", "1-ellipsiness", "isotropy"], 0.8, 1.0),
    ("combos", ["1-point-ringiness", "2-point-diskiness", "1-point-ellipsiness"], 0.8, 1.0),
    ("pileup", ["2-subjettiness+pileup", "1-diskiness+pileup"], 0.8, 1.0),
    ("beta_half", ["2-subjettiness", "1-ringiness"], 1.0, 0.5),
]


def compute(case, events):
    from shaper import Shaper

    _, observables, R, beta = case
    return Shaper(observables, R=R, beta=beta, progress=False).compute(events)


def main(argv=None) -> int:
    from physkit.io import read_events

    sys.path.insert(0, ROOT)
    events = read_events(SAMPLE)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["commit"] = commit
        f.attrs["sample"] = "data/jets_sample.h5"
        for case in CASES:
            name, observables, R, beta = case
            res = compute(case, events)
            g = f.create_group(name)
            g.attrs["R"], g.attrs["beta"] = R, beta
            g.attrs["observables"] = observables
            for o in observables:
                r = res[o]
                og = g.create_group(o)
                og["value"] = np.asarray(r.value)
                og["status"] = np.asarray(r.status)
                for k, v in r.params.items():
                    og[k] = np.asarray(v)
            print(f"{name}: done", flush=True)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} at {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
