"""FINDER's feature screening for very wide data (finder/screening.py, ``screen=``): the
statistic, training rows only, what it buys on held-out data, and an honest inner CV."""
import numpy as np
import pytest
import torch
from scipy.stats import ttest_ind
from sklearn.metrics import roc_auc_score

from finder import FINDER
from finder.screening import auto_screens, screen_features, welch_t
from wide_data import wide_mean_shift


def test_welch_t_matches_scipy_and_screen_keeps_the_largest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 50)) * rng.uniform(0.5, 3.0, size=50)
    y = np.r_[np.zeros(12, int), np.ones(18, int)]
    X[y == 1, :4] += 1.5
    ref = ttest_ind(X[y == 1], X[y == 0], equal_var=False).statistic
    got = welch_t(torch.as_tensor(X), y).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    keep = screen_features(torch.as_tensor(X), y, np.arange(30), 6)
    np.testing.assert_array_equal(keep, np.sort(np.argsort(-np.abs(ref))[:6]))


def test_screen_sees_only_the_given_rows():
    """Rows outside ``rows`` (here made to separate the classes along other features)
    change nothing."""
    X, y = wide_mean_shift(20, 0, p=300)
    rows = np.r_[0:15, 20:35]
    keep = screen_features(torch.as_tensor(X), y, rows, 10)
    X2 = X.copy()
    held = np.setdiff1d(np.arange(40), rows)
    X2[held] = np.random.default_rng(1).normal(size=(len(held), 300))
    X2[held[y[held] == 1], 100:120] += 50.0
    np.testing.assert_array_equal(screen_features(torch.as_tensor(X2), y, rows, 10), keep)
    every = np.arange(40)  # ranked on every row, the change would show
    assert not np.array_equal(screen_features(torch.as_tensor(X2), y, every, 10),
                              screen_features(torch.as_tensor(X), y, every, 10))


def test_final_screen_is_the_training_t_ranking_and_ignores_test_rows():
    X, y = wide_mean_shift(20, 1)
    f = FINDER(screen=25, n_estimators=2, random_state=0).fit(X, y)
    ref = ttest_ind(X[y == 1], X[y == 0], equal_var=False).statistic
    np.testing.assert_array_equal(f.screened_features_, np.sort(np.argsort(-np.abs(ref))[:25]))
    assert f.center_.shape == (25,) and f.components_.shape[0] == 25
    Xt, _ = wide_mean_shift(50, 2)
    before = f.screened_features_.copy()
    f.decision_function(Xt)
    np.testing.assert_array_equal(f.screened_features_, before)
    assert FINDER(screen=None, random_state=0).fit(X, y).screened_features_ is None


def test_auto_screens_only_for_wide_data():
    assert auto_screens(50, 499) == [None]
    assert auto_screens(50, 10_000) == [None, 200, 50, 13]
    X, y = wide_mean_shift(20, 0, p=300)  # P < 10 N: fitted as without the option
    a = FINDER(random_state=0).fit(X, y)
    b = FINDER(screen=None, random_state=0).fit(X, y)
    assert a.screened_features_ is None
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))


def test_screening_at_defaults_beats_no_screening_on_held_out_data():
    """2000 features, 20 + 20 training rows, 3 features shifted by 2 sd: without selecting
    features the class-mean estimate is mostly noise; the inner CV picks a screen."""
    auc = {None: [], "auto": []}
    for seed in (0, 1):
        X, y = wide_mean_shift(20, 10 + seed)
        Xt, yt = wide_mean_shift(200, 100 + seed)
        for screen in auc:
            f = FINDER(screen=screen, random_state=0).fit(X, y)
            auc[screen].append(roc_auc_score(yt, f.decision_function(Xt)))
    assert np.mean(auc["auto"]) > np.mean(auc[None]) + 0.15
    assert np.mean(auc["auto"]) > 0.85


def test_inner_cv_does_not_see_the_fold_test_rows():
    """On pure noise a screen ranked on all rows would separate the inner test rows
    (inner AUC ~0.98); ranked on the fold's training rows it stays near chance."""
    inner = []
    for seed in range(3):
        X = np.random.default_rng(seed).normal(size=(40, 2000))
        y = np.r_[np.zeros(20, int), np.ones(20, int)]
        f = FINDER(screen=[None, 10], n_components=0, n_residual=140, random_state=0).fit(X, y)
        inner.append(f.cv_results_["mean_auc"][1])
    assert np.mean(inner) < 0.7


def test_inner_cv_auc_is_not_inflated_by_the_final_scales():
    """The within-class feature scales of the final fit use every training label; the inner
    CV re-standardises on each fold's training rows. With 10 000 features and 25 + 25 rows
    the scales from all rows inflated the inner AUC over the held-out one by ~0.13 on
    average (the fold's test rows pulled towards their class means)."""
    gap = []
    for seed in range(3):
        X, y = wide_mean_shift(25, seed, p=10_000, k=10, shift=1.0)
        Xt, yt = wide_mean_shift(100, 100 + seed, p=10_000, k=10, shift=1.0)
        f = FINDER(n_components=0, n_residual=[1, 140], screen=None, random_state=0).fit(X, y)
        gap.append(f.cv_results_["mean_auc"].max() - roc_auc_score(yt, f.decision_function(Xt)))
    assert np.mean(gap) < 0.05


@pytest.mark.parametrize("bad", ["all", 0, -3, [], [5, "x"], 2.5, True])
def test_bad_screen_is_refused(bad):
    X, y = wide_mean_shift(10, 0, p=20)
    with pytest.raises(ValueError, match="screen must be"):
        FINDER(screen=bad).fit(X, y)
