"""Issue 11: malformed event files end in one clear EventFileError (file, dataset, event) or
a correct result, never a traceback of another kind, a silent drop or an allocation for a
claim. Each test reproduces one measured failure (the files are made here, small)."""
from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from physkit.errors import EventFileError, UnreadableRowsError
from physkit.events import Events
from physkit.io import (count_events, detect_format, read_constituents, read_events,
                        read_labels, write_events)


def _jets(n=12, m=5, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, m, 3), np.float32)
    x[:, :3, 0] = rng.uniform(1, 50, (n, 3))
    x[:, :3, 1] = rng.normal(0, 0.5, (n, 3))
    x[:, :3, 2] = rng.uniform(-np.pi, np.pi, (n, 3))
    return x


def _raw(path, constituents=None, labels=None, version=1, **datasets):
    with h5py.File(path, "w") as f:
        if version is not None:
            f.attrs["physkit_format"] = version
        if constituents is not None:
            f["constituents"] = constituents
        if labels is not None:
            f["labels"] = labels
        for k, v in datasets.items():
            f[k] = v
    return str(path)


def _one_line_error(fn, *match):
    with pytest.raises(EventFileError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg and all(m in msg for m in match), msg
    return err.value


# --------------------------------------------------------------------- labels (item 3, 8)
@pytest.mark.parametrize("labels,why", [
    (np.arange(8) % 2, "8 labels for 12 events"),
    (np.arange(20) % 2, "20 labels for 12 events"),
    (np.zeros((12, 2), np.int8), "one per event"),
    (np.where(np.arange(12) == 7, np.nan, 1.0), "event 7"),
    (np.full(12, 0.5), "event 0"),
    (np.array(["a"] * 12, dtype="S2"), "must be integers"),
    (np.int8(1), "scalar"),
])
def test_labels_are_checked_when_the_file_is_opened(tmp_path, labels, why):
    p = _raw(tmp_path / "l.h5", _jets(), labels)
    _one_line_error(lambda: read_labels(p), p, "'labels'", why)
    if "event" not in why:  # file-level: refused whatever is read
        _one_line_error(lambda: read_events(p, 0, 2), p, "'labels'", why)


def test_uint64_labels_beyond_int64_never_come_back_negative(tmp_path):
    big = np.array([1, 2 ** 63 + 5] + [0] * 10, np.uint64)
    with pytest.raises(ValueError, match="int64"):
        write_events(tmp_path / "w.h5", _jets(), big)
    p = _raw(tmp_path / "u.h5", _jets(), big)
    _one_line_error(lambda: read_labels(p), "'labels'", "event 1", "int64")
    ok = np.array([2 ** 62] + [3] * 11, np.uint64)
    q = write_events(tmp_path / "ok.h5", _jets(), ok)
    np.testing.assert_array_equal(read_labels(q), ok.astype(np.int64))


# --------------------------------------------------------------------- phi (item 4)
@pytest.mark.parametrize("dtype,scale", [(np.float32, 6e7), (np.float32, 1e4),
                                         (np.float64, 90.0), (np.float32, 99.0)])
def test_phi_is_wrapped_exactly(tmp_path, dtype, scale):
    x = _jets(2000, 3, seed=1).astype(dtype)
    rng = np.random.default_rng(2)
    phi = rng.uniform(-scale, scale, x.shape[:2]).astype(dtype)
    x[..., 2] = np.where(x[..., 0] > 0, phi, 0)
    if scale > 100:  # beyond the documented bound: refused, naming the event
        p = _raw(tmp_path / "big.h5", x)
        _one_line_error(lambda: read_events(p), p, "event 0", "|phi| > 100")
        return
    p = _raw(tmp_path / "phi.h5", x)
    for out in (torch.float32, torch.float64):
        ev = read_events(p, dtype=out)
        got = ev.phi.numpy()
        lim = np.pi if out == torch.float64 else float(np.float32(np.pi))
        assert (got > -lim).all() and (got <= lim).all()
        want = np.mod(x[..., 2].astype(np.float64) + np.pi, 2 * np.pi) - np.pi
        real = x[..., 0] > 0
        d = np.abs(np.angle(np.exp(1j * (got - want))))[real]
        tol = 4 * (np.finfo(x.dtype).eps * scale + np.finfo(got.dtype).eps * np.pi)
        assert d.max() <= tol, d.max()
    ev = Events.from_padded(torch.as_tensor(x))  # tensors are wrapped exactly too
    assert (ev.phi.abs() <= float(np.float32(np.pi))).all()


# --------------------------------------------------------------------- dtypes (items 6, 13, 14)
@pytest.mark.parametrize("kind", ["complex", "bool", "string", "vlen", "compound"])
def test_non_real_constituents_are_refused(tmp_path, kind):
    x = _jets()
    data = {"complex": x.astype(np.complex64), "bool": x > 0,
            "string": np.full(x.shape, b"1.0", dtype="S4"),
            "compound": np.zeros(x.shape, dtype=[("a", "f4"), ("b", "f4")])}
    p = str(tmp_path / f"{kind}.h5")
    with h5py.File(p, "w") as f:
        f.attrs["physkit_format"] = 1
        if kind == "vlen":
            d = f.create_dataset("constituents", x.shape, dtype=h5py.string_dtype())
            d[...] = "1"
        else:
            f["constituents"] = data[kind]
    for fn in (lambda: read_events(p), lambda: read_constituents(p), lambda: count_events(p)):
        _one_line_error(fn, p, "'constituents'")
    if kind in ("complex", "bool"):  # in memory too: no silent cast
        with pytest.raises(EventFileError, match="real"):
            Events.from_padded(data[kind])
        with pytest.raises(EventFileError, match="real"):
            write_events(tmp_path / "w.h5", data[kind])


def test_big_endian_and_integer_constituents_read_natively(tmp_path):
    x = _jets()
    p = _raw(tmp_path / "be.h5", x.astype(">f8"))
    a = read_constituents(p)
    assert a.dtype == np.float64 and a.dtype.isnative
    np.testing.assert_array_equal(a, x.astype(np.float64))
    ev = read_events(p)
    np.testing.assert_array_equal(ev.pt.numpy(), x[..., 0])
    q = _raw(tmp_path / "int.h5", np.round(x).astype(">i4"))
    assert read_constituents(q).dtype == np.float64


@pytest.mark.parametrize("arr,why", [(np.float32(3.0), "got ()"),
                                     (np.ones((4, 5), np.float32), "got (4, 5)"),
                                     (np.ones((4, 5, 3, 2), np.float32), "(N, M, 3)"),
                                     (np.ones((4, 5, 4), np.float32), "got (4, 5, 4)")])
def test_wrong_shapes_fail_at_open(tmp_path, arr, why):
    p = _raw(tmp_path / "s.h5", arr)
    for fn in (lambda: count_events(p), lambda: read_events(p), lambda: detect_format(p)):
        _one_line_error(fn, p, "'constituents'", why)


def test_exact_version_attribute(tmp_path):
    for v in (1.5, "1", 2, True):
        p = _raw(tmp_path / "v.h5", _jets(), version=v)
        _one_line_error(lambda: read_events(p), p, "unknown physkit_format version")
    assert len(read_events(_raw(tmp_path / "ok.h5", _jets(), version=np.int64(1)))) == 12


def test_directory_and_links_give_one_line(tmp_path):
    d = tmp_path / "adir.h5"
    d.mkdir()
    _one_line_error(lambda: read_events(d), str(d), "directory")
    p = str(tmp_path / "loop.h5")
    with h5py.File(p, "w") as f:
        f.attrs["physkit_format"] = 1
        f["constituents"] = h5py.SoftLink("/constituents")
    _one_line_error(lambda: read_events(p), p, "'constituents'", "cannot open")


# --------------------------------------------------------------------- claims (item 11)
def _peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
    except EventFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    return peak


def test_jagged_length_claim_is_checked_before_allocating(tmp_path):
    p = write_events(tmp_path / "j.h5", _jets(), jagged=True)
    with h5py.File(p, "a") as f:
        f["constituents"].attrs["length"] = 10 ** 12
    assert os.path.getsize(p) < 100_000
    for fn in (lambda: count_events(p), lambda: read_events(p), lambda: read_labels(p)):
        _one_line_error(fn, p, "'constituents'", "length")
        assert _peak_mib(fn) < 16
    for bad in ("12", -1, 12.0):
        with h5py.File(p, "a") as f:
            f["constituents"].attrs["length"] = bad
        _one_line_error(lambda: read_events(p), p, "'constituents'", "length")


def test_declared_but_unwritten_datasets_are_refused(tmp_path):
    p = str(tmp_path / "claim.h5")
    with h5py.File(p, "w") as f:
        f.attrs["physkit_format"] = 1
        f.create_dataset("constituents", (10 ** 9, 100, 3), "f4", chunks=(1000, 100, 3))
    assert os.path.getsize(p) < 100_000
    for fn in (lambda: count_events(p), lambda: read_events(p, 0, 10)):
        _one_line_error(fn, p, "'constituents'", "stores only")
        assert _peak_mib(fn) < 16


def test_jagged_offsets_are_checked(tmp_path):
    p = write_events(tmp_path / "j.h5", _jets(), jagged=True)
    with h5py.File(p, "a") as f:
        g = f["constituents"]
        key = [k for k in g if k.endswith("-offsets")][0]
        off = g[key][()]
        off[5] = off[4] - 1  # decreasing
        g[key][...] = off
    e = _one_line_error(lambda: read_events(p), p, "'constituents'", "corrupt offsets")
    assert not isinstance(e, UnreadableRowsError)  # a file-level problem
    with h5py.File(p, "a") as f:
        g = f["constituents"]
        off[5] = 10 ** 9  # beyond the data
        g[key][...] = np.maximum.accumulate(off)
    _one_line_error(lambda: read_events(p), p, "corrupt offsets")
    with h5py.File(p, "a") as f:
        f["constituents"].attrs["form"] = "[" * 5000 + "]" * 5000
    _one_line_error(lambda: read_events(p), p, "'form'", "nested")


def test_npz_header_claim(tmp_path):
    import zipfile

    p = str(tmp_path / "ef.npz")
    np.savez(p, X=_jets(), y=np.arange(12) % 2)
    with zipfile.ZipFile(p) as z:
        raw = z.read("X.npy")
    hdr = raw[:raw.index(b"\n") + 1].replace(b"(12, 5, 3)", b"(99999999, 5, 3)")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("X.npy", hdr.ljust(len(raw[:raw.index(b"\n") + 1])) + raw[len(hdr):])
        z.writestr("y.npy", b"")
    _one_line_error(lambda: read_events(p), p, "'X'", "declares shape")
