"""``physkit shape``: SHAPER observables of every event into a results file."""
from __future__ import annotations

import functools

from ..errors import CommandError
from ..inputs import add_input_options, clustering_settings, reader_options, refuse_event_level
from ..results import SHAPE_VALUE
from ..runner import add_run_options, run_chunked



def add_parser(sub) -> None:
    s = sub.add_parser("shape", help="SHAPER observables of every event -> results file",
                       description="Fit SHAPER observables to every event (or, with "
                                   "--cluster, to every jet of every event); one row per input "
                                   "event (jet), in input order, into a results file.")
    s.add_argument("inputs", nargs="+", metavar="IN.h5",
                   help="event files (HDF5, .npz, ROOT)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    s.add_argument("--observable", action="append", metavar="NAME",
                   help="e.g. 3-subjettiness, 2-point-diskiness, 1-ellipsiness+pileup "
                        "(repeat for several)")
    s.add_argument("--R", type=float, default=0.8, help="jet radius in the EMD cost (default 0.8)")
    s.add_argument("--beta", type=float, default=1.0, help="angular exponent (default 1)")
    add_input_options(s)
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
    reader, clustering = reader_options(args), clustering_settings(args)
    refuse_event_level(args.inputs, reader, clustering)
    settings = {"command": "shape", "observables": obs, "R": args.R, "beta": args.beta,
                "device": args.device, "skip_bad_events": args.skip_bad_events,
                "chunk_size": args.chunk_size}
    if reader:
        settings["reader"] = reader
    if clustering:
        settings["clustering"] = clustering
    unit = functools.partial(shape_chunk, observables=tuple(obs), R=args.R, beta=args.beta,
                             device=args.device, skip_bad=args.skip_bad_events,
                             reader=reader, clustering=clustering)
    gattrs = {o: {"observable": o, "R": args.R, "beta": args.beta, "value": SHAPE_VALUE}
              for o in obs}
    return run_chunked(unit, args.inputs, args.output, settings, chunk_size=args.chunk_size,
                       scheduler=args.scheduler, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress, group_attrs=gattrs, reader=reader)
