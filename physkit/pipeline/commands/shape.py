"""``physkit shape``: SHAPER observables of every event into a results file."""
from __future__ import annotations

import argparse
import functools

from ..errors import CommandError
from ..inputs import add_input_options, clustering_settings, reader_options, refuse_event_level
from ..results import SHAPE_VALUE
from ..runner import add_run_options, event_range, run_chunked


EPILOG = """\
examples:
  physkit shape --list-observables
  physkit shape jets.h5 -o shapes.h5 --observable 2-subjettiness --observable 3-subjettiness
  physkit shape jets.h5 -o try.h5 --observable 1-diskiness+pileup --stop 200
  physkit shape big.h5 -o shapes.h5 --observable 3-subjettiness --chunk-size 5000 --scheduler local:4
  physkit shape events.root -o jets.h5 --observable 2-subjettiness --cluster antikt:0.8 --jets leading:2

The results file has one group per observable (value, fitted parameters, status) and one
row per input event (jet), in input order; 'physkit report' plots it."""


class _ListObservables(argparse.Action):
    """``--list-observables``: print the catalogue and exit (no other argument needed)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..observable_catalog import catalog_text

        print(catalog_text())
        parser.exit()


def add_parser(sub) -> None:
    s = sub.add_parser("shape", help="SHAPER observables of every event -> results file",
                       description="Fit SHAPER observables to every event (or, with "
                                   "--cluster, to every jet of every event);\none row per "
                                   "input event (jet), in input order, into a results file.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("inputs", nargs="+", metavar="EVENTS",
                   help="event files: physkit HDF5, energyflow .npz, top-tagging or LHCO "
                        "HDF5, ROOT")
    s.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                   help="results file to write (refused if it exists, unless --overwrite)")
    s.add_argument("--observable", action="append", metavar="NAME",
                   help="observable to fit, e.g. 3-subjettiness, 2-point-diskiness, "
                        "1-ellipsiness+pileup; repeat for several (--list-observables "
                        "shows them all)")
    s.add_argument("--list-observables", action=_ListObservables,
                   help="list the observable names, their parameters and what each "
                        "measures, then exit")
    s.add_argument("--R", type=float, default=0.8,
                   help="jet radius R in the EMD cost (theta/R)^beta (default 0.8)")
    s.add_argument("--beta", type=float, default=1.0,
                   help="angular exponent beta in the EMD cost (default 1)")
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
            raise CommandError(f"{exc} (physkit shape --list-observables lists the names)"
                               ) from None
    reader, clustering = reader_options(args), clustering_settings(args)
    start, stop = event_range(args)
    refuse_event_level(args.inputs, reader, clustering)
    settings = {"command": "shape", "observables": obs, "R": args.R, "beta": args.beta,
                "device": args.device, "skip_bad_events": args.skip_bad_events,
                "chunk_size": args.chunk_size}
    if start or stop is not None:
        settings["events"] = [start, stop]
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
                       progress=not args.no_progress, group_attrs=gattrs, reader=reader,
                       start=start, stop=stop)
