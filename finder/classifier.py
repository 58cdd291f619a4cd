"""FINDER: binary classification from eigenspace residuals (Murphy et al., arXiv:2510.19917).

Construction (all statistics from the training data only; :mod:`finder.filter`):

1. standardise the features (``standardize="feature"``, the default: z-scores with the
   training statistics) and centre on the reference class A's mean ``mu_A``;
2. Karhunen–Loève (PCA) basis of class A; drop its top ``M_A`` directions ``V``, i.e. map
   ``x -> r(x) = (I - V V^T)(x - mu_A)``;
3. rotate the residuals into class B's eigenbasis *inside* the residual space (B's residuals
   centred on their own mean ``mu_B``); keep ``M_res`` of those coordinates — the smallest
   class-B variances (``variant="aca-s"``) or the largest (``"aca-l"``) — plus the residual
   class-mean difference when B's directions do not span it (``mean_direction``);
4. train a classifier head on those coordinates.

The method's *stochastic* part is an ensemble (``n_estimators``): every member draws its own
balanced split of class A (which rows estimate A's KL basis, which train the head) and its
own cross-fitting folds; the members' scores are averaged.

Correspondence with the authors' MATLAB code (github trajanmurphy/FINDER, FINDER-ML/source):
A is the majority class (``readData2.m``); the data are standardised (``MyUnitVariance2.m``)
and centred (``SplitTraining5.m``: the pooled training mean in its latest version); A's basis
is the SVD of its covariance rows with the top ``k1`` left vectors dropped
(``ProjectOntoAMA.m``); B's basis is the *full* SVD of B's centred residual coordinates
(``ProjectOntoT2.m``), so the rotated data keep every residual direction, the class-mean
difference included (the thin construction here adds that direction explicitly:
:mod:`finder.filter`); ACA-S keeps the smallest-variance rows, ACA-L the largest
(``ResidSubspace3.m``, ``SepFilter3.m``); the kept coordinates go unscaled to an RBF SVC
(``fitcsvm``, ``KernelScale='auto'``, box constraint 1) with posterior probabilities
(``FitSVMNormalize.m``). Its defaults (``InitializeParameters.m``): ``k1 = 8``,
``Mres = 140``, ACA-L, balanced split. Differences here: ``M_A`` is chosen per data set by
inner cross-validation between no truncation and a truncation scaled to the dimension
(``n_components="auto"``; the reference's 8 was set for hundreds of features and discards
most of a 4-feature problem); ``gamma="scale"`` stands in for MATLAB's ``'auto'`` kernel
scale; B's zero-variance directions other than the mean difference are never candidates;
the head's features are cross-fitted (``cross_fit``); the balanced split keeps at least
half of A for the covariance; members are averaged (``n_estimators``).
"""
from __future__ import annotations

import json
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils import TransformerTags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import selection
from .filter import b_moments, basis_A, crossfit_features, filter_family, select_filter
from .heads import HEADS, HGBHead, NystroemHead, SVCHead, TorchHead
from .kl import as_tensor, check_scale, n_from_spec
from .screening import auto_screens, screen_features
from .seeding import int_seed, member_seed

#: a wider grid of residual dimensions, for ``n_residual=AUTO_RESIDUAL_COUNTS`` (a list is
#: chosen from by inner CV); 140 (the reference implementation's ``Mres``) in practice means
#: "all of B's residual directions"
AUTO_RESIDUAL_COUNTS = (1, 2, 5, 10, 20, 50, 140)
#: ``M_A`` of the reference implementation (``k1 = 8``), the largest truncation "auto" tries
REFERENCE_N_COMPONENTS = 8
#: "auto" tries ``M_A = 0`` and ``min(8, P // AUTO_COMPONENTS_PER_FEATURES)`` (>= 1)
AUTO_COMPONENTS_PER_FEATURES = 4
#: ``M_res`` default: ``parameters.multilevel.Mres_manual = 140`` (same file)
DEFAULT_N_RESIDUAL = 140
#: ``n_residual="auto"`` also tries one B direction from ``P >= WIDE_RATIO * N`` on
WIDE_RATIO = 10
#: ``n_estimators="auto"``: ``clip(round(min(ENSEMBLE_ROWS / N, ENSEMBLE_CELLS / (N P))), 1,
#: MAX_AUTO_ESTIMATORS)`` members, so the ensemble's cost stays bounded (at 10^5 rows one
#: member's split varies little and the ensemble would buy nothing)
ENSEMBLE_ROWS = 20_000
ENSEMBLE_CELLS = 2_000_000
MAX_AUTO_ESTIMATORS = 10
#: heads the default ("auto") chooses from by inner CV above ``svc_max_samples`` rows and
#: up to ``TREE_MAX_FEATURES`` features; with more features it takes "nystroem"
LARGE_N_HEADS = ("hgb", "nystroem")
TREE_MAX_FEATURES = 32
#: heads with random parts of their own (hgb: the early-stopping validation split above
#: 10 000 rows; nystroem: the landmarks; torch: the initial weights): their members differ
#: even when the filter keeps everything, and averaging them bags the head
STOCHASTIC_HEADS = ("hgb", "nystroem", "torch")
#: ``n_estimators="auto"`` fits at least this many members with the "hgb" head (a tree
#: ensemble's score varies from seed to seed much more than a filter's at large N)
TREE_MEMBERS = 4

#: ``reference_class=None`` takes the majority class only when the count difference exceeds
#: this many binomial standard deviations (``sqrt(N)``), else ``classes_[0]``
BALANCE_SIGMAS = 3.0

_VARIANTS = ("aca-s", "aca-l")
_STANDARDIZE = (None, "feature", "sample")
#: version of :meth:`FINDER.get_model_state`'s layout (1: one member, before ensembles;
#: 2: members; 3: members on screened features, written only when a screen was chosen)
STATE_VERSION = 2
SCREENED_STATE_VERSION = 3

#: scikit-learn estimator checks that cannot apply to FINDER, with the reason; pass as
#: ``check_estimator(FINDER(), expected_failed_checks=SKLEARN_EXPECTED_FAILED_CHECKS)``.
SKLEARN_EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _to_numpy(X):
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def auto_residuals(n_samples: int, n_features: int) -> list[int]:
    """``M_res`` candidates of ``n_residual="auto"``: all of B's directions (the reference's
    ``Mres = 140``); for very wide data (``P >= WIDE_RATIO * N``) also a single one.

    There B's sample eigen-directions are mostly noise (a variance spike is detectable only
    above ``~(1 + sqrt(P / n_B))`` times the noise level) and the class-mean direction,
    always kept, may carry all there is: with 25 + 25 samples, 10 000 features and a 3-sd
    shift in 10 of them, one B direction gave AUC 0.97 against 0.89 with all 24. At
    ``P / N`` of a few (400 jet-image pixels, 100 jets) the inner CV picked the single
    direction on label noise and lost (AUC 0.73 against 0.84), hence the ratio.
    """
    return [1, DEFAULT_N_RESIDUAL] if n_features >= WIDE_RATIO * n_samples \
        else [DEFAULT_N_RESIDUAL]


def auto_components(n_features: int, lam: torch.Tensor) -> list[int]:
    """``M_A`` candidates of ``n_components="auto"``: 0 (no truncation) and
    ``min(8, P // 4)`` (the reference's ``k1 = 8`` scaled down in low dimension), each
    clipped so that a residual direction and class A's spectrum ``lam`` remain."""
    k = min(REFERENCE_N_COMPONENTS, n_features // AUTO_COMPONENTS_PER_FEATURES,
            int(lam.numel()), max(n_features - 1, 0))
    return sorted({0, k})


class _Member:
    """One fitted filter + head of the ensemble: features ``(x - center) @ components``."""

    def __init__(self, center, components, residual_variance, explained_variance,
                 n_components, head):
        self.center, self.components = center, components
        self.residual_variance, self.explained_variance = residual_variance, explained_variance
        self.n_components, self.head = int(n_components), head

    def features(self, Xt: torch.Tensor) -> np.ndarray:
        c = torch.as_tensor(self.center, device=Xt.device)
        W = torch.as_tensor(self.components, device=Xt.device)
        return ((Xt - c) @ W).cpu().numpy()


def within_class_sd(X: torch.Tensor, y: np.ndarray) -> torch.Tensor:
    """``(P,)`` standard deviation of each feature of ``X`` ``(N, P)`` about its class mean
    (labels ``y`` in {0, 1}, pooled, ``N - 2`` degrees of freedom); 1 where it is 0."""
    y = torch.as_tensor(np.asarray(y), device=X.device)
    ss = sum((X[y == k] - X[y == k].mean(0)).square().sum(0) for k in (0, 1)
             if bool((y == k).any()))
    sd = (ss / max(X.shape[0] - 2, 1)).sqrt()
    return torch.where(sd > 0, sd, torch.ones_like(sd))


def _unfiltered(M_A: int, W: torch.Tensor) -> bool:
    """Whether a filter keeps everything (no truncation, all directions: ``W`` is the
    identity). Then no row is needed for a basis and the balanced split and cross-fitting
    have nothing to do: every training row trains the head, which sees the standardised
    inputs themselves (FINDER reduces to its head on them)."""
    return M_A == 0 and W.shape[0] == W.shape[1]


def _head_scores(head, Z) -> np.ndarray:
    if hasattr(head, "decision_function"):
        return np.asarray(head.decision_function(Z), float).ravel()
    return np.asarray(head.predict_proba(Z), float)[:, 1]


class FINDER(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Eigenspace-residual binary classifier (scikit-learn estimator; numpy or torch input).

    Parameters
    ----------
    n_components : "auto", int, float in (0, 1) or a list of them, default="auto"
        ``M_A``: leading KL directions of the reference class to discard. "auto" chooses
        by inner cross-validation between 0 (no truncation) and ``min(8, P // 4)`` (the
        reference implementation's ``k1 = 8``, scaled down for few features); a float is
        the fraction of the reference class's variance the discarded directions explain;
        a list is chosen from by inner CV. At least one residual dimension is always kept.
    n_residual : "auto", int or a list of ints, default="auto"
        ``M_res``: B-eigenbasis coordinates fed to the head, clipped to the number of
        non-zero-variance B directions. "auto": 140 (the reference implementation's
        ``Mres``, i.e. all of them in practice) and, when ``P >= 10 N``, also 1, chosen by
        inner CV (:func:`auto_residuals`); a list (e.g. ``AUTO_RESIDUAL_COUNTS``) is
        chosen from by inner CV.
    variant : {"aca-s", "aca-l"}, default="aca-l"
        keep the smallest ("aca-s") or largest ("aca-l") class-B variance directions.
    mean_direction : bool, default=True
        also keep the residual class-mean difference when B's kept directions do not span
        it (:mod:`finder.filter`); without it a pure mean shift between the classes can be
        invisible to the filter when ``P`` exceeds the class-B sample count.
    reference_class : label or None, default=None
        class A. ``None``: the majority class of the training labels when the count
        difference exceeds ``3 sqrt(N)``, else ``classes_[0]`` (with nearly balanced noisy
        labels the majority is decided by the noise, and the two choices can differ a lot:
        on 50 + 50 jet images with 20% flips one repeat scored AUC 0.26 with the top jets as
        A, 0.84 with QCD; by the usual convention label 0 is the background / reference).
    classifier : "auto", "svc", "nystroem", "hgb", "torch" or a scikit-learn classifier
        the head. "auto": the exact RBF SVC (Platt probabilities) up to ``svc_max_samples``
        head-training rows; above, with up to 32 features, "hgb" (histogram gradient
        boosting) or "nystroem" (Nyström RBF + logistic regression), whichever scores better
        in the inner CV; with more features "nystroem". "torch" is a small tanh
        network trained by :func:`physkit.flow.minimize`. A scikit-learn classifier is
        cloned and fitted on targets {0, 1} (1 = ``classes_[1]``); it has no array state.
    C, gamma : float, float or "scale"
        regularisation / RBF width of the kernel heads (``gamma="scale"`` is
        ``1 / (M_res * Var(features))``); ``C`` is also the torch head's inverse L2 weight.
    standardize : "feature", "sample" or None, default="feature"
        scale each feature by its within-class standard deviation on the training data
        (features in different units would otherwise weigh by their units; the total sd
        would also count the class difference and shrink the features that carry it), each
        sample across its features, or nothing.
    balanced_split : bool, default=True
        split class A's training rows: ``max(n_A - n_B, n_A // 2)`` of them estimate A's KL
        basis, the rest train the head (with all of B, classes balanced); as the reference
        implementation's ``splitTraining`` but keeping at least half of A for the basis.
    class_weight : None, "balanced" or dict {label: weight}, default=None
        class weights of the built-in heads (``None`` with ``balanced_split``: "balanced").
    n_estimators : int or "auto", default="auto"
        ensemble members, each with its own random balanced split and cross-fitting folds;
        scores are averaged. When the chosen filter keeps everything (no truncation, every
        direction) and the head is deterministic (svc, custom) there is nothing random to
        average and one member is fitted. "auto": ``clip(round(min(2e4 / N, 2e6 / (N P))),
        1, 10)`` for ``N`` samples of ``P`` features (the cost stays bounded; at 10^5 rows
        one split varies little from the next), at least 4 with the "hgb" head (bagging
        the trees' early-stopping splits).
    n_jobs : int or None
        members fitted in parallel threads (joblib; the linear algebra releases the GIL).
    cv, cv_repeats : int, default=3, 2
        inner stratified folds and their repetitions for the data-driven choices (one
        repetition when the inner CV runs on a subsample).
    auto_max_samples : int, default=2000
        the inner CV runs on a stratified subsample of at most this many rows.
    svc_max_samples : int, default=2000
        above this many head-training rows the default head is no longer the exact SVC
        (its cost grows like N^2 to N^3, worst with noisy labels, where most rows become
        support vectors).
    cross_fit : int, default=3
        the head trains on out-of-fold features: each of ``cross_fit`` folds of the
        head-training rows gets the filter fitted without it (in-sample residual coordinates
        are biased low along a class's own least-variance directions). 0 or 1: in-sample.
    screen : "auto", None, int or a list of ints / None, default="auto"
        keep only the ``screen`` features with the largest ``|Welch t|`` between the
        classes on the training rows (:mod:`finder.screening`) before the filter. "auto":
        when ``P >= 10 N``, no screening or ``ceil(N / ln N)``, ``N`` or ``4 N`` features,
        chosen by inner CV (the statistic from each inner fold's training rows only);
        below that ratio, no screening. None: never; an int: always (all features when
        ``>= P``); a list is chosen from by inner CV.
    device : str or torch.device or None
        where the linear algebra runs ("cpu", "cuda"); None = CPU.
    random_state : int, RandomState or None
        seeds every random step (splits, folds, landmarks, heads, members).

    Attributes
    ----------
    classes_ : (2,) labels; ``decision_function > 0`` means ``classes_[1]`` (built-in heads).
    reference_class_ : the label used as class A.
    members_ : the fitted ensemble members (``center``, ``components``, ``head``, ...).
    n_components_, n_residual_ : ``M_A`` and the residual feature count of the first member.
    center_, components_, head_ : the first member's centre (P,), filter (P, m), head.
    explained_variance_ : (r_A,) class A's KL variances (first member's basis rows).
    residual_variance_ : (m,) class B's variances along the first member's kept directions.
    head_kind_ : "svc", "nystroem", "hgb", "torch" or "custom".
    screened_features_ : (k,) sorted int indices of the input features the filters see,
        or None when no screen was applied (then ``center_`` etc. have ``P`` rows, else ``k``).
    cv_results_ : dict (when something was chosen by inner CV): candidates
        ``(n_components, n_residual, head, screen)``, mean and standard error of their AUC,
        choice.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.metrics import roc_auc_score
    >>> from finder import FINDER
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 6)); y = np.r_[np.zeros(200), np.ones(200)]
    >>> X[200:, 5] += 1.5                                  # B differs along one feature
    >>> clf = FINDER(random_state=0).fit(X, y)
    >>> Xt = rng.normal(size=(400, 6)); Xt[200:, 5] += 1.5
    >>> bool(roc_auc_score(y, clf.decision_function(Xt)) > 0.8)
    True
    """

    def __init__(self, n_components="auto", n_residual="auto",
                 variant: str = "aca-l", mean_direction: bool = True, reference_class=None,
                 classifier="auto", C: float = 1.0, gamma="scale",
                 standardize: str | None = "feature", balanced_split: bool = True,
                 class_weight=None, n_estimators="auto", n_jobs=None, cv: int = 3,
                 cv_repeats: int = 2, auto_max_samples: int = 2000,
                 svc_max_samples: int = 2000, cross_fit: int = 3, screen="auto",
                 device=None, random_state=None):
        self.n_components = n_components
        self.n_residual = n_residual
        self.variant = variant
        self.mean_direction = mean_direction
        self.reference_class = reference_class
        self.classifier = classifier
        self.C = C
        self.gamma = gamma
        self.standardize = standardize
        self.balanced_split = balanced_split
        self.class_weight = class_weight
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.cv = cv
        self.cv_repeats = cv_repeats
        self.auto_max_samples = auto_max_samples
        self.svc_max_samples = svc_max_samples
        self.cross_fit = cross_fit
        self.screen = screen
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        return tags

    # ------------------------------------------------------------------ options
    def _check_params(self) -> None:
        """Every option checked here, one message each."""
        def need(ok, msg):
            if not ok:
                raise ValueError(msg)

        need(self.variant in _VARIANTS,
             f"variant must be one of {_VARIANTS}, got {self.variant!r}")
        need(self.standardize in _STANDARDIZE,
             f"standardize must be one of {_STANDARDIZE}, got {self.standardize!r}")
        res = self.n_residual if isinstance(self.n_residual, (list, tuple)) else [self.n_residual]
        need(len(res) > 0 and all(r == "auto" or (_is_int(r) and r >= 1) for r in res),
             f"n_residual must be 'auto', an int >= 1 or a list of ints, got "
             f"{self.n_residual!r}")
        comp = self.n_components if isinstance(self.n_components, (list, tuple)) \
            else [self.n_components]
        need(len(comp) > 0, "n_components must not be an empty list")
        for c in comp:
            if not (isinstance(c, str) and c == "auto"):
                n_from_spec(c, torch.ones(1))  # validates the type / range
        need(not isinstance(self.classifier, str) or self.classifier in ("auto", *HEADS),
             f"classifier must be 'auto', {', '.join(repr(k) for k in HEADS)} or a "
             f"scikit-learn classifier, got {self.classifier!r}")
        need(self.n_estimators == "auto" or (_is_int(self.n_estimators)
                                             and self.n_estimators >= 1),
             f"n_estimators must be an int >= 1 or 'auto', got {self.n_estimators!r}")
        need(self.n_jobs is None or _is_int(self.n_jobs),
             f"n_jobs must be None or an int, got {self.n_jobs!r}")
        for name in ("cv", "cv_repeats", "auto_max_samples", "svc_max_samples"):
            v = getattr(self, name)
            need(_is_int(v) and v >= 1, f"{name} must be an int >= 1, got {v!r}")
        need(_is_int(self.cross_fit) and self.cross_fit >= 0,
             f"cross_fit must be an int >= 0, got {self.cross_fit!r}")
        need(isinstance(self.C, Real) and self.C > 0, f"C must be > 0, got {self.C!r}")
        need(self.gamma == "scale" or (isinstance(self.gamma, Real) and self.gamma > 0),
             f"gamma must be 'scale' or a float > 0, got {self.gamma!r}")
        need(self.class_weight is None or self.class_weight == "balanced"
             or isinstance(self.class_weight, dict),
             f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got "
             f"{self.class_weight!r}")
        need(isinstance(self.mean_direction, (bool, np.bool_)),
             f"mean_direction must be True or False, got {self.mean_direction!r}")
        scr = self.screen if isinstance(self.screen, (list, tuple)) else [self.screen]
        need(self.screen == "auto" or (len(scr) > 0 and all(
            k is None or (_is_int(k) and k >= 1) for k in scr)),
             f"screen must be 'auto', None, an int >= 1 or a list of them, got "
             f"{self.screen!r}")

    # ------------------------------------------------------------------ helpers
    def _standardize_fit(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        """Feature means and *within-class* standard deviations (pooled over the two
        classes): the pooled total sd would include the class difference itself and shrink
        exactly the features that differ (with 25 + 25 samples and a 10-sd mean shift in 10
        of 10 000 features, z-scoring by the total sd cut FINDER's AUC from 1.0 to 0.65)."""
        if self.standardize == "feature":
            self.feature_mean_ = X.mean(0)
            ss = sum(((X[y_idx == k] - X[y_idx == k].mean(0)) ** 2).sum(0) for k in (0, 1)
                     if (y_idx == k).any())
            sd = np.sqrt(ss / max(len(X) - 2, 1))
            self.feature_scale_ = np.where(sd > 0, sd, 1.0)  # as within_class_sd, in numpy

    def _prep(self, X: np.ndarray) -> torch.Tensor:
        """Standardize (as configured) and move to the torch device, ``(N, P)`` float64."""
        if self.standardize == "feature":
            X = (X - self.feature_mean_) / self.feature_scale_
        elif self.standardize == "sample":
            mu = X.mean(1, keepdims=True)
            sd = X.std(1, keepdims=True)
            X = (X - mu) / np.where(sd > 0, sd, 1.0)
        return as_tensor(X, device=self.device)

    def _head_kinds(self, n_rows: int, n_features: int) -> list[str]:
        if not isinstance(self.classifier, str):
            return ["custom"]
        if self.classifier != "auto":
            return [self.classifier]
        if n_rows <= self.svc_max_samples:
            return ["svc"]
        return list(LARGE_N_HEADS) if n_features <= TREE_MAX_FEATURES else ["nystroem"]

    def _make_head(self, kind: str, class_weight, seed: int):
        if kind == "svc":
            return SVCHead(C=self.C, gamma=self.gamma, class_weight=class_weight,
                           random_state=seed)
        if kind == "nystroem":
            return NystroemHead(C=self.C, gamma=self.gamma, class_weight=class_weight,
                                random_state=seed)
        if kind == "hgb":
            return HGBHead(class_weight=class_weight, random_state=seed)
        if kind == "torch":
            return TorchHead(alpha=1e-3 / self.C, class_weight=class_weight, random_state=seed,
                             device=self.device)
        return clone(self.classifier)

    def _split_A(self, idx_A: np.ndarray, n_B: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """Class A rows for the KL basis and for the head (``balanced_split``)."""
        if not (self.balanced_split and len(idx_A) >= 2):
            return idx_A, idx_A
        perm = rng.permutation(idx_A)
        n_cov = max(len(idx_A) - n_B, len(idx_A) // 2)
        n_cov = min(n_cov, len(idx_A) - 1)
        return np.sort(perm[:n_cov]), np.sort(perm[n_cov:])

    def _select(self, f, m):
        return select_filter(f, m, self.variant, bool(self.mean_direction))

    @staticmethod
    def _resolve_M_A(spec, lam: torch.Tensor, n_features: int) -> int:
        return min(n_from_spec(spec, lam), max(n_features - 1, 0))

    def _n_members(self, n: int, p: int, head: str) -> int:
        if self.n_estimators != "auto":
            return int(self.n_estimators)
        n = max(n, 1)
        k = int(np.clip(round(min(ENSEMBLE_ROWS / n, ENSEMBLE_CELLS / (n * max(p, 1)))),
                        1, MAX_AUTO_ESTIMATORS))
        return max(k, TREE_MEMBERS) if head == "hgb" else k

    # ------------------------------------------------------------------ fit
    def _labels(self, y):
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(f"Only binary classification is supported. FINDER needs "
                             f"samples of exactly 2 classes, got {len(classes)} class"
                             f"{'es' if len(classes) != 1 else ''}")
        if self.reference_class is None:
            counts = np.bincount(y_idx, minlength=2)
            clear = counts.max() - counts.min() > BALANCE_SIGMAS * np.sqrt(counts.sum())
            a = int(np.argmax(counts)) if clear else 0
        else:
            hit = np.flatnonzero(classes == self.reference_class)
            if hit.size == 0:
                raise ValueError(f"reference_class={self.reference_class!r} is not among the "
                                 f"training labels {classes.tolist()}")
            a = int(hit[0])
        return classes, y_idx, a

    def fit(self, X, y):
        """Fit the ensemble of residual filters and heads on ``X`` ``(N, P)``, ``y`` ``(N,)``."""
        self._check_params()
        X, y = validate_data(self, _to_numpy(X), _to_numpy(y), dtype=np.float64)
        check_scale(X)
        self.classes_, y_idx, a = self._labels(y)
        self.reference_class_ = self.classes_[a]
        self._seed = seed = int_seed(self.random_state)
        self._standardize_fit(X, y_idx)
        Xt = self._prep(X)
        idx_A, idx_B = np.flatnonzero(y_idx == a), np.flatnonzero(y_idx != a)
        class_weight = self.class_weight
        if isinstance(class_weight, dict):  # {label: w} -> {head target in {0, 1}: w}
            class_weight = {i: float(class_weight.get(c, 1.0))
                            for i, c in enumerate(self.classes_.tolist())}
        if self.balanced_split and len(idx_A) >= 2 and class_weight is None:
            class_weight = "balanced"
        n_cov = len(self._split_A(idx_A, len(idx_B), np.random.default_rng(0))[0])
        n_head = len(y_idx) - n_cov if self.balanced_split else len(y_idx)
        setting = self._choose(Xt, y_idx, a, class_weight,
                               self._head_kinds(n_head, X.shape[1]), seed)
        self.screened_features_ = None
        if setting[3] is not None and setting[3] < X.shape[1]:
            # the chosen screen, now from every training row
            self.screened_features_ = screen_features(Xt, y_idx, np.arange(len(y_idx)),
                                                      setting[3])
            Xt = Xt[:, torch.as_tensor(self.screened_features_, device=Xt.device)]
        n_members = self._n_members(len(y_idx), Xt.shape[1], setting[2])

        def one(i):
            return self._fit_member(Xt, y_idx, idx_A, idx_B, setting, class_weight,
                                    member_seed(seed, i))

        first = one(0)
        if _unfiltered(first.n_components, torch.as_tensor(first.components)) and \
                setting[2] not in STOCHASTIC_HEADS:
            n_members = 1  # nothing random left: the members would all be this one
        if self.n_jobs not in (None, 1) and n_members > 1:
            from joblib import Parallel, delayed

            members = [first] + Parallel(n_jobs=self.n_jobs, prefer="threads")(
                delayed(one)(i) for i in range(1, n_members))
        else:
            members = [first] + [one(i) for i in range(1, n_members)]
        self.members_ = members
        first = members[0]
        self.center_, self.components_, self.head_ = first.center, first.components, first.head
        self.n_components_ = first.n_components
        self.n_residual_ = int(first.components.shape[1])
        self.explained_variance_ = first.explained_variance
        self.residual_variance_ = first.residual_variance
        self.head_kind_ = setting[2]
        return self

    def _fit_member(self, Xt, y_idx, idx_A, idx_B, setting, class_weight, seed) -> _Member:
        """One member: its own balanced split and folds, filter on all its rows, head on
        cross-fitted features."""
        spec, m, kind, _ = setting
        rng = np.random.default_rng(seed)
        cov_A, clf_A = self._split_A(idx_A, len(idx_B), rng)
        clf_rows = np.sort(np.concatenate([clf_A, idx_B]))
        A = basis_A(Xt[cov_A])
        M_A = self._resolve_M_A(spec, A.lam, Xt.shape[1])
        mB = b_moments(Xt, idx_B, A)
        fam, _ = filter_family(Xt[cov_A], Xt[idx_B], [M_A], A, mB)
        c, W, var = self._select(fam[M_A], m)
        if _unfiltered(M_A, W):  # identity features: every row trains the head
            rows = np.sort(np.concatenate([idx_A, idx_B]))
            Z, t = ((Xt[rows] - c) @ W).cpu().numpy(), (y_idx[rows] == 1).astype(np.int64)
        else:
            t = (y_idx[clf_rows] == 1).astype(np.int64)
            Z = crossfit_features(Xt, cov_A, idx_B, clf_rows, t, [(M_A, m)], fam,
                                  self._select, self.cross_fit, seed, A, mB)[M_A, m]
        head = self._make_head(kind, class_weight, seed).fit(Z, t)
        return _Member(c.cpu().numpy(), W.cpu().numpy(), var.cpu().numpy(),
                       A.lam.cpu().numpy(), M_A, head)

    # ------------------------------------------------------------------ inner CV
    def _choose(self, Xt, y_idx, a, class_weight, heads, seed) -> tuple:
        """``(M_A spec, M_res, head kind, screen)``: given, or chosen by repeated inner CV on
        a stratified subsample (:mod:`finder.selection`); sets ``cv_results_``."""
        rng = np.random.default_rng(seed)
        rows = selection.subsample(y_idx, self.auto_max_samples, rng)
        p = Xt.shape[1]
        screens = auto_screens(len(y_idx), p) if self.screen == "auto" else list(
            self.screen if isinstance(self.screen, (list, tuple)) else [self.screen])
        screens = list(dict.fromkeys(None if k is None or k >= p else int(k) for k in screens))
        cands = []
        for k in screens:
            cands += [(s, m, h, k) for s in self._grid_A(Xt, y_idx, a, rows, k)
                      for m in self._grid_res(len(y_idx), p if k is None else k)
                      for h in heads]
        if len(cands) == 1:
            return cands[0]
        # a subsample is itself a random draw: one repeat of the folds on it
        repeats = self.cv_repeats if len(rows) == len(y_idx) else 1
        folds = selection.repeated_folds(y_idx[rows], self.cv, repeats, seed)

        def evaluate(tr, te):
            return self._evaluate(Xt, y_idx, a, rows[tr], rows[te], cands, class_weight,
                                  rng, seed)

        choice, res = selection.select(cands, folds, evaluate)
        self.cv_results_ = res
        return choice

    def _grid_A(self, Xt, y_idx, a, rows, screen) -> list:
        """``M_A`` candidates (specs; "auto" resolved for ``screen`` features, or all, with
        class A's spectrum on the subsample ``rows``)."""
        p = Xt.shape[1] if screen is None else screen
        grid = []
        for c in (self.n_components if isinstance(self.n_components, (list, tuple))
                  else [self.n_components]):
            if isinstance(c, str):  # "auto"
                c = auto_components(p, basis_A(Xt[rows[y_idx[rows] == a]]).lam)
            grid += [x for x in (c if isinstance(c, list) else [c]) if x not in grid]
        return grid

    def _grid_res(self, n: int, p: int) -> list[int]:
        """``M_res`` candidates for ``n`` rows of ``p`` (screened) features."""
        grid = []
        for m in (self.n_residual if isinstance(self.n_residual, (list, tuple))
                  else [self.n_residual]):
            m = auto_residuals(n, p) if m == "auto" else [int(m)]
            grid += [x for x in m if x not in grid]
        return grid

    def _evaluate(self, Xt, y_idx, a, r_tr, r_te, cands, class_weight, rng, seed) -> dict:
        """Inner-CV AUC of every candidate for one fold (the screen, split and
        cross-fitting as in the final fit, on the fold's training rows only; every
        candidate sees the same split of class A)."""
        yte = (y_idx[r_te] == 1).astype(np.int64)
        if len(np.unique(yte)) < 2:
            return {}
        # the fold's own rows only, renumbered; the within-class scales of the final fit
        # saw the fold's test labels (in wide data that leak favoured using every feature)
        used = np.concatenate([r_tr, r_te])
        Xt, y_idx = Xt[torch.as_tensor(used, device=Xt.device)], y_idx[used]
        r_tr, r_te = np.arange(len(r_tr)), np.arange(len(r_tr), len(used))
        if self.standardize == "feature":
            Xt = Xt / within_class_sd(Xt[:len(r_tr)], y_idx[r_tr])
        is_a = y_idx[r_tr] == a
        A_tr, B_tr = r_tr[is_a], r_tr[~is_a]
        split = self._split_A(A_tr, len(B_tr), rng)
        out = {}
        for k in dict.fromkeys(c[3] for c in cands):
            Xs = Xt
            if k is not None:  # ranked on the fold's training rows, never its test rows
                keep = screen_features(Xt, y_idx, r_tr, k)
                Xs = Xt[:, torch.as_tensor(keep, device=Xt.device)]
            out.update(self._evaluate_on(Xs, y_idx, r_tr, r_te, B_tr, split,
                                         [c for c in cands if c[3] == k], class_weight, seed))
        return out

    def _evaluate_on(self, Xt, y_idx, r_tr, r_te, B_tr, split, cands, class_weight,
                     seed) -> dict:
        """:meth:`_evaluate` for the candidates of one screen on its features ``Xt``."""
        from sklearn.metrics import roc_auc_score

        yte = (y_idx[r_te] == 1).astype(np.int64)
        cov, clf = split
        clf_rows = np.sort(np.concatenate([clf, B_tr]))
        A = basis_A(Xt[cov])
        count = {s: self._resolve_M_A(s, A.lam, Xt.shape[1]) for s, *_ in cands}
        mB = b_moments(Xt, B_tr, A)
        fam, _ = filter_family(Xt[cov], Xt[B_tr], sorted(set(count.values())), A, mB)
        t = (y_idx[clf_rows] == 1).astype(np.int64)
        sel = {(count[s], m): self._select(fam[count[s]], m)[:2] for s, m, *_ in cands}
        # unfiltered settings train on the rows themselves: no cross-fitted features needed
        feats = sorted(k for k, (_, W) in sel.items() if not _unfiltered(k[0], W))
        Z = crossfit_features(Xt, cov, B_tr, clf_rows, t, feats, fam, self._select,
                              self.cross_fit, seed, A, mB) if feats else {}
        out = {}
        for cand in cands:
            s, m, kind = cand[:3]
            c, W = sel[count[s], m]
            head = self._make_head(kind, class_weight, seed)
            if _unfiltered(count[s], W):  # as in the final fit: every row trains the head
                Zs, ts = ((Xt[r_tr] - c) @ W).cpu().numpy(), (y_idx[r_tr] == 1).astype(np.int64)
            else:
                Zs, ts = Z[count[s], m], t
            if kind == "svc":
                head.fit(Zs, ts, calibrate=False)
            else:
                head.fit(Zs, ts)
            out[cand] = roc_auc_score(yte, _head_scores(head, ((Xt[r_te] - c) @ W)
                                                         .cpu().numpy()))
        return out

    # ------------------------------------------------------------------ predict
    def _check_X(self, X):
        check_is_fitted(self, "members_")
        X = validate_data(self, _to_numpy(X), dtype=np.float64, reset=False)
        Xt = self._prep(check_scale(X))
        keep = getattr(self, "screened_features_", None)
        return Xt if keep is None else Xt[:, torch.as_tensor(keep, device=Xt.device)]

    def transform(self, X) -> np.ndarray:
        """The first member's residual features ``(N, n_residual_)``:
        ``(x - center_) @ components_`` (standardised ``x``)."""
        return self.members_[0].features(self._check_X(X))

    def _proba1(self, Xt: torch.Tensor) -> np.ndarray:
        p1 = []
        for m in self.members_:
            Z = m.features(Xt)
            if self.head_kind_ == "custom":
                if not hasattr(m.head, "predict_proba"):
                    raise AttributeError(f"the classifier {m.head!r} has no predict_proba")
                p1.append(np.asarray(m.head.predict_proba(Z), float)[:, 1])
            else:
                p1.append(m.head.predict_proba1(Z))
        return np.mean(p1, axis=0)

    def decision_function(self, X) -> np.ndarray:
        """Score ``(N,)``: the log-odds of the members' mean probability of ``classes_[1]``
        (so ``> 0`` exactly where ``predict_proba(X)[:, 1] > 0.5`` and ``predict`` says
        ``classes_[1]``). A custom head without ``predict_proba``: its mean decision."""
        check_is_fitted(self, "members_")
        Xt = self._check_X(X)
        if self.head_kind_ == "custom" and not hasattr(self.members_[0].head, "predict_proba"):
            return np.mean([_head_scores(m.head, m.features(Xt)) for m in self.members_],
                           axis=0)
        p1 = np.clip(self._proba1(Xt), 1e-300, None)
        return np.log(p1) - np.log1p(-np.minimum(p1, 1.0 - 1e-16))

    def predict_proba(self, X) -> np.ndarray:
        """``(N, 2)`` probabilities of ``classes_[0]``, ``classes_[1]`` (members' mean)."""
        p1 = self._proba1(self._check_X(X))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X) -> np.ndarray:
        """Labels ``(N,)`` from ``classes_``: ``classes_[1]`` where ``decision_function > 0``."""
        check_is_fitted(self, "members_")
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    # ------------------------------------------------------------------ model state
    def get_model_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays + JSON-able metadata reproducing the fitted model (no pickles).

        Member ``i``'s arrays are ``m{i}_center``, ``m{i}_components``, ... and
        ``m{i}_head_*``; with a screen (layout version 3) also ``screened_features``
        ``(n_screened,)``, and the members' arrays have ``n_screened`` rows instead of ``P``.
        Raises ``TypeError`` for a custom scikit-learn head.
        """
        check_is_fitted(self, "members_")
        if self.head_kind_ == "custom":
            raise TypeError(f"get_model_state supports FINDER's built-in heads "
                            f"({', '.join(HEADS)}); a custom scikit-learn classifier "
                            f"({type(self.head_).__name__}) cannot be stored as arrays")
        arrays, heads, n_comp = {}, [], []
        for i, m in enumerate(self.members_):
            h_arrays, h_meta = m.head.get_state()
            arrays.update({f"m{i}_center": m.center, f"m{i}_components": m.components,
                           f"m{i}_residual_variance": m.residual_variance,
                           f"m{i}_explained_variance": m.explained_variance})
            arrays.update({f"m{i}_head_{k}": np.asarray(v) for k, v in h_arrays.items()})
            heads.append(h_meta)
            n_comp.append(m.n_components)
        if self.standardize == "feature":
            arrays.update(feature_mean=self.feature_mean_, feature_scale=self.feature_scale_)
        keep = getattr(self, "screened_features_", None)
        if keep is not None:
            arrays["screened_features"] = np.asarray(keep, np.int64)
        params = {k: _jsonable(v) for k, v in self.get_params().items() if k != "device"}
        params["device"] = None if self.device is None else str(self.device)
        meta = {"estimator": "finder.FINDER",
                "format_version": STATE_VERSION if keep is None else SCREENED_STATE_VERSION,
                "params": params, "classes": [_jsonable(c) for c in self.classes_],
                "classes_dtype": self.classes_.dtype.str,
                "reference_class": _jsonable(self.reference_class_),
                "n_features_in": int(self.n_features_in_), "head_kind": self.head_kind_,
                "members": [{"n_components": k, "head": h} for k, h in zip(n_comp, heads)]}
        if keep is not None:
            meta["n_screened"] = int(len(keep))
        json.dumps(meta)  # fail here, not in the writer, if something is not JSON-able
        return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta

    @classmethod
    def from_model_state(cls, arrays: dict, meta: dict) -> "FINDER":
        """Rebuild a fitted estimator from :meth:`get_model_state`'s output (layout 2 or 3,
        or version 1: one member without the ``m0_`` prefix)."""
        if meta.get("estimator") != "finder.FINDER":
            raise ValueError(f"not a FINDER model state (estimator={meta.get('estimator')!r})")
        version = int(meta.get("format_version", 1))
        if version not in (1, STATE_VERSION, SCREENED_STATE_VERSION):
            raise ValueError(f"FINDER model state version {version}; this finder reads "
                             f"1 to {SCREENED_STATE_VERSION}")
        params = dict(meta["params"])
        if version < SCREENED_STATE_VERSION:
            params.setdefault("screen", None)  # stored before the option existed
        if version == 1:  # stored before these options existed: their old meaning
            params.setdefault("standardize", None)
            params.setdefault("mean_direction", False)
            members = [{"n_components": meta["n_components"], "head": meta["head"]}]
            prefix = [""]
        else:
            members, prefix = meta["members"], [f"m{i}_" for i in range(len(meta["members"]))]
        est = cls(**params)
        est.classes_ = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
        est.reference_class_ = est.classes_[list(est.classes_).index(meta["reference_class"])]
        est.n_features_in_ = int(meta["n_features_in"])
        est.screened_features_ = None
        if version == SCREENED_STATE_VERSION:
            est.screened_features_ = np.asarray(arrays["screened_features"], np.int64)
            if len(est.screened_features_) != int(meta["n_screened"]):
                raise ValueError("screened_features does not have n_screened entries")
        if est.standardize == "feature":
            est.feature_mean_ = np.asarray(arrays["feature_mean"], float)
            est.feature_scale_ = np.asarray(arrays["feature_scale"], float)
        est.members_ = []
        for pre, mm in zip(prefix, members):
            get = lambda k: np.asarray(arrays[pre + k], float)  # noqa: E731
            head = HEADS[mm["head"]["kind"]].from_state(
                {k[len(pre) + 5:]: v for k, v in arrays.items()
                 if k.startswith(pre + "head_")}, mm["head"])
            est.members_.append(_Member(get("center"), get("components"),
                                        get("residual_variance"), get("explained_variance"),
                                        mm["n_components"], head))
        first = est.members_[0]
        est.center_, est.components_, est.head_ = first.center, first.components, first.head
        est.n_components_, est.n_residual_ = first.n_components, int(first.components.shape[1])
        est.explained_variance_ = first.explained_variance
        est.residual_variance_ = first.residual_variance
        est.head_kind_ = members[0]["head"]["kind"]
        return est
