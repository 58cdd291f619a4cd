"""``physkit finder fit``: fit a FINDER classifier or residual detector on per-event
features of training files and save it as a model file."""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Sequence

import numpy as np

from ..errors import CommandError, describe_exception
from ..runner import add_run_options, check_output


def finder_actions(sub):
    """The subparsers of ``physkit finder`` (``fit``, ``search``), created on first use."""
    if "finder" not in sub.choices:
        f = sub.add_parser("finder", help="FINDER models (finder fit | finder search)",
                           description="FINDER models: 'physkit finder fit --help', "
                                       "'physkit finder search --help'.")
        fsub = f.add_subparsers(dest="finder_command", metavar="ACTION")
        fsub.required = True
        f.set_defaults(_finder_actions=fsub)
    return sub.choices["finder"].get_default("_finder_actions")


def add_parser(sub) -> None:
    fsub = finder_actions(sub)
    ff = fsub.add_parser("fit", help="fit a FINDER classifier or residual detector -> model file",
                         description="Fit FINDER on per-event features of the training files "
                                     "and save the model (arrays + JSON, no pickles).")
    ff.add_argument("inputs", nargs="+", metavar="TRAIN.h5", help="training event files")
    ff.add_argument("--features", action="append", required=True, metavar="SPEC",
                    help="shape:RESULTS.h5 | image:NPIX | efp:SELECT (e.g. efp:d<=5) | "
                         "dataset:NAME; repeat to combine")
    ff.add_argument("--label-from", choices=("labels", "file"), default="labels",
                    help="labels: the files' 'labels' dataset; file: the index of the input "
                         "file (first file 0, second 1)")
    ff.add_argument("--estimator", choices=("classifier", "detector"), default="classifier",
                    help="classifier: finder.FINDER; detector: finder.ResidualDetector fitted "
                         "on the reference rows")
    ff.add_argument("--reference-label", type=int, default=None,
                    help="detector: fit on rows with this label only (default: all rows)")
    ff.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="estimator parameter, e.g. n_residual=5 (JSON values)")
    ff.add_argument("-o", "--output", required=True, metavar="MODEL.h5")
    add_run_options(ff, resume=False)
    ff.set_defaults(func=run)


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
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.basename(a) == os.path.basename(b)


def shape_training_columns(spec: dict, inputs: Sequence[str], counts: Sequence[int]):
    """(resolved spec, (N, k) values, (N,) ok mask) from a ``shape:RESULTS.h5`` spec."""
    from ..results import read_results, results_settings

    path = spec["results"]
    settings = results_settings(path).get("settings", {})
    if not isinstance(settings, dict) or settings.get("command") != "shape":
        raise CommandError(f"{path}: not a results file of 'physkit shape'")
    obs = list(settings["observables"])
    data = read_results(path, ["source_index"] + obs)
    want = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, int)
    if data["source_index"].shape != want.shape or not np.array_equal(data["source_index"], want):
        raise CommandError(f"{path}: its {data['source_index'].size} rows are not the events of "
                           f"{', '.join(inputs)} in order ({want.size} events); run physkit "
                           f"shape on the same files")
    files = read_results(path, ["source_file"])["source_file"]
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int) if counts else []
    for first, n, inp in zip(firsts, counts, inputs):
        if n and not _same_file(str(files[first]), inp):
            raise CommandError(f"{path}: rows {first}.. come from {files[first]}, not {inp}; "
                               f"run physkit shape on the same files in the same order")
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


def _chunk_features(args, inputs, counts, chunk_specs) -> dict[str, np.ndarray]:
    """Non-shape features and row information of every training event, concatenated."""
    from tqdm import tqdm

    from ...parallel import ChunkFailure, iter_chunks, open_scheduler, plan_chunks
    from ..features import feature_chunk

    unit = functools.partial(feature_chunk, specs=chunk_specs, skip_bad=args.skip_bad_events,
                             device=args.device)
    parts = []
    bar = tqdm(total=sum(counts), unit="ev", disable=args.no_progress, file=sys.stderr,
               desc="features")
    with open_scheduler(args.scheduler) as client:
        for c, res in iter_chunks(unit, plan_chunks(inputs, args.chunk_size, counts), client,
                                  catch=True):
            if isinstance(res, ChunkFailure):
                raise CommandError(describe_exception(res.error, c.path, c.start, c.stop))
            res["file_index"] = np.full(c.n, c.file_index)
            parts.append(res)
            bar.update(c.n)
    bar.close()
    if not parts:
        raise CommandError("no training events")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]
            if all(k in p for p in parts)}


def training_matrix(args, inputs: Sequence[str], rows: dict | None = None):
    """``(resolved specs, X (N, F), y (N,), good (N,) bool, feature names)`` of the inputs.

    ``rows``: if given, filled with the per-row information (``file_index``,
    ``event_problem``, ``labels`` where every file has them)."""
    from ...io import count_events
    from ..features import parse_feature_spec

    try:
        specs = [parse_feature_spec(s) for s in args.features]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    counts = [count_events(p) for p in inputs]
    resolved, shape_cols = [], {}
    for s in specs:
        if s["kind"] == "shape":
            r, vals, ok = shape_training_columns(s, inputs, counts)
            shape_cols[len(resolved)] = (vals, ok)
            s = r
        resolved.append(s)
    _check_shape_specs(resolved)
    cat = _chunk_features(args, inputs, counts, [s for s in resolved if s["kind"] != "shape"])
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
    if rows is not None:
        rows.update({k: cat[k] for k in ("file_index", "event_problem", "labels") if k in cat})
    if args.label_from == "labels":
        if "labels" not in cat:
            raise CommandError(f"{inputs[0]}: dataset 'labels': missing in some training "
                               f"file (use --label-from file to label events by input file)")
        y = cat["labels"]
    else:
        y = cat["file_index"]
    return resolved, X, y, good, feature_names(resolved, n_cols)


def fit_estimator(args, X: np.ndarray, y: np.ndarray, good: np.ndarray):
    """``(fitted estimator, its model-file name)`` for ``--estimator``."""
    params = parse_params(args.param)
    params.setdefault("random_state", 0)
    if args.estimator == "classifier":
        from finder import FINDER

        if len(np.unique(y[good])) != 2:
            raise CommandError(f"the classifier needs two classes; training labels are "
                               f"{np.unique(y[good]).tolist()}")
        cls, rows, fit_args = FINDER, good, (y[good],)
    else:
        from finder import ResidualDetector

        cls, fit_args = ResidualDetector, ()
        rows = good & (y == args.reference_label) if args.reference_label is not None else good
    try:
        est = cls(**params).fit(X[rows], *fit_args)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{cls.__name__}: {exc}") from None
    return est, f"finder.{cls.__name__}"


def run(args) -> int:
    from ..modelfile import save_model

    check_output(args.output)
    inputs = list(args.inputs)
    resolved, X, y, good, names = training_matrix(args, inputs)
    est, name = fit_estimator(args, X, y, good)
    pipeline = {"features": resolved, "estimator": name, "label_from": args.label_from,
                "reference_label": args.reference_label, "n_train": int(good.sum()),
                "train_files": [os.path.basename(p) for p in inputs],
                "feature_names": names}
    save_model(args.output, est, pipeline=pipeline)
    print(f"physkit: fitted {name} on {int(good.sum())} events x {X.shape[1]} features "
          f"({int((~good).sum())} left out) -> {args.output}", file=sys.stderr)
    return 0
