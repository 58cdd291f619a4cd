"""``physkit demo``: the bundled sample through SHAPER and FINDER (``make run``)."""
from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="the bundled sample through SHAPER and FINDER",
                       description="Run the bundled data/jets_sample.h5 through SHAPER and "
                                   "FINDER, print the AUCs and write plots.")
    d.add_argument("--out", default="out/demo", metavar="DIR")
    d.add_argument("--n-events", type=int, default=None,
                   help="use only the first N events of the sample (default: all)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run_demo

    return run_demo(args.out, args.entry_point, n_events=args.n_events, progress=not args.no_progress)
