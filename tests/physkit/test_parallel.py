"""Scale-out: chunk planning, in-process map, and a real 2-worker dask LocalCluster."""
from __future__ import annotations

import functools

import h5py
import numpy as np
import pytest

from physkit.pipeline.cli import main
from physkit.errors import EventFileError
from physkit.io import read_constituents, read_labels, write_events
from physkit.parallel import (Chunk, ChunkFailure, chunk_ranges, iter_chunks, map_chunks,
                              open_scheduler, plan_chunks)
from physkit.pipeline.results import read_results


def test_chunk_ranges_cover_in_order():
    assert chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_ranges(0, 4) == []
    with pytest.raises(ValueError):
        chunk_ranges(5, 0)


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    from conftest import synthetic_jets

    d = tmp_path_factory.mktemp("par")
    a = synthetic_jets(23, 12, seed=1)
    b = synthetic_jets(9, 12, seed=2)
    rng = np.random.default_rng(0)
    pa = write_events(str(d / "a.h5"), a, rng.integers(0, 2, 23),
                      extra={"feat": rng.normal(size=(23, 3))})
    pb = write_events(str(d / "b.h5"), b, rng.integers(0, 2, 9),
                      extra={"feat": rng.normal(size=(9, 3))})
    return d, pa, pb, a, b


def test_plan_and_map_in_process(two_files):
    d, pa, pb, a, b = two_files
    chunks = plan_chunks([pa, pb], 10)
    assert [(c.file_index, c.start, c.stop) for c in chunks] == [
        (0, 0, 10), (0, 10, 20), (0, 20, 23), (1, 0, 9)]
    parts = map_chunks(read_constituents, [pa, pb], 10)
    np.testing.assert_array_equal(np.concatenate(parts[:3]), a)
    np.testing.assert_array_equal(parts[3], b)


def test_iter_chunks_catches_failures_and_continues(two_files, tmp_path):
    d, pa, pb, a, b = two_files
    bad = str(tmp_path / "bad.h5")
    with open(bad, "wb") as fh:
        fh.write(b"not an hdf5 file")
    chunks = [Chunk(0, pa, 0, 5), Chunk(1, bad, 0, 5), Chunk(2, pb, 0, 5)]
    out = list(iter_chunks(read_constituents, chunks, catch=True))
    assert isinstance(out[1][1], ChunkFailure)
    assert "bad.h5" in str(out[1][1]) and isinstance(out[1][1].error, EventFileError)
    np.testing.assert_array_equal(out[2][1], b[:5])
    with pytest.raises(EventFileError):
        list(iter_chunks(read_constituents, chunks))


def test_bad_scheduler_spec():
    with pytest.raises(ValueError, match="local:N"):
        with open_scheduler("local:zero"):
            pass
    with pytest.raises(ValueError, match="bad scheduler"):
        with open_scheduler("somewhere"):
            pass


def test_local_cluster_matches_in_process(two_files, tmp_path):
    """A real dask LocalCluster (2 worker processes): map_chunks and the CLI give the same
    results as in-process; the CLI reaches the cluster through its tcp:// address."""
    d, pa, pb, a, b = two_files
    model = str(tmp_path / "m.h5")
    assert main(["finder", "fit", pa, pb, "--features", "dataset:feat", "--label-from", "file",
                 "--param", "n_components=1", "--param", "n_residual=1", "-o", model,
                 "--no-progress"]) == 0
    ref = str(tmp_path / "ref.h5")
    assert main(["score", pa, pb, "--model", model, "-o", ref, "--chunk-size", "4",
                 "--no-progress"]) == 0
    with open_scheduler("local:2") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        fn = functools.partial(read_labels)
        got = map_chunks(fn, [pa, pb], 4, scheduler=client)
        assert len(got) == 6 + 3
        np.testing.assert_array_equal(np.concatenate(got[:6]), read_labels(pa))
        parts = map_chunks(read_constituents, [pa, pb], 4, scheduler=client)
        np.testing.assert_array_equal(np.concatenate(parts[:6]), a)
        out = str(tmp_path / "dask.h5")
        assert main(["score", pa, pb, "--model", model, "-o", out, "--chunk-size", "4",
                     "--scheduler", client.scheduler.address, "--no-progress"]) == 0
        shaped = str(tmp_path / "dask_shape.h5")
        assert main(["shape", pb, "-o", shaped, "--observable", "2-subjettiness",
                     "--chunk-size", "4", "--scheduler", client.scheduler.address,
                     "--no-progress"]) == 0
    shaped_ref = str(tmp_path / "shape_ref.h5")
    assert main(["shape", pb, "-o", shaped_ref, "--observable", "2-subjettiness",
                 "--chunk-size", "4", "--no-progress"]) == 0
    s1, s2 = read_results(shaped_ref), read_results(shaped)
    assert sorted(s1) == sorted(s2)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    r1, r2 = read_results(ref), read_results(out)
    assert sorted(r1) == sorted(r2)
    for k in r1:
        np.testing.assert_array_equal(r1[k], r2[k], err_msg=k)
    assert list(r2["source_file"]) == [pa] * 23 + [pb] * 9
    with h5py.File(out) as f:
        assert f["score/value"].shape == (32,)
