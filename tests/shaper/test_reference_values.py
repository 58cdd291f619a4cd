"""SHAPER's numbers on the bundled sample equal the stored reference bit for bit.

``tests/data/shaper_reference.h5`` was made by ``tests/data/make_shaper_reference.py`` from the
code at the commit recorded in its ``commit`` attribute (before the issue-10 refactor). A
refactor must not change a single bit; an intended change of SHAPER's numbers regenerates
the file and says so in its commit message. The fast test checks the first 200 jets (a jet's
numbers do not depend on its batch); the slow one the whole sample.
"""
from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data")
REFERENCE = os.path.join(DATA, "shaper_reference.h5")
sys.path.insert(0, DATA)

import make_shaper_reference as ref  # noqa: E402


def _check(case, n):
    from physkit.io import read_events

    events = read_events(ref.SAMPLE, 0, n)
    res = ref.compute(case, events)
    name, observables, _, _ = case
    with h5py.File(REFERENCE, "r") as f:
        g = f[name]
        for o in observables:
            want = g[o]
            got = res[o]
            np.testing.assert_array_equal(np.asarray(got.status), want["status"][:n], err_msg=o)
            assert np.array_equal(np.asarray(got.value), want["value"][:n], equal_nan=True), o
            assert sorted(got.params) == sorted(k for k in want if k not in ("value", "status"))
            for k, v in got.params.items():
                assert np.array_equal(np.asarray(v), want[k][:n], equal_nan=True), f"{o}/{k}"


@pytest.mark.parametrize("case", ref.CASES, ids=[c[0] for c in ref.CASES])
def test_first_jets_equal_reference(case):
    _check(case, 200)


@pytest.mark.slow
@pytest.mark.parametrize("case", ref.CASES, ids=[c[0] for c in ref.CASES])
def test_whole_sample_equals_reference(case):
    _check(case, None)
