"""``physkit report``: PNG plots and an index.html from a results file."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="plots + index.html from a results file",
                       description="PNG plots (observables by label, ROC and SIC curves, event "
                                   "displays with fitted shapes) and an index.html.")
    r.add_argument("results", metavar="RESULTS.h5")
    r.add_argument("-o", "--output", required=True, metavar="DIR")
    r.add_argument("--displays", type=int, default=4, help="event displays (default 4)")
    r.add_argument("--events", default=None, metavar="IN.h5",
                   help="event file for the displays (default: the recorded source_file)")
    r.set_defaults(func=run)


def run(args) -> int:
    from ..report import make_report

    index = make_report(args.results, args.output, n_displays=args.displays,
                        events=args.events)
    print(f"physkit: wrote {index}", file=sys.stderr)
    return 0
