"""physkit's SHAPER side by side with pyshaper 1.2.0 on the same jets.

Usage (from the repository root)::

    .venv/bin/python bench/shaper_bench.py [--n-jets 200] [--quick] [--threads 2] [--parallel]
    .venv/bin/python bench/shaper_bench.py --gpu [--gpu-jets 10000]   # physkit only, on CUDA
    .venv/bin/python bench/shaper_bench.py --observables none --general 1-ringiness  # general only
    .venv/bin/python bench/shaper_bench.py --only points [--n-jets 2000] [--passes 100]

``--only points``: the exact point path and isotropy against fastjet-contrib's Nsubjettiness
(C++; ``KT_Axes``, ``OnePass_KT_Axes``, ``MultiPass_Axes``) on the same jets and threads, in
one run (``bench/shaper_points_bench.py``); no pyshaper.

What it does:

1. picks ``--n-jets`` jets (half top, half QCD, fixed seed) from ``data/jets_sample.h5`` (synthetic
   stand-ins if the file is missing) and centres them on their pT-weighted axis
   (:meth:`physkit.events.Events.centered`); both tools get exactly these (pT, y, phi) jets;
2. runs pyshaper 1.2.0 in its own virtual environment ``bench/.venvs/pyshaper`` (made here if
   missing: pyshaper needs numpy < 2 and a matplotlib that still has the 'seaborn-white' style)
   through ``bench/pyshaper_runner.py``, one process per observable, with the SHAPER paper's
   settings (Sinkhorn epsilon = 1e-3, scaling 0.9, Adam lr 0.01, 500 epochs, early stopping 25,
   50 samples), beta = 1, R = 0.8, for 2-subjettiness, 3-subjettiness and 2-(point+disk)iness;
   one after the other with ``--threads`` threads, or with ``--parallel`` all three at once with
   one thread each;
3. runs physkit's :class:`shaper.Shaper` (default settings) on the same jets, ``--threads`` threads;
4. scores both tools' fitted parameters with the same exact EMD (``bench/shaper_exact_eval.py``:
   POT network simplex; disks on a fine equal-area grid) and prints a markdown table: jets/s of
   each tool, the speed-up by wall time and by process CPU time (the fair one on a loaded
   machine), the median ratio of exact EMDs physkit / pyshaper, the share of jets where physkit's
   fit is better / tied / worse, for n-subjettiness the median ratio to the file's reference tau_n
   (``tau_kt``: exclusive-kT axes; ``tau_onepass``: fastjet-contrib OnePass_KT_Axes), and
   pyshaper's own reported value relative to the exact EMD at its parameters. Per-jet values go
   to ``bench/.cache/shaper_bench_per_jet.npz``; ``--json`` writes the figures.

5. the general path (``--general``, default 1-ringiness, 1-diskiness, 2-point-diskiness) against
   the previous general path (``Shaper(flow="sinkhorn")``, the defaults before issue 15) on the
   same jets: jets/s by wall and CPU time, the share of jets whose value is no higher than the
   previous path's, the rows at the step limit (status 1).

pyshaper's time is its ``Shaper.calculate`` calls (after a short untimed warm-up); physkit's is
:meth:`shaper.Shaper.compute` (after an untimed warm-up on 2 jets), which includes physkit's own
exact-EMD evaluation of the values it reports.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

VENV = os.path.join(HERE, ".venvs", "pyshaper")
VENV_PY = os.path.join(VENV, "bin", "python")
CACHE = os.path.join(HERE, ".cache")
PYSHAPER_PINS = ["numpy<2", "torch==2.13.0", "pyshaper==1.2.0", "matplotlib<3.8"]

R = 0.8
BETA = 1.0
#: (physkit name, pyshaper name, shape kind for the exact evaluation, n, tau_kt column or None)
OBSERVABLES = [
    ("2-subjettiness", "2-Subjettiness", "points", 2, 1),
    ("3-subjettiness", "3-Subjettiness", "points", 3, 2),
    ("2-point-diskiness", "2-Point-Diskiness", "point-disk", 2, None),
]
#: relative tolerance under which two exact EMDs count as a tie
TIE_RTOL = 1e-4
#: general-path observables compared with the previous general path (``flow="sinkhorn"``, the
#: defaults before issue 15) in the same run, and timed on the GPU (``--gpu``)
GENERAL = ["1-ringiness", "1-diskiness", "2-point-diskiness"]


# ----------------------------------------------------------------------------- pyshaper venv
def ensure_pyshaper_venv(log=print) -> str:
    """Create ``bench/.venvs/pyshaper`` with pyshaper 1.2.0 if it is missing; return its python."""
    check = [VENV_PY, "-c", "import numpy, pyshaper.Shaper, pyshaper.CommonObservables; "
                            "assert numpy.__version__ < '2'"]
    if os.path.exists(VENV_PY) and subprocess.run(check, capture_output=True).returncode == 0:
        return VENV_PY
    log(f"creating pyshaper's virtual environment in {VENV} (takes a few minutes)")
    base = getattr(sys, "_base_executable", None) or "python3"
    subprocess.run([base, "-m", "venv", VENV], check=True)
    subprocess.run([VENV_PY, "-m", "pip", "install", "-q", *PYSHAPER_PINS], check=True)
    res = subprocess.run(check, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"pyshaper does not import in {VENV}:\n{res.stderr}")
    return VENV_PY


# ----------------------------------------------------------------------------- jets
def pick_jets(path: str, n_jets: int, seed: int):
    """``(Events centred, tau (n, 8), labels (n,), indices (n,))``; half top, half QCD.

    ``tau`` columns: the file's ``tau_kt`` tau_1..tau_4 (exclusive-kT axes), then
    ``tau_onepass`` tau_1..tau_4 (fastjet-contrib OnePass_KT_Axes), both beta = 1, R0 = 0.8.
    """
    import torch

    from physkit.io import read_dataset, read_events, read_labels

    labels = read_labels(path)
    rng = np.random.default_rng(seed)
    idx = []
    for lab, k in ((1, n_jets // 2), (0, n_jets - n_jets // 2)):
        pool = np.flatnonzero(labels == lab)
        if len(pool) < k:
            raise ValueError(f"{path}: only {len(pool)} jets with label {lab}, need {k}")
        idx.append(rng.choice(pool, size=k, replace=False))
    idx = np.sort(np.concatenate(idx))
    ev = read_events(path, dtype=torch.float64)[torch.as_tensor(idx)].trim()
    tau = np.concatenate([np.asarray(read_dataset(path, "tau_kt"))[idx],
                          np.asarray(read_dataset(path, "tau_onepass"))[idx]], axis=1)
    return ev.centered(), tau, labels[idx], idx


def synthetic_jets(n_jets: int, seed: int):
    """Stand-in jets (2- and 3-prong Gaussian blobs) for plumbing when no sample file exists."""
    import torch

    from physkit.events import Events

    rng = np.random.default_rng(seed)
    m = 60
    pt = np.zeros((n_jets, m))
    y = np.zeros((n_jets, m))
    phi = np.zeros((n_jets, m))
    for i in range(n_jets):
        k = 2 + i % 2
        c = rng.normal(0, 0.25, (k, 2))
        lab = rng.integers(0, k, m)
        pts = c[lab] + rng.normal(0, 0.05, (m, 2))
        pt[i] = rng.exponential(10.0, m)
        y[i], phi[i] = pts[:, 0], pts[:, 1]
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    ev = Events(t(pt), t(y), t(phi), t(pt) > 0)
    return ev.centered(), np.full((n_jets, 8), np.nan), np.arange(n_jets) % 2, np.arange(n_jets)


# ----------------------------------------------------------------------------- tools
def start_pyshaper(ev, py_names: list[str], threads: int, batch_size: int, tag: str,
                   epochs: int = 500, log=print) -> tuple[subprocess.Popen, str]:
    """Launch ``bench/pyshaper_runner.py`` on ``ev`` for ``py_names``; returns (process, out path).

    The runner's stdout goes to ``OUT.log``, pyshaper's per-epoch lines to ``OUT.progress``.
    """
    py = ensure_pyshaper_venv(log)
    os.makedirs(CACHE, exist_ok=True)
    inp = os.path.join(CACHE, f"pyshaper_in_{tag}.npz")
    out = os.path.join(CACHE, f"pyshaper_out_{tag}.npz")
    np.savez(inp, pt=ev.pt.numpy(), y=ev.y.numpy(), phi=ev.phi.numpy())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [py, os.path.join(HERE, "pyshaper_runner.py"), inp, out,
           "--observables", ",".join(py_names),
           "--batch-size", str(batch_size), "--threads", str(threads),
           "--R", str(R), "--beta", str(BETA), "--epochs", str(epochs)]
    log("running: " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                               for c in cmd))
    fh = open(out + ".log", "w")
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT), out


def load_npz(path: str) -> dict:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def run_physkit(ev, name: str, device: str = "cpu", threads: int | None = None, **kw):
    """``(value (B,), centers (B, n, 2), weights (B, k), radii (B, n) or None, wall_s, cpu_s)``
    (``kw``: further :class:`shaper.Shaper` settings; the status per jet goes to
    ``run_physkit.last_status``)."""
    import torch

    from shaper import Shaper

    ev = ev.to(device)
    sh = Shaper([name], R=R, beta=BETA, device=device, n_jobs=threads, **kw)
    sh.compute(ev[:2])  # warm-up (untimed)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    res = sh.compute(ev)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    r = res[name]
    p = r.params
    run_physkit.last_status = np.asarray(r.status)
    return (np.asarray(r.value, dtype=np.float64), np.asarray(p["centers"], dtype=np.float64),
            np.asarray(p["weights"], dtype=np.float64),
            None if "radii" not in p else np.asarray(p["radii"], dtype=np.float64), wall, cpu)


# ----------------------------------------------------------------------------- report
def _med(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def compare(jobs: list[dict], threads: int, log=print, per_jet: dict | None = None) -> list[dict]:
    """Run physkit on each job's jets and score both tools' fits with the same exact EMD.

    A job: ``obs`` (an OBSERVABLES entry), ``ev`` (centred Events), ``tau`` (n, 8), ``py_out``.
    ``per_jet``: filled with per-jet exact EMDs and reported values when given.
    """
    from shaper_exact_eval import exact_emd, shape_cloud

    rows = []
    for job in jobs:
        pk_name, py_name, kind, n_prong, tau_col = job["obs"]
        ev, tau, py_out = job["ev"], job["tau"], job["py_out"]
        jet_pts = ev.points().numpy()
        jet_w = ev.weights().numpy()
        n = len(ev)
        log(f"physkit {pk_name} ...")
        v_pk, c_pk, w_pk, r_pk, wall_pk, cpu_pk = run_physkit(ev, pk_name, threads=threads)
        log(f"  {n} jets in {wall_pk:.2f} s wall, {cpu_pk:.2f} s CPU ({n / wall_pk:.1f} jets/s)")
        c_py = py_out[f"{py_name}/points"]
        w_py = py_out[f"{py_name}/weights"]
        r_py = py_out.get(f"{py_name}/radius")
        v_py = py_out[f"{py_name}/value"]
        wall_py = float(py_out[f"{py_name}/wall_s"])
        cpu_py = float(py_out[f"{py_name}/cpu_s"])
        e_pk = exact_emd(jet_pts, jet_w, *shape_cloud(kind, c_pk, w_pk, r_pk), R, BETA, threads)
        e_py = exact_emd(jet_pts, jet_w, *shape_cloud(kind, c_py, w_py, r_py), R, BETA, threads)
        if per_jet is not None:
            per_jet.update({f"{pk_name}/exact_physkit": e_pk, f"{pk_name}/exact_pyshaper": e_py,
                            f"{pk_name}/reported_physkit": v_pk,
                            f"{pk_name}/reported_pyshaper": v_py,
                            f"{pk_name}/index": job["idx"], f"{pk_name}/label": job["labels"]})
        rel = (e_pk - e_py) / np.maximum(e_py, 1e-12)
        ok = np.isfinite(rel)
        row = dict(
            observable=pk_name, n_jets=n,
            py_jets_s=n / wall_py, pk_jets_s=n / wall_pk, speedup=wall_py / wall_pk,
            py_wall_s=wall_py, pk_wall_s=wall_pk, py_cpu_s=cpu_py, pk_cpu_s=cpu_pk,
            speedup_cpu=cpu_py / cpu_pk,
            emd_ratio_median=_med(e_pk / e_py),
            better=float(np.mean(rel[ok] < -TIE_RTOL)), tie=float(np.mean(np.abs(rel[ok]) <= TIE_RTOL)),
            worse=float(np.mean(rel[ok] > TIE_RTOL)), n_nonfinite=int((~ok).sum()),
            emd_ratio_p90=float(np.nanpercentile(e_pk / e_py, 90)),
            emd_ratio_max=float(np.nanmax(e_pk / e_py)),
            pk_exact_median=_med(e_pk), py_exact_median=_med(e_py),
            pk_reported_vs_exact=_med(v_pk / e_pk),
            py_reported_vs_exact=_med(v_py / e_py),
        )
        if tau_col is not None and np.isfinite(tau[:, tau_col]).all():
            t = tau[:, tau_col]
            row.update(pk_over_tau=_med(e_pk / t), py_over_tau=_med(e_py / t),
                       py_reported_over_tau=_med(v_py / t),
                       pk_over_onepass=_med(e_pk / tau[:, 4 + tau_col]),
                       py_over_onepass=_med(e_py / tau[:, 4 + tau_col]),
                       pk_below_tau=float(np.mean(e_pk <= t * (1 + TIE_RTOL))),
                       py_below_tau=float(np.mean(e_py <= t * (1 + TIE_RTOL))))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None or not np.isfinite(x) else fmt.format(x)

    def pct(x):
        return f(x, "{:.0%}")

    out = ["| observable | pyshaper jets/s | physkit jets/s | speed-up (wall) | speed-up (CPU time) "
           "| median exact EMD physkit/pyshaper | physkit better / tie / worse "
           "| median exact EMD / tau_kt: physkit, pyshaper | median exact EMD / tau_onepass: "
           "physkit, pyshaper | median pyshaper reported / its exact EMD |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tau = (f"{f(r.get('pk_over_tau'), '{:.4f}')}, {f(r.get('py_over_tau'), '{:.4f}')}"
               if "pk_over_tau" in r else "—")
        op = (f"{f(r.get('pk_over_onepass'), '{:.4f}')}, {f(r.get('py_over_onepass'), '{:.4f}')}"
              if "pk_over_onepass" in r else "—")
        out.append(f"| {r['observable']} | {f(r['py_jets_s'], '{:.3f}')} | "
                   f"{f(r['pk_jets_s'], '{:.1f}')} | {f(r['speedup'], '{:.0f}')}× | "
                   f"{f(r['speedup_cpu'], '{:.0f}')}× | "
                   f"{f(r['emd_ratio_median'], '{:.4f}')} | {pct(r['better'])} / {pct(r['tie'])} "
                   f"/ {pct(r['worse'])} | {tau} | {op} | {f(r['py_reported_vs_exact'], '{:.4f}')} |")
    pair = [r for r in rows if r["observable"].endswith("subjettiness")]
    if len(pair) == 2:
        n = pair[0]["n_jets"]
        py_w, pk_w = (sum(r[k] for r in pair) for k in ("py_wall_s", "pk_wall_s"))
        py_c, pk_c = (sum(r[k] for r in pair) for k in ("py_cpu_s", "pk_cpu_s"))
        out.append(f"| 2- and 3-subjettiness together | {n / py_w:.3f} | {n / pk_w:.1f} | "
                   f"{py_w / pk_w:.0f}× | {py_c / pk_c:.0f}× | | | | | |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- general path
def general_rows(ev, threads: int, names=GENERAL, log=print) -> list[dict]:
    """physkit's general path (defaults) against the previous one (``flow="sinkhorn"``, the
    defaults before issue 15) on the same jets, one after the other: jets/s by wall and by CPU
    time (times the threads: the 2-thread rate on an unloaded machine), the share of jets whose
    value is no higher than the previous path's (relative 1e-4), and rows at the step limit."""
    rows = []
    for name in names:
        out = {}
        for label, kw in (("new", {}), ("old", {"flow": "sinkhorn"})):
            v, *_, wall, cpu = run_physkit(ev, name, threads=threads, **kw)
            out[label] = (v, wall, cpu, run_physkit.last_status)
            log(f"  {name} ({label}): {len(ev)} jets in {wall:.2f} s wall, {cpu:.2f} s CPU")
        (vn, wn, cn, sn), (vo, wo, co, so) = out["new"], out["old"]
        q = vn / vo
        rows.append(dict(observable=name, n_jets=len(ev), new_jets_s=len(ev) / wn,
                         old_jets_s=len(ev) / wo, new_jets_cpu_s=threads * len(ev) / cn,
                         old_jets_cpu_s=threads * len(ev) / co, le_old=float(np.mean(
                             q <= 1 + TIE_RTOL)), better_old=float(np.mean(q < 1 - TIE_RTOL)),
                         ratio_median=_med(q), ratio_max=float(np.max(q)),
                         new_status1=float(np.mean(sn == 1)), old_status1=float(np.mean(so == 1)),
                         new_mean=float(vn.mean()), old_mean=float(vo.mean())))
    return rows


def general_markdown(rows: list[dict], threads: int) -> str:
    out = [f"| observable | jets/s (wall): new, previous | {threads} x jets per CPU-s: new, "
           "previous | value <= previous (+1e-4) | better than previous | median / max ratio "
           "new/previous | mean value: new, previous | status 1: new, previous |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['observable']} | {r['new_jets_s']:.0f}, {r['old_jets_s']:.0f} | "
                   f"{r['new_jets_cpu_s']:.0f}, {r['old_jets_cpu_s']:.0f} | {r['le_old']:.1%} | "
                   f"{r['better_old']:.1%} | {r['ratio_median']:.4f} / {r['ratio_max']:.3f} | "
                   f"{r['new_mean']:.5f}, {r['old_mean']:.5f} | {r['new_status1']:.1%}, "
                   f"{r['old_status1']:.1%} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- GPU
def gpu_throughput(path: str, n_jets: int, seed: int, device: str = "cuda",
                   log=print) -> list[dict]:
    """physkit jets/s on ``device`` for ``n_jets`` jets (the sample's jets repeated to fill B)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device")
    from physkit.io import read_events

    ev = read_events(path, dtype=torch.float32).centered()
    reps = -(-n_jets // len(ev))
    idx = np.random.default_rng(seed).permutation(np.tile(np.arange(len(ev)), reps))[:n_jets]
    ev = ev[torch.as_tensor(idx)].trim()
    rows = []
    names = [o[0] for o in OBSERVABLES] + [g for g in GENERAL if g not in
                                             [o[0] for o in OBSERVABLES]]
    for name in names:
        v, *_, wall, _ = run_physkit(ev, name, device=device)
        dev = torch.cuda.get_device_name() if device.startswith("cuda") else device
        rows.append(dict(observable=name, n_jets=n_jets, jets_s=n_jets / wall, wall_s=wall,
                         value_median=_med(v), device=dev))
        log(f"{dev} {name}: {n_jets} jets in {wall:.2f} s ({n_jets / wall:.0f} jets/s)")
    return rows


def only_points(args, n: int) -> int:
    """``--only points``: physkit's point path and isotropy vs fastjet-contrib (module doc)."""
    from shaper_points_bench import points_bench, points_markdown

    ev, _tau, labels, _idx = pick_jets(args.data, n, args.seed)
    r = points_bench(ev, labels, args.threads, R, BETA, passes=args.passes)
    print()
    print(f"jets: {os.path.relpath(args.data, ROOT)}: {n // 2} top + {n - n // 2} QCD "
          f"(seed {args.seed}), max multiplicity {ev.shape[1]}; R = {R}, beta = {BETA}; "
          f"{args.threads} torch threads (fastjet single-threaded); {platform.machine()}, "
          f"{os.cpu_count()} visible cores, load average {os.getloadavg()[0]:.1f} at the end")
    md = points_markdown(r)
    print(md)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(rows=r, markdown=md), fh, indent=1)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-jets", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="10 jets (plumbing check)")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "jets_sample.h5"))
    ap.add_argument("--seed", type=int, default=2302)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pyshaper-batch", type=int, default=50,
                    help="jets per pyshaper calculate() call")
    ap.add_argument("--reuse-pyshaper", action="store_true",
                    help="reuse the cached pyshaper output for the same jets (development only)")
    ap.add_argument("--pyshaper-epochs", type=int, default=500,
                    help="pyshaper epochs; anything but the paper's 500 is a smoke test only")
    ap.add_argument("--n-jets-point-disk", type=int, default=None,
                    help="jets for 2-point-diskiness (default: --n-jets)")
    ap.add_argument("--observables", default=None,
                    help="comma-separated subset of " + ",".join(o[0] for o in OBSERVABLES))
    ap.add_argument("--parallel", action="store_true",
                    help="run the three pyshaper processes at once, 1 thread each")
    ap.add_argument("--general", default=",".join(GENERAL),
                    help="general-path observables compared with the previous general path "
                         "(flow='sinkhorn') on the same jets ('' to skip)")
    ap.add_argument("--gpu", action="store_true", help="physkit only, on CUDA, --gpu-jets jets")
    ap.add_argument("--gpu-jets", type=int, default=10_000)
    ap.add_argument("--gpu-device", default="cuda", help="device for --gpu ('cpu': dry run)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--only", choices=["points"], default=None,
                    help="points: tau_2 + tau_3 and isotropy vs fastjet-contrib only")
    ap.add_argument("--passes", type=int, default=100, help="MultiPass_Axes passes (--only)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.gpu:
        rows = gpu_throughput(args.data, args.gpu_jets, args.seed, args.gpu_device)
        print(json.dumps(rows, indent=1))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        return 0

    n = 10 if args.quick else args.n_jets
    if args.only == "points":
        return only_points(args, n)
    n_pd = n if args.n_jets_point_disk is None or args.quick else args.n_jets_point_disk
    jobs, srcs = [], []
    wanted = args.observables.split(",") if args.observables else [o[0] for o in OBSERVABLES]
    for obs in [o for o in OBSERVABLES if o[0] in wanted]:
        k = n_pd if obs[2] == "point-disk" else n
        if os.path.exists(args.data):
            ev, tau, labels, idx = pick_jets(args.data, k, args.seed)
            src = (f"{os.path.relpath(args.data, ROOT)}: {k // 2} top + {k - k // 2} QCD jets "
                   f"(seed {args.seed})")
        else:
            print(f"WARNING: {args.data} not found; using {k} SYNTHETIC jets (plumbing only)")
            ev, tau, labels, idx = synthetic_jets(k, args.seed)
            src = f"{k} synthetic jets"
        srcs.append(f"{obs[0]}: {src}, max multiplicity {ev.shape[1]}")
        tag = (f"{obs[1]}_{k}_{args.seed}_e{args.pyshaper_epochs}_"
               f"{hashlib.sha1(idx.tobytes()).hexdigest()[:8]}")
        jobs.append(dict(obs=obs, ev=ev, tau=tau, tag=tag, idx=idx, labels=labels,
                         out=os.path.join(CACHE, f"pyshaper_out_{tag}.npz")))

    # pyshaper: one runner process per observable, one after the other (or all at once)
    py_threads = 1 if args.parallel else args.threads
    pending = []
    for job in jobs:
        if args.reuse_pyshaper and os.path.exists(job["out"]):
            print(f"reusing {os.path.relpath(job['out'], ROOT)}")
            continue
        proc, _ = start_pyshaper(job["ev"], [job["obs"][1]], py_threads, args.pyshaper_batch,
                                 job["tag"], args.pyshaper_epochs)
        pending.append((proc, job))
        if not args.parallel:
            proc.wait()
    for proc, job in pending:
        if proc.wait() != 0:
            raise SystemExit(f"pyshaper runner failed, see {job['out']}.log")
        with open(job["out"] + ".log") as fh:
            print(fh.read().strip())
    for job in jobs:
        job["py_out"] = load_npz(job["out"])

    per_jet: dict = {}
    rows = compare(jobs, args.threads, per_jet=per_jet)
    np.savez(os.path.join(CACHE, "shaper_bench_per_jet.npz"), **per_jet)
    md = markdown(rows)
    print()
    print("jets: " + "; ".join(srcs))
    print(f"R = {R}, beta = {BETA}; physkit: {args.threads} threads; pyshaper: {py_threads} "
          f"thread(s) per process, {'3 processes at once' if args.parallel else 'one at a time'},"
          f" batches of {args.pyshaper_batch} jets; {platform.machine()}, "
          f"{os.cpu_count()} visible cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(md)
    print()
    for r in rows:
        print(json.dumps(r))
    grows, gmd = [], ""
    if args.general:
        names = [g for g in args.general.split(",") if g]
        if os.path.exists(args.data):
            gev, *_ = pick_jets(args.data, n, args.seed)
        else:
            gev, *_ = synthetic_jets(n, args.seed)
        print(f"\ngeneral path vs the previous one (flow='sinkhorn'), same {len(gev)} jets, "
              f"{args.threads} threads:")
        grows = general_rows(gev, args.threads, names)
        gmd = general_markdown(grows, args.threads)
        print(gmd)
        for r in grows:
            print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(source=srcs, rows=rows, markdown=md, general=grows,
                           general_markdown=gmd), fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
