"""FINDER side by side with standard classifiers and anomaly detectors.

    .venv/bin/python bench/finder_bench.py            # full run (>= 10 repeats)
    .venv/bin/python bench/finder_bench.py --quick    # 3 repeats, smaller grids/timings

Prints markdown tables (AUC mean ± sd over stratified repeats, evaluated on clean test
labels) for:

(a) scikit-learn's breast-cancer data, 0/10/20/30% of training labels flipped;
(b) top vs QCD jets (``data/jets_sample.h5``) as 20x20 jet images
    (:func:`physkit.images.pixelate`): training sizes per class x label noise, and
    weakly supervised mixtures (70/30 vs 30/70 top fractions, trained on mixture ids);
(c) anomaly detection: fit on QCD only, score top as the anomaly;
(d) fit times: 1e5 x 1000 and 200 x 16000 (FINDER vs scikit-learn PCA + SVC);
(e) ablation: FINDER's reference class, cross-fitted head features, pre-fix defaults.

Protocol: every method sees the same split and the same noisy labels in a repeat; every
method is preceded by a StandardScaler fitted on its training data; "default" is the
estimator's library defaults, "tuned" is GridSearchCV (3 inner stratified folds, ROC AUC)
on the training data only, with the small grids below. "FINDER auto" is FINDER's own
built-in inner-CV selection (one-standard-error rule). Test labels are only used for the
reported AUC. Bench-only dependency: pyod (ECOD).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, OneClassSVM

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from finder import FINDER, ResidualDetector  # noqa: E402

warnings.filterwarnings("ignore")
#: FINDER's reference class A: label 0 = benign (breast cancer) / QCD (jets), i.e. the
#: normal / background class, fixed a priori as in a physics analysis, rather than the
#: majority of the (noisy) training labels, which with near-balanced classes flips at
#: random between repeats (part (e) measures the difference)
REF = 0
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class SIMCA(ClassifierMixin, BaseEstimator):
    """SIMCA-style soft-independent-modelling classifier: one PCA model per class; the score
    is the class-0 residual distance minus the class-1 one, each divided by its class's
    mean training residual (positive = class 1)."""

    def __init__(self, n_components=0.9):
        self.n_components = n_components

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.models_ = []
        for c in self.classes_:
            Xc = X[y == c]
            k = self.n_components
            if isinstance(k, float):
                k = min(k, 0.999999)
            else:
                k = min(k, len(Xc) - 1, X.shape[1])
            p = PCA(n_components=k, svd_solver="full").fit(Xc)
            s = self._res(p, Xc).mean() or 1.0
            self.models_.append((p, s))
        return self

    @staticmethod
    def _res(p, X):
        return ((X - p.inverse_transform(p.transform(X))) ** 2).sum(1)

    def decision_function(self, X):
        d = [self._res(p, X) / s for p, s in self.models_]
        return d[0] - d[1]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def methods(quick: bool):
    """name -> (default estimator, grid or None); every one behind a StandardScaler."""
    sc = StandardScaler
    # no truncation, the reference implementation's default M_A = 8, a variance fraction;
    # a few vs the reference's default M_res = 140 (all residual directions here)
    fgrid = {"finder__n_components": [0, 8, 0.9], "finder__n_residual": [10, 140],
             "finder__variant": ["aca-s", "aca-l"]}
    m = {
        "FINDER": (make_pipeline(sc(), FINDER(reference_class=REF, random_state=0)), fgrid),
        "SVC (RBF)": (make_pipeline(sc(), SVC()),
                      {"svc__C": [0.1, 1, 10], "svc__gamma": ["scale", 0.1 / 30]}),
        "PCA(0.95) + SVC": (make_pipeline(sc(), PCA(0.95), SVC()),
                            {"pca__n_components": [0.8, 0.95, 0.99], "svc__C": [1, 10]}),
        "LogReg": (make_pipeline(sc(), LogisticRegression(max_iter=2000)),
                   {"logisticregression__C": [0.01, 0.1, 1, 10]}),
        "HistGB": (make_pipeline(sc(), HistGradientBoostingClassifier(random_state=0)),
                   {"histgradientboostingclassifier__learning_rate": [0.05, 0.1]}),
        "SIMCA": (make_pipeline(sc(), SIMCA()),
                  {"simca__n_components": [0.5, 0.8, 0.9, 0.95, 0.99]}),
    }
    return m


def scores_of(est, X):
    if hasattr(est, "decision_function"):
        return est.decision_function(X)
    return est.predict_proba(X)[:, 1]


def run_methods(Xtr, ytr, Xte, yte, meths, seed, out):
    """Fit every method (default, tuned) and FINDER auto; append test AUCs to ``out``."""
    from sklearn.base import clone

    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    for name, (est, grid) in meths.items():
        t = time.time()
        e = clone(est).fit(Xtr, ytr)
        out.setdefault((name, "default"), []).append(roc_auc_score(yte, scores_of(e, Xte)))
        g = GridSearchCV(clone(est), grid, cv=cv, scoring="roc_auc", n_jobs=1).fit(Xtr, ytr)
        out.setdefault((name, "tuned"), []).append(roc_auc_score(yte, scores_of(g, Xte)))
        out.setdefault((name, "time"), []).append(time.time() - t)
    t = time.time()
    e = make_pipeline(StandardScaler(), FINDER(n_components="auto", n_residual="auto",
                                               reference_class=REF,
                                               random_state=seed)).fit(Xtr, ytr)
    out.setdefault(("FINDER auto", "default"), []).append(roc_auc_score(yte, scores_of(e, Xte)))
    out.setdefault(("FINDER auto", "time"), []).append(time.time() - t)


def flip(y, frac, rng):
    y = y.copy()
    idx = rng.choice(len(y), size=int(round(frac * len(y))), replace=False)
    y[idx] = 1 - y[idx]
    return y


def fmt(v):
    v = np.asarray(v)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def table(title, cols, results, rows):
    """results[col] = dict from run_methods."""
    print(f"\n#### {title}\n")
    print("| method | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, kind in rows:
        cells = [fmt(results[c][(name, kind)]) if (name, kind) in results[c] else "–"
                 for c in cols]
        print(f"| {name} ({kind}) | " + " | ".join(cells) + " |")
    times = {n: np.mean([np.mean(results[c][(n, "time")]) for c in cols])
             for n, k in rows if k == "tuned" or n == "FINDER auto"}
    print("\nmean wall time per setting and repeat (default + tuned fit), s: "
          + ", ".join(f"{n} {t:.1f}" for n, t in times.items()))
    sys.stdout.flush()


def row_list(meths):
    rows = []
    for n in meths:
        rows += [(n, "default"), (n, "tuned")]
    return rows + [("FINDER auto", "default")]


# ---------------------------------------------------------------------------- (a)
def bench_breast_cancer(repeats, meths):
    X, y = load_breast_cancer(return_X_y=True)
    y = 1 - y  # 1 = malignant
    res = {}
    for noise in (0.0, 0.1, 0.2, 0.3):
        col = f"{int(noise * 100)}% flipped"
        res[col] = {}
        for r in range(repeats):
            rng = np.random.default_rng(1000 + r)
            tr, te = next(StratifiedKFold(3, shuffle=True, random_state=r).split(X, y))
            ytr = flip(y[tr], noise, rng)
            run_methods(X[tr], ytr, X[te], y[te], meths, r, res[col])
    table("(a) breast cancer (569 samples, 30 features; train 2/3, test 1/3, AUC on clean "
          f"test labels, {repeats} repeats)", list(res), res, row_list(meths))
    return res


# ---------------------------------------------------------------------------- (b), (c)
def jet_images():
    from physkit.images import pixelate

    path = os.path.join(ROOT, "data", "jets_sample.h5")
    try:
        from physkit.io import read_events, read_labels
        ev, y = read_events(path), read_labels(path)
    except (ImportError, AttributeError):
        import h5py

        from physkit.events import Events
        with h5py.File(path) as f:
            ev, y = Events.from_padded(f["constituents"][:]), f["labels"][:]
    return pixelate(ev, npix=20, R=0.8).reshape(len(y), -1).astype(np.float64), \
        np.asarray(y).astype(int)


def bench_jets(repeats, meths, sizes):
    X, y = jet_images()
    n_test = 300
    res = {}
    for n in sizes:
        for noise in (0.0, 0.2):
            col = f"n={n}/class, {int(noise * 100)}%"
            res[col] = {}
            for r in range(repeats):
                rng = np.random.default_rng(2000 + r)
                te, tr = [], []
                for c in (0, 1):
                    idx = rng.permutation(np.flatnonzero(y == c))
                    te.append(idx[:n_test])
                    tr.append(idx[n_test:n_test + n])
                te, tr = np.concatenate(te), np.concatenate(tr)
                ytr = flip(y[tr], noise, rng)
                run_methods(X[tr], ytr, X[te], y[te], meths, r, res[col])
    table(f"(b) top vs QCD, 20x20 jet images ({len(y)} jets; test {n_test}/class held out; "
          f"{repeats} repeats)", list(res), res, row_list(meths))

    # weakly supervised mixtures
    col = "mixtures 70/30 vs 30/70"
    mix = {col: {}}
    for r in range(repeats):
        rng = np.random.default_rng(3000 + r)
        top, qcd = rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))
        te = np.r_[top[:n_test], qcd[:n_test]]
        top, qcd = top[n_test:], qcd[n_test:]
        m = 500  # jets per mixture
        m1 = np.r_[top[:int(0.7 * m)], qcd[:m - int(0.7 * m)]]
        m2 = np.r_[top[int(0.7 * m):int(0.7 * m) + int(0.3 * m)],
                   qcd[m - int(0.7 * m):m - int(0.7 * m) + m - int(0.3 * m)]]
        Xtr = X[np.r_[m1, m2]]
        ytr = np.r_[np.ones(len(m1), int), np.zeros(len(m2), int)]  # mixture id only
        run_methods(Xtr, ytr, X[te], y[te], meths, r, mix[col])
    table(f"(b') weakly supervised: trained on mixture ids (2 x 500 jets), AUC top vs QCD "
          f"on true labels ({repeats} repeats)", list(mix), mix, row_list(meths))
    return X, y, res, mix


def bench_anomaly(X, y, repeats):
    from pyod.models.ecod import ECOD

    dets = {
        "ResidualDetector (n_components=0.9)": lambda: ResidualDetector(random_state=0),
        "ResidualDetector whiten": lambda: ResidualDetector(whiten=True, random_state=0),
        "IsolationForest": lambda: IsolationForest(random_state=0),
        "OneClassSVM": lambda: OneClassSVM(),
        "ECOD (pyod)": lambda: ECOD(),
    }
    sweep = [0.5, 0.8, 0.95, 0.99]
    res = {k: [] for k in dets}
    sw = {k: [] for k in sweep}
    for r in range(repeats):
        rng = np.random.default_rng(4000 + r)
        qcd = rng.permutation(np.flatnonzero(y == 0))
        top = rng.permutation(np.flatnonzero(y == 1))
        tr = qcd[:700]
        te = np.r_[qcd[700:1000], top[:300]]
        sc = StandardScaler().fit(X[tr])
        Xtr, Xte, yte = sc.transform(X[tr]), sc.transform(X[te]), y[te]
        for name, make in dets.items():
            d = make().fit(Xtr)
            s = d.decision_function(Xte)
            s = s if name.startswith("ECOD") else -s  # pyod: higher = more anomalous
            res[name].append(roc_auc_score(yte, s))
        for k in sweep:
            d = ResidualDetector(n_components=k, random_state=0).fit(Xtr)
            sw[k].append(roc_auc_score(yte, d.anomaly_score(Xte)))
    print(f"\n#### (c) anomaly detection: fit on 700 QCD jets, score 300 QCD + 300 top "
          f"(top = anomaly), AUC, {repeats} repeats, library defaults\n")
    print("| detector | AUC |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {fmt(v)} |")
    print("\nSensitivity of ResidualDetector to n_components (reads anomaly labels: a "
          "diagnostic, NOT a tuned result; one-class tuning without anomaly labels is not "
          "defined here):\n")
    print("| n_components | " + " | ".join(map(str, sweep)) + " |\n|---|" + "---|" * len(sweep))
    print("| AUC | " + " | ".join(fmt(sw[k]) for k in sweep) + " |")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- (e)
def bench_crossfit(repeats):
    """FINDER at defaults with and without cross-fitted head features, same splits as (a)/(b)."""
    print(f"\n#### (e) ablation: FINDER defaults with reference_class=0 (as in (a)/(b)); the "
          f"same with reference_class=None (majority of the noisy training labels); with the "
          f"head trained on in-sample (cross_fit=0) instead of cross-fitted features; and "
          f"with the pre-fix defaults (n_components=0.9, n_residual=10, aca-s, "
          f"balanced_split=False), AUC, {repeats} repeats\n")
    variants = {"default": dict(reference_class=REF),
                "majority": dict(),
                "cross_fit=0": dict(reference_class=REF, cross_fit=0),
                "old defaults": dict(n_components=0.9, n_residual=10, variant="aca-s",
                                     balanced_split=False)}
    print("| data | " + " | ".join(variants) + " |\n|---|" + "---|" * len(variants))
    Xb, yb = load_breast_cancer(return_X_y=True)
    yb = 1 - yb
    Xj, yj = jet_images()
    settings = [("breast cancer, 0%", "bc", 0, 0.0), ("breast cancer, 20%", "bc", 0, 0.2)]
    settings += [(f"jets n={n}/class, {int(z * 100)}%", "jets", n, z)
                 for n in (50, 200, 500) for z in (0.0, 0.2)]
    for label, data, n, noise in settings:
        res = {k: [] for k in variants}
        for r in range(repeats):
            if data == "bc":
                rng = np.random.default_rng(1000 + r)
                tr, te = next(StratifiedKFold(3, shuffle=True, random_state=r).split(Xb, yb))
                X, y = Xb, yb
            else:  # the same draws as bench_jets
                rng = np.random.default_rng(2000 + r)
                te, tr = [], []
                for c in (0, 1):
                    idx = rng.permutation(np.flatnonzero(yj == c))
                    te.append(idx[:300])
                    tr.append(idx[300:300 + n])
                te, tr = np.concatenate(te), np.concatenate(tr)
                X, y = Xj, yj
            ytr = flip(y[tr], noise, rng)
            for k, kw in variants.items():
                e = make_pipeline(StandardScaler(), FINDER(random_state=r, **kw))
                e.fit(X[tr], ytr)
                res[k].append(roc_auc_score(y[te], scores_of(e, X[te])))
        print(f"| {label} | " + " | ".join(fmt(res[k]) for k in variants) + " |")
        sys.stdout.flush()


# ---------------------------------------------------------------------------- (d)
def bench_timing(quick):
    print("\n#### (d) fit times (wall clock, this machine, 2 shared cores)\n")
    print("| data | method | fit time [s] | note |\n|---|---|---|---|")
    rng = np.random.default_rng(0)
    n_big = 20_000 if quick else 100_000
    X = rng.normal(size=(n_big, 1000)).astype(np.float32)
    y = (rng.random(n_big) < 0.5).astype(int)
    X[y == 1, 999] *= 1.3
    t = time.time()
    f = FINDER(n_components=50, n_residual=10, random_state=0).fit(X, y)
    tf = time.time() - t
    print(f"| {n_big} x 1000 | FINDER (head: {f.head_kind_}) | {tf:.1f} | all rows; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB so far |")
    sub = 5000
    t = time.time()
    make_pipeline(PCA(50), SVC()).fit(X[:sub], y[:sub])
    ts = time.time() - t
    print(f"| {n_big} x 1000 | sklearn PCA(50) + SVC | {ts:.1f} | on a {sub}-row subsample only: "
          f"exact kernel SVC scales ~N^2-N^3, the full {n_big} rows were not attempted |")
    t = time.time()
    make_pipeline(PCA(50), SVC()).fit(X[:4 * sub if not quick else 2 * sub],
                                      y[:4 * sub if not quick else 2 * sub])
    print(f"| {n_big} x 1000 | sklearn PCA(50) + SVC | {time.time() - t:.1f} | "
          f"{4 * sub if not quick else 2 * sub}-row subsample (growth with N) |")
    del X
    X = rng.normal(size=(200, 16000))
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    for name, est in [("FINDER", FINDER(n_components=0.9, n_residual=10, random_state=0)),
                      ("sklearn PCA(50) + SVC", make_pipeline(PCA(50), SVC())),
                      ("sklearn SVC", SVC())]:
        t = time.time()
        est.fit(X, y)
        print(f"| 200 x 16000 | {name} | {time.time() - t:.2f} | |")
    sys.stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, smaller timings")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--only", default="abcde", help="subset of parts, e.g. 'ab'")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP/torch threads (1 is fastest on a shared machine)")
    a = ap.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits
    threadpool_limits(a.threads)
    torch.set_num_threads(a.threads)
    repeats = a.repeats or (3 if a.quick else 10)
    meths = methods(a.quick)
    t0 = time.time()
    print(f"finder_bench: repeats={repeats}, quick={a.quick}, threads={a.threads}")
    if "a" in a.only:
        bench_breast_cancer(repeats, meths)
    if "b" in a.only or "c" in a.only:
        sizes = (50, 200) if a.quick else (50, 200, 500)
        if "b" in a.only:
            X, y, _, _ = bench_jets(repeats, meths, sizes)
        else:
            X, y = jet_images()
        if "c" in a.only:
            bench_anomaly(X, y, repeats)
    if "e" in a.only:
        bench_crossfit(repeats)
    if "d" in a.only:
        bench_timing(a.quick)
    print(f"\ntotal wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
