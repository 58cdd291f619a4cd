"""``physkit shape``: SHAPER observables of every event into a results file."""
from __future__ import annotations

import functools

from ..errors import CommandError
from ..runner import add_run_options, run_chunked

SHAPE_VALUE = "exact EMD between the jet and its fitted shape"


def add_parser(sub) -> None:
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
    add_run_options(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from shaper.observables import from_name

    from ..features import shape_chunk

    obs = list(dict.fromkeys(args.observable or []))
    if not obs:
        raise CommandError("give at least one --observable (e.g. --observable 3-subjettiness)")
    for o in obs:
        try:
            from_name(o)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    settings = {"command": "shape", "observables": obs, "R": args.R, "beta": args.beta,
                "device": args.device, "skip_bad_events": args.skip_bad_events,
                "chunk_size": args.chunk_size}
    unit = functools.partial(shape_chunk, observables=tuple(obs), R=args.R, beta=args.beta,
                             device=args.device, skip_bad=args.skip_bad_events)
    gattrs = {o: {"observable": o, "R": args.R, "beta": args.beta, "value": SHAPE_VALUE}
              for o in obs}
    return run_chunked(unit, args.inputs, args.output, settings, chunk_size=args.chunk_size,
                       scheduler=args.scheduler, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress, group_attrs=gattrs)
