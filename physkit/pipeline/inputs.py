"""What the commands read: options of the input readers (ROOT files), jet clustering of
event-level inputs, and the check that refuses whole events where jets are expected.

Options (shared by ``shape``, ``finder fit`` and ``score``):

``--tree NAME``, ``--particles PREFIX|pt=B,eta=B,phi=B``, ``--label-branch NAME``, ``--level event|jet``
    the ROOT reader's options (:mod:`physkit.io.root`); given for non-ROOT inputs they are
    an error.
``--cluster ALG:R`` (``antikt:1.0``, ``kt:0.4``, ``cambridge:0.8``), ``--jets leading:N | all``, ``--jet-pt-min GEV``, ``--jet-eta-max ETA``
    cluster every event into jets (:func:`physkit.jets.cluster`) before any jet feature:
    one results row per jet, with ``source_index`` (the event) and ``jet_index`` (0 = the
    hardest selected jet of that event).

Event-level inputs (LHCO R&D files, ROOT event trees) are refused without ``--cluster``:
a whole event is never fitted as one jet.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..errors import EventFileError
from .errors import CommandError

__all__ = ["add_input_options", "reader_options", "clustering_settings", "refuse_event_level"]


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The input options (module docstring) of a command that reads events."""
    g = p.add_argument_group("input (ROOT files, event-level files)")
    g.add_argument("--tree", default=None, metavar="NAME",
                   help="ROOT files: the TTree (default: the one with a particle collection)")
    g.add_argument("--particles", default=None, metavar="SPEC",
                   help="ROOT files: the particle branches, a prefix (PFCands_) or "
                        "pt=BRANCH,eta=BRANCH,phi=BRANCH[,mass=BRANCH] / px=..,py=..,pz=..,e=..")
    g.add_argument("--label-branch", default=None, metavar="NAME",
                   help="ROOT files: the branch holding labels (default: label(s), "
                        "is_signal(_new) when present)")
    g.add_argument("--level", choices=("event", "jet"), default=None,
                   help="ROOT files: entries are whole events (default) or jets")
    g.add_argument("--cluster", default=None, metavar="ALG:R",
                   help="cluster each event into jets first: antikt:1.0, kt:0.4, cambridge:0.8 "
                        "(required for event-level inputs such as LHCO R&D and ROOT events)")
    g.add_argument("--jets", default=None, metavar="leading:N|all",
                   help="with --cluster: the leading N jets of each event (default all)")
    g.add_argument("--jet-pt-min", type=float, default=0.0, metavar="GEV",
                   help="with --cluster: smallest jet pT kept (default 0)")
    g.add_argument("--jet-eta-max", type=float, default=None, metavar="ETA",
                   help="with --cluster: largest jet |eta| kept (default: no cut)")


def reader_options(args) -> dict[str, Any]:
    """The reader options given on the command line (only those set)."""
    out = {"tree": getattr(args, "tree", None), "particles": getattr(args, "particles", None),
           "labels": getattr(args, "label_branch", None), "level": getattr(args, "level", None)}
    return {k: v for k, v in out.items() if v is not None}


def clustering_settings(args, default: dict | None = None) -> dict | None:
    """``--cluster``/``--jets``/cuts as :meth:`physkit.jets.Clustering.to_dict` (None
    without ``--cluster``: then ``default``); CommandError for a bad spec."""
    from ..jets import Clustering

    text = getattr(args, "cluster", None)
    if text is None:
        if getattr(args, "jets", None) is not None:
            raise CommandError("--jets needs --cluster (e.g. --cluster antikt:1.0 "
                               "--jets leading:2)")
        return default
    try:
        return Clustering.from_text(text, args.jets, pt_min=args.jet_pt_min,
                                    eta_max=args.jet_eta_max).to_dict()
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def refuse_event_level(inputs: Sequence[str], reader: dict, clustering: dict | None) -> None:
    """CommandError for the first event-level input when nothing clusters it.

    Unreadable inputs pass here (the run reports them per file)."""
    if clustering is not None:
        return
    from ..io import open_events

    for path in inputs:
        try:
            with open_events(path, **reader) as r:
                event_level, fmt = r.event_level, r.format_name
        except (EventFileError, OSError):
            continue
        if event_level:
            hint = (" (or --level jet if the entries of this ROOT tree are jets)"
                    if fmt == "root" else "")
            raise CommandError(
                f"{path}: rows are whole events ({fmt!r} layout), not jets: a jet observable "
                f"of a whole event is meaningless. Cluster them: --cluster antikt:1.0 "
                f"--jets leading:2{hint}")
