"""``physkit finder search``: weakly supervised anomaly search (CWoLa-style) of data files
against reference files, every event scored out of fold (:class:`finder.AnomalySearch`)."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ..errors import CommandError
from ..runner import add_run_options, check_output
from .fit import finder_actions, parse_params, training_matrix


def add_parser(sub) -> None:
    s = finder_actions(sub).add_parser(
        "search", help="data vs reference anomaly search, k-fold cross-fitted -> results file",
        description="Train FINDER (or --estimator) to tell the data files' events from the "
                    "reference files' events with k-fold cross-fitting: every event gets an "
                    "out-of-fold score from a model that never saw it. Writes the scores, "
                    "each event's fold and the events selected at fixed data efficiencies.")
    s.add_argument("inputs", nargs="+", metavar="DATA.h5", help="data event files")
    s.add_argument("--reference", nargs="+", required=True, metavar="REF.h5",
                   help="background-only reference event files")
    s.add_argument("--features", action="append", required=True, metavar="SPEC",
                   help="shape:RESULTS.h5 (of 'physkit shape' on the data then the reference "
                        "files, in order) | image:NPIX | efp:SELECT | dataset:NAME; repeat "
                        "to combine")
    s.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    s.add_argument("--efficiency", action="append", type=float, metavar="EFF",
                   help="data efficiency to select at (repeatable; default 0.1, 0.01, 0.001)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="FINDER parameter of the fold models, e.g. n_estimators=4 (JSON)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("-o", "--output", required=True, metavar="SCORES.h5")
    add_run_options(s, resume=False)
    s.set_defaults(func=run)


def _fit_search(X, is_data, args):
    from finder import FINDER, AnomalySearch
    from finder.search import DEFAULT_EFFICIENCIES

    params = parse_params(args.param)
    params.setdefault("random_state", args.seed)
    effs = tuple(args.efficiency or DEFAULT_EFFICIENCIES)
    try:
        search = AnomalySearch(FINDER(**params), n_folds=args.folds, efficiencies=effs,
                               random_state=args.seed)
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
    from ...io import count_events
    from ...status import Status
    from ..results import ChunkStore

    check_output(args.output)
    data, ref = list(args.inputs), list(args.reference)
    inputs = data + ref
    rows: dict = {}
    margs = argparse.Namespace(**{**vars(args), "label_from": "file"})
    _, X, file_index, good, names = training_matrix(margs, inputs, rows)
    is_data = (file_index < len(data)).astype(np.int8)
    if not (good & (is_data == 1)).any() or not (good & (is_data == 0)).any():
        raise CommandError("finder search needs usable events in both the data and the "
                           "reference files")
    search = _fit_search(X[good], is_data[good], args)
    n = len(is_data)
    value, raw = np.full(n, np.nan), np.full(n, np.nan)
    fold = np.full(n, -1, dtype=np.int16)
    value[good], raw[good], fold[good] = search.oof_score_, search.oof_decision_, search.fold_
    status = np.where(good, Status.CONVERGED, np.where(rows["event_problem"] == 0,
                                                       Status.NONFINITE, Status.BAD_INPUT))
    counts = [count_events(p) for p in inputs]
    arrays = {"source_file": np.concatenate([np.full(c, p) for p, c in zip(inputs, counts)]),
              "source_index": np.concatenate([np.arange(c, dtype=np.int64) for c in counts]),
              "event_problem": rows["event_problem"].astype(np.int8),
              "score/value": value, "score/status": status.astype(np.int8),
              "search/decision": raw, "search/is_data": is_data, "search/fold": fold}
    truth = rows.get("labels")
    if truth is not None:
        arrays["labels"] = truth
    for eff, sel in search.selected_.items():
        full = np.zeros(n, dtype=np.int8)
        full[good] = sel
        arrays[f"search/selected_{eff:g}"] = full
    settings = {"command": "search", "features": args.features, "feature_names": names,
                "data_files": [os.path.basename(p) for p in data],
                "reference_files": [os.path.basename(p) for p in ref], "folds": args.folds,
                "efficiencies": list(search.selected_), "params": parse_params(args.param),
                "seed": args.seed,
                "thresholds": {f"{k:g}": v for k, v in search.thresholds_.items()}}
    meaning = ("out-of-fold reference quantile: the fraction of the same fold's reference "
               "events scoring lower (larger = more data-like)")
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
