"""A jet's SHAPER numbers must not depend on which jets share its batch.

The same jets are computed (a) all together, (b) permuted with another chunk size, bucket size
and thread count, (c) one by one; values, parameters and statuses must agree bit for bit
(float32 flow included: every row is computed at a width set by its own multiplicity, with
row-wise Sinkhorn stabilisation and SIMD-aligned rows, so no arithmetic depends on the batch).
"""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physkit.ot import sinkhorn_divergence
from shaper import Shaper
from shaper.shaper import padded_width

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")


@pytest.fixture(scope="module")
def jets():
    with h5py.File(SAMPLE, "r") as f:
        c = f["constituents"][:400].astype(np.float64)
    n = (c[..., 0] > 0).sum(1)
    # a spread of multiplicities (small, typical, the largest of these 400)
    idx = np.r_[np.argsort(n)[:3], np.arange(40), np.argsort(n)[-3:]]
    return c[np.unique(idx)]


def _same(a, b, rows_a, rows_b, names):
    for name in names:
        ra, rb = a[name], b[name]
        np.testing.assert_array_equal(ra.value[rows_a], rb.value[rows_b], err_msg=name)
        np.testing.assert_array_equal(ra.status[rows_a], rb.status[rows_b], err_msg=name)
        for k in ra.params:
            np.testing.assert_array_equal(ra.params[k][rows_a], rb.params[k][rows_b],
                                          err_msg=f"{name} {k}")


def _check(jets, names, kw, singles):
    a = Shaper(names, progress=False, **kw).compute(jets)  # (a) all together
    perm = np.random.default_rng(3).permutation(len(jets))
    b = Shaper(names, progress=False, chunk_size=7, bucket_size=5, n_jobs=1,
               **kw).compute(jets[perm])
    everything = np.arange(len(jets))
    _same(a, b, everything, np.argsort(perm), names)  # (b) other order, chunks, buckets, threads
    for i in singles:  # (c) alone
        one = Shaper(names, progress=False, **kw).compute(jets[i:i + 1])
        _same(a, one, np.array([i]), np.array([0]), names)


@needs_sample
def test_point_path_independent_of_batch(jets):
    _check(jets, ["2-subjettiness", "3-subjettiness"], {}, [0, 5, len(jets) - 1])


@needs_sample
def test_general_path_independent_of_batch(jets):
    sub = jets[::3]
    _check(sub, ["2-point-diskiness"], dict(steps=6, n_eval_samples=24), [0, len(sub) - 1])


@needs_sample
def test_multi_start_screening_and_sinkhorn_flow_independent_of_batch(jets):
    sub = jets[1::4]
    # exact flow: every start screened for 2 steps, the first and the best flow on
    _check(sub, ["1-diskiness", "2-point-diskiness"],
           dict(steps=6, screen_steps=2, n_eval_samples=24), [len(sub) // 2])
    # the Sinkhorn flow (float32, coarse-grained jets) stays independent too
    _check(sub, ["2-point-diskiness"], dict(flow="sinkhorn", steps=6, n_eval_samples=24),
           [len(sub) - 1])


@needs_sample
def test_exact_values_independent_of_batch(jets):
    sh = Shaper("2-diskiness", n_eval_samples=24)
    n = len(jets)
    rng = np.random.default_rng(0)
    params = {"centers": rng.normal(0, 0.1, (n, 2, 2)) + 0.0,
              "weights": np.full((n, 2), 0.5), "radii": np.full((n, 2), 0.1)}
    # positions relative to each jet's own pT-weighted (y, phi)
    pt, y, phi = jets[..., 0], jets[..., 1], jets[..., 2]
    ax = np.stack([(pt * y).sum(1), (pt * phi).sum(1)], -1) / pt.sum(1)[:, None]
    params["centers"] = params["centers"] + ax[:, None, :]
    v = sh.exact_values(jets, "2-diskiness", params)
    for i in (0, n - 1):
        one = sh.exact_values(jets[i:i + 1], "2-diskiness", {k: p[i:i + 1] for k, p in params.items()})
        assert one[0] == v[i]


def test_padded_width_depends_on_own_multiplicity_only():
    n = torch.arange(0, 700)
    w = padded_width(n)
    assert (w >= n.clamp_min(1)).all() and (w % 16 == 0).all()
    assert (torch.diff(w) >= 0).all()
    assert w[:33].eq(32).all() and int(w[33]) == 64 and int(w[65]) == 96 and int(w[300]) == 320
    # the same multiplicity in another batch gets the same width
    assert int(padded_width(torch.tensor([50]))[0]) == int(w[50])
    assert (w - n < 64).all()  # little padding


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sinkhorn_rowwise_is_independent_of_batch(dtype):
    g = torch.Generator().manual_seed(0)
    B, N, M = 7, 48, 32  # widths that are multiples of 16 (whole SIMD vectors per row)
    spread = torch.linspace(0.1, 3.0, B, dtype=dtype)[:, None, None]
    x = torch.randn(B, N, 2, generator=g, dtype=dtype) * spread
    y = torch.randn(B, M, 2, generator=g, dtype=dtype) * 0.3
    mx = torch.rand(B, N, generator=g) < 0.7
    mx[:, 0] = True
    a = torch.where(mx, torch.rand(B, N, generator=g, dtype=dtype), torch.zeros((), dtype=dtype))
    a = a / a.sum(1, keepdim=True)
    b = torch.rand(B, M, generator=g, dtype=dtype)
    b = b / b.sum(1, keepdim=True)
    kw = dict(R=0.8, eps=0.02, max_iter=200, tol=1e-4, rowwise=True)
    s = sinkhorn_divergence(x, a, y, b, mask_x=mx, **kw)
    perm = torch.randperm(B, generator=g)
    sp = sinkhorn_divergence(x[perm], a[perm], y[perm], b[perm], mask_x=mx[perm], **kw)
    assert torch.equal(sp, s[perm])
    for i in (0, B - 1):
        one = sinkhorn_divergence(x[i:i + 1], a[i:i + 1], y[i:i + 1], b[i:i + 1],
                                  mask_x=mx[i:i + 1], **kw)
        assert torch.equal(one[0], s[i])
    # the default (batch-global) mode gives the same divergence to the solver's tolerance
    s0 = sinkhorn_divergence(x, a, y, b, mask_x=mx, **{**kw, "rowwise": False})
    torch.testing.assert_close(s, s0, rtol=1e-3, atol=1e-6)


def test_seeds_keep_stdout_clean_and_warn_nothing():
    code = ("import numpy as np, torch\n"
            "from physkit.events import Events\n"
            "from shaper.seeds import KtSeeds\n"
            "ev = Events.from_padded(np.abs(np.random.default_rng(0).normal(size=(4, 12, 3))) + 0.1,"
            " dtype=torch.float64)\n"
            "c, w = KtSeeds(ev.centered()).subjets(2)\n"
            "assert c.shape == (4, 2, 2)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                       env=env, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "dcut" not in r.stderr and "FastJet" not in r.stderr
