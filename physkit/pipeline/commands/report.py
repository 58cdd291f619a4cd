"""``physkit report``: PNG plots and an index.html from a results file."""
from __future__ import annotations

import os
import sys

from ..errors import CommandError
from ..runner import writable_directory


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="plots + index.html from a results file",
                       description="PNG plots (observables by label, ROC and SIC curves, event "
                                   "displays with fitted shapes) and an index.html.")
    r.add_argument("results", metavar="RESULTS.h5")
    r.add_argument("-o", "--output", required=True, metavar="DIR")
    r.add_argument("--displays", type=int, default=4, help="event displays (default 4)")
    r.add_argument("--events", default=None, metavar="IN.h5",
                   help="event file for the displays (default: the recorded source_file)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace a report already in DIR (without it a DIR holding an "
                        "index.html is refused)")
    r.set_defaults(func=run)


def check_output_dir(path: str, *, overwrite: bool) -> None:
    """Refuse a report directory that is a file, lies under a missing or read-only
    directory, or already holds a report (``index.html``) unless ``overwrite``."""
    d = os.path.abspath(path)
    if os.path.exists(d) and not os.path.isdir(d):
        raise CommandError(f"{path}: exists and is not a directory (-o takes a directory)")
    parent = d
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    writable_directory(parent, path)
    if os.path.exists(os.path.join(d, "index.html")) and not overwrite:
        raise CommandError(f"{path}: already holds a report (index.html); pass --overwrite "
                           f"to replace it")


def run(args) -> int:
    from ..report import make_report
    from ..results import result_groups

    result_groups(args.results)  # a missing or malformed results file fails before writing
    check_output_dir(args.output, overwrite=args.overwrite)
    try:
        index = make_report(args.results, args.output, n_displays=args.displays,
                            events=args.events)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CommandError(f"{args.output}: cannot write the report "
                           f"({exc.strerror or exc})") from None
    print(f"physkit: wrote {index}", file=sys.stderr)
    return 0
