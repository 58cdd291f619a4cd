"""Memory stays bounded by the chunk size: peak RSS of `physkit score` on a 10^6-event file.

Stated bound: with ``--chunk-size 10000`` the whole command (Python, torch, h5py, sklearn
included) peaks below 800 MiB on a file whose constituents alone are 1.19 GiB as float32
(10^6 events x 100 particles x 3), and within 150 MiB of its peak on a 10^5-event file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from physkit.pipeline.cli import main

PHYSKIT = os.path.join(os.path.dirname(sys.executable), "physkit")
BOUND_MIB = 800
GROWTH_MIB = 150


def _big_file(path, n, m=100, block=50000):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["physkit_format"] = 1
        c = f.create_dataset("constituents", (n, m, 3), "f4", chunks=(2000, m, 3))
        lab = f.create_dataset("labels", (n,), "i1")
        feat = f.create_dataset("feat", (n, 3), "f8")
        for s in range(0, n, block):
            e = min(n, s + block)
            a = np.zeros((e - s, m, 3), np.float32)
            k = 20
            a[:, :k, 0] = rng.uniform(1, 50, (e - s, k))
            a[:, :k, 1:] = rng.normal(0, 0.3, (e - s, k, 2))
            c[s:e] = a
            y = rng.integers(0, 2, e - s)
            lab[s:e] = y
            feat[s:e] = rng.normal(size=(e - s, 3)) + y[:, None]
    return str(path)


def _peak_rss_mib(cmd) -> float:
    import psutil

    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return peak / 2**20


@pytest.mark.slow
def test_peak_rss_bounded_on_a_million_events(tmp_path):
    small = _big_file(tmp_path / "e5.h5", 100_000)
    big = _big_file(tmp_path / "e6.h5", 1_000_000)
    assert os.path.getsize(big) > 1.1 * 2**30
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", small, "--features", "dataset:feat", "--estimator",
                 "detector", "-o", model, "--chunk-size", "50000", "--no-progress"]) == 0
    peaks = {}
    for name, path in (("e5", small), ("e6", big)):
        out = str(tmp_path / f"{name}_scores.h5")
        peaks[name] = _peak_rss_mib([PHYSKIT, "score", path, "--model", model, "-o", out,
                                     "--chunk-size", "10000", "--no-progress"])
        with h5py.File(out) as f:
            assert f["score/value"].shape[0] == (100_000 if name == "e5" else 1_000_000)
    print(f"peak RSS MiB: {peaks}")
    assert peaks["e6"] < BOUND_MIB, peaks
    assert peaks["e6"] - peaks["e5"] < GROWTH_MIB, peaks
