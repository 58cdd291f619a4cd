"""``physkit report``: PNG plots of a results file and an index.html that shows them.

Plots: a histogram of every column by class; ROC and SIC curves (signal efficiency over
sqrt(background efficiency)) of every column when the rows carry labels 0 and 1; event
displays of a few jets with their fitted shapes (:func:`shaper.plot_event`, one colour per
observable, the values in the title). Columns are the results' groups plus the ratios
tau_{N+1}/tau_N of the N-subjettiness groups present (:func:`tau_ratios`). Classes are
named by ``--label-names``, else by the ``labels_meaning`` attribute of the results or of
their event files (``"1 = top, 0 = QCD"``). Rendering uses matplotlib's Agg backend (no
display needed); ``style`` may name an mplhep style when mplhep is installed.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Mapping, Sequence

import numpy as np

__all__ = ["make_report", "check_events_file", "discriminant_auc", "roc_sic", "tau_ratios",
           "parse_label_names", "class_names", "check_style"]


def parse_label_names(text: str) -> dict[int, str]:
    """``"1 = top, 0 = QCD"`` (or ``"0=QCD,1=top"``, ``"1: top; 0: QCD"``) ->
    ``{1: "top", 0: "QCD"}``; ValueError for text that is not ``LABEL=NAME`` pairs."""
    out = {}
    for part in re.split(r"[,;]", str(text)):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*([+-]?\d+)\s*[=:]\s*(\S.*?)\s*", part)
        if m is None:
            raise ValueError(f"bad label names {text!r}: expected LABEL=NAME pairs, e.g. "
                             f"'0=QCD,1=top'")
        out[int(m.group(1))] = m.group(2)
    if not out:
        raise ValueError(f"bad label names {text!r}: expected LABEL=NAME pairs, e.g. "
                         f"'0=QCD,1=top'")
    return out


def _meaning(text) -> dict[int, str]:
    try:
        return parse_label_names(text) if isinstance(text, str) else {}
    except ValueError:  # free text in a file: not names we can use
        return {}


def class_names(results_path: str, file_attrs: Mapping, data: Mapping,
                label_names: Mapping[int, str] | None = None) -> dict[int, str]:
    """Label -> class name: ``label_names`` when given, else the ``labels_meaning``
    attribute of the results file, else that of its event files when they agree; ``{}``
    when nothing names the classes."""
    if label_names:
        return dict(label_names)
    own = _meaning(file_attrs.get("labels_meaning"))
    if own:
        return own
    import h5py

    found = []
    for src in np.unique(data["source_file"]) if "source_file" in data else ():
        path = _resolve(str(src), results_path)
        if path is None:
            continue
        try:
            with h5py.File(path, "r") as f:
                v = f.attrs.get("labels_meaning")
        except (OSError, ValueError):
            continue
        found.append(_meaning(v.decode(errors="replace") if isinstance(v, bytes) else v))
    found = [f for f in found if f]
    return found[0] if found and all(f == found[0] for f in found) else {}


def _class(names: Mapping[int, str], label) -> str:
    from .results import NO_LABEL

    label = int(label)
    return names.get(label) or ("no label" if label == NO_LABEL else f"label {label}")


def check_style(style: str | None) -> None:
    """ValueError unless ``style`` is None, ``"plain"`` or an mplhep style name (ATLAS,
    CMS, LHCb2, ALICE, ROOT, ...) with mplhep installed."""
    if style in (None, "plain"):
        return
    try:
        import mplhep
    except ImportError:
        raise ValueError(f"--style {style}: mplhep is not installed (pip install mplhep), "
                         f"or use --style plain") from None
    if not isinstance(getattr(mplhep.style, str(style), None), (dict, list)):
        raise ValueError(f"--style {style}: not an mplhep style (e.g. ATLAS, CMS, LHCb2, "
                         f"ALICE, ROOT)")


def _style(style: str | None):
    """A matplotlib style context: plain (matplotlib's defaults) or an mplhep style."""
    import matplotlib.pyplot as plt

    if style in (None, "plain"):
        return contextlib.nullcontext()
    import mplhep

    return plt.style.context(getattr(mplhep.style, style))


def discriminant_auc(values: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """ROC AUC of ``values`` for labels 1 vs 0, oriented to be >= 0.5.

    Returns ``(auc, sign)``: ``sign = -1`` when lower values are signal-like.
    NaN rows are ignored.
    """
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(values)
    auc = float(roc_auc_score(labels[ok], values[ok]))
    return (auc, 1) if auc >= 0.5 else (1.0 - auc, -1)


def roc_sic(values: np.ndarray, labels: np.ndarray, sign: int = 1):
    """(background efficiency, signal efficiency, SIC = eps_s / sqrt(eps_b)) arrays."""
    from sklearn.metrics import roc_curve

    ok = np.isfinite(values)
    fpr, tpr, _ = roc_curve(labels[ok], sign * values[ok])
    keep = fpr > 0
    return fpr[keep], tpr[keep], tpr[keep] / np.sqrt(fpr[keep])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _resolve(src: str, results_path: str) -> str | None:
    for cand in (src, os.path.join(os.path.dirname(os.path.abspath(results_path)), src),
                 os.path.join(os.path.dirname(os.path.abspath(results_path)),
                              os.path.basename(src))):
        if os.path.exists(cand):
            return cand
    return None


def check_events_file(events: str, data: dict, results_path: str,
                      reader: dict | None = None) -> None:
    """Refuse an ``--events`` file that does not hold the events of the results' rows: the
    rows must come from one source file, the event file must hold exactly those events
    (every event once, in order; for jets clustered from events, each row's event), and
    labels recorded in both must agree. ``reader``: the run's reader options."""
    from ..io import count_events, read_labels
    from .errors import CommandError
    from .results import NO_LABEL

    sources = np.unique(data["source_file"]) if "source_file" in data else np.zeros(0)
    if len(sources) > 1:
        raise CommandError(f"{events}: --events stands for one event file, but the rows of "
                           f"{results_path} come from {len(sources)} files "
                           f"({', '.join(map(str, sources[:3]))}); leave --events out")
    rows = np.asarray(data.get("source_index", np.zeros(0, np.int64)))
    n = count_events(events, **(reader or {}))
    if "jet_index" in data:  # jets of events: rows name events in order, some more than once
        fits = rows.size == 0 or (rows.min() >= 0 and rows.max() < n
                                  and bool((np.diff(rows) >= 0).all()))
    else:
        fits = rows.size == n and np.array_equal(rows, np.arange(n))
    if not fits:
        raise CommandError(f"{events}: holds {n} events, but {results_path} has {rows.size} "
                           f"rows (events of {sources[0] if len(sources) else 'no file'}); "
                           f"not the events of these results")
    labels = read_labels(events, **(reader or {}))
    if labels is not None and "labels" in data and rows.size:
        labels = labels[rows]
        known = data["labels"] != NO_LABEL
        bad = np.flatnonzero(known & (labels != data["labels"]))
        if bad.size:
            raise CommandError(f"{events}: event {int(rows[bad[0]])}: label "
                               f"{int(labels[bad[0]])}, but {results_path} records "
                               f"{int(data['labels'][bad[0]])}; not the events of these results")


def _displays(data: dict, groups: Sequence[str], settings: dict, results_path: str,
              out_dir: str, n: int, events: str | None, names: Mapping[int, str]) -> list[str]:
    """Event displays of up to ``n`` fitted rows (status CONVERGED or MAX_STEPS: both carry an
    exact value), alternating classes; PNG names. Titles: file, event, class, then each
    observable's value."""
    import matplotlib.pyplot as plt
    import shaper

    shape_groups = [g for g in groups if g != "score" and  # a detector's pvalue: no shape
                    any(k.startswith(g + "/") and not k.endswith(("/value", "/status"))
                        for k in data)]
    if not shape_groups or n <= 0:
        return []
    ok = np.ones(len(data["source_index"]), bool)
    for g in shape_groups:
        ok &= data[f"{g}/status"] <= 1
    rows = np.flatnonzero(ok)
    if "labels" in data and rows.size:  # alternate the classes
        by = [rows[data["labels"][rows] == v] for v in np.unique(data["labels"][rows])]
        rows = np.array([r for grp in zip(*by) for r in grp] or rows)
    out = []
    R = float(settings.get("R", 0.8)) if isinstance(settings, dict) else 0.8
    for i in rows[:n]:
        src = events or (_resolve(str(data["source_file"][i]), results_path)
                         if "source_file" in data else None)
        jet = None if src is None else _row_jet(src, data, i, settings)
        if jet is None:
            continue
        res = shaper.Results({g: shaper.ObservableResult(
            data[f"{g}/value"][i:i + 1],
            {k.split("/", 1)[1]: data[k][i:i + 1] for k in data
             if k.startswith(g + "/") and not k.endswith(("/value", "/status"))},
            data[f"{g}/status"][i:i + 1]) for g in shape_groups}, {"R": R})
        fig, ax = plt.subplots(figsize=(5.5, 6.2))
        shaper.plot_event(jet, res, 0, ax=ax)
        head = f"{os.path.basename(str(src))} event {int(data['source_index'][i])}"
        if "jet_index" in data:
            head += f", jet {int(data['jet_index'][i])}"
        if "labels" in data:
            head += f", {_class(names, data['labels'][i])}"
        ax.set_title(f"{head}\n{ax.get_title()}", fontsize=9)
        name = f"event_{len(out)}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=90, bbox_inches="tight")
        plt.close(fig)
        out.append(name)
    return out


def _row_jet(src: str, data: dict, i: int, settings) -> np.ndarray | None:
    """Constituents ``(1, M, 3)`` of row ``i``: its event, or with a clustered run (``jet_index``
    and the run's ``clustering``) the event's jet, clustered again as the run did."""
    from ..io import read_constituents

    settings = settings if isinstance(settings, dict) else {}
    event = int(data["source_index"][i])
    arr = read_constituents(src, event, event + 1, **settings.get("reader", {}))
    if len(arr) != 1:  # the recorded source file no longer holds this event
        return None
    if "jet_index" not in data or not settings.get("clustering"):
        return arr
    from ..jets import Clustering, cluster

    j = int(data["jet_index"][i])
    jets = cluster(np.asarray(arr, dtype=np.float64), Clustering(**settings["clustering"]))
    return jets.events.to_padded()[j:j + 1] if 0 <= j < len(jets.jet_index) else None


def tau_ratios(data: Mapping[str, np.ndarray], groups: Sequence[str],
               group_settings: Mapping[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """The ratios ``tau_{N+1}/tau_N`` (``"tau3/tau2"``, ...) of every pair of
    N-subjettiness groups present (pyshaper's spellings too; no pileup), ``(N,)`` each, NaN
    where either fit has no exact value (status > 1) or tau_N is 0. ``group_settings``:
    group -> (R, beta); groups fitted with different settings are not paired."""
    from shaper.family import Family
    from shaper.observables import canonical_name

    taus = {}
    for g in groups:
        fam = Family.from_name(canonical_name(g))
        if fam is not None and fam.kind == "subjettiness" and not fam.pileup:
            taus.setdefault(fam.n, g)
    out = {}
    for n in sorted(taus):
        if n + 1 not in taus:
            continue
        hi, lo = taus[n + 1], taus[n]
        if group_settings and group_settings.get(hi) != group_settings.get(lo):
            continue
        num, den = data[f"{hi}/value"], data[f"{lo}/value"]
        ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
        for g in (hi, lo):
            if f"{g}/status" in data:
                ok &= data[f"{g}/status"] <= 1
        ratio = np.full(num.shape, np.nan)
        ratio[ok] = num[ok] / den[ok]
        out[f"tau{n + 1}/tau{n}"] = ratio
    return out


def _group_settings(path: str, groups: Sequence[str]) -> dict[str, tuple]:
    """group -> (R, beta) of the SHAPER groups (their recorded attributes)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for g in groups:
            a = f[g].attrs if g in f else {}
            if "R" in a and "beta" in a:
                out[g] = (float(a["R"]), float(a["beta"]))
    return out


def _histogram(v: np.ndarray, ok: np.ndarray, labels, names, column: str, path: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    if ok.any():
        bins = np.histogram_bin_edges(v[ok], bins=40)
        if labels is not None:
            for lab in np.unique(labels[ok]):
                sel = ok & (labels == lab)
                ax.hist(v[sel], bins=bins, histtype="step", density=True, lw=1.5,
                        label=f"{_class(names, lab)} ({int(sel.sum())})")
            ax.legend(fontsize=8)
        else:
            ax.hist(v[ok], bins=bins, histtype="step", lw=1.5)
    ax.set_xlabel(column)
    ax.set_ylabel("density")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _roc_sic(columns: Mapping[str, np.ndarray], aucs, labels, names, out_dir: str) -> None:
    """``roc.png`` (background rejection vs signal efficiency) and ``sic.png``."""
    import matplotlib.pyplot as plt

    sig, bkg = _class(names, 1), _class(names, 0)
    fr, fs = plt.subplots(figsize=(5, 4)), plt.subplots(figsize=(5, 4))
    known = np.isin(labels, (0, 1))
    for g, auc, sign in aucs:
        fpr, tpr, sic = roc_sic(columns[g][known], labels[known], sign)
        lab = f"{g}{' (low = signal)' if sign < 0 else ''}, AUC {auc:.3f}"
        fr[1].plot(tpr, 1.0 / fpr, label=lab)
        fs[1].plot(tpr, sic, label=lab)
    fr[1].set_yscale("log")
    fr[1].set_ylabel(f"background rejection 1/$\\epsilon_b$ ({bkg})")
    fs[1].set_ylabel("SIC = $\\epsilon_s / \\sqrt{\\epsilon_b}$")
    for (f, a), name in ((fr, "roc.png"), (fs, "sic.png")):
        a.set_xlabel(f"signal efficiency $\\epsilon_s$ ({sig})")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
        f.savefig(os.path.join(out_dir, name), dpi=90, bbox_inches="tight")
        plt.close(f)


def make_report(results_path, out_dir, *, n_displays: int = 4, events: str | None = None,
                label_names: Mapping[int, str] | None = None, style: str | None = None
                ) -> str:
    """Write the plots of results file ``results_path`` and ``index.html`` into ``out_dir``.

    Returns the path of ``index.html``. ``events`` overrides the event file used for the
    displays (default: each row's recorded ``source_file``); it must hold the events of
    the rows (:func:`check_events_file`). ``label_names``: label -> class name (default:
    the files' ``labels_meaning``); ``style``: ``"plain"`` (default) or an mplhep style.
    """
    import matplotlib

    matplotlib.use("Agg")
    from .report_page import render_page, settings_rows
    from .results import read_results, result_groups, results_settings

    results_path = os.fspath(results_path)
    check_style(style)
    groups = result_groups(results_path)
    attrs = results_settings(results_path)
    settings = attrs.get("settings", {})
    data = read_results(results_path)
    if events is not None:
        check_events_file(events, data, results_path,
                          settings.get("reader") if isinstance(settings, dict) else None)
    os.makedirs(out_dir, exist_ok=True)
    labels = data.get("labels")
    names = class_names(results_path, attrs, data, label_names)
    shaper_settings = _group_settings(results_path, groups)
    columns = {g: data[f"{g}/value"] for g in groups}
    columns.update(tau_ratios(data, groups, shaper_settings))
    two = labels is not None and {0, 1} <= set(np.unique(labels).tolist())
    figs, aucs = [], []
    with _style(style):
        for g, v in columns.items():
            ok = np.isfinite(v)
            if f"{g}/status" in data:
                ok &= data[f"{g}/status"] != 3
            name = f"hist_{_safe(g)}.png"
            _histogram(v, ok, labels, names, g, os.path.join(out_dir, name))
            figs.append((name, f"{g}: distribution by class"))
            sel = ok & np.isin(labels, (0, 1)) if two else None
            if two and len(np.unique(labels[sel])) == 2:
                aucs.append((g, *discriminant_auc(v[sel], labels[sel])))
        if aucs:
            _roc_sic(columns, aucs, labels, names, out_dir)
            figs += [("roc.png", "ROC curves"), ("sic.png", "significance improvement")]
        for name in _displays(data, groups, settings, results_path, out_dir, n_displays,
                              events, names):
            figs.append((name, "event display with fitted shapes"))
    rows = settings_rows(settings, attrs, shaper_settings, names)
    title = f"ROC AUC ({_class(names, 1)} vs {_class(names, 0)})"
    page = render_page(results_path, len(data.get("source_index", [])), list(columns), rows,
                       aucs, title, figs)
    index = os.path.join(out_dir, "index.html")
    with open(index, "w") as fh:
        fh.write(page)
    return index
