"""Event file I/O: round trips, community layouts, bad input, atomic writes, info text."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

import physkit.io as pio
import physkit.io.hdf5 as pio_hdf5
from physkit.errors import EventFileError
from physkit.pipeline.info import describe, multiplicities
from physkit.io import (count_events, detect_format, read_constituents, read_dataset,
                        read_events, read_labels, write_events)
from physkit.io.npz import NpzArchive, NpzMember
from eventfiles import write_root


def _trim(a: np.ndarray) -> np.ndarray:
    """Drop all-padding columns so arrays of different padding compare equal."""
    m = max(int((a[..., 0] > 0).sum(axis=1).max()), 1)
    return a[:, :m]


# ===================================================================== round trips
@pytest.mark.parametrize("jagged", [False, True])
def test_round_trip_full_and_slices(tmp_path, make_jets, jagged):
    x = make_jets(40, 24, seed=3)
    lab = np.arange(40) % 2
    jets = np.random.default_rng(0).normal(size=(40, 4))
    w = np.linspace(0.5, 1.5, 40)
    tau = np.random.default_rng(1).uniform(size=(40, 4))
    p = tmp_path / "ev.h5"
    write_events(p, x, lab, jets=jets, weights=w, extra={"tau_kt": tau}, jagged=jagged)
    assert detect_format(p) == ("physkit-jagged" if jagged else "physkit")
    assert count_events(p) == 40
    with h5py.File(p) as f:
        assert int(f.attrs["physkit_format"]) == 1
        assert f["labels"].dtype == np.int8
        if jagged:  # no padding stored: one value per real particle
            n_real = int((x[..., 0] > 0).sum())
            data = [f["constituents"][k] for k in f["constituents"] if k.endswith("-data")]
            assert sorted(d.shape[0] for d in data) == [n_real] * 3

    ev = read_events(p)
    assert ev.dtype == torch.float32 and len(ev) == 40
    np.testing.assert_array_equal(_trim(ev.to_padded()), _trim(x))
    np.testing.assert_array_equal(read_labels(p), lab)
    np.testing.assert_array_equal(read_dataset(p, "jets"), jets)
    np.testing.assert_array_equal(read_dataset(p, "weights"), w)
    np.testing.assert_array_equal(read_dataset(p, "tau_kt", 5, 9), tau[5:9])

    for s, e in [(0, 1), (7, 19), (39, 40), (-5, None), (None, 3), (30, 100)]:
        got = read_events(p, s, e).to_padded()
        np.testing.assert_array_equal(_trim(got), _trim(x[s:e]))
        np.testing.assert_array_equal(read_labels(p, s, e), lab[s:e])
        np.testing.assert_array_equal(_trim(read_constituents(p, s, e)), _trim(x[s:e]))
    assert len(read_events(p, 10, 10)) == 0


@pytest.mark.parametrize("jagged", [False, True])
def test_empty_file_round_trip(tmp_path, jagged):
    p = tmp_path / "none.h5"
    write_events(p, np.zeros((0, 5, 3), np.float32), np.zeros(0), jagged=jagged)
    assert count_events(p) == 0 and len(read_events(p)) == 0
    assert read_labels(p).shape == (0,)
    assert "events:  0" in describe(p) and "labels:  (no events)" in describe(p)


def test_write_accepts_events_tensor_and_awkward(tmp_path, make_jets):
    from physkit.events import Events

    x = make_jets(6, 10, seed=4)
    ev = Events.from_padded(x)
    for i, obj in enumerate([ev, torch.from_numpy(x), ev.to_awkward()]):
        p = tmp_path / f"w{i}.h5"
        write_events(p, obj)
        np.testing.assert_allclose(_trim(read_constituents(p)), _trim(x), rtol=1e-6)


def test_slice_reads_only_requested_rows(tmp_path, make_jets, monkeypatch):
    x = make_jets(30, 16, seed=5)
    counts = (x[..., 0] > 0).sum(axis=1)
    calls = []
    real = pio_hdf5.read_rows

    def spy(ds, s, e, path, name, *args):
        calls.append((ds.name, s, e))
        return real(ds, s, e, path, name, *args)

    monkeypatch.setattr(pio_hdf5, "read_rows", spy)
    p = tmp_path / "pad.h5"
    write_events(p, x)
    read_events(p, 11, 14)
    assert calls == [("/constituents", 11, 14)]

    calls.clear()
    pj = tmp_path / "jag.h5"
    write_events(pj, x, jagged=True)
    read_events(pj, 11, 14)
    first, last = int(counts[:11].sum()), int(counts[:14].sum())
    assert calls[0][1:] == (11, 15) and calls[0][0].endswith("-offsets")
    assert sorted(c[1:] for c in calls[1:]) == [(first, last)] * 3


def test_npz_slice_does_not_load_whole_member(tmp_path, make_jets):
    x = make_jets(20, 8, seed=6)
    p = tmp_path / "ef.npz"
    np.savez(p, X=x, y=np.arange(20) % 2)
    with NpzMember(p, "X") as m:
        assert m.shape == x.shape
        np.testing.assert_array_equal(m.read(4, 9), x[4:9])
    with NpzArchive(p) as archive, archive.member("X") as m:  # one open archive
        assert archive.names == ["X", "y"]
        np.testing.assert_array_equal(m.read(4, 9), x[4:9])


# ===================================================================== community layouts
def test_energyflow_npz(tmp_path, make_jets):
    x = make_jets(25, 12, seed=7).astype(np.float64)
    pid = np.where(x[..., :1] > 0, 211.0, 0.0)
    X = np.concatenate([x, pid], axis=-1)  # (pt, y, phi, pid), energyflow's layout
    y = (np.arange(25) % 3 == 0).astype(np.float64)
    for saver in (np.savez, np.savez_compressed):
        p = tmp_path / f"{saver.__name__}.npz"
        saver(p, X=X, y=y)
        assert detect_format(p) == "energyflow"
        assert count_events(p) == 25
        np.testing.assert_allclose(_trim(read_events(p, 3, 17).to_padded()),
                                   _trim(x[3:17]).astype(np.float32))
        np.testing.assert_array_equal(read_labels(p, 3, 17), y[3:17].astype(int))
        np.testing.assert_array_equal(read_dataset(p, "X", 0, 2), X[:2])


def _massive_particles(rng, n, k):
    """Independent truth: (pT, y, phi, m) and the (E, px, py, pz) built from them."""
    pt = rng.uniform(0.5, 300.0, size=(n, k))
    y = rng.uniform(-2.5, 2.5, size=(n, k))
    phi = rng.uniform(-np.pi, np.pi, size=(n, k))
    m = rng.uniform(0.0, 1.5, size=(n, k))
    mt = np.sqrt(pt ** 2 + m ** 2)
    four = np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)])
    return np.stack([pt, y, phi], axis=-1), four


def _top_frame(n=12, npart=200, seed=8, dtype=np.float64):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    nreal = rng.integers(1, 60, size=n)
    truth, four = _massive_particles(rng, n, npart)
    real = np.arange(npart)[None, :] < nreal[:, None]
    truth[~real] = 0.0
    four[:, ~real] = 0.0
    cols = {}
    for i in range(npart):  # the reference files interleave E_i, PX_i, PY_i, PZ_i
        for c, arr in zip(("E", "PX", "PY", "PZ"), four):
            cols[f"{c}_{i}"] = arr[:, i].astype(dtype)
    for c in ("truthE", "truthPX", "truthPY", "truthPZ"):
        cols[c] = rng.normal(size=n)
    cols["ttv"] = np.zeros(n, dtype=np.int64)
    cols["is_signal_new"] = rng.integers(0, 2, size=n).astype(np.int64)
    return pd.DataFrame(cols), truth


def test_top_tagging_like_reference_file(tmp_path):
    """As the reference files are: pandas "table" format under key "table", float32
    four-momenta, int64 ttv / is_signal_new, a shuffled (non-positional) index."""
    pytest.importorskip("tables")
    df, truth = _top_frame(n=30, seed=18, dtype=np.float32)
    df.index = np.random.default_rng(0).permutation(1000)[:30]
    p = tmp_path / "val.h5"
    df.to_hdf(p, key="table", format="table")
    with h5py.File(p) as f:
        assert set(f["table"].keys()) == {"_i_table", "table"}
    assert detect_format(p) == "top-tagging"
    got = read_constituents(p, 10, 25)
    np.testing.assert_allclose(got[..., 0], truth[10:25, :, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[..., 1], truth[10:25, :, 1], atol=2e-4)
    np.testing.assert_allclose(got[..., 2], truth[10:25, :, 2], atol=1e-6)
    np.testing.assert_array_equal(read_labels(p, 10, 25), df["is_signal_new"].values[10:25])
    assert len(read_events(p)) == 30


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_top_tagging_pandas(tmp_path, fmt):
    pytest.importorskip("tables")
    df, truth = _top_frame()
    p = tmp_path / "top.h5"
    df.to_hdf(p, key="table", format=fmt)  # the reference files use key "table"
    assert detect_format(p) == "top-tagging"
    assert count_events(p) == len(df)
    got = read_constituents(p)
    assert got.shape == (len(df), 200, 3)
    np.testing.assert_allclose(got[..., 0], truth[..., 0], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got[..., 1], truth[..., 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[..., 2], truth[..., 2], rtol=0, atol=1e-12)
    ev = read_events(p, 2, 9, dtype=torch.float64)
    np.testing.assert_allclose(_trim(ev.to_padded()), _trim(truth[2:9]), atol=1e-9)
    np.testing.assert_array_equal(read_labels(p, 2, 9), df["is_signal_new"].values[2:9])
    np.testing.assert_array_equal(read_dataset(p, "truthE"), df["truthE"].values)


def test_top_tagging_massless_float32_rounding(tmp_path):
    """Massless particles stored in float32 can have E < |p| by rounding: treated as massless."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    pt = np.array([[2.0, 1.0]]); eta = np.array([[3.0, -4.2]]); phi = np.array([[3.1, -0.3]])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px ** 2 + py ** 2 + pz ** 2) * (1 - 1e-7)  # E slightly below |p|
    cols = {}
    for i in range(2):
        cols.update({f"E_{i}": e[:, i], f"PX_{i}": px[:, i], f"PY_{i}": py[:, i],
                     f"PZ_{i}": pz[:, i]})
    cols["is_signal_new"] = np.array([1])
    p = tmp_path / "t.h5"
    pd.DataFrame(cols).to_hdf(p, key="table", format="table")
    got = read_events(p, dtype=torch.float64).to_padded()[0]
    np.testing.assert_allclose(got[:, 1], eta[0], atol=1e-9)  # y = eta for massless
    assert np.isfinite(got).all()


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_lhco_pandas(tmp_path, fmt):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    rng = np.random.default_rng(9)
    n = 6
    v = np.zeros((n, 700, 3))
    nreal = rng.integers(1, 300, size=n)
    for i in range(n):
        k = nreal[i]
        v[i, :k] = np.stack([rng.uniform(0.5, 100, k), rng.uniform(-2.5, 2.5, k),
                             rng.uniform(-np.pi, np.pi, k)], axis=1)
    lab = np.array([0, 1, 0, 0, 1, 0], dtype=np.float64)
    df = pd.DataFrame(np.concatenate([v.reshape(n, 2100), lab[:, None]], axis=1))
    p = tmp_path / "lhco.h5"
    df.to_hdf(p, key="df", format=fmt)  # the R&D file: key "df", integer columns 0..2100
    assert detect_format(p) == "lhco"
    assert count_events(p) == n
    np.testing.assert_array_equal(read_constituents(p, 1, 4), v[1:4])
    np.testing.assert_array_equal(read_labels(p), lab.astype(int))
    ev = read_events(p, dtype=torch.float64)
    np.testing.assert_array_equal(_trim(ev.to_padded()), _trim(v))


# ===================================================================== readers and detection
_ALL_FORMATS = ("physkit", "physkit-jagged", "energyflow", "top-tagging", "lhco", "root")


def _file_of_format(tmp_path, make_jets, name, variant=None):
    """(path, padded (pT, y, phi) truth, labels, dataset name in messages) of one layout."""
    x = make_jets(30, 12, seed=21)
    lab = np.arange(30) % 3 == 0
    if name in ("physkit", "physkit-jagged"):
        p = write_events(tmp_path / f"{name}.h5", x, lab, jets=np.ones((30, 4)),
                         jagged=name == "physkit-jagged")
        return p, x, lab, "constituents"
    if name == "energyflow":
        p = tmp_path / "ef.npz"
        saver = np.savez_compressed if variant == "compressed" else np.savez
        saver(p, X=np.concatenate([x, np.where(x[..., :1] > 0, 22.0, 0.0)], -1), y=lab * 1.0)
        return p, x, lab, "X"
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    fmt = variant or "table"
    if name == "top-tagging":
        df, truth = _top_frame(n=30, seed=22)
        p = tmp_path / "top.h5"
        df.to_hdf(p, key="table", format=fmt)
        return p, truth, df["is_signal_new"].values, "table"
    if name == "root":
        p = write_root(tmp_path / "ev.root", x, lab, fixed=variant == "fixed")
        return p, x, lab, "Events/part_{pt,eta,phi}"
    v = np.zeros((30, 700, 3))
    v[:, :12] = x
    p = tmp_path / "lhco.h5"
    pd.DataFrame(np.concatenate([v.reshape(30, 2100), lab[:, None]], axis=1)).to_hdf(
        p, key="df", format=fmt)
    return p, v, lab, "df"


_LAYOUTS = [("physkit", None), ("physkit-jagged", None), ("energyflow", "stored"),
            ("energyflow", "compressed"), ("top-tagging", "table"), ("top-tagging", "fixed"),
            ("lhco", "table"), ("lhco", "fixed"), ("root", "jagged"), ("root", "fixed")]


def test_reader_table():
    assert pio.FORMATS == _ALL_FORMATS == tuple(pio.READERS)
    for name, reader in pio.READERS.items():
        assert reader.format_name == name and issubclass(reader, pio.EventReader)
    assert pio.READERS["physkit"] is pio.PhyskitDenseReader
    assert pio.READERS["physkit-jagged"] is pio.PhyskitJaggedReader
    assert pio.READERS["energyflow"] is pio.EnergyflowReader
    assert pio.READERS["top-tagging"] is pio.TopTaggingReader
    assert pio.READERS["lhco"] is pio.LHCOReader
    assert pio.READERS["root"] is pio.RootReader


@pytest.mark.parametrize("name,variant", _LAYOUTS)
def test_detection_returns_the_reader(tmp_path, make_jets, name, variant):
    p, *_ = _file_of_format(tmp_path, make_jets, name, variant)
    reader = pio.detect_reader(p)
    assert reader is pio.READERS[name]
    assert detect_format(p) == name
    with pio.open_events(p) as opened:
        assert type(opened) is reader
    with reader.open(p) as opened:
        assert type(opened) is reader


@pytest.mark.parametrize("name,variant", _LAYOUTS)
def test_reader_block_equals_padded_read(tmp_path, make_jets, name, variant):
    p, truth, lab, dataset = _file_of_format(tmp_path, make_jets, name, variant)
    for s, e in [(None, None), (4, 17), (-6, None), (12, 5)]:
        with pio.detect_reader(p).open(p) as reader:
            assert reader.n_events == count_events(p) == len(truth)
            block = reader.read_block(s, e)
            labels = reader.read_labels(s, e)
        assert isinstance(block, pio.EventBlock)
        assert block.dataset == dataset and block.n_events == len(truth)
        padded = read_constituents(p, s, e)
        public = pio.read_block(p, s, e)
        for got in (block.constituents, public.constituents):
            assert got.dtype == padded.dtype and got.shape == padded.shape
            assert got.tobytes() == padded.tobytes()
        assert tuple(public[1:]) == (dataset, len(truth))
        if len(truth[s:e]) == 0:
            assert len(padded) == 0
        elif name == "top-tagging":  # converted from (E, px, py, pz)
            np.testing.assert_allclose(padded, truth[s:e], atol=1e-9)
        else:
            np.testing.assert_array_equal(_trim(padded), _trim(truth[s:e]))
        np.testing.assert_array_equal(labels, lab[s:e].astype(np.int64))
        np.testing.assert_array_equal(labels, read_labels(p, s, e))


@pytest.mark.parametrize("name,variant", _LAYOUTS)
def test_reader_datasets(tmp_path, make_jets, name, variant):
    p, *_ = _file_of_format(tmp_path, make_jets, name, variant)
    with pio.open_events(p) as reader:
        names = reader.dataset_names()
        for ds in names:
            np.testing.assert_array_equal(reader.read_dataset(ds, 2, 6),
                                          read_dataset(p, ds, 2, 6))
    expected = {"physkit": {"constituents", "labels", "jets"},
                "physkit-jagged": {"labels", "jets"}, "energyflow": {"X", "y"},
                "top-tagging": {"E_0", "PZ_199", "ttv", "is_signal_new"},
                "lhco": {0, 2099, 2100}, "root": {"label"}}[name]
    assert expected <= set(names)


def test_reader_open_checks_its_layout(tmp_path, make_jets):
    p, *_ = _file_of_format(tmp_path, make_jets, "physkit-jagged")
    with pytest.raises(EventFileError, match="not a 'physkit' event file"):
        with pio.PhyskitDenseReader.open(p):
            pass
    with pytest.raises(FileNotFoundError):
        with pio.PhyskitDenseReader.open(tmp_path / "missing.h5"):
            pass


@pytest.mark.parametrize("name", _ALL_FORMATS)
def test_each_call_opens_the_file_once(tmp_path, make_jets, monkeypatch, name):
    import zipfile

    p, *_ = _file_of_format(tmp_path, make_jets, name)
    column = {"energyflow": "y", "top-tagging": "ttv", "lhco": 0, "root": "label"}.get(name,
                                                                                   "labels")
    opened = []

    class CountingFile(h5py.File):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    class CountingZip(zipfile.ZipFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", CountingFile)
    monkeypatch.setattr(zipfile, "ZipFile", CountingZip)
    if name == "root":
        import uproot

        real_open = uproot.open

        def counting_open(path, *args, **kwargs):
            opened.append(path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(uproot, "open", counting_open)
    calls = [lambda: detect_format(p), lambda: count_events(p), lambda: read_events(p, 1, 5),
             lambda: read_constituents(p), lambda: pio.read_block(p, 2), lambda: read_labels(p),
             lambda: read_dataset(p, column)]
    for call in calls:
        opened.clear()
        call()
        assert opened == [os.fspath(p)]


def test_a_new_layout_is_one_reader_in_the_table(tmp_path, make_jets, monkeypatch):
    """How e.g. a ROOT reader plugs in: a reader (with its container) and one table entry."""
    from physkit.io.reader import EventBlock, event_range

    class TextContainer:  # files starting with b"evt\n"
        catch_all = False

        def recognises(self, path):
            with open(path, "rb") as f:
                return f.read(4) == b"evt\n"

        def open(self, path):
            return open(path)

        def candidates(self, handle, path):
            yield handle

        def unrecognised(self, handle, path):
            return EventFileError("no events", path)

    class TextReader(pio.EventReader):  # one particle (pT, y, phi) per line and event
        format_name = "text"
        container = TextContainer()

        @classmethod
        def sniff(cls, candidate, path):
            return True

        def __init__(self, source, path):
            super().__init__(source, path)
            self.rows = np.loadtxt(source, skiprows=1, ndmin=2, dtype=np.float32)

        @property
        def n_events(self):
            return len(self.rows)

        def read_block(self, start=None, stop=None):
            s, e = event_range(start, stop, len(self.rows))
            return EventBlock(self.rows[s:e, None, :], "text", len(self.rows))

        def read_labels(self, start=None, stop=None):
            return None

        def read_dataset(self, name, start=None, stop=None):
            raise EventFileError("missing dataset", self.path, name)

        def dataset_names(self):
            return []

    monkeypatch.setitem(pio.READERS, "text", TextReader)
    p = tmp_path / "ev.txt"
    p.write_text("evt\n10 0.5 0.1\n20 -0.5 0.2\n30 0 3\n")
    assert detect_format(p) == "text" and count_events(p) == 3
    np.testing.assert_array_equal(read_events(p, 1).to_padded()[:, 0],
                                  np.array([[20, -0.5, 0.2], [30, 0, 3]], np.float32))
    assert read_labels(p) is None
    h5 = write_events(tmp_path / "ev.h5", make_jets(3, 4))
    assert detect_format(h5) == "physkit"  # the other layouts are detected as before


def test_io_functions_are_short():
    """Every function in physkit/io/ fits on a screen (at most 80 lines)."""
    import ast
    import pathlib

    long = []
    for path in pathlib.Path(pio.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long.append(f"{path.name}:{node.name}")
    assert long == []


def test_public_names():
    import physkit

    for name in ("read_events", "read_constituents", "read_labels", "read_dataset",
                 "count_events", "detect_format", "write_events"):
        assert getattr(physkit, name) is getattr(pio, name)
    for name in ("FORMAT_VERSION", "FORMATS", "READERS", "read_block", "EventBlock",
                 "open_events", "detect_reader"):
        assert name in pio.__all__ and hasattr(pio, name)
    assert not hasattr(pio, "_read_block")


# ===================================================================== bad input
def _raw_file(path, arr, **attrs):
    with h5py.File(path, "w") as f:
        f.attrs["physkit_format"] = attrs.pop("version", 1)
        if arr is not None:
            f.create_dataset("constituents", data=arr)
    return str(path)


@pytest.mark.parametrize("kind,reason", [
    ("nan", "non-finite"), ("inf", "non-finite"), ("negpt", "negative pT"),
    ("bigy", "|y| > 10"), ("empty", "no particles")])
def test_bad_values_name_file_dataset_event(tmp_path, make_jets, kind, reason):
    x = make_jets(30, 10, seed=10)
    bad = 23
    if kind == "nan":
        x[bad, 1, 1] = np.nan
    elif kind == "inf":
        x[bad, 0, 2] = np.inf
    elif kind == "negpt":
        x[bad, 2, 0] = -1.0
    elif kind == "bigy":
        x[bad, 0, 1] = 10.5
    else:
        x[bad] = 0.0
    p = _raw_file(tmp_path / "bad.h5", x)
    for start, stop in [(None, None), (20, 25)]:
        with pytest.raises(EventFileError) as err:
            read_events(p, start, stop)
        msg = str(err.value)
        assert p in msg and "'constituents'" in msg and f"event {bad}" in msg
        assert reason in msg
        assert err.value.event == bad and err.value.dataset == "constituents"
    assert len(read_events(p, 0, 20)) == 20  # the events before it are fine
    raw = read_constituents(p)  # raw read does not validate
    assert raw.shape == x.shape


def test_empty_event_policies(tmp_path, make_jets):
    x = make_jets(10, 6, seed=11)
    x[4] = 0.0
    p = _raw_file(tmp_path / "e.h5", x)
    assert len(read_events(p, empty="skip")) == 9
    ev = read_events(p, empty="zero")
    assert len(ev) == 10 and ev.n_particles()[4] == 0
    assert torch.all(ev.weights()[4] == 0)


def test_structural_errors(tmp_path):
    cases = {
        "missing": (None, "missing dataset"),
        "rank": (np.ones((4, 5), np.float32), "expected shape"),
        "columns": (np.ones((4, 5, 2), np.float32), "expected shape"),
    }
    for name, (arr, reason) in cases.items():
        p = _raw_file(tmp_path / f"{name}.h5", arr)
        with pytest.raises(EventFileError, match=reason) as err:
            read_events(p)
        assert p in str(err.value) and "constituents" in str(err.value)

    p = _raw_file(tmp_path / "v2.h5", np.ones((2, 3, 3), np.float32), version=2)
    with pytest.raises(EventFileError, match="unknown physkit_format version 2") as err:
        read_events(p)
    assert p in str(err.value)

    p = tmp_path / "nolayout.h5"
    with h5py.File(p, "w") as f:
        f["something"] = np.ones(3)
    with pytest.raises(EventFileError, match="unrecognised"):
        detect_format(p)


def test_non_hdf5_and_truncated(tmp_path, make_jets):
    txt = tmp_path / "notes.txt"
    txt.write_text("not an event file\n" * 10)
    with pytest.raises(EventFileError) as err:
        read_events(txt)
    assert str(txt) in str(err.value)

    p = tmp_path / "full.h5"
    write_events(p, make_jets(400, 32, seed=12), compression=None)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(EventFileError) as err:
        read_events(p)
    assert str(p) in str(err.value)

    for jagged in (False, True):  # a damaged compressed chunk inside an intact file
        p = tmp_path / f"damaged{jagged}.h5"
        write_events(p, make_jets(400, 32, seed=12), jagged=jagged)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 2048)
        with pytest.raises(EventFileError, match="cannot read") as err:
            read_events(p)
        assert str(p) in str(err.value) and "'constituents'" in str(err.value)

    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "nope.h5")


def test_failed_write_leaves_nothing(tmp_path, make_jets):
    x = make_jets(5, 4, seed=13)
    p = tmp_path / "out.h5"
    with pytest.raises(ValueError, match="rows"):
        write_events(p, x, labels=[0, 1])  # wrong length
    with pytest.raises(TypeError):  # h5py cannot store object arrays: fails mid-write
        write_events(p, x, extra={"notes": np.array([{}, [], 1, "a", None], dtype=object)})
    bad = x.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(EventFileError, match="event 1"):
        write_events(p, bad)
    assert list(tmp_path.iterdir()) == []

    write_events(p, x)  # an existing file survives a failed overwrite untouched
    before = p.read_bytes()
    with pytest.raises(TypeError):
        write_events(p, x, extra={"notes": np.array([{}, [], 1, "a", None], dtype=object)})
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["out.h5"]


# ===================================================================== sample + info
def test_sample_file(sample_path):
    assert detect_format(sample_path) == "physkit"
    n = count_events(sample_path)
    lab = read_labels(sample_path)
    assert n == len(lab) and set(np.unique(lab)) == {0, 1}
    assert 0.3 < lab.mean() < 0.7
    x = read_constituents(sample_path)
    assert x.dtype == np.float32 and x.shape[0] == n and x.shape[2] == 3
    pt = x[..., 0]
    assert np.all(np.diff(pt, axis=1) <= 0)  # sorted by pT, zero padded at the end
    jets = read_dataset(sample_path, "jets")
    assert np.all((jets[:, 0] > 550) & (jets[:, 0] < 650) & (np.abs(jets[:, 1]) < 2))
    # constituents sum to the jet pT (E-scheme recombination of the same particles)
    px = (pt * np.cos(x[..., 2])).sum(1)
    py = (pt * np.sin(x[..., 2])).sum(1)
    np.testing.assert_allclose(np.hypot(px, py), jets[:, 0], rtol=1e-4)
    # top jets are heavier than QCD jets
    assert np.median(jets[lab == 1, 3]) > 140 > np.median(jets[lab == 0, 3])
    ev = read_events(sample_path, 0, 100)
    assert torch.allclose(ev.weights().sum(1), torch.ones(100))


def _massless_fourvectors(x):
    ak = pytest.importorskip("awkward")
    counts = (x[..., 0] > 0).sum(1)
    pt, y, phi = (x[..., k].astype(np.float64) for k in range(3))
    cols = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(y),
            "E": pt * np.cosh(y)}
    real = x[..., 0] > 0
    return ak.unflatten(ak.zip({k: v[real] for k, v in cols.items()}), counts)


def _fjcontrib_tau(seq, axes):
    ak = pytest.importorskip("awkward")
    r = seq.njettiness(measure_definition="NormalizedMeasure", axes_definition=axes,
                       njets=[1, 2, 3, 4], beta=1.0, R0=0.8)
    return np.asarray(ak.to_numpy(r), dtype=np.float64).reshape(-1, 4)


@pytest.fixture(scope="module")
def make_sample_module():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data", "make_sample.py")
    spec = importlib.util.spec_from_file_location("make_sample", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore:dcut and exclusive jets")
def test_kt_axes_tau_formula_matches_fastjet_contrib(sample_path, make_sample_module):
    """make_sample's tau (exclusive-kT axes) equals fastjet-contrib's KT_Axes tau."""
    ak = pytest.importorskip("awkward")
    fastjet = pytest.importorskip("fastjet")
    x = read_constituents(sample_path, 0, 60)
    rec = _massless_fourvectors(x)
    seq = fastjet.ClusterSequence(rec, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0,
                                                             fastjet.E_scheme))
    xd = x.astype(np.float64)
    mine = np.empty((len(x), 4))
    for n in range(1, 5):
        axes = seq.exclusive_jets(n_jets=n)
        ay = ak.to_numpy(0.5 * np.log((axes.E + axes.pz) / (axes.E - axes.pz)))
        aphi = ak.to_numpy(np.arctan2(axes.py, axes.px))
        mine[:, n - 1] = make_sample_module.tau_exclusive_kt(
            xd[..., 0], xd[..., 1], xd[..., 2], xd[..., 0] > 0, ay, aphi)
    np.testing.assert_allclose(mine, _fjcontrib_tau(seq, "KT_Axes"), rtol=1e-9, atol=1e-12)


def test_make_sample_without_pythia(make_sample_module, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # import now fails
    with pytest.raises(SystemExit) as err:
        make_sample_module.main(["-o", str(tmp_path / "s.h5")])
    assert "pythia8mc" in str(err.value) and "physkit[generate]" in str(err.value)
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.slow
def test_make_sample_end_to_end(make_sample_module, tmp_path):
    pytest.importorskip("pythia8mc")
    p = tmp_path / "s.h5"
    assert make_sample_module.main(["--n-per-class", "4", "--seed", "3", "-o", str(p)]) == 0
    assert detect_format(p) == "physkit" and count_events(p) == 8
    assert sorted(read_labels(p)) == [0] * 4 + [1] * 4
    with h5py.File(p) as f:
        assert f["constituents"].dtype == np.float32 and f["tau_kt"].shape == (8, 4)
        assert "KT_Axes" in f.attrs["tau_kt_axes"]
    read_events(p)  # validates


def test_sample_tau_matches_fastjet_contrib(sample_path):
    """Stored tau_kt / tau_onepass agree with fastjet-contrib on the stored constituents.

    The file keeps (pT, y, phi) in float32 without masses, so the recomputation (massless
    inputs) can pick different kT axes in a few jets: compare typical agreement.
    """
    fastjet = pytest.importorskip("fastjet")
    x = read_constituents(sample_path, 0, 100)
    seq = fastjet.ClusterSequence(_massless_fourvectors(x),
                                  fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0))
    for axes, name in (("KT_Axes", "tau_kt"), ("OnePass_KT_Axes", "tau_onepass")):
        ref = read_dataset(sample_path, name, 0, 100)
        rel = np.abs(_fjcontrib_tau(seq, axes) / ref - 1)
        assert np.median(rel) < 0.005
        assert np.mean(rel < 0.02) > 0.9
    tau = read_dataset(sample_path, "tau_kt")
    lab = read_labels(sample_path)
    assert np.all(tau > 0) and np.mean(tau[:, 1] < tau[:, 0]) > 0.95  # kT axes: not always
    # top jets are three-prong: tau3/tau2 lower than in QCD jets
    r32 = tau[:, 2] / tau[:, 1]
    assert np.median(r32[lab == 1]) < np.median(r32[lab == 0]) - 0.2


def test_describe_physkit_and_jagged(tmp_path, make_jets):
    x = make_jets(12, 9, seed=14)
    x[3] = 0.0
    lab = np.array([1] * 5 + [0] * 7)
    for jagged in (False, True):
        p = tmp_path / f"d{jagged}.h5"
        write_events(p, x, lab, jets=np.zeros((12, 4)), attrs={"generator": "toy"},
                     jagged=jagged)
        text = describe(p)
        mult = (x[..., 0] > 0).sum(1)
        assert f"format:  {'physkit-jagged' if jagged else 'physkit'}" in text
        assert "events:  12" in text
        assert (f"min 0, median {np.median(mult):g}, mean {mult.mean():.1f}, "
                f"max {mult.max()}; 1 empty") in text
        assert "labels:  0: 7, 1: 5" in text
        assert "generator: toy" in text
        assert "jets" in text and "(12, 4)" in text
        np.testing.assert_array_equal(multiplicities(p, chunk=5), mult)


def test_describe_other_layouts(tmp_path, make_jets):
    x = make_jets(7, 5, seed=15)
    p = tmp_path / "ef.npz"
    np.savez(p, X=x, y=np.zeros(7))
    text = describe(p)
    assert "format:  energyflow" in text and "(7, 5, 3)" in text and "labels:  0: 7" in text

    pytest.importorskip("tables")
    df, _ = _top_frame(n=4)
    p = tmp_path / "top.h5"
    df.to_hdf(p, key="table")
    text = describe(p)
    assert "format:  top-tagging" in text and "events:  4" in text
    assert "pandas frame (4 rows x 806 columns)" in text and "block0_values" not in text


def test_describe_bad_file(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)  # HDF5 signature, then garbage
    with pytest.raises(EventFileError, match=str(p).replace(".", r"\.")):
        describe(p)
