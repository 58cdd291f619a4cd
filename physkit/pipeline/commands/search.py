"""``physkit finder search``: weakly supervised anomaly search (CWoLa-style) of data files
against reference files, every event scored out of fold (:class:`finder.AnomalySearch`)."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ..errors import CommandError
from ..inputs import add_input_options, clustering_settings, reader_options
from ..runner import add_run_options, check_output, event_range
from .fit import check_params, finder_actions, parse_params, training_matrix

EPILOG = """\
examples:
  physkit finder search sr_data.h5 --reference sr_reference.h5 --features 'dataset:features' -o scratch/search.h5
  physkit finder search sr_data.h5 --reference sr_reference.h5 --features image:16 --folds 10 -o scratch/search.h5
  physkit finder search data.h5 --reference ref.h5 --features 'efp:d<=4' --efficiency 0.05 --param n_estimators=4 -o scratch/search.h5

Events of the data files are class 1, those of the reference files class 0; a 'labels'
dataset, where the files have one, is kept as truth (never used for training) and gives the
report's ROC and SIC curves of signal vs background data events. A shape:RESULTS.h5 spec
takes a 'physkit shape' run over the data files then the reference files, in that order.
See the result with: physkit report scratch/search.h5 -o scratch/search_report/"""


def add_parser(sub) -> None:
    s = finder_actions(sub).add_parser(
        "search", help="data vs reference anomaly search, k-fold cross-fitted -> results file",
        description="Train FINDER to tell the data files' events from the reference files' "
                    "events\n(CWoLa-style) with k-fold cross-fitting: every event gets an "
                    "out-of-fold score\nfrom models that never saw it. Writes the scores, "
                    "each event's fold and the data\nevents selected at fixed data "
                    "efficiencies.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("inputs", nargs="+", metavar="DATA",
                   help="data event files (e.g. the signal region): physkit HDF5, "
                        "energyflow .npz, top-tagging or LHCO HDF5, ROOT")
    s.add_argument("--reference", nargs="+", required=True, metavar="REF",
                   help="background-only reference event files (same formats)")
    s.add_argument("--features", action="append", required=True, metavar="SPEC",
                   help="shape:RESULTS.h5 (of 'physkit shape' on the data then the reference "
                        "files, in order) | image:NPIX | 'efp:SELECT' (quoted) | "
                        "dataset:NAME; repeat to combine")
    s.add_argument("--folds", type=int, default=5, metavar="K",
                   help="cross-fitting folds: each event is scored by the models of the "
                        "other K-1 folds (default 5)")
    s.add_argument("--efficiency", action="append", type=float, metavar="EFF",
                   help="data efficiency to select the most data-like events at, in (0, 1) "
                        "(repeatable; default 0.1, 0.01, 0.001)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="finder.FINDER parameter of the fold models (JSON value), e.g. "
                        "n_estimators=4; repeat for several ('finder fit --list-params')")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed of the folds and the models (default 0)")
    s.add_argument("-o", "--output", required=True, metavar="SCORES.h5",
                   help="results file to write (refused if it exists, unless --overwrite)")
    add_input_options(s)
    add_run_options(s, resume=False)
    s.set_defaults(func=run)


def _search(args):
    """The unfitted :class:`finder.AnomalySearch` of the options, every option checked
    (by the estimators' own validation) before any work."""
    from finder import FINDER, AnomalySearch
    from finder.search import DEFAULT_EFFICIENCIES

    params = parse_params(args.param)
    check_params(params, FINDER)
    params.setdefault("random_state", args.seed)
    effs = tuple(args.efficiency or DEFAULT_EFFICIENCIES)
    try:
        model = FINDER(**params)
        model._check_params()
        search = AnomalySearch(model, n_folds=args.folds, efficiencies=effs,
                               random_state=args.seed)
        search._check_params()
    except (TypeError, ValueError) as exc:
        raise CommandError(f"finder search: {exc}") from None
    return search


def _fit_search(search, X, is_data):
    try:
        return search.fit(X, is_data)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"finder search: {exc}") from None


def _summary(search, is_data, truth) -> list[str]:
    lines = []
    d = is_data == 1
    for eff, sel in search.selected_.items():
        line = (f"  data efficiency {eff:g}: {int(sel.sum())} of {int(d.sum())} data events "
                f"(reference quantile >= {search.thresholds_[eff]:.6f})")
        if truth is not None and (truth[d] == 1).any() and (truth[d] == 0).any():
            es = (sel & (truth == 1)).sum() / max((d & (truth == 1)).sum(), 1)
            eb = (sel & (truth == 0)).sum() / max((d & (truth == 0)).sum(), 1)
            line += (f"; truth: eps_s {es:.3g}, eps_b {eb:.3g}"
                     + (f", SIC {es / np.sqrt(eb):.3g}" if eb > 0 else ""))
        lines.append(line)
    return lines


def run(args) -> int:
    from ...status import Status
    from ..results import NO_LABEL, ChunkStore

    data, ref = list(args.inputs), list(args.reference)
    inputs = data + ref
    check_output(args.output, inputs, overwrite=args.overwrite)
    search = _search(args)
    reader, clustering = reader_options(args), clustering_settings(args)
    start, stop = event_range(args)
    rows: dict = {}
    margs = argparse.Namespace(**{**vars(args), "label_from": "file"})
    specs, X, file_index, good, names = training_matrix(margs, inputs, reader, clustering,
                                                        rows)
    is_data = (file_index < len(data)).astype(np.int8)
    if not (good & (is_data == 1)).any() or not (good & (is_data == 0)).any():
        raise CommandError("finder search needs usable events in both the data and the "
                           "reference files")
    search = _fit_search(search, X[good], is_data[good])
    n = len(is_data)
    value, raw = np.full(n, np.nan), np.full(n, np.nan)
    fold = np.full(n, -1, dtype=np.int16)
    value[good], raw[good], fold[good] = search.oof_score_, search.oof_decision_, search.fold_
    status = np.where(good, Status.CONVERGED, np.where(rows["event_problem"] == 0,
                                                       Status.NONFINITE, Status.BAD_INPUT))
    arrays = {"source_file": np.asarray(inputs)[file_index],
              "source_index": rows["source_index"],
              "event_problem": rows["event_problem"].astype(np.int8),
              "score/value": value, "score/status": status.astype(np.int8),
              "search/decision": raw, "search/is_data": is_data, "search/fold": fold}
    if "jet_index" in rows:
        arrays["jet_index"] = rows["jet_index"]
    known = rows["known_labels"]
    truth = known if (known[is_data == 1] != NO_LABEL).all() else None
    if truth is not None:  # truth of the data events (reference rows may lack it)
        arrays["labels"] = truth
    for eff, sel in search.selected_.items():
        full = np.zeros(n, dtype=np.int8)
        full[good] = sel
        arrays[f"search/selected_{eff:g}"] = full
    settings = {"command": "search", "features": specs, "feature_names": names,
                "data_files": [os.path.basename(p) for p in data],
                "reference_files": [os.path.basename(p) for p in ref], "folds": args.folds,
                "clustering": clustering, "reader": reader,
                "events": [start, stop] if start or stop is not None else None,
                "efficiencies": list(search.selected_), "params": parse_params(args.param),
                "seed": args.seed,
                "thresholds": {f"{k:g}": v for k, v in search.thresholds_.items()}}
    meaning = ("out-of-fold reference quantile: the fraction of the same fold's reference "
               "events scoring lower (larger = more data-like)")
    settings = {k: v for k, v in settings.items() if v is not None and v != {}}
    store = ChunkStore(args.output, {"settings": settings})
    store.write_chunk("all", arrays)
    store.finalize(["all"], attrs={"settings": settings, "inputs": inputs},
                   group_attrs={"score": {"estimator": "finder.AnomalySearch",
                                          "value": meaning},
                                "search": {"decision": "out-of-fold decision value of the "
                                                       "fold model (larger = more data-like)",
                                           "is_data": "1 = data file, 0 = reference file",
                                           "fold": "cross-fitting fold (-1: not scored)"}})
    print(f"physkit: finder search of {int((is_data == 1).sum())} data vs "
          f"{int((is_data == 0).sum())} reference events ({int((~good).sum())} left out), "
          f"{args.folds} folds -> {args.output}", file=sys.stderr)
    for line in _summary(search, is_data[good], None if truth is None else truth[good]):
        print(line, file=sys.stderr)
    return 0
