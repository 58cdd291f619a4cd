"""``physkit score``: score events with a model file into a results file."""
from __future__ import annotations

import argparse
import functools
import os

from ..errors import CommandError
from ..inputs import add_input_options, clustering_settings, reader_options, refuse_event_level
from ..runner import add_run_options, check_output, event_range, file_digest, run_chunked
from .shape import SHAPE_VALUE


EPILOG = """\
examples:
  physkit score test.h5 --model model.h5 -o test_scores.h5
  physkit score test.h5 --model model.h5 -o try.h5 --stop 500
  physkit score big.h5 --model model.h5 -o scores.h5 --chunk-size 5000 --scheduler local:4

The model's features are recomputed on EVENTS with the model's settings (SHAPER observables
with its R and beta, images, EFPs, datasets) and, for a model fitted on clustered jets, the
model's clustering. Group 'score' holds the classifier's probability of the signal class
(or the detector's anomaly score and p-value); the SHAPER groups it computed are kept."""


def add_parser(sub) -> None:
    sc = sub.add_parser("score", help="score events with a FINDER model -> results file",
                        description="Score every event with a model file from 'physkit finder "
                                    "fit'\n(its features are recomputed, SHAPER included).",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sc.add_argument("inputs", nargs="+", metavar="EVENTS",
                    help="event files to score: physkit HDF5, energyflow .npz, top-tagging or "
                         "LHCO HDF5, ROOT")
    sc.add_argument("--model", required=True, metavar="MODEL.h5",
                    help="model file written by 'physkit finder fit'")
    sc.add_argument("-o", "--output", required=True, metavar="SCORES.h5",
                    help="results file to write (refused if it exists, unless --overwrite)")
    add_input_options(sc)
    add_run_options(sc)
    sc.set_defaults(func=run)


def run(args) -> int:
    from ..features import score_chunk
    from ..modelfile import ModelFileError, model_summary, read_model_state

    check_output(args.output, [*args.inputs, args.model], overwrite=True)  # before reading
    try:
        name, arrays, meta, pipeline = read_model_state(args.model)
    except ModelFileError as exc:
        raise CommandError(str(exc)) from None
    # the model's clustering (the jets it was trained on) unless --cluster says otherwise
    reader, (start, stop) = reader_options(args), event_range(args)
    clustering = clustering_settings(args, default=pipeline.get("clustering"))
    if any(s["kind"] != "dataset" for s in pipeline.get("features", [])):
        refuse_event_level(args.inputs, reader, clustering)
    settings = {"command": "score", "model": os.path.basename(args.model), "estimator": name,
                "model_summary": model_summary(name, arrays, meta, pipeline),
                "features": pipeline.get("features"), "device": args.device,
                "skip_bad_events": args.skip_bad_events, "chunk_size": args.chunk_size}
    if start or stop is not None:
        settings["events"] = [start, stop]
    if reader:
        settings["reader"] = reader
    if clustering:
        settings["clustering"] = clustering
    unit = functools.partial(score_chunk, model_path=os.path.abspath(args.model),
                             skip_bad=args.skip_bad_events, device=args.device,
                             reader=reader, clustering=clustering)
    meaning = ("probability of the signal class (predict_proba[:, 1])"
               if name == "finder.FINDER" else "residual anomaly score (higher = more anomalous)")
    gattrs = {"score": {"estimator": name, "value": meaning}}
    for s in pipeline.get("features", []):
        if s["kind"] == "shape":
            for o in s["observables"]:
                gattrs[o] = {"observable": o, "R": s["R"], "beta": s["beta"],
                             "value": SHAPE_VALUE}
    datasets = [s["name"] for s in pipeline.get("features", []) if s["kind"] == "dataset"]
    return run_chunked(unit, args.inputs, args.output, settings, chunk_size=args.chunk_size,
                       scheduler=args.scheduler, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress, group_attrs=gattrs,
                       extra_manifest={"model": file_digest(args.model)}, reader=reader,
                       sources=[args.model], digest_datasets=datasets, start=start, stop=stop)
