"""The exact point path and parameter-free observables against fastjet-contrib's Nsubjettiness
(C++): the ``--only points`` part of ``bench/shaper_bench.py``.

On the same centred jets, one after the other in one process, with the same torch / OpenMP
thread count:

* physkit ``Shaper(["2-subjettiness", "3-subjettiness"])`` (one call; with ``threads`` worker
  threads and with 1) and the two observables in separate calls, each after an untimed warm-up
  on 2 jets (which also loads or compiles the numba kernel); the same call with the torch
  engine (``point_engine="torch"``, what runs on GPUs) for comparison;
* the numba kernel's compile time: a fresh process with an empty numba cache, then one more
  with that cache filled (``import shaper`` and a 2-jet call each; outside the timed runs);
* fastjet-contrib ``KT_Axes``, ``OnePass_KT_Axes`` and ``MultiPass_Axes`` (``--passes``
  randomised passes) for tau_2 and tau_3 in one call each (``bench/fastjet_nsub.py``);
* physkit ``Shaper(["isotropy"])``;
* physkit's one call on 1 thread and ``OnePass_KT_Axes`` again, alternating (``PAIRS`` pairs),
  so that both see the same load: speed ratio of the best times and median of the pairs'
  ratios (the comparison the other rows make a few minutes apart).

Values are compared per jet: physkit's reported tau_n (an exact EMD, float64) against each
fastjet-contrib value (the same normalised measure, beta = 1, R0 = R); a jet counts as
"<= ref" where ``physkit <= ref * (1 + 1e-6)``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from fastjet_nsub import nsubjettiness

#: relative slack of the per-jet comparison against fastjet-contrib
SLACK = 1e-6
#: alternating physkit (1 thread) / OnePass_KT_Axes pairs
PAIRS = 5


def _physkit(ev, names, threads, R, beta, **kw):
    """``({name: values (B,)}, wall s, CPU s)`` of one ``Shaper(names).compute(ev)`` call."""
    from shaper import Shaper

    sh = Shaper(names, R=R, beta=beta, n_jobs=threads, progress=False, **kw)
    sh.compute(ev[:2])  # warm-up (untimed)
    t0, c0 = time.perf_counter(), time.process_time()
    res = sh.compute(ev)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {n: np.asarray(res[n].value, dtype=np.float64) for n in names}, wall, cpu


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from shaper import Shaper
x = np.zeros((2, 3, 3)); x[:, :, 0] = [3, 2, 1]; x[:, :, 1] = [0, .3, -.2]; x[:, :, 2] = [0, .2, .4]
Shaper(["3-subjettiness"], progress=False).compute(x)
print(time.perf_counter() - t0)
"""


def compile_seconds() -> dict:
    """Wall seconds of ``import shaper`` plus a first 2-jet 3-subjettiness call in a fresh
    process: with an empty numba cache (compiling the kernel) and again with it filled."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for key in ("cold_s", "cached_s"):
            r = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                               capture_output=True, text=True)
            out[key] = float(r.stdout.strip().splitlines()[-1])
    return out


def paired_one_thread(ev, names, R, beta, pairs=PAIRS, **kw) -> dict:
    """physkit's one call on 1 thread and fastjet-contrib ``OnePass_KT_Axes``, alternating
    ``pairs`` times (after an untimed warm-up): wall seconds of each, the speed ratio of the
    best times (OnePass / physkit) and the median of the pairs' ratios."""
    from shaper import Shaper

    sh = Shaper(names, R=R, beta=beta, n_jobs=1, progress=False, **kw)
    sh.compute(ev[:2])
    pk, fj = [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        sh.compute(ev)
        pk.append(time.perf_counter() - t0)
        fj.append(nsubjettiness(ev, "OnePass_KT_Axes", (2, 3), R=R)[1])
    pk, fj = np.array(pk), np.array(fj)
    return dict(physkit_s=pk.tolist(), onepass_s=fj.tolist(), best_ratio=fj.min() / pk.min(),
                median_pair_ratio=float(np.median(fj / pk)))


def _share(v, ref):
    ok = np.isfinite(ref)
    return float(np.mean(v[ok] <= ref[ok] * (1 + SLACK)))


def _worst(v, ref):
    ok = np.isfinite(ref) & (ref > 0)
    return float(np.max(v[ok] / ref[ok])) if ok.any() else float("nan")


def points_bench(ev, labels, threads: int, R: float, beta: float, passes: int = 100,
                 restarts=None, log=print) -> dict:
    """Run every tool on ``ev`` (centred Events); return the figures (see module docstring)."""
    from sklearn.metrics import roc_auc_score

    n = len(ev)
    kw = {} if restarts is None else {"point_restarts": restarts}
    names = ["2-subjettiness", "3-subjettiness"]
    out: dict = {"n_jets": n, "threads": threads, "passes": passes, "restarts": restarts}
    vals, w, c = _physkit(ev, names, threads, R, beta, **kw)
    pk = np.stack([vals[k] for k in names], 1)
    out["physkit_one_call"] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
    log(f"physkit tau2+tau3 one call: {n / w:.0f} jets/s ({w:.2f} s wall, {c:.2f} s CPU)")
    if threads != 1:
        v1, w, c = _physkit(ev, names, 1, R, beta, **kw)
        assert all(np.array_equal(v1[k], vals[k]) for k in names)  # threads change no number
        out["physkit_one_call_1t"] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
        log(f"physkit tau2+tau3 one call, 1 thread: {n / w:.0f} jets/s")
    vt, w, c = _physkit(ev, names, threads, R, beta, point_engine="torch", **kw)
    out["physkit_torch_engine"] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
    log(f"physkit tau2+tau3 one call, torch engine: {n / w:.0f} jets/s")
    out["numba_vs_torch"] = {k: dict(share_le=_share(vals[k], vt[k]),
                                     worst_ratio=_worst(vals[k], vt[k])) for k in names}
    out["compile"] = compile_seconds()
    log(f"first call in a fresh process (import + 2 jets): {out['compile']}")
    sep_w = sep_c = 0.0
    for k in names:
        _, w, c = _physkit(ev, [k], threads, R, beta, **kw)
        out[f"physkit_{k}"] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
        sep_w, sep_c = sep_w + w, sep_c + c
        log(f"physkit {k} alone: {n / w:.0f} jets/s")
    out["physkit_two_calls"] = dict(wall_s=sep_w, cpu_s=sep_c, jets_s=n / sep_w)
    refs = {}
    for axes, npass in (("KT_Axes", None), ("OnePass_KT_Axes", None),
                        ("MultiPass_Axes", passes)):
        taus, w, c = nsubjettiness(ev, axes, (2, 3), R=R, n_pass=npass)
        refs[axes] = taus
        out[axes] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
        log(f"fastjet-contrib {axes}: {n / w:.0f} jets/s")
    for axes, taus in refs.items():
        for j, k in enumerate((2, 3)):
            out[f"tau{k}_vs_{axes}"] = dict(share_le=_share(pk[:, j], taus[:, j]),
                                           worst_ratio=_worst(pk[:, j], taus[:, j]),
                                           median_ratio=float(np.median(pk[:, j] / taus[:, j])))
    lab = np.asarray(labels)
    if len(np.unique(lab)) == 2:
        def auc(t):
            return float(roc_auc_score(lab, -(t[:, 1] / np.maximum(t[:, 0], 1e-300))))
        out["auc_tau32"] = {"physkit": auc(pk), **{a: auc(t) for a, t in refs.items()}}
    vals, w, c = _physkit(ev, ["isotropy"], threads, R, beta)
    out["isotropy"] = dict(wall_s=w, cpu_s=c, jets_s=n / w)
    log(f"physkit isotropy: {n / w:.0f} jets/s")
    out["paired_1t"] = p = paired_one_thread(ev, names, R, beta, **kw)
    log(f"1 thread alternating with OnePass: best/best {p['best_ratio']:.3f}, median of pairs "
        f"{p['median_pair_ratio']:.3f}")
    return out


def points_markdown(r: dict) -> str:
    """The figures of :func:`points_bench` as markdown tables."""
    n = r["n_jets"]
    one = r["OnePass_KT_Axes"]["wall_s"]
    lines = ["| tool (tau_2 + tau_3) | jets/s (wall) | CPU s | speed / OnePass (wall) |",
             "|---|---|---|---|"]
    th = r["threads"]
    for key, label in (("physkit_one_call", f"physkit, one call ({th} threads)"),
                       ("physkit_one_call_1t", "physkit, one call (1 thread)"),
                       ("physkit_torch_engine", f"physkit, one call, torch engine ({th} threads)"),
                       ("physkit_two_calls", "physkit, two calls"),
                       ("physkit_2-subjettiness", "physkit, tau_2 alone"),
                       ("physkit_3-subjettiness", "physkit, tau_3 alone"),
                       ("KT_Axes", "fastjet-contrib KT_Axes"),
                       ("OnePass_KT_Axes", "fastjet-contrib OnePass_KT_Axes"),
                       ("MultiPass_Axes", f"fastjet-contrib MultiPass_Axes ({r['passes']})")):
        if key not in r:
            continue
        t = r[key]
        lines.append(f"| {label} | {n / t['wall_s']:.0f} | {t['cpu_s']:.2f} | "
                     f"{one / t['wall_s']:.2f}x |")
    iso = r["isotropy"]
    lines.append(f"| physkit isotropy | {n / iso['wall_s']:.0f} | {iso['cpu_s']:.2f} | |")
    lines += ["", "| physkit vs | tau_2 share <= ref(1+1e-6) | worst ratio | median ratio "
              "| tau_3 share <= | worst | median |", "|---|---|---|---|---|---|---|"]
    for axes in ("KT_Axes", "OnePass_KT_Axes", "MultiPass_Axes"):
        a, b = r[f"tau2_vs_{axes}"], r[f"tau3_vs_{axes}"]
        lines.append(f"| {axes} | {a['share_le']:.2%} | {a['worst_ratio']:.4f} | "
                     f"{a['median_ratio']:.5f} | {b['share_le']:.2%} | {b['worst_ratio']:.4f} | "
                     f"{b['median_ratio']:.5f} |")
    if "paired_1t" in r:
        p = r["paired_1t"]
        lines += ["", f"physkit one call (1 thread) alternating with OnePass_KT_Axes "
                      f"({len(p['physkit_s'])} pairs): physkit best {n / min(p['physkit_s']):.0f}"
                      f" jets/s, OnePass best {n / min(p['onepass_s']):.0f} jets/s; speed ratio "
                      f"best/best **{p['best_ratio']:.2f}x**, median of the pairs' ratios "
                      f"{p['median_pair_ratio']:.2f}x"]
    if "auc_tau32" in r:
        lines += ["", "tau_32 AUC: " + ", ".join(f"{k} {v:.4f}"
                                                 for k, v in r["auc_tau32"].items())]
    if "numba_vs_torch" in r:
        lines += ["", "numba engine <= torch engine (1+1e-6): " + ", ".join(
            f"{k} {v['share_le']:.2%} (worst ratio {v['worst_ratio']:.6f})"
            for k, v in r["numba_vs_torch"].items())]
    if "compile" in r:
        c = r["compile"]
        lines += ["", f"first call in a fresh process (import shaper + 2 jets, outside the timed "
                      f"runs): {c['cold_s']:.1f} s with an empty numba cache (compiling), "
                      f"{c['cached_s']:.1f} s with it filled"]
    return "\n".join(lines)
