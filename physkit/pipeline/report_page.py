"""The ``index.html`` of ``physkit report``: the run's settings, the ROC AUC table (one row
per column) and every plot, in one self-contained page (no scripts, no remote assets)."""
from __future__ import annotations

import html
import json
import os
from typing import Mapping, Sequence

__all__ = ["settings_rows", "render_page"]

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1600px} "
          "figure{display:inline-block;margin:0.5em;vertical-align:top} "
          "img{max-width:480px} td,th{padding:0.2em 1em;text-align:left;vertical-align:top} "
          "table{border-collapse:collapse} tr:nth-child(even){background:#f4f4f4} "
          "code{font-size:90%}")

#: settings keys shown under their own heading (the rest go under "other settings")
_NAMED = ("command", "observables", "R", "beta", "model", "estimator", "model_summary",
          "features", "events", "clustering", "reader")


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _shaper_line(shaper_settings: Mapping[str, tuple]) -> str:
    """``"R = 0.8, beta = 1: 2-subjettiness, 3-subjettiness"`` per (R, beta) pair."""
    by: dict[tuple, list[str]] = {}
    for name, rb in shaper_settings.items():
        by.setdefault(rb, []).append(name)
    return "; ".join(f"R = {R:g}, \u03b2 = {beta:g}: {', '.join(names)}"
                     for (R, beta), names in by.items())


def _feature_text(spec: Mapping) -> str:
    kind = spec.get("kind")
    if kind == "shape":
        return (f"shape ({', '.join(spec.get('observables', []))}; R = {spec.get('R')}, "
                f"\u03b2 = {spec.get('beta')})")
    if kind == "image":
        return f"image {spec.get('npix')}x{spec.get('npix')} (R = {spec.get('R')})"
    if kind == "efp":
        return f"EFPs {spec.get('select')}"
    if kind == "dataset":
        return f"dataset {spec.get('name')}"
    return _text(spec)


def settings_rows(settings: Mapping, attrs: Mapping, shaper_settings: Mapping[str, tuple],
                  class_names: Mapping[int, str]) -> list[tuple[str, str]]:
    """``(heading, value)`` rows describing the run: command, SHAPER observables with their
    R and beta, the model, features, events, inputs, labels, then every other setting."""
    s = settings if isinstance(settings, Mapping) else {}
    rows = []
    if s.get("command"):
        rows.append(("command", f"physkit {s['command']}"))
    if shaper_settings:
        rows.append(("SHAPER observables", _shaper_line(shaper_settings)))
    if s.get("model") or s.get("model_summary"):
        rows.append(("model", " \u2014 ".join(str(s[k]) for k in ("model", "model_summary")
                                              if s.get(k))))
    if s.get("features"):
        rows.append(("features", "; ".join(_feature_text(f) for f in s["features"])))
    if s.get("events"):
        start, stop = s["events"]
        rows.append(("events", f"[{start}, {'end' if stop is None else stop}) of each input"))
    for key in ("clustering", "reader"):
        if s.get(key):
            rows.append((key, _text(s[key])))
    if attrs.get("inputs"):
        rows.append(("inputs", ", ".join(map(str, attrs["inputs"]))))
    if attrs.get("failed_files"):
        rows.append(("failed files", _text(attrs["failed_files"])))
    if class_names:
        rows.append(("labels", ", ".join(f"{k} = {v}" for k, v in sorted(class_names.items()))))
    other = {k: v for k, v in s.items() if k not in _NAMED}
    if other:
        rows.append(("other settings", ", ".join(f"{k} = {_text(v)}"
                                                 for k, v in sorted(other.items()))))
    return rows


def render_page(results_path: str, n_rows: int, columns: Sequence[str],
                rows: Sequence[tuple[str, str]], aucs: Sequence[tuple[str, float, int]],
                auc_title: str, figures: Sequence[tuple[str, str]]) -> str:
    """The HTML page: heading, run settings table, AUC table (``id="auc"``, one row per
    column), then the figures ``(png name, caption)``."""
    e = html.escape
    settings = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    auc_rows = "".join(f"<tr><td>{e(g)}</td><td>{auc:.4f}</td><td>"
                       f"{'lower' if s < 0 else 'higher'}</td></tr>" for g, auc, s in aucs)
    table = (f"<h2>{e(auc_title)}</h2><table id=\"auc\"><thead><tr><th>column</th>"
             f"<th>AUC</th><th>signal-like values</th></tr></thead><tbody>{auc_rows}"
             f"</tbody></table>" if aucs else "")
    imgs = "".join(f'<figure><img src="{e(n)}" alt="{e(c)}"><figcaption>{e(c)}'
                   f"</figcaption></figure>" for n, c in figures)
    name = os.path.basename(results_path)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>physkit report: "
            f"{e(name)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>physkit report: {e(name)}</h1><p>{e(results_path)}: {n_rows} rows; "
            f"columns {e(', '.join(columns))}</p><h2>Run</h2><table id=\"settings\">"
            f"{settings}</table>{table}<h2>Plots</h2>{imgs}</body></html>\n")
