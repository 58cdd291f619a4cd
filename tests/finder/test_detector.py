"""ResidualDetector: residual energy, scikit-learn outlier conventions, conformal p-values."""
import json
import warnings

import numpy as np
import pytest
from scipy import stats

from finder import ResidualDetector

P = 12
SD = np.r_[np.linspace(4.0, 2.0, 4), np.full(P - 4, 0.3)]


def reference(n, seed):
    return np.random.default_rng(seed).normal(size=(n, P)) * SD


def test_score_is_residual_energy_outside_top_space():
    X = reference(2000, 0)
    d = ResidualDetector(n_components=4, calibration_fraction=0.0).fit(X)
    mu = X.mean(0)
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    Xt = reference(50, 1)
    r = (Xt - mu) - (Xt - mu) @ vt[:4].T @ vt[:4]
    np.testing.assert_allclose(d.anomaly_score(Xt), (r ** 2).sum(1), rtol=1e-10)
    np.testing.assert_allclose(d.score_samples(Xt), -d.anomaly_score(Xt))
    # float n_components: 4 loud directions hold > 95% of the variance
    assert ResidualDetector(n_components=0.95).fit(X).n_components_ == 4


def test_anomalies_score_high_and_predict_convention():
    X = reference(2000, 0)
    d = ResidualDetector(n_components=4, contamination=0.05, random_state=0).fit(X)
    normal = reference(500, 2)
    odd = reference(500, 3)
    odd[:, 8] += 2.0  # displaced along a quiet direction
    assert np.median(d.anomaly_score(odd)) > np.quantile(d.anomaly_score(normal), 0.95)
    assert np.mean(d.predict(odd) == -1) > 0.9
    assert set(np.unique(d.predict(normal))) <= {-1, 1}
    assert abs(np.mean(d.predict(X) == -1) - 0.05) < 0.01
    np.testing.assert_array_equal(d.predict(odd) == -1, d.decision_function(odd) < 0)
    # a displacement along a loud (kept) direction is normal variation
    loud = reference(500, 4)
    loud[:, 0] += 2.0
    assert np.mean(d.predict(loud) == -1) < 0.2


@pytest.mark.parametrize("whiten", [False, True])
def test_conformal_pvalues_uniform_on_fresh_reference(whiten):
    X = reference(4000, 0)
    d = ResidualDetector(n_components=4, whiten=whiten, calibration_fraction=0.5,
                         random_state=0).fit(X)
    p = d.pvalues(reference(3000, 7))
    assert p.min() >= 1 / 2001 and p.max() <= 1
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # and they are small for anomalies
    odd = reference(200, 8)
    odd[:, 9] += 2.0
    assert np.median(d.pvalues(odd)) < 0.01


def test_pvalue_formula():
    X = reference(200, 0)
    d = ResidualDetector(n_components=4, calibration_fraction=0.25, random_state=1).fit(X)
    cal = d.calibration_scores_
    Xt = reference(20, 3)
    s = d.anomaly_score(Xt)
    ref = (1 + (cal[None, :] >= s[:, None]).sum(1)) / (len(cal) + 1)
    np.testing.assert_allclose(d.pvalues(Xt), ref)
    with pytest.raises(ValueError, match="calibration"):
        ResidualDetector(calibration_fraction=0.0).fit(X).pvalues(Xt)


@pytest.mark.parametrize("whiten", [False, True])
def test_model_state_round_trip(whiten):
    d = ResidualDetector(n_components=0.9, whiten=whiten, random_state=0).fit(reference(500, 0))
    arrays, meta = d.get_model_state()
    e = ResidualDetector.from_model_state(arrays, json.loads(json.dumps(meta)))
    Xt = reference(100, 5)
    for f in ("anomaly_score", "decision_function", "predict", "pvalues"):
        np.testing.assert_array_equal(getattr(d, f)(Xt), getattr(e, f)(Xt))


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(ResidualDetector(random_state=0))
