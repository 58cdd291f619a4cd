"""One-class FINDER: eigenspace-residual anomaly detector with conformal p-values.

Fit on reference (background) data only: KL basis of the reference, truncation ``M_A``;
the anomaly score of ``x`` is its residual energy ``||(I - P_A)(x - mu)||^2`` outside the
reference's top-``M_A`` subspace. Split-conformal p-values come from a held-out
calibration part of the reference data: ``p(x) = (1 + #{calib scores >= s(x)}) / (n_cal + 1)``,
valid (super-uniform) for exchangeable reference data whatever the score.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .classifier import _jsonable, _to_numpy
from .kl import as_tensor, check_scale, kl_basis, n_from_spec, residual
from .seeding import int_seed


class ResidualDetector(OutlierMixin, BaseEstimator):
    """Residual-energy anomaly detector (scikit-learn outlier-detector conventions).

    Parameters
    ----------
    n_components : int or float in (0, 1), default=0.9
        ``M_A``: leading reference KL directions treated as "normal" variation; a float is
        the fraction of reference variance they explain.
    whiten : bool, default=False
        standardise the residual per direction: the score becomes
        ``sum_j (v_j . (x - mu))^2 / lambda_j`` over the reference's residual eigen-directions
        ``j > M_A`` with non-zero variance, plus the energy outside the reference's span
        divided by the mean residual variance (a probabilistic-PCA-like noise floor).
    contamination : float in (0, 0.5], default=0.1
        fraction of the training reference data flagged as outliers: ``threshold_`` is the
        ``1 - contamination`` quantile of the scores of all training rows (scikit-learn's
        convention; rows used for the basis score slightly low in-sample, so on fresh
        data a little more than ``contamination`` is flagged — use :meth:`pvalues` for a
        calibrated decision).
    calibration_fraction : float in [0, 1), default=0.2
        share of the reference rows held out (at random) for conformal p-values and the
        threshold; 0 uses all rows for the basis (then :meth:`pvalues` is unavailable).
    device : str or None
        torch device for the linear algebra.
    random_state : int or None
        seeds the calibration split.

    Attributes
    ----------
    mean_ : (P,) reference mean. components_ : (P, M_A) discarded (normal) directions.
    n_components_ : int. explained_variance_ : (r,) reference KL variances.
    calibration_scores_ : (n_cal,) sorted anomaly scores of the calibration rows.
    threshold_ : float, anomaly-score threshold; ``offset_ = -threshold_``.
    """

    def __init__(self, n_components=0.9, whiten: bool = False, contamination: float = 0.1,
                 calibration_fraction: float = 0.2, device=None, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.contamination = contamination
        self.calibration_fraction = calibration_fraction
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit on reference data ``X`` ``(N, P)``; ``y`` is ignored."""
        X = check_scale(validate_data(self, _to_numpy(X), dtype=np.float64))
        if not (0.0 < float(self.contamination) <= 0.5):
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination!r}")
        if not (0.0 <= float(self.calibration_fraction) < 1.0):
            raise ValueError(f"calibration_fraction must be in [0, 1), got "
                             f"{self.calibration_fraction!r}")
        n = len(X)
        n_cal = int(round(self.calibration_fraction * n))
        if self.calibration_fraction > 0 and (n_cal < 1 or n - n_cal < 2):
            raise ValueError(f"calibration_fraction={self.calibration_fraction} of {n} "
                             f"samples leaves too few rows for the basis or calibration")
        if n < 2:
            raise ValueError(f"ResidualDetector needs at least 2 samples, got n_samples={n}")
        seed = int_seed(self.random_state)
        perm = np.random.default_rng(seed).permutation(n)
        cal, fit_rows = np.sort(perm[:n_cal]), np.sort(perm[n_cal:])

        Xt = as_tensor(X, device=self.device)
        Xf = Xt[fit_rows]
        mu = Xf.mean(0)
        V, lam = kl_basis(Xf - mu)
        p = X.shape[1]
        m = min(n_from_spec(self.n_components, lam), max(p - 1, 0))
        self.mean_ = mu.cpu().numpy()
        self.explained_variance_ = lam.cpu().numpy()
        self.n_components_ = m
        self.components_ = V[:, :m].cpu().numpy()
        self.residual_components_ = V[:, m:].cpu().numpy()
        res_var = lam[m:]
        self.residual_variance_ = res_var.cpu().numpy()
        self.noise_floor_ = float(res_var.mean()) if res_var.numel() else 1.0
        if self.noise_floor_ <= 0:
            self.noise_floor_ = 1.0

        scores = self._score_t(Xt)
        self.calibration_scores_ = np.sort(scores[cal]) if n_cal else np.empty(0)
        self.threshold_ = float(np.quantile(scores, 1.0 - self.contamination))
        self.offset_ = -self.threshold_
        return self

    def _score_t(self, Xt: torch.Tensor) -> np.ndarray:
        mu = torch.as_tensor(self.mean_, device=Xt.device)
        V = torch.as_tensor(self.components_, device=Xt.device)
        R = residual(Xt - mu, V)
        energy = R.square().sum(1)
        if not self.whiten:
            return energy.cpu().numpy()
        U = torch.as_tensor(self.residual_components_, device=Xt.device)
        lam = torch.as_tensor(self.residual_variance_, device=Xt.device)
        c = R @ U
        inside = c.square().sum(1)
        outside = (energy - inside).clamp_min(0.0)
        return ((c.square() / lam).sum(1) + outside / self.noise_floor_).cpu().numpy()

    def anomaly_score(self, X) -> np.ndarray:
        """Residual energy ``(N,)`` (higher = more anomalous)."""
        check_is_fitted(self, "components_")
        X = check_scale(validate_data(self, _to_numpy(X), dtype=np.float64, reset=False))
        return self._score_t(as_tensor(X, device=self.device))

    def score_samples(self, X) -> np.ndarray:
        """``-anomaly_score`` (scikit-learn convention: higher = more normal)."""
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers (anomaly score above ``threshold_``)."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def pvalues(self, X) -> np.ndarray:
        """Split-conformal p-values ``(N,)``: ``(1 + #{calib >= s}) / (n_cal + 1)``."""
        check_is_fitted(self, "components_")
        cal = self.calibration_scores_
        if cal.size == 0:
            raise ValueError("pvalues need held-out calibration data: fit with "
                             "calibration_fraction > 0")
        s = self.anomaly_score(X)
        n_ge = cal.size - np.searchsorted(cal, s, side="left")
        return (1.0 + n_ge) / (cal.size + 1.0)

    # ------------------------------------------------------------------ model state
    def get_model_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays + JSON-able metadata reproducing the fitted detector (no pickles)."""
        check_is_fitted(self, "components_")
        arrays = {k: np.ascontiguousarray(getattr(self, k + "_")) for k in
                  ("mean", "components", "residual_components", "residual_variance",
                   "explained_variance", "calibration_scores")}
        params = {k: _jsonable(v) for k, v in self.get_params().items()}
        params["device"] = None if self.device is None else str(self.device)
        meta = {"estimator": "finder.ResidualDetector", "format_version": 1, "params": params,
                "n_features_in": int(self.n_features_in_), "n_components": self.n_components_,
                "noise_floor": self.noise_floor_, "threshold": self.threshold_}
        json.dumps(meta)
        return arrays, meta

    @classmethod
    def from_model_state(cls, arrays: dict, meta: dict) -> "ResidualDetector":
        if meta.get("estimator") != "finder.ResidualDetector":
            raise ValueError(f"not a ResidualDetector state (estimator={meta.get('estimator')!r})")
        det = cls(**meta["params"])
        for k in ("mean", "components", "residual_components", "residual_variance",
                  "explained_variance", "calibration_scores"):
            setattr(det, k + "_", np.asarray(arrays[k], float))
        det.n_features_in_ = int(meta["n_features_in"])
        det.n_components_ = int(meta["n_components"])
        det.noise_floor_ = float(meta["noise_floor"])
        det.threshold_ = float(meta["threshold"])
        det.offset_ = -det.threshold_
        return det
