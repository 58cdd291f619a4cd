"""Marginal feature screening for very wide data (``P >> N``), as pure functions.

With a handful of informative features among thousands, every method that uses all of
them sits near chance: the class-mean difference estimated from ``N`` rows carries noise of
norm ``~sqrt(P * 4 / N)`` (in sd units) against a signal of norm ``sqrt(k) * shift``. Keeping
the ``k`` features with the largest ``|Welch t|`` between the classes (sure independence
screening, Fan & Lv, J. R. Stat. Soc. B 70 (2008) 849, which keeps ``~N / ln N`` to ``N``
features) restores that ratio. Label noise that flips a fraction of each class only shrinks
every feature's ``t`` by the same factor, so the ranking is unchanged in expectation.

FINDER offers screening as candidates of its inner cross-validation
(:mod:`finder.selection`): the statistic is computed on each inner fold's training rows
only, and on all training rows for the final fit, never on held-out rows.

Shapes: data ``(N, P)`` torch tensors, labels ``(N,)`` in {0, 1}.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["welch_t", "screen_features", "auto_screens", "SCREEN_RATIO"]

#: ``screen="auto"`` offers screening from ``P >= SCREEN_RATIO * N`` on (FINDER's
#: ``WIDE_RATIO``; every narrower data set is fitted as without the option)
SCREEN_RATIO = 10
#: multiples of ``N`` kept by the larger "auto" screens (the smallest is ``N / ln N``)
SCREEN_MULTIPLES = (1, 4)


def welch_t(X: torch.Tensor, t: np.ndarray) -> torch.Tensor:
    """Welch's t statistic of every feature between rows with ``t == 1`` and ``t == 0``,
    ``(P,)``: ``(mean_1 - mean_0) / sqrt(s_1^2 / n_1 + s_0^2 / n_0)`` (sample variances,
    ``ddof=1``; a class with one row counts variance 0). A feature whose two classes are
    both constant has ``t = 0`` when their means agree and ``+-inf`` when they differ."""
    t = torch.as_tensor(np.asarray(t) == 1, device=X.device)
    mean, var = [], []
    for rows in (X[~t], X[t]):
        n = rows.shape[0]
        if n == 0:
            raise ValueError("welch_t needs rows of both classes")
        m = rows.mean(0)
        mean.append(m)
        var.append((rows - m).square().sum(0) / max(n - 1, 1) / n)
    diff, se = mean[1] - mean[0], (var[0] + var[1]).sqrt()
    out = diff / torch.where(se > 0, se, torch.ones_like(se))
    return torch.where(se > 0, out, torch.sign(diff) * torch.inf)


def screen_features(X: torch.Tensor, t: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices ``(min(k, P),)`` of the ``k`` features of ``X`` ``(N, P)`` with the
    largest ``|welch_t|`` computed on ``X[rows]`` with labels ``t[rows]`` only (ties go
    to the lower index)."""
    rows = np.asarray(rows)
    score = welch_t(X[torch.as_tensor(rows, device=X.device)], np.asarray(t)[rows]).abs()
    order = np.argsort(-score.cpu().numpy(), kind="stable")
    return np.sort(order[:min(int(k), X.shape[1])]).astype(np.int64)


def auto_screens(n_samples: int, n_features: int) -> list[int | None]:
    """Screens of ``screen="auto"``: ``[None]`` (keep every feature) and, when
    ``P >= SCREEN_RATIO * N``, the sizes ``ceil(N / ln N)``, ``N`` and ``4 N`` (largest
    first: the inner CV prefers the earlier, milder candidate unless clearly beaten)."""
    n = max(int(n_samples), 2)
    if n_features < SCREEN_RATIO * n:
        return [None]
    sizes = {math.ceil(n / math.log(n))} | {m * n for m in SCREEN_MULTIPLES}
    return [None] + sorted((k for k in sizes if k < n_features), reverse=True)
