"""AnomalySearch: out-of-fold scores by construction, determinism, a signal found."""
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score

from finder import FINDER, AnomalySearch
from finder.search import reference_quantiles


class Memorizer(ClassifierMixin, BaseEstimator):
    """Scores +1 on rows it was trained on, -1 on any other row."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.seen_ = {r.tobytes() for r in np.asarray(X, float)}
        return self

    def decision_function(self, X):
        return np.array([1.0 if r.tobytes() in self.seen_ else -1.0
                         for r in np.asarray(X, float)])


def _cwola(n=1000, frac=0.05, seed=0):
    rng = np.random.default_rng(seed)
    ref, data = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    sig = rng.random(n) < frac
    data[sig, 3] += 3.0
    return np.vstack([ref, data]), np.r_[np.zeros(n, int), np.ones(n, int)], sig


def test_no_event_is_scored_by_a_model_that_saw_it():
    X, y, _ = _cwola(300)
    s = AnomalySearch(Memorizer(), n_folds=4, random_state=0).fit(X, y)
    # by construction: a memorising model recognises every row it was trained on ...
    assert all((e.decision_function(X[tr]) == 1).all()
               for e, tr in zip(s.estimators_, s.train_indices_))
    # ... and no out-of-fold score comes from such a model
    assert (s.oof_decision_ == -1).all()
    for k, tr in enumerate(s.train_indices_):
        assert not np.isin(np.flatnonzero(s.fold_ == k), tr).any()
        assert len(tr) + (s.fold_ == k).sum() == len(y)
    assert np.bincount(s.fold_).tolist() == [150] * 4


def test_search_finds_the_signal_and_selects_at_the_efficiencies():
    X, y, sig = _cwola()
    s = AnomalySearch(FINDER(n_estimators=1), n_folds=3, random_state=0).fit(X, y)
    data = y == 1
    assert roc_auc_score(sig, s.oof_score_[data]) > 0.7
    for eff, sel in s.selected_.items():
        assert not sel[~data].any()
        assert abs(sel.sum() - eff * data.sum()) <= max(0.05 * eff * data.sum(), 2) or \
            s.thresholds_[eff] == s.oof_score_[data].max()  # ties at the top
    assert sig[s.selected_[0.01][data]].mean() > 0.3  # 5% signal before the selection
    # the reference rows' quantiles within their folds are uniform
    q = s.oof_score_[~data]
    assert abs(q.mean() - 0.5) < 0.02 and q.min() >= 0 and q.max() <= 1
    again = AnomalySearch(FINDER(n_estimators=1), n_folds=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.oof_score_, s.oof_score_)
    assert s.decision_function(X[:5]).shape == (5,)


def test_reference_quantiles_and_bad_options():
    np.testing.assert_allclose(reference_quantiles(np.array([0.0, 1.5, 9.0]),
                                                   np.array([1.0, 2.0, 1.5, 3.0])),
                               [0.0, 0.375, 1.0])
    X, y, _ = _cwola(50)
    with pytest.raises(ValueError, match="n_folds"):
        AnomalySearch(n_folds=1).fit(X, y)
    with pytest.raises(ValueError, match="efficiencies"):
        AnomalySearch(efficiencies=(0.0,)).fit(X, y)
    with pytest.raises(ValueError, match="data_label"):
        AnomalySearch(data_label=7).fit(X, y)


def test_check_estimator():
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(AnomalySearch(LogisticRegression(), n_folds=2, random_state=0))
