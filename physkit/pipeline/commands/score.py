"""``physkit score``: score events with a model file into a results file."""
from __future__ import annotations

import functools
import os

from ..errors import CommandError
from ..inputs import add_input_options, clustering_settings, reader_options, refuse_event_level
from ..runner import add_run_options, check_output, file_digest, run_chunked
from .shape import SHAPE_VALUE


def add_parser(sub) -> None:
    sc = sub.add_parser("score", help="score events with a FINDER model -> results file",
                        description="Score every event with a model file from 'physkit finder "
                                    "fit' (its features are recomputed, SHAPER included).")
    sc.add_argument("inputs", nargs="+", metavar="IN.h5")
    sc.add_argument("--model", required=True, metavar="MODEL.h5")
    sc.add_argument("-o", "--output", required=True, metavar="SCORES.h5")
    add_input_options(sc)
    add_run_options(sc)
    sc.set_defaults(func=run)


def run(args) -> int:
    from ..features import score_chunk
    from ..modelfile import ModelFileError, read_model_state

    check_output(args.output, [*args.inputs, args.model], overwrite=True)  # before reading
    try:
        name, _, meta, pipeline = read_model_state(args.model)
    except ModelFileError as exc:
        raise CommandError(str(exc)) from None
    # the model's clustering (the jets it was trained on) unless --cluster says otherwise
    reader = reader_options(args)
    clustering = clustering_settings(args, default=pipeline.get("clustering"))
    if any(s["kind"] != "dataset" for s in pipeline.get("features", [])):
        refuse_event_level(args.inputs, reader, clustering)
    settings = {"command": "score", "model": os.path.basename(args.model), "estimator": name,
                "features": pipeline.get("features"), "device": args.device,
                "skip_bad_events": args.skip_bad_events, "chunk_size": args.chunk_size}
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
                       sources=[args.model], digest_datasets=datasets)
