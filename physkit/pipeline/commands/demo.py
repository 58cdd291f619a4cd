"""``physkit demo``: the bundled sample through SHAPER and FINDER (``make run``)."""
from __future__ import annotations

import argparse

EPILOG = """\
examples:
  physkit demo
  physkit demo --out out/quick --n-events 400 --no-progress

Writes DIR/train.h5 and DIR/test.h5 (even and odd jets of data/jets_sample.h5), then runs
the commands shape, finder fit, score and report on them, printing each command and the
test AUCs; the plots are in DIR/report/index.html."""


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="the bundled sample through SHAPER and FINDER",
                       description="Run the bundled data/jets_sample.h5 through SHAPER and "
                                   "FINDER, print the AUCs and write plots.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default="out/demo", metavar="DIR",
                   help="directory for the demo's files and report (default out/demo; an "
                        "earlier demo there is replaced)")
    d.add_argument("--n-events", type=int, default=None, metavar="N",
                   help="use only the first N events of the sample (default: all 2000)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run_demo

    return run_demo(args.out, args.entry_point, n_events=args.n_events, progress=not args.no_progress)
