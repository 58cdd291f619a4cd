"""The ``physkit`` command line: the batch pipeline SHAPER observables -> FINDER scores.

Subcommands (``physkit CMD --help`` for each):

``shape``        SHAPER observables of every event into a results file
``finder fit``   fit a FINDER classifier / residual detector on features, save a model file
``score``        score events with a model file into a results file
``report``       PNG plots and an index.html from a results file
``demo``         the bundled sample through SHAPER and FINDER (``make run``)
``info``         describe an event, results or model file (or a partial run)

Long runs are chunked (``--chunk-size``), written chunk by chunk to ``OUT.partial/``,
resumable (``--resume``) and can run on dask (``--scheduler local:N | tcp://HOST:PORT``).
shaper and finder are imported lazily, only by the commands that use them.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np

from .errors import EventFileError

__all__ = ["main", "build_parser", "run_chunked"]

DEFAULT_CHUNK = 1000


class CommandError(Exception):
    """An error reported as one ``physkit: error: ...`` line and exit status 1."""


def _err(msg: str) -> None:
    print(f"physkit: error: {msg}", file=sys.stderr, flush=True)


def _file_id(path) -> dict:
    try:
        st = os.stat(path)
        return {"path": os.fspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": os.fspath(path), "size": None, "mtime_ns": None}


def _describe_exc(exc: BaseException, path=None, start=None, stop=None) -> str:
    if isinstance(exc, (EventFileError,)):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or (exc.args[0] if exc.args else "")
        return f"{name}: no such file"
    where = f"{path}: events {start}:{stop}: " if path is not None else ""
    return f"{where}{type(exc).__name__}: {exc}"


# ===================================================================== chunked runs
def run_chunked(unit: Callable, inputs: Sequence[str], out: str, settings: dict, *,
                chunk_size: int = DEFAULT_CHUNK, scheduler=None, resume: bool = False,
                progress: bool = True, group_attrs: dict | None = None,
                extra_manifest: dict | None = None) -> int:
    """Run ``unit(path, start, stop) -> {name: rows}`` over all events of ``inputs`` into
    the results file ``out``; returns the exit status (0 ok, 1 some file failed).

    A file that cannot be read or holds a bad event (without ``--skip-bad-events``) is
    reported in one line and left out; the others still complete. The results file is
    written when every chunk of the remaining files is done.
    """
    from .io import count_events
    from .parallel import ChunkFailure, iter_chunks, open_scheduler, plan_chunks
    from .results import ChunkStore

    inputs = [os.fspath(p) for p in inputs]
    failures: dict[int, str] = {}
    counts = []
    for i, p in enumerate(inputs):
        try:
            counts.append(int(count_events(p)))
        except (EventFileError, OSError) as exc:
            failures[i] = _describe_exc(exc)
            _err(failures[i])
            counts.append(0)
    chunks = plan_chunks(inputs, chunk_size, counts)
    manifest = {"inputs": [_file_id(p) for p in inputs], "counts": counts,
                "chunk_size": int(chunk_size), "settings": settings, **(extra_manifest or {})}
    if not resume and os.path.isdir(out + ".partial"):
        print(f"physkit: starting over: removing the earlier partial run {out}.partial "
              f"(pass --resume to continue it instead)", file=sys.stderr)
    store = ChunkStore(out, manifest, resume=resume)
    todo = [c for c in chunks if not store.done(c.key)]
    done_events = sum(c.n for c in chunks) - sum(c.n for c in todo)
    if resume and done_events:
        print(f"physkit: resuming {out}: {len(chunks) - len(todo)} of {len(chunks)} chunks "
              f"already done", file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=sum(counts), initial=done_events, unit="ev", dynamic_ncols=True,
               disable=not progress, file=sys.stderr, desc=settings.get("command", "physkit"))
    with open_scheduler(scheduler) as client:
        for c, res in iter_chunks(unit, todo, client, catch=True):
            if c.file_index in failures:
                continue
            if isinstance(res, ChunkFailure):
                failures[c.file_index] = _describe_exc(res.error, c.path, c.start, c.stop)
                bar.clear()
                _err(failures[c.file_index])
                continue
            store.write_chunk(c.key, res)
            bar.update(c.n)
    bar.close()
    keep = [i for i in range(len(inputs)) if i not in failures]
    if not keep:
        if len(inputs) > 1:
            _err(f"all {len(inputs)} input files failed; nothing written")
        return 1
    keys = [c.key for c in chunks if c.file_index not in failures]
    attrs = {"settings": settings, "inputs": [inputs[i] for i in keep],
             "failed_files": {inputs[i]: failures[i] for i in sorted(failures)}}
    store.finalize(keys, attrs=attrs, group_attrs=group_attrs)
    n_rows = sum(counts[i] for i in keep)
    if failures:
        _err(f"wrote {out} ({n_rows} events) without {len(failures)} of {len(inputs)} "
             f"files that failed")
        return 1
    print(f"physkit: wrote {out} ({n_rows} events)", file=sys.stderr)
    return 0


# ===================================================================== commands
def _run_opts(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"events per chunk (memory is bounded by it; default {DEFAULT_CHUNK})")
    g.add_argument("--scheduler", default=None, metavar="SPEC",
                   help="local:N (a dask LocalCluster of N worker processes), "
                        "tcp://HOST:PORT (a running dask scheduler); default: in-process")
    if resume:
        g.add_argument("--resume", action="store_true",
                       help="keep the completed chunks of an interrupted run (OUT.partial/)")
    g.add_argument("--skip-bad-events", action="store_true",
                   help="record bad events (NaN, negative pT, empty, unreadable) with status "
                        "3 and go on, instead of stopping at the first one")
    g.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_out(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CommandError(f"{path}: output directory {d} does not exist")


def cmd_shape(args) -> int:
    from .features import shape_chunk

    try:
        from shaper.observables import from_name
    except ImportError as exc:  # pragma: no cover
        raise CommandError(f"the shaper package is not importable ({exc})") from None
    obs = list(dict.fromkeys(args.observable or []))
    if not obs:
        raise CommandError("give at least one --observable (e.g. --observable 3-subjettiness)")
    for o in obs:
        try:
            from_name(o)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    _check_out(args.output)
    settings = {"command": "shape", "observables": obs, "R": args.R, "beta": args.beta,
                "device": args.device, "skip_bad_events": args.skip_bad_events,
                "chunk_size": args.chunk_size}
    unit = functools.partial(shape_chunk, observables=tuple(obs), R=args.R, beta=args.beta,
                             device=args.device, skip_bad=args.skip_bad_events)
    gattrs = {o: {"observable": o, "R": args.R, "beta": args.beta,
                  "value": "exact EMD between the jet and its fitted shape"} for o in obs}
    return run_chunked(unit, args.inputs, args.output, settings, chunk_size=args.chunk_size,
                       scheduler=args.scheduler, resume=args.resume,
                       progress=not args.no_progress, group_attrs=gattrs)


def _parse_params(items: Sequence[str]) -> dict:
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


def _shape_training_columns(spec: dict, inputs: Sequence[str], counts: Sequence[int]):
    """(resolved spec, (N, k) values, (N,) ok mask) from a ``shape:RESULTS.h5`` spec."""
    from .results import read_results, results_settings

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


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.basename(a) == os.path.basename(b)


def _feature_names(specs: Sequence[dict], n_cols: dict) -> list[str]:
    names = []
    for s in specs:
        if s["kind"] == "shape":
            names += list(s["observables"])
        else:
            k = n_cols[id(s)]
            if s["kind"] == "image":
                tag = f"image{s['npix']}"
            elif s["kind"] == "efp":
                tag = f"efp({s['select']})"
            else:
                tag = s["name"]
            names += [tag] if k == 1 else [f"{tag}[{j}]" for j in range(k)]
    return names


def cmd_finder_fit(args) -> int:
    from .features import feature_chunk, parse_feature_spec
    from .io import count_events
    from .modelfile import save_model
    from .parallel import ChunkFailure, iter_chunks, open_scheduler, plan_chunks

    _check_out(args.output)
    try:
        specs = [parse_feature_spec(s) for s in args.features]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    inputs = list(args.inputs)
    counts = [count_events(p) for p in inputs]
    resolved, shape_cols = [], {}
    for s in specs:
        if s["kind"] == "shape":
            r, vals, ok = _shape_training_columns(s, inputs, counts)
            shape_cols[len(resolved)] = (vals, ok)
            resolved.append(r)
        else:
            resolved.append(s)
    chunk_specs = [s for s in resolved if s["kind"] != "shape"]
    unit = functools.partial(feature_chunk, specs=chunk_specs, skip_bad=args.skip_bad_events,
                             device=args.device)
    parts = []
    from tqdm import tqdm

    bar = tqdm(total=sum(counts), unit="ev", disable=args.no_progress, file=sys.stderr,
               desc="features")
    with open_scheduler(args.scheduler) as client:
        for c, res in iter_chunks(unit, plan_chunks(inputs, args.chunk_size, counts), client,
                                  catch=True):
            if isinstance(res, ChunkFailure):
                raise CommandError(_describe_exc(res.error, c.path, c.start, c.stop))
            res["file_index"] = np.full(c.n, c.file_index)
            parts.append(res)
            bar.update(c.n)
    bar.close()
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]
           if all(k in p for p in parts)} if parts else {}
    if not parts:
        raise CommandError("no training events")
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
        if "labels" not in cat:
            raise CommandError(f"{inputs[0]}: dataset 'labels': missing in some training "
                               f"file (use --label-from file to label events by input file)")
        y = cat["labels"]
    else:
        y = cat["file_index"]
    params = _parse_params(args.param)
    if args.estimator == "classifier":
        from finder import FINDER

        if len(np.unique(y[good])) != 2:
            raise CommandError(f"the classifier needs two classes; training labels are "
                               f"{np.unique(y[good]).tolist()}")
        params.setdefault("random_state", 0)
        try:
            est = FINDER(**params).fit(X[good], y[good])
        except (TypeError, ValueError) as exc:
            raise CommandError(f"FINDER: {exc}") from None
        name = "finder.FINDER"
    else:
        from finder import ResidualDetector

        params.setdefault("random_state", 0)
        ref = good & (y == args.reference_label) if args.reference_label is not None else good
        try:
            est = ResidualDetector(**params).fit(X[ref])
        except (TypeError, ValueError) as exc:
            raise CommandError(f"ResidualDetector: {exc}") from None
        name = "finder.ResidualDetector"
    pipeline = {"features": resolved, "estimator": name, "label_from": args.label_from,
                "reference_label": args.reference_label, "n_train": int(good.sum()),
                "train_files": [os.path.basename(p) for p in inputs],
                "feature_names": _feature_names(resolved, n_cols)}
    save_model(args.output, est, pipeline=pipeline)
    print(f"physkit: fitted {name} on {int(good.sum())} events x {X.shape[1]} features "
          f"({int((~good).sum())} left out) -> {args.output}", file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    from .features import score_chunk
    from .modelfile import ModelFileError, read_model_state

    try:
        name, _, meta, pipeline = read_model_state(args.model)
    except ModelFileError as exc:
        raise CommandError(str(exc)) from None
    _check_out(args.output)
    settings = {"command": "score", "model": os.path.basename(args.model), "estimator": name,
                "features": pipeline.get("features"), "device": args.device,
                "skip_bad_events": args.skip_bad_events, "chunk_size": args.chunk_size}
    unit = functools.partial(score_chunk, model_path=os.path.abspath(args.model),
                             skip_bad=args.skip_bad_events, device=args.device)
    meaning = ("probability of the signal class (predict_proba[:, 1])"
               if name == "finder.FINDER" else "residual anomaly score (higher = more anomalous)")
    gattrs = {"score": {"estimator": name, "value": meaning}}
    for s in pipeline.get("features", []):
        if s["kind"] == "shape":
            for o in s["observables"]:
                gattrs[o] = {"observable": o, "R": s["R"], "beta": s["beta"],
                             "value": "exact EMD between the jet and its fitted shape"}
    return run_chunked(unit, args.inputs, args.output, settings, chunk_size=args.chunk_size,
                       scheduler=args.scheduler, resume=args.resume,
                       progress=not args.no_progress, group_attrs=gattrs,
                       extra_manifest={"model": _file_id(args.model)})


def cmd_info(args) -> int:
    from .info import describe
    from .modelfile import describe_model, is_model_file
    from .results import describe_results, is_results_file, partial_progress

    status = 0
    for i, path in enumerate(args.files):
        if i:
            print()
        try:
            if path.endswith(".partial") and os.path.isdir(path) or (
                    not os.path.exists(path) and os.path.isdir(path + ".partial")):
                n, man = partial_progress(path)
                total = sum(-(-c // man["chunk_size"]) for c in man["counts"])
                print(f"partial run: {path}\n{n} of {total} chunks done "
                      f"(chunk size {man['chunk_size']}); continue it with --resume\n"
                      f"settings: {json.dumps(man['settings'])}")
            elif is_model_file(path):
                print(describe_model(path))
            elif is_results_file(path):
                print(describe_results(path))
            else:
                print(describe(path))
        except BrokenPipeError:
            raise
        except (EventFileError, ValueError, OSError) as exc:
            _err(_describe_exc(exc))
            status = 1
    return status


def cmd_report(args) -> int:
    from .report import make_report

    index = make_report(args.results, args.output, n_displays=args.displays,
                        events=args.events)
    print(f"physkit: wrote {index}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, n_events=args.n_events, progress=not args.no_progress)


# ===================================================================== parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="physkit",
        description="Batch pipeline: SHAPER jet-shape observables and FINDER scores on HDF5 "
                    "event files, chunked, resumable, in-process or on dask.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"physkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("shape", help="SHAPER observables of every event -> results file",
                       description="Fit SHAPER observables to every event; one row per input "
                                   "event, in input order, into a results file.")
    s.add_argument("inputs", nargs="+", metavar="IN.h5", help="event files")
    s.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    s.add_argument("--observable", action="append", metavar="NAME",
                   help="e.g. 3-subjettiness, 2-point-diskiness, 1-ellipsiness+pileup "
                        "(repeat for several)")
    s.add_argument("--R", type=float, default=0.8, help="jet radius in the EMD cost (default 0.8)")
    s.add_argument("--beta", type=float, default=1.0, help="angular exponent (default 1)")
    _run_opts(s)
    s.set_defaults(func=cmd_shape)

    f = sub.add_parser("finder", help="FINDER models (finder fit ...)",
                       description="FINDER models: 'physkit finder fit --help'.")
    fsub = f.add_subparsers(dest="finder_command", metavar="ACTION")
    fsub.required = True
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
    _run_opts(ff, resume=False)
    ff.set_defaults(func=cmd_finder_fit)

    sc = sub.add_parser("score", help="score events with a FINDER model -> results file",
                        description="Score every event with a model file from 'physkit finder "
                                    "fit' (its features are recomputed, SHAPER included).")
    sc.add_argument("inputs", nargs="+", metavar="IN.h5")
    sc.add_argument("--model", required=True, metavar="MODEL.h5")
    sc.add_argument("-o", "--output", required=True, metavar="SCORES.h5")
    _run_opts(sc)
    sc.set_defaults(func=cmd_score)

    r = sub.add_parser("report", help="plots + index.html from a results file",
                       description="PNG plots (observables by label, ROC and SIC curves, event "
                                   "displays with fitted shapes) and an index.html.")
    r.add_argument("results", metavar="RESULTS.h5")
    r.add_argument("-o", "--output", required=True, metavar="DIR")
    r.add_argument("--displays", type=int, default=4, help="event displays (default 4)")
    r.add_argument("--events", default=None, metavar="IN.h5",
                   help="event file for the displays (default: the recorded source_file)")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="the bundled sample through SHAPER and FINDER",
                       description="Run the bundled data/jets_sample.h5 through SHAPER and "
                                   "FINDER, print the AUCs and write plots.")
    d.add_argument("--out", default="out/demo", metavar="DIR")
    d.add_argument("--n-events", type=int, default=None,
                   help="use only the first N events of the sample (default: all)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="describe event, results or model files",
                       description="Describe event files, results files, model files and "
                                   "partial (interrupted) runs.")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physkit`` console script; returns the exit status."""
    from .modelfile import ModelFileError
    from .results import ResultsFormatError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        _err(str(exc))
    except (EventFileError, ModelFileError, ResultsFormatError) as exc:
        _err(str(exc))
    except FileNotFoundError as exc:
        _err(_describe_exc(exc))
    except BrokenPipeError:  # e.g. `physkit info FILE | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        _err("interrupted (completed chunks are kept; rerun with --resume)")
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
