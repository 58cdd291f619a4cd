"""``physkit report``: PNG plots of a results file and an index.html that shows them.

Plots: a histogram of every observable / score by label; ROC and SIC curves (signal
efficiency over sqrt(background efficiency)) of every column when the rows carry two
labels; event displays of a few jets with their fitted shapes (:func:`shaper.plot_event`);
for ``physkit finder search`` results, the search's own plots (:func:`search_plots`).
Rendering uses matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import html
import os
from typing import Sequence

import numpy as np

__all__ = ["make_report", "discriminant_auc", "roc_sic", "max_sic", "search_plots"]


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


def max_sic(values: np.ndarray, labels: np.ndarray, min_background: int = 50) -> float:
    """Largest SIC ``eps_s / sqrt(eps_b)`` over thresholds on ``values`` (higher = signal)
    that keep at least ``min_background`` background events (the statistics floor of an
    analysis; without it SIC diverges on the last few events)."""
    fpr, tpr, sic = roc_sic(values, labels)
    n_b = int((labels[np.isfinite(values)] == 0).sum())
    ok = fpr * n_b >= min_background - 1e-9
    return float(sic[ok].max()) if ok.any() else float("nan")


def search_plots(data: dict, out_dir: str, min_background: int = 50
                 ) -> tuple[list[tuple[str, str]], list[tuple[str, float, float]]]:
    """Plots of a ``physkit finder search`` results file (``data`` from
    :func:`~physkit.pipeline.results.read_results`): the out-of-fold score of data and
    reference events, and, where truth labels mark signal among the data events, the ROC
    and SIC curves of signal vs background *data* events. Returns ``([(png, caption)],
    [("score", auc, max SIC at >= min_background background events)])``."""
    import matplotlib.pyplot as plt

    v, is_data = data["score/value"], data["search/is_data"] == 1
    ok = np.isfinite(v)
    figs, table = [], []
    fig, ax = plt.subplots(figsize=(5, 3.6))
    bins = np.linspace(0.0, 1.0, 41)
    for sel, lab in ((ok & ~is_data, "reference"), (ok & is_data, "data")):
        ax.hist(v[sel], bins=bins, histtype="step", density=True, lw=1.5,
                label=f"{lab} ({int(sel.sum())})")
    ax.set_xlabel("out-of-fold reference quantile")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.savefig(os.path.join(out_dir, "search_scores.png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
    figs.append(("search_scores.png", "search: out-of-fold scores of data and reference "
                                      "events (flat for data without signal)"))
    truth = data.get("labels")
    sel = ok & is_data
    if truth is None or len(np.unique(truth[sel])) != 2:
        return figs, table
    fpr, tpr, sic = roc_sic(v[sel], truth[sel])
    auc, _ = discriminant_auc(v[sel], truth[sel])
    n_b = int((truth[sel] == 0).sum())
    floor = fpr * n_b >= min_background - 1e-9
    best = max_sic(v[sel], truth[sel], min_background)
    table.append(("score", auc, best))
    fr, fs = plt.subplots(figsize=(5, 4)), plt.subplots(figsize=(5, 4))
    lab = f"AUC {auc:.3f}"
    fr[1].plot(tpr, 1.0 / fpr, label=lab)
    fs[1].plot(tpr[floor], sic[floor], label=f"{lab}, max SIC {best:.2f}")
    fr[1].set_yscale("log")
    fr[1].set_ylabel("background rejection 1/eps_b")
    fs[1].set_ylabel(f"SIC = eps_s / sqrt(eps_b) (>= {min_background} bkg events)")
    for f, a, name in ((fr[0], fr[1], "search_roc.png"), (fs[0], fs[1], "search_sic.png")):
        a.set_xlabel("signal efficiency among data events (truth labels)")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
        f.savefig(os.path.join(out_dir, name), dpi=90, bbox_inches="tight")
        plt.close(f)
    figs += [("search_roc.png", "search: ROC of signal vs background data events"),
             ("search_sic.png", "search: significance improvement")]
    return figs, table


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _resolve(src: str, results_path: str) -> str | None:
    for cand in (src, os.path.join(os.path.dirname(os.path.abspath(results_path)), src),
                 os.path.join(os.path.dirname(os.path.abspath(results_path)),
                              os.path.basename(src))):
        if os.path.exists(cand):
            return cand
    return None


def _displays(data: dict, groups: Sequence[str], settings: dict, results_path: str,
              out_dir: str, n: int, events: str | None) -> list[str]:
    """Event displays of up to ``n`` fitted rows (status CONVERGED or MAX_STEPS: both carry an exact
    value), alternating labels; PNG names."""
    import matplotlib.pyplot as plt

    shape_groups = [g for g in groups if any(k.startswith(g + "/") and
                                             not k.endswith(("/value", "/status"))
                                             for k in data)]
    if not shape_groups or n <= 0:
        return []
    try:
        import shaper
    except ImportError:  # pragma: no cover
        return []
    from ..io import read_constituents

    ok = np.ones(len(data["source_index"]), bool)
    for g in shape_groups:
        ok &= data[f"{g}/status"] <= 1
    rows = np.flatnonzero(ok)
    if "labels" in data and rows.size:  # alternate the classes
        by = [rows[data["labels"][rows] == v] for v in np.unique(data["labels"][rows])]
        rows = np.array([r for grp in zip(*by) for r in grp] or rows)
    names = []
    R = float(settings.get("R", 0.8)) if isinstance(settings, dict) else 0.8
    for i in rows[:n]:
        src = events or _resolve(str(data["source_file"][i]), results_path)
        if src is None:
            continue
        jet = read_constituents(src, int(data["source_index"][i]), int(data["source_index"][i]) + 1)
        res = shaper.Results({g: shaper.ObservableResult(
            data[f"{g}/value"][i:i + 1],
            {k.split("/", 1)[1]: data[k][i:i + 1] for k in data
             if k.startswith(g + "/") and not k.endswith(("/value", "/status"))},
            data[f"{g}/status"][i:i + 1]) for g in shape_groups}, {"R": R})
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        shaper.plot_event(jet, res, 0, ax=ax)
        lab = f", label {int(data['labels'][i])}" if "labels" in data else ""
        ax.set_title(f"{os.path.basename(str(data['source_file'][i]))} event "
                     f"{int(data['source_index'][i])}{lab}", fontsize=9)
        name = f"event_{len(names)}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=90, bbox_inches="tight")
        plt.close(fig)
        names.append(name)
    return names


def make_report(results_path, out_dir, *, n_displays: int = 4, events: str | None = None
                ) -> str:
    """Write the plots of results file ``results_path`` and ``index.html`` into ``out_dir``.

    Returns the path of ``index.html``. ``events`` overrides the event file used for the
    displays (default: each row's recorded ``source_file``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .results import read_results, result_groups, results_settings

    results_path = os.fspath(results_path)
    os.makedirs(out_dir, exist_ok=True)
    groups = result_groups(results_path)
    settings = results_settings(results_path).get("settings", {})
    data = read_results(results_path)
    labels = data.get("labels")
    two = labels is not None and set(np.unique(labels).tolist()) == {0, 1}
    figs, aucs = [], []

    for g in groups:
        v = data[f"{g}/value"]
        ok = np.isfinite(v) & (data[f"{g}/status"] != 3 if f"{g}/status" in data else True)
        fig, ax = plt.subplots(figsize=(5, 3.6))
        if ok.any():
            bins = np.histogram_bin_edges(v[ok], bins=40)
            if labels is not None:
                for lab in np.unique(labels[ok]):
                    sel = ok & (labels == lab)
                    ax.hist(v[sel], bins=bins, histtype="step", density=True, lw=1.5,
                            label=f"label {lab} ({int(sel.sum())})")
                ax.legend(fontsize=8)
            else:
                ax.hist(v[ok], bins=bins, histtype="step", lw=1.5)
        ax.set_xlabel(g)
        ax.set_ylabel("density")
        name = f"hist_{_safe(g)}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=90, bbox_inches="tight")
        plt.close(fig)
        figs.append((name, f"{g}: distribution by label"))
        if two and ok.any() and len(np.unique(labels[ok])) == 2:
            auc, sign = discriminant_auc(v[ok], labels[ok])
            aucs.append((g, auc, sign))

    if aucs:
        fr, fs = plt.subplots(figsize=(5, 4)), plt.subplots(figsize=(5, 4))
        for g, auc, sign in aucs:
            v = data[f"{g}/value"]
            fpr, tpr, sic = roc_sic(v, labels, sign)
            lab = f"{g}{' (low = signal)' if sign < 0 else ''}, AUC {auc:.3f}"
            fr[1].plot(tpr, 1.0 / fpr, label=lab)
            fs[1].plot(tpr, sic, label=lab)
        fr[1].set_yscale("log")
        fr[1].set_xlabel("signal efficiency (label 1)")
        fr[1].set_ylabel("background rejection 1/eps_b")
        fs[1].set_xlabel("signal efficiency (label 1)")
        fs[1].set_ylabel("SIC = eps_s / sqrt(eps_b)")
        for f, a in (fr, fs):
            a.legend(fontsize=7)
            a.grid(alpha=0.3)
        fr[0].savefig(os.path.join(out_dir, "roc.png"), dpi=90, bbox_inches="tight")
        fs[0].savefig(os.path.join(out_dir, "sic.png"), dpi=90, bbox_inches="tight")
        plt.close(fr[0])
        plt.close(fs[0])
        figs += [("roc.png", "ROC curves"), ("sic.png", "significance improvement")]

    if isinstance(settings, dict) and settings.get("command") == "search":
        search_figs, search_table = search_plots(data, out_dir)
        figs += search_figs
        aucs = [(f"{g} (data events: max SIC {s:.2f})", a, 1) for g, a, s in search_table]
    for name in _displays(data, groups, settings, results_path, out_dir, n_displays, events):
        figs.append((name, "event display with fitted shapes"))

    rows = "".join(f"<tr><td>{html.escape(g)}</td><td>{auc:.4f}</td><td>"
                   f"{'lower' if s < 0 else 'higher'}</td></tr>" for g, auc, s in aucs)
    table = (f"<h2>ROC AUC (label 1 vs 0)</h2><table><tr><th>column</th><th>AUC</th>"
             f"<th>signal-like values</th></tr>{rows}</table>" if aucs else "")
    imgs = "".join(f'<figure><img src="{html.escape(n)}" alt="{html.escape(c)}">'
                   f"<figcaption>{html.escape(c)}</figcaption></figure>" for n, c in figs)
    n = len(data.get("source_index", []))
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>physkit report: "
            f"{html.escape(os.path.basename(results_path))}</title><style>body{{font-family:"
            f"sans-serif;margin:2em}} figure{{display:inline-block;margin:0.5em}} img{{max-width:"
            f"480px}} td,th{{padding:0.2em 1em;text-align:left}}</style></head><body>"
            f"<h1>physkit report</h1><p>{html.escape(results_path)}: {n} rows; columns "
            f"{html.escape(', '.join(groups))}</p>{table}<h2>Plots</h2>{imgs}</body></html>\n")
    index = os.path.join(out_dir, "index.html")
    with open(index, "w") as fh:
        fh.write(page)
    return index
