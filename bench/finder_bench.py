"""FINDER side by side with standard classifiers, anomaly detectors and a CWoLa search.

    OMP_NUM_THREADS=1 .venv/bin/python bench/finder_bench.py              # all parts, 10 repeats
    OMP_NUM_THREADS=1 .venv/bin/python bench/finder_bench.py --only fg --repeats 3

Prints markdown tables. Classification parts: ROC AUC mean ± sd over stratified repeats,
evaluated on clean test labels; in each repeat every method sees the same split and the
same flipped training labels. "FINDER()" is ``FINDER(random_state=r)`` with nothing else set
(it standardises internally); every baseline sits behind a StandardScaler fitted on its
training data, at its library defaults ("untuned"). The check printed under each table:
FINDER() >= (best baseline mean) - (that baseline's sd).

(a) scikit-learn's breast-cancer data, 0/10/20/30% of training labels flipped;
(b) top vs QCD jets (``data/jets_sample.h5``) as 20x20 jet images, training sizes per
    class x {0, 20%} flips, and weakly supervised mixtures (70/30 vs 30/70 top fractions);
(c) anomaly detection: fit on QCD only, score top as the anomaly;
(d) fit times of ``FINDER()``: this tree against a baseline git revision of ``finder/``
    (``--baseline-rev``, run in a subprocess from ``git archive``) on 10^5 x 1000 and
    120 000 x 4, same data, same machine, one run;
(e) ablation on (a), (b), (f): FINDER() against n_estimators=1, the reference
    implementation's M_A = 8, M_A = 0, no class-mean direction; and the spread of the
    scores over label-noise draws (ensemble vs one filter);
(f) small tabular sets bundled with scikit-learn, 20% flips: wine (class 0 vs rest),
    digits 3 vs 8, diabetes (target above its median);
(g) P >> N: 10 000 features x 50 training samples, a mean shift of 1, 3 or 10 sd in 10
    features, or the 10 features' sd x 3 in class 1;
(h) the four-feature dijet search (``data/make_dijets.py`` pools): "data" (QCD + 0.5% W'
    signal in the signal region) vs a QCD reference, AUC of signal vs QCD on a held-out
    truth-labelled test set;
(i) the CWoLa anomaly search on the same samples: max SIC (>= 50 background events) of the
    out-of-fold scores of data events, ``finder.AnomalySearch`` (FINDER() per fold) vs the
    same 5 folds with HistGradientBoostingClassifier;
(j) the demo: ``physkit demo`` (FINDER on SHAPER's tau_2, tau_3 against the observables).

Bench-only dependency: pyod (ECOD, part c).
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import textwrap
import time
import warnings
from contextlib import redirect_stdout

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, OneClassSVM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "data"))
from finder import FINDER, AnomalySearch, ResidualDetector  # noqa: E402

warnings.filterwarnings("ignore")
CACHE = os.path.join(ROOT, "bench", ".cache")


class SIMCA(ClassifierMixin, BaseEstimator):
    """SIMCA-style classifier: one PCA model per class; the score is the class-0 residual
    distance minus the class-1 one, each over its class's mean training residual."""

    def __init__(self, n_components=0.9):
        self.n_components = n_components

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.models_ = []
        for c in self.classes_:
            Xc = X[y == c]
            k = self.n_components
            k = min(k, 0.999999) if isinstance(k, float) else min(k, len(Xc) - 1, X.shape[1])
            p = PCA(n_components=k, svd_solver="full").fit(Xc)
            self.models_.append((p, self._res(p, Xc).mean() or 1.0))
        return self

    @staticmethod
    def _res(p, X):
        return ((X - p.inverse_transform(p.transform(X))) ** 2).sum(1)

    def decision_function(self, X):
        d = [self._res(p, X) / s for p, s in self.models_]
        return d[0] - d[1]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def baselines(large: bool = False) -> dict:
    """name -> unfitted baseline at library defaults behind a StandardScaler."""
    sc = StandardScaler
    m = {"HistGB": make_pipeline(sc(), HistGradientBoostingClassifier(random_state=0)),
         "LogReg": make_pipeline(sc(), LogisticRegression(max_iter=2000))}
    if not large:
        m.update({"SVC (RBF)": make_pipeline(sc(), SVC()),
                  "PCA(0.95)+SVC": make_pipeline(sc(), PCA(0.95), SVC()),
                  "SIMCA": make_pipeline(sc(), SIMCA())})
    return m


def scores_of(est, X):
    if hasattr(est, "decision_function"):
        return est.decision_function(X)
    return est.predict_proba(X)[:, 1]


def flip(y, frac, rng):
    y = y.copy()
    idx = rng.choice(len(y), size=int(round(frac * len(y))), replace=False)
    y[idx] = 1 - y[idx]
    return y


def fmt(v):
    v = np.asarray(v, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def run_methods(Xtr, ytr, Xte, yte, seed, out, large=False, finder_kw=None):
    """FINDER() and every baseline fitted on (Xtr, ytr); test AUCs appended to ``out``."""
    meths = {"FINDER()": FINDER(random_state=seed, **(finder_kw or {}))}
    meths.update(baselines(large))
    for name, est in meths.items():
        t = time.time()
        e = clone(est).fit(Xtr, ytr)
        out.setdefault(name, []).append(roc_auc_score(yte, scores_of(e, Xte)))
        out.setdefault(name + " time", []).append(time.time() - t)


def table(title, res: dict) -> None:
    """``res[column][method] = [auc per repeat]``; prints the table and the check."""
    cols = list(res)
    names = [k for k in res[cols[0]] if not k.endswith(" time")]
    print(f"\n#### {title}\n")
    print("| method | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for n in names:
        print(f"| {n} | " + " | ".join(fmt(res[c][n]) for c in cols) + " |")
    checks = []
    for c in cols:
        f = np.mean(res[c]["FINDER()"])
        base = [(np.mean(res[c][n]), np.std(res[c][n], ddof=1), n) for n in names
                if n != "FINDER()" and not n.startswith("FINDER")]
        m, sd, n = max(base)
        checks.append(f"{c}: {'ok' if f >= m - sd else 'MISS'} ({f:.3f} vs {n} {m:.3f} - "
                      f"{sd:.3f})")
    print("\nFINDER() >= best baseline - sd: " + "; ".join(checks))
    t = {n: np.mean([np.mean(res[c][n + " time"]) for c in cols]) for n in names
         if n + " time" in res[cols[0]]}
    print("mean fit+score time per repeat, s: " + ", ".join(f"{n} {v:.2f}" for n, v in t.items()))
    sys.stdout.flush()


def split_noisy(X, y, noise, r, test_frac=1 / 3):
    rng = np.random.default_rng(1000 + r)
    tr, te = next(StratifiedKFold(int(round(1 / test_frac)), shuffle=True, random_state=r)
                  .split(X, y))
    return X[tr], flip(y[tr], noise, rng), X[te], y[te]


# ---------------------------------------------------------------------------- (a), (f)
def tabular_sets() -> dict:
    Xw, yw = load_wine(return_X_y=True)
    Xd, yd = load_digits(return_X_y=True)
    keep = np.isin(yd, (3, 8))
    Xs, ys = load_diabetes(return_X_y=True)
    return {"wine (178 x 13, class 0 vs rest)": (Xw, (yw == 0).astype(int)),
            "digits 3 vs 8 (357 x 64)": (Xd[keep], (yd[keep] == 8).astype(int)),
            "diabetes (442 x 10, y > median)": (Xs, (ys > np.median(ys)).astype(int))}


def bench_breast_cancer(repeats):
    X, y = load_breast_cancer(return_X_y=True)
    y = 1 - y  # 1 = malignant
    res = {}
    for noise in (0.0, 0.1, 0.2, 0.3):
        col = res[f"{int(noise * 100)}% flipped"] = {}
        for r in range(repeats):
            run_methods(*split_noisy(X, y, noise, r), r, col)
    table(f"(a) breast cancer (569 x 30; train 2/3, test 1/3; {repeats} repeats)", res)


def bench_tabular(repeats):
    res = {}
    for name, (X, y) in tabular_sets().items():
        col = res[name] = {}
        for r in range(repeats):
            run_methods(*split_noisy(X, y, 0.2, r), r, col)
    table(f"(f) small tabular sets from scikit-learn, 20% of training labels flipped "
          f"(train 2/3, test 1/3; {repeats} repeats)", res)


# ---------------------------------------------------------------------------- (b), (c)
def jet_images(npix=20):
    from physkit.images import pixelate
    from physkit.io import read_events, read_labels

    path = os.path.join(ROOT, "data", "jets_sample.h5")
    ev, y = read_events(path), read_labels(path)
    return (pixelate(ev, npix=npix, R=0.8).reshape(len(y), -1).astype(np.float64),
            np.asarray(y).astype(int))


def jet_split(y, n, n_test, r):
    rng = np.random.default_rng(2000 + r)
    te, tr = [], []
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        te.append(idx[:n_test])
        tr.append(idx[n_test:n_test + n])
    return np.concatenate(tr), np.concatenate(te), rng


def bench_jets(repeats, sizes):
    X, y = jet_images()
    n_test, res = 300, {}
    for n in sizes:
        for noise in (0.0, 0.2):
            col = res[f"{n}/cl {int(noise * 100)}%"] = {}
            for r in range(repeats):
                tr, te, rng = jet_split(y, n, n_test, r)
                run_methods(X[tr], flip(y[tr], noise, rng), X[te], y[te], r, col)
    col = res["mixtures 70/30 vs 30/70"] = {}
    for r in range(repeats):
        rng = np.random.default_rng(3000 + r)
        top = rng.permutation(np.flatnonzero(y == 1))
        qcd = rng.permutation(np.flatnonzero(y == 0))
        te = np.r_[top[:n_test], qcd[:n_test]]
        top, qcd = top[n_test:], qcd[n_test:]
        m1 = np.r_[top[:350], qcd[:150]]
        m2 = np.r_[top[350:500], qcd[150:500]]
        run_methods(X[np.r_[m1, m2]], np.r_[np.ones(500, int), np.zeros(500, int)], X[te],
                    y[te], r, col)
    table(f"(b) top vs QCD, 20x20 jet images ({len(y)} jets; {n_test}/class held out; "
          f"mixtures: 2 x 500 jets trained on mixture ids; {repeats} repeats)", res)
    return X, y


def bench_anomaly(X, y, repeats):
    from pyod.models.ecod import ECOD

    dets = {"ResidualDetector (n_components=0.9)": lambda: ResidualDetector(random_state=0),
            "ResidualDetector whiten": lambda: ResidualDetector(whiten=True, random_state=0),
            "IsolationForest": lambda: IsolationForest(random_state=0),
            "OneClassSVM": lambda: OneClassSVM(), "ECOD (pyod)": lambda: ECOD()}
    res = {k: [] for k in dets}
    for r in range(repeats):
        rng = np.random.default_rng(4000 + r)
        qcd = rng.permutation(np.flatnonzero(y == 0))
        top = rng.permutation(np.flatnonzero(y == 1))
        tr, te = qcd[:700], np.r_[qcd[700:1000], top[:300]]
        sc = StandardScaler().fit(X[tr])
        Xtr, Xte = sc.transform(X[tr]), sc.transform(X[te])
        for name, make in dets.items():
            s = make().fit(Xtr).decision_function(Xte)
            res[name].append(roc_auc_score(y[te], s if name.startswith("ECOD") else -s))
    print(f"\n#### (c) anomaly detection: fit on 700 QCD jets, score 300 QCD + 300 top, "
          f"{repeats} repeats\n\n| detector | AUC |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {fmt(v)} |")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- (d)
TIMING_CODE = textwrap.dedent("""
    import sys, time, json, numpy as np, torch
    torch.set_num_threads(1)
    from finder import FINDER
    import finder
    rng = np.random.default_rng(0)
    out = {"finder": finder.__file__}
    X = rng.normal(size=(120_000, 1000)).astype(np.float32)
    y = (rng.random(120_000) < 0.5).astype(int)
    X[y == 1, 999] *= 1.3
    t = time.time(); f = FINDER(random_state=0).fit(X[:100_000], y[:100_000])
    out["1e5x1000"] = time.time() - t
    out["1e5x1000 auc"] = float(__import__("sklearn.metrics").metrics.roc_auc_score(
        y[100_000:], f.decision_function(X[100_000:])))
    del X
    n = 60_000
    X = rng.normal(size=(2 * n, 4)) * np.array([3.0, 2.0, 1.0, 1.0])
    y = np.r_[np.zeros(n), np.ones(n)]
    sig = rng.random(n) < 0.01
    X[n:][sig, 3] += 3.0
    t = time.time(); f = FINDER(random_state=0).fit(X, y); out["120000x4"] = time.time() - t
    print(json.dumps(out))
""")


def _timing(pythonpath: str | None) -> dict:
    import json

    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = subprocess.run([sys.executable, "-c", TIMING_CODE], capture_output=True, text=True,
                       env=env, cwd=CACHE, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_timing(rev: str, runs: int = 3):
    base = os.path.join(CACHE, f"finder-{rev}")
    if not os.path.isdir(os.path.join(base, "finder")):
        os.makedirs(base, exist_ok=True)
        arch = subprocess.run(["git", "-C", ROOT, "archive", rev, "finder"], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=arch, check=True)
    os.makedirs(CACHE, exist_ok=True)
    olds, news = [], []
    for _ in range(runs):  # interleaved, so both see the same drift of a shared machine
        olds.append(_timing(base))
        news.append(_timing(ROOT))
    old, new = olds[-1], news[-1]
    print(f"\n#### (d) fit time of FINDER() at its defaults, this tree vs {rev} (one process "
          f"each, OMP_NUM_THREADS=1, torch 1 thread; {runs} interleaved runs: fastest of "
          f"each, and the ratios run by run)\n")
    print(f"| data | {rev} [s] | now [s] | ratio of the fastest | ratios per run |\n"
          f"|---|---|---|---|---|")
    for k in ("1e5x1000", "120000x4"):
        o, n = min(d[k] for d in olds), min(d[k] for d in news)
        per = ", ".join(f"{b[k] / a[k]:.2f}" for a, b in zip(olds, news))
        print(f"| {k} | {o:.1f} | {n:.1f} | {n / o:.2f} | {per} |")
    print(f"\n(10^5 x 1000, AUC on 20 000 fresh rows: {rev} {old['1e5x1000 auc']:.3f}, now "
          f"{new['1e5x1000 auc']:.3f}; finder imported from {old['finder']} and "
          f"{new['finder']})")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- (e)
ABLATIONS = {"FINDER()": {}, "n_estimators=1": {"n_estimators": 1},
             "M_A=8 (reference)": {"n_components": 8}, "M_A=0": {"n_components": 0},
             "mean_direction=False": {"mean_direction": False}}


def bench_ablation(repeats):
    print(f"\n#### (e) ablation, AUC over {repeats} repeats (same splits and flips as (a), (b), "
          f"(f)); last column: sd of the test scores over 5 label-noise draws (same split), "
          f"one filter / ensemble, median over test rows\n")
    print("| data | " + " | ".join(ABLATIONS) + " | score sd 1 / ens |\n|---|"
          + "---|" * (len(ABLATIONS) + 1))
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xj, yj = jet_images()
    sets = [("breast cancer 20%", Xb, 1 - yb, None)]
    sets += [(f"jets {n}/cl 20%", Xj, yj, n) for n in (50, 200)]
    sets += [(k.split(" (")[0] + " 20%", X, y, None) for k, (X, y) in tabular_sets().items()]
    for label, X, y, n in sets:
        res = {k: [] for k in ABLATIONS}
        for r in range(repeats):
            Xtr, ytr, Xte, yte = _ablation_split(X, y, n, r)
            for k, kw in ABLATIONS.items():
                e = FINDER(random_state=r, **kw).fit(Xtr, ytr)
                res[k].append(roc_auc_score(yte, e.decision_function(Xte)))
        sd1, sde = _noise_spread(X, y, n)
        print(f"| {label} | " + " | ".join(fmt(res[k]) for k in ABLATIONS)
              + f" | {sd1:.3f} / {sde:.3f} |")
        sys.stdout.flush()


def _ablation_split(X, y, n, r, noise=0.2):
    if n is None:
        return split_noisy(X, y, noise, r)
    tr, te, rng = jet_split(y, n, 300, r)
    return X[tr], flip(y[tr], noise, rng), X[te], y[te]


def _noise_spread(X, y, n, draws=5):
    """Median over test rows of the sd of the (rank-normalised) test scores over label-noise
    draws, for one filter (n_estimators=1) and the default ensemble."""
    from scipy.stats import rankdata

    Xtr, ytr0, Xte, _ = _ablation_split(X, y, n, 0, noise=0.0)
    out = []
    for kw in ({"n_estimators": 1}, {}):
        s = []
        for d in range(draws):
            ytr = flip(ytr0, 0.2, np.random.default_rng(9000 + d))
            f = FINDER(random_state=d, **kw).fit(Xtr, ytr)
            s.append(rankdata(f.decision_function(Xte)) / len(Xte))
        out.append(float(np.median(np.std(s, axis=0))))
    return out


# ---------------------------------------------------------------------------- (g)
def wide_set(kind, shift, r, n_train=25, n_test=200, p=10_000, k=10):
    rng = np.random.default_rng(5000 + r)
    n = n_train + n_test
    X0, X1 = rng.normal(size=(n, p)), rng.normal(size=(n, p))
    if kind == "mean":
        X1[:, :k] += shift
    else:
        X1[:, :k] *= shift
    Xtr = np.vstack([X0[:n_train], X1[:n_train]])
    Xte = np.vstack([X0[n_train:], X1[n_train:]])
    return (Xtr, np.r_[np.zeros(n_train, int), np.ones(n_train, int)], Xte,
            np.r_[np.zeros(n_test, int), np.ones(n_test, int)])


def bench_wide(repeats):
    res = {}
    for kind, shift in (("mean", 1.0), ("mean", 3.0), ("mean", 10.0), ("sd", 3.0)):
        col = res[f"mean +{shift:g} sd" if kind == "mean" else f"sd x {shift:g}"] = {}
        for r in range(repeats):
            run_methods(*wide_set(kind, shift, r), r, col)
    table(f"(g) P >> N: 10 000 features, 25 + 25 training samples, 200 + 200 test; class 1 "
          f"differs in 10 features; {repeats} repeats", res)


# ---------------------------------------------------------------------------- (h), (i)
def dijet_pools():
    import make_dijets as md

    qcd = md.read_pool("qcd", keys=list(md.FEATURES) + ["mjj"])
    sig = md.read_pool("signal", keys=list(md.FEATURES) + ["mjj"])
    X = np.vstack([np.stack([qcd[k] for k in md.FEATURES], 1),
                   np.stack([sig[k] for k in md.FEATURES], 1)])
    return md, X, len(qcd["mjj"]), len(sig["mjj"])


def dijet_sample(md, n_qcd, n_sig, n_data, frac, r, n_test_bkg=5_000, n_test_sig=2_000):
    g = md.draw_search(n_qcd, n_sig, n_data, frac, n_test_bkg, n_test_sig, seed=100 + r)
    return g, {k: (v >= n_qcd).astype(int) for k, v in g.items()}


def bench_dijet(repeats, n_data, frac=0.005):
    md, X, n_qcd, n_sig = dijet_pools()
    col = {}
    for r in range(repeats):
        g, truth = dijet_sample(md, n_qcd, n_sig, n_data, frac, r)
        Xtr = X[np.r_[g["data"], g["reference"]]]
        ytr = np.r_[np.ones(n_data, int), np.zeros(n_data, int)]
        run_methods(Xtr, ytr, X[g["test"]], truth["test"], r, col, large=True)
        t = time.time()
        hgb = [HistGradientBoostingClassifier(random_state=s).fit(Xtr, ytr) for s in range(5)]
        col.setdefault("HistGB 5 seeds", []).append(roc_auc_score(
            truth["test"], np.mean([h.predict_proba(X[g["test"]])[:, 1] for h in hgb], 0)))
        col.setdefault("HistGB 5 seeds time", []).append(time.time() - t)
    table(f"(h) dijet search features (m_J1, m_J2 - m_J1, tau21 x 2): {n_data} data events "
          f"({frac:.1%} signal) vs {n_data} QCD reference, AUC signal vs QCD on 5 000 + "
          f"2 000 held-out truth-labelled events ({repeats} signal injections)",
          {f"{frac:.1%} signal": col})


def bench_search(repeats, n_data, frac=0.005):
    from physkit.pipeline.report import max_sic

    md, X, n_qcd, n_sig = dijet_pools()
    res = {"FINDER() search": [], "HistGB CWoLa": [], "FINDER() auc": [], "HistGB auc": []}
    times = {"FINDER() search": [], "HistGB CWoLa": []}
    for r in range(repeats):
        g, truth = dijet_sample(md, n_qcd, n_sig, n_data, frac, r, 0, 0)
        rows = np.r_[g["data"], g["reference"]]
        y = np.r_[np.ones(n_data, int), np.zeros(n_data, int)]
        t_data = truth["data"]
        for name, est in (("FINDER() search", FINDER()),
                          ("HistGB CWoLa", HistGradientBoostingClassifier())):
            t = time.time()
            s = AnomalySearch(est, n_folds=5, random_state=r).fit(X[rows], y)
            times[name].append(time.time() - t)
            v = s.oof_score_[:n_data]
            res[name].append(max_sic(v, t_data))
            res[name.split()[0] + " auc"].append(roc_auc_score(t_data, v))
        print(f"  search repeat {r}: FINDER {res['FINDER() search'][-1]:.2f}, HistGB "
              f"{res['HistGB CWoLa'][-1]:.2f}", flush=True)
    print(f"\n#### (i) CWoLa anomaly search, {n_data} data ({frac:.1%} signal = "
          f"{int(round(frac * n_data))} events) vs {n_data} reference, 5 folds (the same for "
          f"both), out-of-fold reference quantiles of data events: max SIC at >= 50 "
          f"background events and AUC (truth labels), {repeats} injections\n")
    print("| method | max SIC | AUC (data events) | time [s] |\n|---|---|---|---|")
    for name, auc in (("FINDER() search", "FINDER() auc"), ("HistGB CWoLa", "HistGB auc")):
        print(f"| {name} | {fmt(res[name])} | {fmt(res[auc])} | {np.mean(times[name]):.0f} |")
    d = np.array(res["FINDER() search"]) - np.array(res["HistGB CWoLa"])
    print(f"\nper-injection difference FINDER - HistGB: {fmt(d)}; FINDER >= HistGB in "
          f"{int((d >= 0).sum())} of {len(d)}")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- (j)
def bench_demo():
    from physkit.pipeline.cli import main as physkit_main
    from physkit.pipeline.demo import run_demo

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = run_demo(os.path.join(CACHE, "demo"), physkit_main, progress=False)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("  ")]
    print(f"\n#### (j) physkit demo (exit status {rc}): test-set AUCs\n")
    print("```\n" + "\n".join(lines) + "\n```")
    sys.stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--search-repeats", type=int, default=None,
                   help="signal injections of (h), (i) (default: --repeats)")
    ap.add_argument("--only", default="abcdefghij", help="subset of parts, e.g. 'fg'")
    ap.add_argument("--baseline-rev", default="41a9c71", help="git revision of (d)'s baseline")
    ap.add_argument("--timing-runs", type=int, default=3,
                    help="interleaved runs of (d) per revision (fastest reported)")
    ap.add_argument("--n-data", type=int, default=50_000, help="data events of (h), (i)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP/torch threads (1 is fastest on a shared machine)")
    a = ap.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)
    torch.set_num_threads(a.threads)
    os.makedirs(CACHE, exist_ok=True)
    t0 = time.time()
    rep, srep = a.repeats, a.search_repeats or a.repeats
    print(f"finder_bench: repeats={rep}, search repeats={srep}, threads={a.threads}, "
          f"parts={a.only}")
    parts = {"a": lambda: bench_breast_cancer(rep), "f": lambda: bench_tabular(rep),
             "g": lambda: bench_wide(rep), "e": lambda: bench_ablation(rep),
             "h": lambda: bench_dijet(srep, a.n_data), "i": lambda: bench_search(srep, a.n_data),
             "d": lambda: bench_timing(a.baseline_rev, a.timing_runs), "j": bench_demo}
    for key in a.only:
        if key == "b":
            X, y = bench_jets(rep, (50, 200, 500))
            if "c" in a.only:
                bench_anomaly(X, y, rep)
        elif key == "c" and "b" not in a.only:
            bench_anomaly(*jet_images(), rep)
        elif key in parts:
            parts[key]()
    print(f"\ntotal wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
