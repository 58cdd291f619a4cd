"""Classifier heads that FINDER trains on its residual features, each with an exact,
pickle-free state (plain arrays + JSON-able metadata) so a fitted model can be written to
HDF5 and read back predicting identically.

A head sees features ``Z`` of shape ``(N, m)`` and binary targets ``y`` in {0, 1}; its
``decision_function`` is positive for class 1 and ``predict_proba1`` is P(y = 1).

- :class:`SVCHead`: RBF-kernel SVC (libsvm via scikit-learn) with Platt-calibrated
  probabilities from out-of-fold decision values; prediction is recomputed here from the
  support vectors, dual coefficients, intercept, ``gamma`` and the Platt parameters.
- :class:`NystroemHead`: Nyström-approximated RBF kernel + L2 logistic regression, linear
  in ``N``: the default above ``FINDER.svc_max_samples`` training rows.
- :class:`TorchHead`: a one-hidden-layer tanh network trained by full-batch Adam with
  physkit's flow engine (:func:`physkit.flow.minimize`), on CPU or CUDA.
- :class:`HGBHead`: scikit-learn's ``HistGradientBoostingClassifier`` (a tree ensemble for
  many events and few features); its trees are stored as plain node arrays and evaluated
  here, vectorised over events.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize as _scipy_minimize
from scipy.special import expit

from physkit.flow import minimize

_CHUNK = 4096


def _rbf(Z: np.ndarray, C: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma |z - c|^2)`` for all pairs, ``(N, d) x (K, d) -> (N, K)``."""
    zz = np.einsum("ij,ij->i", Z, Z)[:, None]
    cc = np.einsum("ij,ij->i", C, C)[None, :]
    d2 = np.maximum(zz + cc - 2.0 * (Z @ C.T), 0.0)
    return np.exp(-gamma * d2)


def _scale_gamma(Z: np.ndarray) -> float:
    """scikit-learn's ``gamma="scale"``: ``1 / (d * Var(Z))``."""
    v = float(Z.var()) * Z.shape[1]
    return 1.0 / v if v > 0 else 1.0


#: smallest Platt slope, per standard deviation of the decision values
PLATT_MIN_SLOPE = 1e-3


def class_weights(y: np.ndarray, class_weight) -> np.ndarray:
    """Per-row weights ``(N,)`` of targets ``y`` in {0, 1} for ``class_weight`` (None,
    "balanced": ``N / (2 N_c)``, or a dict {0: w0, 1: w1})."""
    if isinstance(class_weight, dict):
        return np.array([class_weight.get(k, 1.0) for k in (0, 1)], float)[y]
    if class_weight == "balanced":
        cnt = np.bincount(y, minlength=2).astype(float)
        return (len(y) / (2 * np.maximum(cnt, 1)))[y]
    return np.ones(len(y))


def fit_platt(f: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
              ) -> tuple[float, float]:
    """Platt's sigmoid ``P(y=1|f) = 1 / (1 + exp(-(a f + b)))`` by regularised max-likelihood
    (rows weighted by ``weights``, e.g. the head's class weights, so that the probabilities
    carry the same priors as the decision values), with ``a >= PLATT_MIN_SLOPE / sd(f)``.

    Uses Platt's smoothed targets ``(N+ + 1)/(N+ + 2)`` and ``1/(N- + 2)``.
    """
    f = np.asarray(f, float)
    w = np.ones(len(f)) if weights is None else np.asarray(weights, float)
    n_pos = float((y == 1).sum())
    n_neg = float((y == 0).sum())
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    s = float(f.std()) or 1.0

    def nll(ab):
        z = ab[0] * f / s + ab[1]
        # -[t log p + (1-t) log(1-p)] with p = sigmoid(z), stably
        loss = np.logaddexp(0.0, z) - t * z
        g = (expit(z) - t) * w
        return (loss * w).sum(), np.array([(g * f / s).sum(), g.sum()])

    b0 = np.log((w[y == 1].sum() + 1) / (w[y == 0].sum() + 1))
    # slope bounded below by PLATT_MIN_SLOPE (per sd of the decision values): the
    # probability must increase with the decision value (with few or noisy-label
    # out-of-fold values the free optimum can be <= 0, and a flat sigmoid would erase the
    # head's ranking from the probabilities that FINDER's ensemble averages)
    res = _scipy_minimize(nll, np.array([1.0, b0]), jac=True, method="L-BFGS-B",
                          bounds=[(PLATT_MIN_SLOPE, None), (None, None)])
    a, b = res.x
    return float(a / s), float(b)


class SVCHead:
    """RBF SVC; ``calibration_folds`` out-of-fold decision values fit Platt's sigmoid."""

    kind = "svc"

    def __init__(self, C: float = 1.0, gamma="scale", class_weight=None,
                 calibration_folds: int = 3, random_state=None):
        self.C, self.gamma, self.class_weight = C, gamma, class_weight
        self.calibration_folds, self.random_state = calibration_folds, random_state

    def fit(self, Z: np.ndarray, y: np.ndarray, *, calibrate: bool = True) -> "SVCHead":
        from sklearn.svm import SVC

        gamma = _scale_gamma(Z) if self.gamma == "scale" else float(self.gamma)
        svc = SVC(C=self.C, kernel="rbf", gamma=gamma, class_weight=self.class_weight)
        svc.fit(Z, y)
        self.gamma_ = gamma
        self.support_vectors_ = np.ascontiguousarray(svc.support_vectors_, dtype=float)
        self.dual_coef_ = np.ascontiguousarray(svc.dual_coef_.ravel(), dtype=float)
        self.intercept_ = float(svc.intercept_[0])
        self.platt_ = (1.0, 0.0)
        if calibrate:
            self.platt_ = fit_platt(self._oof_decision(Z, y, gamma), y,
                                    class_weights(y, self.class_weight))
        return self

    def _oof_decision(self, Z, y, gamma) -> np.ndarray:
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC

        k = min(self.calibration_folds, int(np.bincount(y).min()))
        if k < 2:  # too few samples of a class for folds: in-sample values
            return self.decision_function(Z)
        out = np.empty(len(y))
        skf = StratifiedKFold(k, shuffle=True, random_state=self.random_state)
        for tr, te in skf.split(Z, y):
            m = SVC(C=self.C, kernel="rbf", gamma=gamma, class_weight=self.class_weight)
            out[te] = m.fit(Z[tr], y[tr]).decision_function(Z[te])
        return out

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        out = np.empty(len(Z))
        for i in range(0, len(Z), _CHUNK):
            K = _rbf(Z[i:i + _CHUNK], self.support_vectors_, self.gamma_)
            out[i:i + _CHUNK] = K @ self.dual_coef_ + self.intercept_
        return out

    def predict_proba1(self, Z: np.ndarray) -> np.ndarray:
        a, b = self.platt_
        return expit(a * self.decision_function(Z) + b)

    def get_state(self):
        arrays = {"support_vectors": self.support_vectors_, "dual_coef": self.dual_coef_}
        meta = {"kind": self.kind, "gamma": self.gamma_, "intercept": self.intercept_,
                "platt_a": self.platt_[0], "platt_b": self.platt_[1]}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays, meta) -> "SVCHead":
        h = cls()
        h.support_vectors_ = np.asarray(arrays["support_vectors"], float)
        h.dual_coef_ = np.asarray(arrays["dual_coef"], float)
        h.gamma_, h.intercept_ = float(meta["gamma"]), float(meta["intercept"])
        h.platt_ = (float(meta["platt_a"]), float(meta["platt_b"]))
        return h


class NystroemHead:
    """Nyström RBF features (``n_landmarks`` random rows; "auto": ``min(300, 20 m)`` for
    ``m`` input features, at least 50) + L2 logistic regression."""

    kind = "nystroem"

    def __init__(self, C: float = 1.0, gamma="scale", n_landmarks="auto",
                 class_weight=None, random_state=None):
        self.C, self.gamma, self.n_landmarks = C, gamma, n_landmarks
        self.class_weight, self.random_state = class_weight, random_state

    def _features(self, Z):
        out = np.empty((len(Z), self.components_.shape[0]))
        for i in range(0, len(Z), _CHUNK):
            out[i:i + _CHUNK] = _rbf(Z[i:i + _CHUNK], self.components_, self.gamma_) \
                @ self.normalization_.T
        return out

    def fit(self, Z: np.ndarray, y: np.ndarray, **_) -> "NystroemHead":
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import LogisticRegression

        gamma = _scale_gamma(Z) if self.gamma == "scale" else float(self.gamma)
        k = min(300, max(50, 20 * Z.shape[1])) if self.n_landmarks == "auto" \
            else int(self.n_landmarks)
        ny = Nystroem(kernel="rbf", gamma=gamma, n_components=min(k, len(Z)),
                      random_state=self.random_state).fit(Z)
        self.gamma_ = gamma
        self.components_ = np.ascontiguousarray(ny.components_, dtype=float)
        self.normalization_ = np.ascontiguousarray(ny.normalization_, dtype=float)
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=500)
        lr.fit(self._features(Z), y)
        self.coef_ = lr.coef_.ravel().astype(float)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def decision_function(self, Z):
        return self._features(Z) @ self.coef_ + self.intercept_

    def predict_proba1(self, Z):
        return expit(self.decision_function(Z))

    def get_state(self):
        arrays = {"components": self.components_, "normalization": self.normalization_,
                  "coef": self.coef_}
        return arrays, {"kind": self.kind, "gamma": self.gamma_, "intercept": self.intercept_}

    @classmethod
    def from_state(cls, arrays, meta) -> "NystroemHead":
        h = cls()
        h.components_ = np.asarray(arrays["components"], float)
        h.normalization_ = np.asarray(arrays["normalization"], float)
        h.coef_ = np.asarray(arrays["coef"], float)
        h.gamma_, h.intercept_ = float(meta["gamma"]), float(meta["intercept"])
        return h


class TorchHead:
    """One-hidden-layer tanh network, logistic loss + L2 (``alpha``), trained by Adam
    through :func:`physkit.flow.minimize` (a batch of one model)."""

    kind = "torch"

    def __init__(self, hidden: int = 32, alpha: float = 1e-3, steps: int = 400,
                 lr: float = 3e-2, class_weight=None, random_state=None, device=None):
        self.hidden, self.alpha, self.steps, self.lr = hidden, alpha, steps, lr
        self.class_weight, self.random_state, self.device = class_weight, random_state, device

    def fit(self, Z: np.ndarray, y: np.ndarray, **_) -> "TorchHead":
        dev = torch.device(self.device) if self.device else torch.device("cpu")
        self.mean_ = Z.mean(0)
        sd = Z.std(0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        zt = torch.as_tensor((Z - self.mean_) / self.scale_, dtype=torch.float32, device=dev)
        yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
        w = class_weights(y, self.class_weight)
        wt = torch.as_tensor(w / w.sum(), dtype=torch.float32, device=dev)
        g = torch.Generator().manual_seed(int(self.random_state or 0) % (2**31))
        d, h = Z.shape[1], self.hidden
        params = {
            "W1": (torch.randn(1, d, h, generator=g) / np.sqrt(max(d, 1))).to(dev),
            "b1": torch.zeros(1, h, device=dev),
            "w2": (torch.randn(1, h, generator=g) / np.sqrt(h)).to(dev),
            "b2": torch.zeros(1, device=dev),
        }
        alpha = self.alpha

        def loss_fn(p, idx):
            hid = torch.tanh(torch.einsum("nd,bdh->bnh", zt, p["W1"]) + p["b1"][:, None, :])
            logit = torch.einsum("bnh,bh->bn", hid, p["w2"]) + p["b2"][:, None]
            bce = torch.nn.functional.softplus(logit) - yt * logit
            reg = alpha * (p["W1"].square().sum((1, 2)) + p["w2"].square().sum(1))
            return (bce * wt).sum(1) + reg

        res = minimize(loss_fn, params, steps=self.steps, lr=self.lr, tol=1e-7,
                       patience=30, optimizer="adam")
        self.params_ = {k: v.detach().cpu().double().numpy()[0] for k, v in res.params.items()}
        self.n_steps_ = int(res.n_steps)
        return self

    def decision_function(self, Z):
        p = self.params_
        hid = np.tanh(((Z - self.mean_) / self.scale_) @ p["W1"] + p["b1"])
        return hid @ p["w2"] + float(np.ravel(p["b2"])[0])

    def predict_proba1(self, Z):
        return expit(self.decision_function(Z))

    def get_state(self):
        arrays = {f"param_{k}": np.asarray(v) for k, v in self.params_.items()}
        arrays.update(mean=self.mean_, scale=self.scale_)
        return arrays, {"kind": self.kind}

    @classmethod
    def from_state(cls, arrays, meta) -> "TorchHead":
        h = cls()
        h.params_ = {k[6:]: np.asarray(v, float) for k, v in arrays.items()
                     if k.startswith("param_")}
        h.mean_, h.scale_ = np.asarray(arrays["mean"], float), np.asarray(arrays["scale"], float)
        return h


class HGBHead:
    """Histogram gradient boosting (scikit-learn, binary log-loss); prediction from the
    stored trees: ``baseline + sum of the leaf values`` reached by ``x[f] <= threshold``."""

    kind = "hgb"
    #: node fields stored per tree (numeric arrays, concatenated over trees)
    FIELDS = ("feature_idx", "num_threshold", "left", "right", "is_leaf", "value")

    def __init__(self, class_weight=None, random_state=None, max_iter: int = 100):
        self.class_weight, self.random_state, self.max_iter = class_weight, random_state, max_iter

    def fit(self, Z: np.ndarray, y: np.ndarray, **_) -> "HGBHead":
        """Fit on ``Z`` (N, m), ``y`` in {0, 1}, with one OpenMP thread (FINDER parallelises
        over members instead; on a shared machine OpenMP's spinning threads were measured
        ten times slower than one). Class weights are applied as the equivalent shift of
        the log-odds (``log(w_1 n_1 / (w_0 n_0))`` removed from the prior) after an
        unweighted fit: scikit-learn bins weighted data with a weighted-percentile loop that
        took most of the fit time."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        seed = None if self.random_state is None else int(self.random_state) % (2**32)
        with threadpool_limits(limits=1, user_api="openmp"):
            hgb = HistGradientBoostingClassifier(max_iter=self.max_iter,
                                                 random_state=seed).fit(Z, y)
        trees = [t[0].nodes for t in hgb._predictors]
        sizes = np.array([len(t) for t in trees], dtype=np.int64)
        self.offsets_ = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        nodes = np.concatenate(trees)
        off = np.repeat(self.offsets_, sizes)
        self.nodes_ = {"feature_idx": nodes["feature_idx"].astype(np.int64),
                       "num_threshold": nodes["num_threshold"].astype(np.float64),
                       "left": nodes["left"].astype(np.int64) + off,
                       "right": nodes["right"].astype(np.int64) + off,
                       "is_leaf": nodes["is_leaf"].astype(np.int8),
                       "value": nodes["value"].astype(np.float64)}
        self.baseline_ = float(np.ravel(hgb._baseline_prediction)[0]) + self._prior_shift(y)
        return self

    def _prior_shift(self, y: np.ndarray) -> float:
        """Log-odds shift turning the unweighted fit into the class-weighted one."""
        n = np.bincount(y, minlength=2).astype(float)
        if self.class_weight == "balanced":
            w = len(y) / (2 * np.maximum(n, 1))
        elif isinstance(self.class_weight, dict):
            w = np.array([self.class_weight.get(k, 1.0) for k in (0, 1)], float)
        else:
            return 0.0
        return float(np.log(w[1] / w[0]))

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        """Raw log-odds ``(N,)``: all trees walked level by level, vectorised over rows."""
        n = self.nodes_
        out = np.full(len(Z), self.baseline_)
        if not len(self.offsets_):
            return out
        leaf = n["is_leaf"].astype(bool)
        for i in range(0, len(Z), _CHUNK):
            z = Z[i:i + _CHUNK]
            rows = np.arange(len(z))[None, :]
            idx = np.repeat(self.offsets_[:, None], len(z), axis=1)  # (n_trees, n)
            while True:
                inner = ~leaf[idx]
                if not inner.any():
                    break
                go_left = z[rows, n["feature_idx"][idx]] <= n["num_threshold"][idx]
                nxt = np.where(go_left, n["left"][idx], n["right"][idx])
                idx = np.where(inner, nxt, idx)
            out[i:i + _CHUNK] += n["value"][idx].sum(axis=0)
        return out

    def predict_proba1(self, Z):
        return expit(self.decision_function(Z))

    def get_state(self):
        arrays = {f"node_{k}": v for k, v in self.nodes_.items()}
        arrays["offsets"] = self.offsets_
        return arrays, {"kind": self.kind, "baseline": self.baseline_}

    @classmethod
    def from_state(cls, arrays, meta) -> "HGBHead":
        h = cls()
        h.nodes_ = {k: np.asarray(arrays[f"node_{k}"]) for k in cls.FIELDS}
        h.offsets_ = np.asarray(arrays["offsets"], dtype=np.int64)
        h.baseline_ = float(meta["baseline"])
        return h


HEADS = {h.kind: h for h in (SVCHead, NystroemHead, TorchHead, HGBHead)}
