"""``physkit info``: describe event, results and model files and interrupted runs."""
from __future__ import annotations

import argparse
import json
import os

from ...errors import EventFileError
from ..errors import describe_exception, print_error


EPILOG = """\
examples:
  physkit info jets.h5
  physkit info shapes.h5 model.h5
  physkit info scores.h5.partial

Event files: format, datasets, events, particles per event, labels, attributes. Results
files: rows, inputs, bad events, each group's values and status, the run's settings. Model
files: the estimator, the values its fit chose (n_components_, n_residual_, head), features
and training data. Partial runs: chunks done (continue with --resume)."""


def add_parser(sub) -> None:
    i = sub.add_parser("info", help="describe event, results or model files",
                       description="Describe event files, results files, model files and "
                                   "partial (interrupted) runs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("files", nargs="+", metavar="FILE",
                   help="event file (HDF5, .npz, ROOT), results file, model file, or "
                        "OUT.h5.partial of an interrupted run")
    i.set_defaults(func=run)


def _describe_partial(path: str) -> str:
    from ..results import partial_progress

    from ...parallel import plan_chunks

    n, man = partial_progress(path)
    start, stop = man.get("event_range") or (0, None)
    total = len(plan_chunks([""] * len(man["counts"]), man["chunk_size"], man["counts"],
                            start=start, stop=stop))
    return (f"partial run: {path}\n{n} of {total} chunks done (chunk size "
            f"{man['chunk_size']}); continue it with --resume\n"
            f"settings: {json.dumps(man['settings'])}")


def describe_any(path: str) -> str:
    """The description of whatever ``path`` is (partial run, model, results or event file)."""
    from ..info import describe
    from ..modelfile import describe_model, is_model_file
    from ..results import describe_results, is_results_file

    if path.endswith(".partial") and os.path.isdir(path) or (
            not os.path.exists(path) and os.path.isdir(path + ".partial")):
        return _describe_partial(path)
    if is_model_file(path):
        return describe_model(path)
    if is_results_file(path):
        return describe_results(path)
    return describe(path)


def run(args) -> int:
    status = 0
    for i, path in enumerate(args.files):
        if i:
            print()
        try:
            print(describe_any(path))
        except BrokenPipeError:
            raise
        except (EventFileError, ValueError, OSError) as exc:
            print_error(describe_exception(exc))
            status = 1
    return status
