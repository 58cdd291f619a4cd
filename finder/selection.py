"""Inner cross-validation for FINDER's data-driven settings (truncation, residual count, head).

Only training rows are ever used. Folds are stratified and *repeated* (``repeats`` shuffles
of ``n_splits`` folds): under label noise a single split's AUC differences between candidates
are mostly noise, and the repeats average it down. The candidates are listed in order of
preference (FINDER lists "no truncation" and the tree head first); going down the list, a
candidate replaces the current choice only when it beats it by more than the standard error
of their paired AUC difference over the folds. Where the inner CV cannot tell the candidates apart (a 0.5%
signal in a weakly supervised search moves the data-vs-reference AUC by ~0.003) a plain
argmax picked on noise: per fold of one search it drew a different head and truncation,
and the search's max SIC fell from ~7 to ~5 (bench/RESULTS.md).
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

import numpy as np

__all__ = ["subsample", "repeated_folds", "select"]


def subsample(y: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of a stratified subsample of at most ``max_samples`` rows of the
    labels ``y`` ``(N,)`` in {0, 1} (all rows when there are not more)."""
    n = len(y)
    if n <= max_samples:
        return np.arange(n)
    keep = []
    for k in (0, 1):
        r = np.flatnonzero(y == k)
        m = max(int(round(max_samples * len(r) / n)), 2)
        keep.append(rng.choice(r, size=min(m, len(r)), replace=False))
    return np.sort(np.concatenate(keep))


def repeated_folds(y: np.ndarray, n_splits: int, repeats: int, seed: int):
    """``[(train, test), ...]``: ``repeats`` stratified shuffles of ``n_splits`` folds of the
    rows of ``y``; empty when a class has fewer than 2 rows."""
    from sklearn.model_selection import StratifiedKFold

    k = min(int(n_splits), int(np.bincount(y, minlength=2).min()))
    if k < 2:
        return []
    return [split for r in range(max(int(repeats), 1))
            for split in StratifiedKFold(k, shuffle=True, random_state=seed + r).split(y, y)]


def select(candidates: Sequence[Hashable], folds, evaluate: Callable) -> tuple[Hashable, dict]:
    """The preferred candidate by inner-CV AUC (module docstring), and the table behind it.

    ``evaluate(train, test) -> {candidate: auc}`` for every fold (NaN counts as 0.5).
    Returns ``(choice, {"candidates", "mean_auc", "se_auc", "chosen"})``.
    """
    cands = list(candidates)
    scores = np.full((len(cands), max(len(folds), 1)), 0.5)
    for f, (tr, te) in enumerate(folds):
        got = evaluate(tr, te)
        for i, c in enumerate(cands):
            v = got.get(c, np.nan)
            scores[i, f] = 0.5 if not np.isfinite(v) else v
    n = scores.shape[1]
    mean = scores.mean(axis=1)
    se = scores.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(cands))
    choice = 0
    for i in range(1, len(cands)):
        diff = scores[i] - scores[choice]
        se_diff = diff.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
        if diff.mean() > se_diff:
            choice = i
    return cands[choice], {"candidates": cands, "mean_auc": mean, "se_auc": se,
                           "chosen": cands[choice]}
