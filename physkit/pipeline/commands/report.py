"""``physkit report``: PNG plots and an index.html from a results file."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import CommandError
from ..runner import writable_directory


EPILOG = """\
examples:
  physkit report test_scores.h5 -o report/
  physkit report shapes.h5 -o report/ --label-names 0=QCD,1=top --displays 6
  physkit report shapes.h5 -o report/ --events moved/jets.h5 --overwrite

Columns: every group of the results file (SHAPER observables, score) and the ratios
tau_{N+1}/tau_N of the N-subjettiness groups present (tau2/tau1, tau3/tau2, ...). With
labels 0 and 1 the page has ROC and SIC curves and an AUC table (label 1 = signal). Classes
are named by --label-names, else by the files' labels_meaning attribute. Open
DIR/index.html in a browser."""


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="plots + index.html from a results file",
                       description="PNG plots (observables by class, ROC and SIC curves, event "
                                   "displays with\nfitted shapes) and an index.html.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("results", metavar="RESULTS.h5",
                   help="results file of physkit shape or score (or shaper's write_results)")
    r.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="directory for the PNGs and index.html (created if missing)")
    r.add_argument("--displays", type=int, default=4, metavar="N",
                   help="number of event displays (default 4; 0 for none)")
    r.add_argument("--events", default=None, metavar="EVENTS",
                   help="event file for the displays (default: the recorded source_file)")
    r.add_argument("--label-names", default=None, metavar="LABEL=NAME,...",
                   help="class names, e.g. 0=QCD,1=top (default: the files' "
                        "labels_meaning attribute, else 'label 0', 'label 1')")
    r.add_argument("--style", default="plain", metavar="STYLE",
                   help="plain (default) or an mplhep style (ATLAS, CMS, LHCb2, ALICE, ROOT; "
                        "needs mplhep installed)")
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
    from ..report import check_style, make_report, parse_label_names
    from ..results import result_groups

    try:
        names = None if args.label_names is None else parse_label_names(args.label_names)
        check_style(args.style)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.displays < 0:
        raise CommandError(f"--displays {args.displays}: expected a number >= 0")
    result_groups(args.results)  # a missing or malformed results file fails before writing
    check_output_dir(args.output, overwrite=args.overwrite)
    try:
        index = make_report(args.results, args.output, n_displays=args.displays,
                            events=args.events, label_names=names, style=args.style)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CommandError(f"{args.output}: cannot write the report "
                           f"({exc.strerror or exc})") from None
    print(f"physkit: wrote {index}", file=sys.stderr)
    return 0
