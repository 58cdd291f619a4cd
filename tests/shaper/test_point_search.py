"""The exact point path finds the global minimum: tau_n against fastjet-contrib's
MultiPass_Axes (computed here, through the fastjet wheel), and the search's guarantees (its
moves and restarts never raise a value, one call equals separate calls, Lloyd rows are
independent of each other)."""
from pathlib import Path
import sys

import h5py
import numpy as np
import pytest
import torch

from physkit.events import Events
from shaper import Shaper
from shaper.lloyd import lloyd

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")
BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def jets():
    with h5py.File(SAMPLE, "r") as f:
        return f["constituents"][:100].astype(np.float64)


def test_at_most_multipass(jets):
    # fastjet-contrib's best of 50 randomised one-pass minimisations: physkit's single call
    # must reach its minimum (or a lower one) on every jet
    sys.path.insert(0, str(BENCH))
    try:
        from fastjet_nsub import nsubjettiness
    finally:
        sys.path.remove(str(BENCH))
    t = torch.as_tensor
    ev = Events(t(jets[..., 0]), t(jets[..., 1]), t(jets[..., 2]), t(jets[..., 0] > 0))
    ref, _, _ = nsubjettiness(ev.centered(), "MultiPass_Axes", (2, 3), R=0.8, n_pass=50)
    res = Shaper(["2-subjettiness", "3-subjettiness"], progress=False).compute(jets)
    for j, n in enumerate((2, 3)):
        v = res[f"{n}-subjettiness"].value
        assert (v <= ref[:, j] * (1 + 1e-6)).mean() >= 0.99, n
        assert np.max(v / ref[:, j]) <= 1.001, n


def test_moves_and_restarts_never_raise_a_value(jets):
    names = ["2-subjettiness", "3-subjettiness"]
    base = Shaper(names, point_swaps=0, progress=False).compute(jets[:60])
    for kw in ({"point_swaps": 1}, {"point_swaps": 0, "point_restarts": 4}):
        more = Shaper(names, progress=False, **kw).compute(jets[:60])
        for name in names:  # (up to rounding: a row polished in another batch of rows can
            # differ in its last bit)
            assert (more[name].value <= base[name].value * (1 + 1e-12)).all(), (kw, name)


def test_one_call_equals_separate_calls(jets):
    both = Shaper(["2-subjettiness", "3-subjettiness"], progress=False).compute(jets[:40])
    for name in ("2-subjettiness", "3-subjettiness"):
        alone = Shaper([name], progress=False).compute(jets[:40])
        np.testing.assert_array_equal(both[name].value, alone[name].value)
        np.testing.assert_array_equal(both[name].params["centers"],
                                      alone[name].params["centers"])


def test_lloyd_rows_independent():
    # a row's result does not depend on the other rows of the call (widths, blocks, early exit)
    g = torch.Generator().manual_seed(5)
    B, M = 6, 96
    x = torch.randn(B, M, 2, generator=g, dtype=torch.float64) * 0.3
    z = torch.rand(B, M, generator=g, dtype=torch.float64)
    z[:3, 30:] = 0  # narrower jets
    x[:3, 30:] = 0
    z = z / z.sum(1, keepdim=True)
    jet = torch.arange(B).repeat_interleave(3)
    c0 = torch.randn(3 * B, 3, 2, generator=g, dtype=torch.float64) * 0.3
    for dtype, exact in ((torch.float32, False), (torch.float64, True)):
        every = lloyd(x, z, jet, c0, max_iter=50, dtype=dtype, exact=exact)
        for r in (0, 4, 10, 17):
            one = lloyd(x, z, jet[r:r + 1], c0[r:r + 1], max_iter=50, dtype=dtype, exact=exact)
            assert torch.equal(one.centers[0], every.centers[r]), (dtype, r)
            assert torch.equal(one.value[0], every.value[r]), (dtype, r)
