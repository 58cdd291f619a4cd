"""Issue 11 (item 17): features whose squares overflow float64 are refused with a message
saying so (they raised torch's _LinAlgError from the eigen-decomposition)."""
from __future__ import annotations

import numpy as np
import pytest

from finder import FINDER, ResidualDetector


@pytest.mark.parametrize("scale", [1e154, 1e200, 1e300])
def test_huge_features_are_refused_at_fit_and_predict(scale):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = np.arange(80) % 2
    for est, args in ((FINDER(n_components=1, n_residual=2, random_state=0), (y,)),
                      (ResidualDetector(n_components=1, random_state=0), ())):
        with pytest.raises(ValueError, match="rescale"):
            est.fit(X * scale, *args)
        est.fit(X, *args)
        score = est.predict_proba if isinstance(est, FINDER) else est.anomaly_score
        with pytest.raises(ValueError, match="rescale"):
            score(X * scale)


def test_large_but_safe_features_still_fit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4)) * 1e90
    det = ResidualDetector(n_components=1, random_state=0).fit(X)
    assert np.isfinite(det.anomaly_score(X)).all()
