"""Per-event features for the batch pipeline, and the pure chunk functions that compute them.

Feature specifications (``--features``), as text and as the JSON dicts stored in model files:

``shape:OUT.h5``
    SHAPER observable values from a results file of ``physkit shape`` (one column per
    observable); at scoring time the same observables are recomputed with the stored
    ``R``/``beta``: ``{"kind": "shape", "observables": [...], "R": .., "beta": ..}``.
``image:NPIX``
    pixelated jet images (:func:`physkit.images.pixelate`, energy fractions, ``R = 0.8``),
    ``NPIX**2`` columns: ``{"kind": "image", "npix": 20, "R": 0.8}``.
``efp:d<=5``
    energy flow polynomials from the ``energyflow`` extra (``EFPSet(select, measure="hadr",
    beta=1, normed=True)``): ``{"kind": "efp", "select": "d<=5"}``.
``dataset:NAME``
    a per-event dataset already in the event file (``(N,)`` or ``(N, k)``), e.g.
    ``dataset:tau_kt``: ``{"kind": "dataset", "name": "tau_kt"}``.

The chunk functions (:func:`shape_chunk`, :func:`feature_chunk`, :func:`score_chunk`) are
pure functions of ``(path, start, stop)`` plus keyword settings: they open the files
themselves, so :mod:`physkit.parallel` can run them in-process or on dask workers. Each
returns a dict of per-row arrays in the results-file layout (:mod:`physkit.results`).
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

from ..errors import EventFileError, UnreadableRowsError
from ..events import event_problems
from ..status import EVENT_PROBLEMS, EventProblem, Status

__all__ = ["parse_feature_spec", "read_chunk", "read_rows", "shape_chunk", "feature_chunk",
           "score_chunk", "compute_features", "shape_columns", "INPUT_DIGEST"]

#: key of the digest of its input (:func:`physkit.io.read.rows_digest`) in the dict a unit
#: of work returns; the runner records it with the chunk instead of storing it as rows
INPUT_DIGEST = "_input_digest"


def parse_feature_spec(text: str) -> dict:
    """``"image:20"`` -> ``{"kind": "image", "npix": 20, "R": 0.8}`` etc. (module docstring).

    ``shape:OUT.h5`` gives ``{"kind": "shape", "results": "OUT.h5"}``; the observables and
    their settings are read from that file when the model is fitted.
    """
    kind, sep, arg = text.partition(":")
    if not sep or not arg:
        raise ValueError(f"bad feature spec {text!r}: expected shape:RESULTS.h5, image:NPIX, "
                         f"efp:SELECT (e.g. efp:d<=5) or dataset:NAME")
    if kind == "shape":
        return {"kind": "shape", "results": arg}
    if kind == "image":
        try:
            npix = int(arg)
        except ValueError:
            raise ValueError(f"bad feature spec {text!r}: image:NPIX needs an integer") from None
        if npix < 1:
            raise ValueError(f"bad feature spec {text!r}: NPIX must be >= 1")
        return {"kind": "image", "npix": npix, "R": 0.8}
    if kind == "efp":
        return {"kind": "efp", "select": arg, "measure": "hadr", "beta": 1.0}
    if kind == "dataset":
        return {"kind": "dataset", "name": arg}
    raise ValueError(f"unknown feature kind {kind!r} in {text!r} (shape, image, efp, dataset)")


# ===================================================================== reading a chunk
def read_chunk(path, start: int, stop: int, *, skip_bad: bool, reader: dict | None = None,
               digests: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw constituents ``(n, M, 3)`` of rows ``[start, stop)`` and problem codes ``(n,)`` int8.

    Without ``skip_bad`` the first bad event raises :class:`EventFileError` naming file,
    dataset and event. With it, bad events get their :class:`~physkit.status.EventProblem`
    code, and rows that cannot be read at all (corrupt HDF5 chunks) come back as zeros with code
    :attr:`EventProblem.UNREADABLE`. A problem of the whole file (wrong shape or dtype,
    corrupt offsets, ...) raises in either case. ``reader``: the reader's options (ROOT
    files). ``digests`` receives the digest of what was read under ``"constituents"``
    (:func:`physkit.io.read.rows_digest`'s parts).
    """
    from ..io import read_block  # EventBlock(constituents, dataset name, n_events)
    from ..io.read import UNREADABLE_DIGEST, array_digest

    digests = {} if digests is None else digests
    try:
        arr, dataset, _ = read_block(path, start, stop, **(reader or {}))
    except UnreadableRowsError:
        if not skip_bad:
            raise
        digests["constituents"] = UNREADABLE_DIGEST
        return np.zeros((stop - start, 1, 3), np.float32), np.full(
            stop - start, EventProblem.UNREADABLE, np.int8)
    digests["constituents"] = array_digest(arr)
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - read_block checks it
        raise EventFileError(f"expected shape (N, M, 3) for (pT, y, phi), got {arr.shape}",
                             path, dataset)
    codes = event_problems(arr)
    if not skip_bad and codes.any():
        i = int(np.flatnonzero(codes)[0])
        raise EventFileError(EVENT_PROBLEMS[int(codes[i])] +
                             " (pass --skip-bad-events to record it and go on)",
                             path, dataset, start + i)
    return arr, codes


def _row_info(path, start: int, stop: int, codes: np.ndarray,
              reader: dict | None = None, digests: dict | None = None) -> dict[str, np.ndarray]:
    from ..io import read_labels
    from ..io.read import array_digest

    out = {"source_file": np.full(stop - start, os.fspath(path)),
           "source_index": np.arange(start, stop, dtype=np.int64),
           "event_problem": codes.astype(np.int8)}
    labels = read_labels(path, start, stop, **(reader or {}))  # checked: one integer per event
    if digests is not None:
        digests["labels"] = array_digest(labels)
    if labels is not None:
        out["labels"] = labels.astype(np.int64)
    return out


def read_rows(path, start: int, stop: int, *, skip_bad: bool, reader: dict | None = None,
              clustering: dict | None = None, digests: dict | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The rows a chunk of events ``[start, stop)`` gives: ``(constituents (n, M, 3),
    problem codes (n,), row information)``.

    Without ``clustering`` one row per event (:func:`read_chunk`; row information
    ``source_file``, ``source_index``, ``event_problem``, ``labels``). With it (settings of
    :class:`physkit.jets.Clustering`) one row per selected jet of each good event, in
    event then jet order, plus ``jet_index`` (0 = hardest) and ``jet`` ``(n, 4)`` (pT, eta,
    phi, mass); a bad event kept by ``skip_bad`` gives one row with ``jet_index`` -1.
    """
    arr, codes = read_chunk(path, start, stop, skip_bad=skip_bad, reader=reader,
                            digests=digests)
    info = _row_info(path, start, stop, codes, reader, digests)
    if clustering is None:
        return arr, codes, info
    return _jet_rows(arr, codes, info, clustering)


def _jet_rows(arr: np.ndarray, codes: np.ndarray, info: dict, clustering: dict):
    """:func:`read_rows` with clustering: event rows -> jet rows (see there)."""
    from ..jets import Clustering, cluster

    good = np.flatnonzero(codes == 0)
    bad = np.flatnonzero(codes != 0)
    jets = cluster(np.ascontiguousarray(arr[good], dtype=np.float64), Clustering(**clustering))
    event = np.concatenate([good[jets.event_index], bad])
    jet_index = np.concatenate([jets.jet_index, np.full(len(bad), -1)]).astype(np.int64)
    order = np.lexsort((jet_index, event))
    padded = jets.events.to_padded()
    m = max(padded.shape[1], 1)
    out = np.zeros((len(event), m, 3))
    out[:len(jets.jet_index), :padded.shape[1]] = padded
    momenta = np.full((len(event), 4), np.nan)
    momenta[:len(jets.jet_index)] = jets.momenta
    row_codes = np.concatenate([np.zeros(len(jets.jet_index), np.int8), codes[bad]])
    rows = {k: v[event][order] for k, v in info.items()}
    rows["event_problem"] = row_codes[order]
    rows["jet_index"] = jet_index[order]
    rows["jet"] = momenta[order]
    return out[order], row_codes[order], rows


def _events(arr: np.ndarray, good: np.ndarray, device=None):
    from ..events import Events

    return Events.from_padded(np.ascontiguousarray(arr[good]), validate=False, device=device)


# ===================================================================== SHAPER
def _worker_threads() -> int | None:
    """Threads of the dask worker running this task (None outside dask: use all cores)."""
    import sys

    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return None


def _shaper(observables: tuple, R: float, beta: float, device):
    return _shaper_cached(observables, R, beta, device, _worker_threads())


@functools.lru_cache(maxsize=8)
def _shaper_cached(observables: tuple, R: float, beta: float, device, n_jobs):
    from shaper import Shaper

    # in a dask worker, the exact-EMD threads follow the worker's thread count, so N
    # workers on N cores do not oversubscribe them
    return Shaper(list(observables), R=R, beta=beta, device=device, progress=False,
                  n_jobs=n_jobs)


def shape_columns(arr: np.ndarray, good: np.ndarray, observables: Sequence[str], R: float,
                  beta: float, device=None) -> dict[str, np.ndarray]:
    """SHAPER results of the ``good`` rows of ``arr``, scattered back to all ``n`` rows.

    Returns ``{"<obs>/value": (n,), "<obs>/<param>": (n, ...), "<obs>/status": (n,)}``;
    rows not ``good`` get NaN values and parameters and status BAD_INPUT (3) (every
    dataset is there, with no good rows or no rows at all too).
    """
    n = arr.shape[0]
    out: dict[str, np.ndarray] = {}
    res = _shaper(tuple(observables), float(R), float(beta), device).compute(
        _events(arr, good, device))
    for name in observables:
        status = np.full(n, Status.BAD_INPUT, np.int8)
        value = np.full(n, np.nan)
        r = res[name]
        value[good] = np.asarray(r.value, dtype=np.float64)
        status[good] = np.asarray(r.status, dtype=np.int8)
        out[f"{name}/value"] = value
        for k, v in r.params.items():
            v = np.asarray(v)
            full = np.full((n,) + v.shape[1:], np.nan, dtype=np.float64)
            full[good] = v
            out[f"{name}/{k}"] = full
        out[f"{name}/status"] = status
    return out


def shape_chunk(path, start: int, stop: int, *, observables: Sequence[str], R: float = 0.8,
                beta: float = 1.0, device=None, skip_bad: bool = False,
                reader: dict | None = None, clustering: dict | None = None
                ) -> dict[str, np.ndarray]:
    """Unit of work of ``physkit shape``: SHAPER observables of events ``[start, stop)``
    (of their jets with ``clustering``; :func:`read_rows`), and the digest of what it read
    under :data:`INPUT_DIGEST`."""
    digests: dict[str, str] = {}
    arr, codes, out = read_rows(path, start, stop, skip_bad=skip_bad, reader=reader,
                                clustering=clustering, digests=digests)
    out.update(shape_columns(arr, codes == 0, observables, R, beta, device))
    out[INPUT_DIGEST] = _combined(digests)
    return out


def _combined(digests: dict) -> str:
    from ..io.read import combine_digests

    return combine_digests(digests)


# ===================================================================== other features
def _efp_set(select: str, measure: str, beta: float):
    try:
        import energyflow  # noqa: F401
    except ImportError:  # pragma: no cover - optional extra
        raise ImportError("efp features need the energyflow extra: pip install "
                          "'physkit[energyflow]'") from None
    return _efp_cached(select, measure, float(beta))


@functools.lru_cache(maxsize=4)
def _efp_cached(select, measure, beta):
    import energyflow as ef

    return ef.EFPSet(select, measure=measure, beta=beta, normed=True, coords="ptyphim")


def compute_features(specs: Sequence[dict], path, start: int, stop: int, arr: np.ndarray,
                     good: np.ndarray, shape: dict[str, np.ndarray] | None = None,
                     device=None, blocks: bool = False, reader: dict | None = None,
                     events: np.ndarray | None = None, digests: dict | None = None):
    """Feature matrix ``(n, F)`` float64 of the ``n`` rows ``arr`` read from events
    ``[start, stop)`` (NaN on rows not ``good``).

    ``shape``: SHAPER columns of these rows (from :func:`shape_columns`), needed for
    ``shape`` specs. ``blocks=True`` returns the list of per-spec ``(n, F_i)`` blocks.
    ``events``: each row's event index (rows are jets of clustered events; per-event
    ``dataset`` features are repeated for every jet of the event); default one row per
    event. ``reader``: the reader's options (ROOT files). ``digests`` receives the digest
    of each ``dataset`` read (``"dataset NAME"``).
    """
    n = len(good)
    take = None if events is None else np.asarray(events) - start
    cols = []
    events = None
    for spec in specs:
        kind = spec["kind"]
        if kind == "shape":
            cols.append(np.stack([shape[f"{name}/value"] for name in spec["observables"]],
                                 axis=1))
            continue
        block = np.full((n, 0), np.nan)
        if kind == "dataset":
            from ..io import read_dataset
            from ..io.read import array_digest

            v = np.asarray(read_dataset(path, spec["name"], start, stop, **(reader or {})))
            if digests is not None:
                digests[f"dataset {spec['name']}"] = array_digest(v)
            if v.dtype.kind not in "biuf" or v.dtype.names is not None:
                raise EventFileError(f"feature dataset holds {v.dtype}, not numbers",
                                     path, spec["name"])
            v = v.astype(np.float64)
            v = v if take is None else v[take]
            block = v.reshape(n, int(np.prod(v.shape[1:], dtype=int)))
        elif kind == "image":
            from ..images import pixelate

            block = np.full((n, spec["npix"] ** 2), np.nan)
            if good.any():
                events = events if events is not None else _events(arr, good, device)
                block[good] = pixelate(events, npix=spec["npix"], R=spec["R"]).reshape(
                    int(good.sum()), -1)
        elif kind == "efp":
            efps = _efp_set(spec["select"], spec["measure"], spec["beta"])
            block = np.full((n, efps.count()), np.nan)
            if good.any():
                block[good] = efps.batch_compute(arr[good].astype(np.float64), n_jobs=1)
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
        block = block.copy()
        block[~good] = np.nan
        cols.append(block)
    if blocks:
        return cols
    return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))


def _shape_settings(specs) -> dict[tuple[float, float], list[str]]:
    """Observables of every ``shape`` spec grouped by their ``(R, beta)``, in order."""
    groups: dict[tuple[float, float], list[str]] = {}
    for s in specs:
        if s["kind"] == "shape":
            names = groups.setdefault((float(s["R"]), float(s["beta"])), [])
            names += [o for o in s["observables"] if o not in names]
    return groups


def feature_chunk(path, start: int, stop: int, *, specs: Sequence[dict],
                  skip_bad: bool = False, device=None, reader: dict | None = None,
                  clustering: dict | None = None) -> dict[str, np.ndarray]:
    """Unit of work of ``physkit finder fit``: features ``X0, X1, ...`` ``(n, F_i)`` (one
    block per spec; ``shape`` specs are not allowed here, their values come from a results
    file) of events ``[start, stop)`` (their jets with ``clustering``) plus the row
    information (``labels``, ...; :func:`read_rows`)."""
    arr, codes, out = read_rows(path, start, stop, skip_bad=skip_bad, reader=reader,
                                clustering=clustering)
    for i, b in enumerate(compute_features(specs, path, start, stop, arr, codes == 0,
                                           device=device, blocks=True, reader=reader,
                                           events=out["source_index"])):
        out[f"X{i}"] = b
    return out


# ===================================================================== scoring
@functools.lru_cache(maxsize=4)
def _model(model_path: str, mtime: float):
    from .modelfile import load_model

    return load_model(model_path, return_pipeline=True)


def score_chunk(path, start: int, stop: int, *, model_path: str, skip_bad: bool = False,
                device=None, reader: dict | None = None, clustering: dict | None = None
                ) -> dict[str, np.ndarray]:
    """Unit of work of ``physkit score``: FINDER scores of events ``[start, stop)``.

    Loads the model file (cached per process), computes its features (recomputing SHAPER
    observables when the model uses them; they are returned too) and scores the rows:
    group ``score`` holds ``value`` (classifier: probability of the signal class;
    detector: anomaly score), ``status`` (0 scored, 2 non-finite features, 3 bad input)
    and, for the detector, ``pvalue``.
    """
    est, pipeline = _model(os.path.abspath(model_path), os.path.getmtime(model_path))
    specs = pipeline["features"]
    digests: dict[str, str] = {}
    arr, codes, out = read_rows(path, start, stop, skip_bad=skip_bad, reader=reader,
                                clustering=clustering, digests=digests)
    good = codes == 0
    shape: dict[str, np.ndarray] = {}
    for (R, beta), observables in _shape_settings(specs).items():
        shape.update(shape_columns(arr, good, observables, R, beta, device))
    out.update(shape)
    X = compute_features(specs, path, start, stop, arr, good, shape=shape, device=device,
                         reader=reader, events=out["source_index"], digests=digests)
    out[INPUT_DIGEST] = _combined(digests)
    ok = good & np.isfinite(X).all(axis=1)
    status = np.where(good, np.where(ok, Status.CONVERGED, Status.NONFINITE),
                      Status.BAD_INPUT).astype(np.int8)
    value = np.full(len(ok), np.nan)
    kind = pipeline.get("estimator", "")
    if ok.any():
        if kind == "finder.ResidualDetector":
            value[ok] = est.anomaly_score(X[ok])
        else:
            value[ok] = est.predict_proba(X[ok])[:, 1]
    out["score/value"] = value
    if kind == "finder.ResidualDetector":
        p = np.full(len(ok), np.nan)
        if ok.any() and getattr(est, "calibration_scores_", np.zeros(0)).size:
            p[ok] = est.pvalues(X[ok])
        out["score/pvalue"] = p
    out["score/status"] = status
    return out
