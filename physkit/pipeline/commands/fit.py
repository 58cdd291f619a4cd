"""``physkit finder fit``: fit a FINDER classifier or residual detector on per-event
features of training files and save it as a model file."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Sequence

import numpy as np

from ..errors import CommandError, describe_exception
from ..inputs import add_input_options, clustering_settings, reader_options, refuse_event_level
from ..runner import add_run_options, check_output, event_range, same_file


EPILOG = """\
examples:
  physkit finder fit train.h5 --features shape:train_shapes.h5 -o model.h5
  physkit finder fit train.h5 --features shape:train_shapes.h5 --features dataset:tau_kt -o model.h5
  physkit finder fit train.h5 --features image:16 --param n_residual=5 --param variant=aca-s -o model.h5
  physkit finder fit qcd.h5 top.h5 --label-from file --features 'efp:d<=4' -o model.h5
  physkit finder fit ref.h5 --features image:16 --estimator detector --reference-label 0 -o detector.h5

Quote specs holding < or > ('efp:d<=5'): the shell reads them as redirections otherwise.
A shape:RESULTS.h5 spec takes the values of a 'physkit shape' run over the same files, same
order and same --start/--stop. --param keys are the estimator's parameters (finder.FINDER or
finder.ResidualDetector); a wrong key is refused, with the valid ones, before any work."""


def add_parser(sub) -> None:
    f = sub.add_parser("finder", help="FINDER models (finder fit ...)",
                       description="FINDER models: 'physkit finder fit --help'.")
    fsub = f.add_subparsers(dest="finder_command", metavar="ACTION")
    fsub.required = True
    ff = fsub.add_parser("fit", help="fit a FINDER classifier or residual detector -> model file",
                         description="Fit FINDER on per-event features of the training files "
                                     "and save the model\n(arrays + JSON, no pickles).",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ff.add_argument("inputs", nargs="+", metavar="TRAIN",
                    help="training event files: physkit HDF5, energyflow .npz, top-tagging or "
                         "LHCO HDF5, ROOT")
    ff.add_argument("--features", action="append", required=True, metavar="SPEC",
                    help="shape:RESULTS.h5 (values of a physkit shape run) | image:NPIX (jet "
                         "images) | 'efp:SELECT' (energy flow polynomials, e.g. 'efp:d<=5', "
                         "quoted) | dataset:NAME (a per-event dataset of the files); repeat "
                         "to combine")
    ff.add_argument("--label-from", choices=("labels", "file"), default="labels",
                    help="labels: the files' 'labels' dataset (default); file: the index of "
                         "the input file (first file 0, second 1)")
    ff.add_argument("--estimator", choices=("classifier", "detector"), default="classifier",
                    help="classifier: finder.FINDER (default); detector: "
                         "finder.ResidualDetector fitted on the reference rows")
    ff.add_argument("--reference-label", type=int, default=None, metavar="LABEL",
                    help="detector: fit on rows with this label only (default: all rows)")
    ff.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="estimator parameter (JSON value), e.g. n_residual=5, "
                         "n_components=2, variant=aca-s; repeat for several (--list-params "
                         "shows the keys)")
    ff.add_argument("--list-params", action=_ListParams,
                    help="list the parameters of both estimators with their defaults, then "
                         "exit")
    ff.add_argument("-o", "--output", required=True, metavar="MODEL.h5",
                    help="model file to write (refused if it exists, unless --overwrite)")
    add_input_options(ff)
    add_run_options(ff, resume=False)
    ff.set_defaults(func=run)


class _ListParams(argparse.Action):
    """``--list-params``: print each estimator's parameters and defaults, then exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        for kind in ("classifier", "detector"):
            cls = estimator_class(kind)
            print(f"--estimator {kind} ({cls.__module__.split('.')[0]}.{cls.__name__}):")
            for k, v in sorted(cls().get_params().items()):
                print(f"  --param {k}={v if isinstance(v, str) else json.dumps(v)}")
        parser.exit()


def estimator_class(kind: str):
    """``finder.FINDER`` (``"classifier"``) or ``finder.ResidualDetector`` (``"detector"``)."""
    if kind == "classifier":
        from finder import FINDER

        return FINDER
    from finder import ResidualDetector

    return ResidualDetector


def check_params(params: dict, cls) -> None:
    """CommandError for a ``--param`` key that ``cls`` does not take, listing the keys it
    takes (``cls().get_params()``); run before any feature is computed."""
    import difflib

    valid = sorted(cls().get_params())
    for key in params:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise CommandError(f"--param {key}: {cls.__module__.split('.')[0]}.{cls.__name__} "
                               f"has no parameter {key!r}{hint}; valid keys: "
                               f"{', '.join(valid)}")


def parse_params(items: Sequence[str] | None) -> dict:
    """``["n_residual=5", "variant=aca-s"]`` -> ``{"n_residual": 5, "variant": "aca-s"}``."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise CommandError(f"bad --param {it!r}: expected KEY=VALUE")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return same_file(a, b)
    return os.path.basename(a) == os.path.basename(b)


def shape_training_columns(spec: dict, inputs: Sequence[str], rows: dict,
                           clustering: dict | None):
    """(resolved spec, (N, k) values, (N,) ok mask) from a ``shape:RESULTS.h5`` spec; its
    rows must be ``rows`` (the training rows: ``source_index``, ``file_index`` and, for
    clustered events, ``jet_index``) in order."""
    from ..results import read_results, results_settings

    path = spec["results"]
    settings = results_settings(path).get("settings", {})
    if not isinstance(settings, dict) or settings.get("command") != "shape":
        raise CommandError(f"{path}: not a results file of 'physkit shape'")
    if settings.get("clustering") != clustering:
        raise CommandError(f"{path}: made with clustering {settings.get('clustering')}, this "
                           f"fit uses {clustering}; give both commands the same --cluster, "
                           f"--jets and cuts")
    obs = list(settings["observables"])
    index = ["source_index"] + (["jet_index"] if clustering else [])
    data = read_results(path, index + obs)
    for name in index:
        want = rows[name]
        if data[name].shape != want.shape or not np.array_equal(data[name], want):
            raise CommandError(f"{path}: its {data['source_index'].size} rows are not the "
                               f"rows of {', '.join(inputs)} in order ({want.size} rows); "
                               f"run physkit shape on the same files (and the same "
                               f"--start/--stop)")
    files = read_results(path, ["source_file"])["source_file"]
    for i, inp in enumerate(inputs):
        first = np.flatnonzero(rows["file_index"] == i)
        if first.size and not _same_file(str(files[first[0]]), inp):
            raise CommandError(f"{path}: rows {first[0]}.. come from {files[first[0]]}, not "
                               f"{inp}; run physkit shape on the same files in the same order")
    vals = np.stack([data[f"{o}/value"] for o in obs], axis=1)
    ok = np.ones(len(vals), bool)
    for o in obs:
        ok &= np.isin(data[f"{o}/status"], (0, 1))
    resolved = {"kind": "shape", "observables": obs, "R": float(settings["R"]),
                "beta": float(settings["beta"]), "source": os.path.basename(path)}
    return resolved, vals, ok


def _check_shape_specs(resolved: Sequence[dict]) -> None:
    """Two ``shape:`` specs may not give one observable name two different settings: the
    scores file stores one group per observable name."""
    seen: dict[str, tuple] = {}
    for s in resolved:
        if s["kind"] != "shape":
            continue
        for o in s["observables"]:
            key = (s["R"], s["beta"])
            if seen.setdefault(o, key) != key:
                raise CommandError(f"observable {o} appears in two shape: feature specs with "
                                   f"different settings (R, beta) = {seen[o]} and {key}; "
                                   f"rename or drop one")


def feature_names(specs: Sequence[dict], n_cols: dict) -> list[str]:
    """Column names of the feature matrix, in order (``n_cols``: id(spec) -> columns)."""
    names = []
    for s in specs:
        if s["kind"] == "shape":
            names += list(s["observables"])
            continue
        k = n_cols[id(s)]
        tag = {"image": lambda: f"image{s['npix']}", "efp": lambda: f"efp({s['select']})"
               }.get(s["kind"], lambda: s["name"])()
        names += [tag] if k == 1 else [f"{tag}[{j}]" for j in range(k)]
    return names


def _chunk_features(args, inputs, counts, chunk_specs, reader: dict,
                    clustering: dict | None) -> dict[str, np.ndarray]:
    """Non-shape features and row information of every training event (jet), concatenated."""
    from tqdm import tqdm

    from ...parallel import ChunkFailure, iter_chunks, open_scheduler, plan_chunks
    from ..features import feature_chunk

    unit = functools.partial(feature_chunk, specs=chunk_specs, skip_bad=args.skip_bad_events,
                             device=args.device, reader=reader, clustering=clustering)
    start, stop = event_range(args)
    chunks = plan_chunks(inputs, args.chunk_size, counts, start=start, stop=stop)
    parts = []
    bar = tqdm(total=sum(c.n for c in chunks), unit="ev", disable=args.no_progress,
               file=sys.stderr, desc="features")
    with open_scheduler(args.scheduler) as client:
        for c, res in iter_chunks(unit, chunks, client, catch=True):
            if isinstance(res, ChunkFailure):
                raise CommandError(describe_exception(res.error, c.path, c.start, c.stop))
            res["file_index"] = np.full(len(res["source_index"]), c.file_index)
            parts.append(res)
            bar.update(c.n)
    bar.close()
    if not parts:
        raise CommandError("no training events")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]
           if all(k in p for p in parts)}
    cat["unlabelled"] = sorted({inputs[int(p["file_index"][0])] for p in parts
                                if "labels" not in p and len(p["file_index"])})
    return cat


def training_matrix(args, inputs: Sequence[str], reader: dict | None = None,
                    clustering: dict | None = None):
    """``(resolved specs, X (N, F), y (N,), good (N,) bool, feature names)`` of the inputs
    (of their jets with ``clustering``; ``reader``: reader options)."""
    from ...io import count_events
    from ..features import parse_feature_spec

    reader = reader or {}
    try:
        specs = [parse_feature_spec(s) for s in args.features]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if any(s["kind"] != "dataset" for s in specs):
        refuse_event_level(inputs, reader, clustering)
    counts = [count_events(p, **reader) for p in inputs]
    cat = _chunk_features(args, inputs, counts, [s for s in specs if s["kind"] != "shape"],
                          reader, clustering)
    resolved, shape_cols = [], {}
    for s in specs:
        if s["kind"] == "shape":
            r, vals, ok = shape_training_columns(s, inputs, cat, clustering)
            shape_cols[len(resolved)] = (vals, ok)
            s = r
        resolved.append(s)
    _check_shape_specs(resolved)
    blocks, n_cols, j = [], {}, 0
    good = cat["event_problem"] == 0
    for i, s in enumerate(resolved):
        if s["kind"] == "shape":
            vals, ok = shape_cols[i]
            blocks.append(vals)
            good &= ok
        else:
            blocks.append(cat[f"X{j}"])
            n_cols[id(s)] = cat[f"X{j}"].shape[1]
            j += 1
    X = np.concatenate(blocks, axis=1)
    good &= np.isfinite(X).all(axis=1)
    if args.label_from == "labels":
        if cat["unlabelled"] or "labels" not in cat:
            raise CommandError(f"{(cat['unlabelled'] or inputs)[0]}: dataset 'labels': "
                               f"missing; --label-from labels needs a label on every training "
                               f"row (or use --label-from file to label events by input file)")
        y = cat["labels"]
    else:
        y = cat["file_index"]
    return resolved, X, y, good, feature_names(resolved, n_cols)


def fit_estimator(args, X: np.ndarray, y: np.ndarray, good: np.ndarray):
    """``(fitted estimator, its model-file name)`` for ``--estimator``."""
    params = parse_params(args.param)
    params.setdefault("random_state", 0)
    cls = estimator_class(args.estimator)
    check_params(params, cls)
    if args.estimator == "classifier":
        if len(np.unique(y[good])) != 2:
            raise CommandError(f"the classifier needs two classes; training labels are "
                               f"{np.unique(y[good]).tolist()}")
        rows, fit_args = good, (y[good],)
    else:
        fit_args = ()
        rows = good & (y == args.reference_label) if args.reference_label is not None else good
    import torch

    try:
        est = cls(**params).fit(X[rows], *fit_args)
    except (TypeError, ValueError, torch.linalg.LinAlgError) as exc:
        raise CommandError(f"{cls.__name__}: {' '.join(str(exc).split())}") from None
    return est, f"finder.{cls.__name__}"


def run(args) -> int:
    from ..features import parse_feature_spec
    from ..modelfile import save_model

    inputs = list(args.inputs)
    specs = []
    for text in args.features:
        try:
            specs.append(parse_feature_spec(text))
        except ValueError:
            pass  # reported by training_matrix
    results = [s["results"] for s in specs if s["kind"] == "shape"]
    check_output(args.output, [*inputs, *results], overwrite=args.overwrite)
    check_params(parse_params(args.param), estimator_class(args.estimator))  # before any work
    reader, clustering = reader_options(args), clustering_settings(args)
    start, stop = event_range(args)
    resolved, X, y, good, names = training_matrix(args, inputs, reader, clustering)
    est, name = fit_estimator(args, X, y, good)
    pipeline = {"features": resolved, "estimator": name, "label_from": args.label_from,
                "reference_label": args.reference_label, "n_train": int(good.sum()),
                "train_files": [os.path.basename(p) for p in inputs],
                "feature_names": names}
    if clustering:  # score clusters its inputs the same way
        pipeline["clustering"] = clustering
    if start or stop is not None:
        pipeline["train_events"] = [start, stop]
    try:
        save_model(args.output, est, pipeline=pipeline)
    except (OSError, RuntimeError) as exc:
        raise CommandError(f"{args.output}: cannot write ({getattr(exc, 'strerror', None) or exc})"
                           ) from None
    print(f"physkit: fitted {name} on {int(good.sum())} events x {X.shape[1]} features "
          f"({int((~good).sum())} left out) -> {args.output}", file=sys.stderr)
    return 0
