"""Results files: chunked writer, completion marks, atomic finalisation, resume after a kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.io import write_events
from physkit.pipeline.results import (ChunkStore, ResultsFormatError, read_results, result_groups,
                             results_settings)

PHYSKIT = os.path.join(os.path.dirname(sys.executable), "physkit")


def _h5_content(path) -> dict:
    """Every dataset and attribute of an HDF5 file, by name."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/attrs"] = {k: np.asarray(v).tolist() for k, v in f.attrs.items()}

        def visit(name, obj):
            out[name + "/attrs"] = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype.str, obj[()])
        f.visititems(visit)
    return out


def _assert_same_content(a, b):
    ca, cb = _h5_content(a), _h5_content(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        if isinstance(ca[k], tuple):
            assert ca[k][0] == cb[k][0], k
            np.testing.assert_array_equal(ca[k][1], cb[k][1], err_msg=k)
        else:
            assert ca[k] == cb[k], k


def test_chunks_then_finalize(tmp_path):
    out = str(tmp_path / "r.h5")
    store = ChunkStore(out, {"x": 1})
    store.write_chunk("b", {"obs/value": np.array([3.0, 4.0]), "obs/status": np.array([0, 1], np.int8),
                            "source_index": np.array([2, 3]),
                            "source_file": np.array(["ä.h5", "ä.h5"])})
    # first chunk: all events bad, so no parameter dataset; finalize fills NaN there
    store.write_chunk("a", {"obs/value": np.array([np.nan, 1.0]),
                            "obs/centers": np.array([[0.5, 0.5], [1.0, 2.0]]),
                            "obs/status": np.array([3, 0], np.int8),
                            "source_index": np.array([0, 1]),
                            "source_file": np.array(["ä.h5", "ä.h5"])},
                      attrs={"obs": {"R": 0.8}})
    assert store.done("a") and store.done("b") and not store.done("c")
    assert not os.path.exists(out), "the final file must not exist before finalize"
    store.finalize(["a", "b"], attrs={"settings": {"command": "test"}})
    assert os.path.exists(out) and not os.path.exists(out + ".partial")
    r = read_results(out)
    np.testing.assert_array_equal(r["source_index"], [0, 1, 2, 3])
    np.testing.assert_array_equal(r["obs/value"], [np.nan, 1.0, 3.0, 4.0])
    np.testing.assert_array_equal(r["obs/status"], [3, 0, 0, 1])
    assert np.isnan(r["obs/centers"][2:]).all()
    np.testing.assert_array_equal(r["obs/centers"][:2], [[0.5, 0.5], [1.0, 2.0]])
    assert list(r["source_file"]) == ["ä.h5"] * 4
    assert result_groups(out) == ["obs"]
    assert results_settings(out)["settings"] == {"command": "test"}
    with h5py.File(out) as f:
        assert f.attrs["physkit_results"] == 1
        assert f["obs"].attrs["R"] == 0.8


def test_resume_refuses_other_settings(tmp_path):
    out = str(tmp_path / "r.h5")
    ChunkStore(out, {"settings": {"R": 0.8}}).write_chunk("a", {"v": np.zeros(2)})
    with pytest.raises(ResultsFormatError, match="cannot resume.*settings"):
        ChunkStore(out, {"settings": {"R": 0.4}}, resume=True)
    s = ChunkStore(out, {"settings": {"R": 0.8}}, resume=True)
    assert s.done("a")
    s.close()  # a store holds the run's lock until closed or finalized
    s = ChunkStore(out, {"settings": {"R": 0.8}}, resume=False)  # starts over
    assert not s.done("a")


def test_reader_refuses_wrong_version_and_partial(tmp_path):
    p = str(tmp_path / "r.h5")
    with h5py.File(p, "w") as f:
        f.attrs["physkit_results"] = 7
    with pytest.raises(ResultsFormatError, match="version 7"):
        read_results(p)
    q = str(tmp_path / "q.h5")
    ChunkStore(q, {})
    with pytest.raises(ResultsFormatError, match="not complete.*--resume"):
        read_results(q)


@pytest.fixture(scope="module")
def big_events(tmp_path_factory):
    """8000 small synthetic events with a 4-column feature dataset, and a fitted model."""
    d = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(5)
    n, m = 8000, 4
    arr = np.zeros((n, m, 3), np.float32)
    arr[..., 0] = rng.uniform(1, 10, (n, m))
    arr[..., 1] = rng.normal(0, 0.3, (n, m))
    arr[..., 2] = rng.normal(0, 0.3, (n, m))
    labels = rng.integers(0, 2, n)
    feat = rng.normal(size=(n, 4)) + labels[:, None] * np.array([0, 0, 0, 1.5])
    ev = str(d / "ev.h5")
    write_events(ev, arr, labels, extra={"feat": feat})
    model = str(d / "m.h5")
    assert main(["finder", "fit", ev, "--features", "dataset:feat", "--estimator", "detector",
                 "--reference-label", "0", "-o", model, "--chunk-size", "5000",
                 "--no-progress"]) == 0
    return d, ev, model


def test_kill_mid_run_then_resume_equals_uninterrupted(big_events):
    d, ev, model = big_events
    out = str(d / "killed.h5")
    part = out + ".partial"
    cmd = [PHYSKIT, "score", ev, "--model", model, "-o", out, "--chunk-size", "50",
           "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 120:
        if os.path.isdir(part) and sum(n.startswith("chunk-") for n in os.listdir(part)) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not os.path.exists(out), "a killed run must not leave the final file"
    done = sorted(n for n in os.listdir(part) if n.startswith("chunk-"))
    assert 3 <= len(done) < 160
    for n in done:  # every completed chunk is readable and complete
        with h5py.File(os.path.join(part, n), "r") as f:
            assert f["score/value"].shape == (50,)
            assert f["source_index"][0] % 50 == 0
    # resume (in-process), then an uninterrupted run; same content
    assert main(cmd[1:] + ["--resume"]) == 0
    assert not os.path.exists(part)
    ref = str(d / "ref.h5")
    assert main(["score", ev, "--model", model, "-o", ref, "--chunk-size", "50",
                 "--no-progress"]) == 0
    _assert_same_content(out, ref)
    with open(out, "rb") as a, open(ref, "rb") as b:
        assert a.read() == b.read(), "resumed and uninterrupted files differ byte-wise"
    r = read_results(out, ["source_index", "score"])
    np.testing.assert_array_equal(r["source_index"], np.arange(8000))
    assert np.isfinite(r["score/value"]).all() and (r["score/status"] == 0).all()
