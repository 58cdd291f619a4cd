"""``physkit info``: describe event, results and model files and interrupted runs."""
from __future__ import annotations

import json
import os

from ...errors import EventFileError
from ..errors import describe_exception, print_error


def add_parser(sub) -> None:
    i = sub.add_parser("info", help="describe event, results or model files",
                       description="Describe event files, results files, model files and "
                                   "partial (interrupted) runs.")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.set_defaults(func=run)


def _describe_partial(path: str) -> str:
    from ..results import partial_progress

    n, man = partial_progress(path)
    total = sum(-(-c // man["chunk_size"]) for c in man["counts"])
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
