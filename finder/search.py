"""Weakly supervised anomaly search (CWoLa-style) with k-fold cross-fitting.

A classifier is trained to tell "data" (e.g. events in a signal region: background plus a
possible small signal) from a background-only "reference" sample (e.g. simulation or a
sideband estimate). Without signal the two are indistinguishable and the classifier learns
noise; with signal, it learns where the signal is (Metodiev, Nachman, Thaler,
arXiv:1708.02949; Collins, Howe, Nachman, arXiv:1805.02664).

The rows are split into ``n_folds`` folds (stratified by data / reference); the model of
fold ``k`` is trained on the other folds and scores fold ``k`` only, so **every event gets
an out-of-fold score from a model that never saw it** (``train_indices_`` records which rows
each model saw). Scores of different fold models are not on one scale, so each out-of-fold
score is turned into its fold's *reference quantile*: the fraction of the fold's reference
rows that score lower (ties count half). That is comparable across folds; under the
background-only hypothesis the data rows' quantiles are uniform. Events are then selected
at fixed data efficiencies (the top 10%, 1%, 0.1% of data rows by quantile). New events
are scored by the k-fold ensemble (the mean of the fold models).
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .seeding import int_seed, member_seed

__all__ = ["AnomalySearch", "DEFAULT_EFFICIENCIES", "reference_quantiles"]

#: data efficiencies at which events are selected by default
DEFAULT_EFFICIENCIES = (0.1, 0.01, 0.001)


def reference_quantiles(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Fraction of ``reference`` scores below each of ``scores`` (ties count half), ``(N,)``."""
    ref = np.sort(np.asarray(reference, float))
    lo = np.searchsorted(ref, scores, side="left")
    hi = np.searchsorted(ref, scores, side="right")
    return (lo + 0.5 * (hi - lo)) / max(len(ref), 1)


def _scores(est, X) -> np.ndarray:
    if hasattr(est, "decision_function"):
        return np.asarray(est.decision_function(X), float).ravel()
    return np.asarray(est.predict_proba(X), float)[:, 1]


class AnomalySearch(ClassifierMixin, BaseEstimator):
    """k-fold cross-fitted data-vs-reference classifier (scikit-learn classifier API).

    Parameters
    ----------
    estimator : classifier or None, default=None
        the classifier of each fold, cloned; None: :class:`finder.FINDER` at its defaults.
        Its ``random_state`` (if it has one) is set per fold from ``random_state``.
    n_folds : int, default=5
        folds of the cross-fitting (>= 2).
    efficiencies : sequence of float in (0, 1], default=(0.1, 0.01, 0.001)
        data efficiencies at which events are selected (``selected_``).
    data_label : label or None, default=None
        the label of "data" rows in ``y``; None takes the larger label (``classes_[1]``).
    n_jobs : int or None
        fold models fitted in parallel threads (joblib).
    random_state : int, RandomState or None
        seeds the folds and the fold models.

    Attributes
    ----------
    classes_ : (2,) labels; ``classes_[1]`` is the data label.
    estimators_ : the ``n_folds`` fitted fold models.
    train_indices_ : list of the training-row indices each fold model was fitted on.
    fold_ : (N,) the fold of each training row (its score comes from ``estimators_[fold]``).
    oof_decision_ : (N,) out-of-fold decision values (larger = more data-like).
    oof_score_ : (N,) out-of-fold reference quantiles in [0, 1] (module docstring).
    thresholds_ : {efficiency: quantile threshold} on ``oof_score_``.
    selected_ : {efficiency: (N,) bool}: the data rows at or above the threshold.
    """

    def __init__(self, estimator=None, n_folds: int = 5,
                 efficiencies=DEFAULT_EFFICIENCIES, data_label=None, n_jobs=None,
                 random_state=None):
        self.estimator = estimator
        self.n_folds = n_folds
        self.efficiencies = efficiencies
        self.data_label = data_label
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> None:
        if not (isinstance(self.n_folds, Integral) and not isinstance(self.n_folds, bool)
                and self.n_folds >= 2):
            raise ValueError(f"n_folds must be an int >= 2, got {self.n_folds!r}")
        effs = list(self.efficiencies)
        if not effs or not all(isinstance(e, Real) and 0 < e <= 1 for e in effs):
            raise ValueError(f"efficiencies must be floats in (0, 1], got {self.efficiencies!r}")
        if self.n_jobs is not None and not isinstance(self.n_jobs, Integral):
            raise ValueError(f"n_jobs must be None or an int, got {self.n_jobs!r}")

    def _base(self):
        if self.estimator is not None:
            return self.estimator
        from .classifier import FINDER

        return FINDER()

    def fit(self, X, y):
        """Cross-fit on ``X`` (N, P) with ``y`` (N,): data rows vs reference rows."""
        from sklearn.model_selection import StratifiedKFold

        self._check_params()
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"Only binary classification is supported. AnomalySearch needs "
                             f"exactly 2 labels (data, reference), got {len(classes)} class"
                             f"{'es' if len(classes) != 1 else ''}")
        if self.data_label is not None and self.data_label not in classes:
            raise ValueError(f"data_label={self.data_label!r} is not among the labels "
                             f"{classes.tolist()}")
        if self.data_label is not None and classes[1] != self.data_label:
            classes = classes[::-1]
        self.classes_ = classes
        is_data = (y == classes[1]).astype(int)
        if np.bincount(is_data, minlength=2).min() < self.n_folds:
            raise ValueError(f"n_folds={self.n_folds} needs at least {self.n_folds} data and "
                             f"reference rows each, got {np.bincount(is_data).tolist()}")
        seed = int_seed(self.random_state)
        folds = list(StratifiedKFold(self.n_folds, shuffle=True, random_state=seed)
                     .split(X, is_data))
        self.fold_ = np.empty(len(y), dtype=np.int64)
        for k, (_, te) in enumerate(folds):
            self.fold_[te] = k

        def one(k):
            tr, te = folds[k]
            est = clone(self._base())
            if "random_state" in est.get_params():
                est.set_params(random_state=member_seed(seed, k))
            est.fit(X[tr], y[tr])
            return est, tr, te, self._oriented(est, X[te])

        if self.n_jobs not in (None, 1):
            from joblib import Parallel, delayed

            fitted = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                delayed(one)(k) for k in range(len(folds)))
        else:
            fitted = [one(k) for k in range(len(folds))]
        self.estimators_ = [f[0] for f in fitted]
        self.train_indices_ = [f[1] for f in fitted]
        self.oof_decision_ = np.empty(len(y))
        self.oof_score_ = np.empty(len(y))
        for _, _, te, s in fitted:
            self.oof_decision_[te] = s
            self.oof_score_[te] = reference_quantiles(s, s[is_data[te] == 0])
        self._select(is_data)
        return self

    def _oriented(self, est, X) -> np.ndarray:
        """Decision values of a fold model, larger = more data-like."""
        s = _scores(est, X)
        est_classes = list(getattr(est, "classes_", self.classes_))
        return s if est_classes[-1] == self.classes_[1] else -s

    def _select(self, is_data: np.ndarray) -> None:
        data_scores = np.sort(self.oof_score_[is_data == 1])[::-1]
        self.thresholds_, self.selected_ = {}, {}
        for eff in self.efficiencies:
            n = max(int(np.ceil(float(eff) * len(data_scores))), 1)
            thr = float(data_scores[min(n, len(data_scores)) - 1])
            self.thresholds_[float(eff)] = thr
            self.selected_[float(eff)] = (is_data == 1) & (self.oof_score_ >= thr)

    def predict_proba(self, X) -> np.ndarray:
        """``(N, 2)``: the fold models' mean probabilities of reference, data."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False)
        p = []
        for e in self.estimators_:
            q = np.asarray(e.predict_proba(X), float)
            p.append(q if list(e.classes_)[-1] == self.classes_[1] else q[:, ::-1])
        return np.mean(p, axis=0)

    def decision_function(self, X) -> np.ndarray:
        """New events ``(N,)``, larger = more data-like: the log-odds of the fold models'
        mean data probability (their mean decision when they have no probabilities)."""
        check_is_fitted(self, "estimators_")
        if not all(hasattr(e, "predict_proba") for e in self.estimators_):
            X = validate_data(self, X, reset=False)
            return np.mean([self._oriented(e, X) for e in self.estimators_], axis=0)
        p1 = np.clip(self.predict_proba(X)[:, 1], 1e-300, 1.0 - 1e-16)
        return np.log(p1) - np.log1p(-p1)

    def predict(self, X) -> np.ndarray:
        """``classes_[1]`` (data-like) where ``decision_function > 0``."""
        check_is_fitted(self, "estimators_")
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
