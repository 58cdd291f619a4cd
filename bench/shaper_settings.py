"""SHAPER general-path settings compared on held-out sample jets (how the defaults were chosen).

Usage (from the repository root)::

    .venv/bin/python bench/shaper_settings.py [--n-jets 200] [--observable 2-point-diskiness]
        [--only 2,3] [--pyshaper]
    .venv/bin/python bench/shaper_settings.py --koopman [--observable ...]

The jets are drawn from ``data/jets_sample.h5`` (half top, half QCD, seed 777) **excluding** the
200 jets that ``bench/shaper_bench.py`` compares with pyshaper, so the settings are not tuned on
the benchmark's jets. Each configuration of :class:`shaper.Shaper` runs on the same jets (2
threads, untimed 2-jet warm-up) and the table reports CPU seconds, the mean and median of the
reported values -- exact EMDs to the full jets, so lower is a better fit --, the share of rows
ending at the step limit (status 1), and per jet the share better / worse (relative 1e-4) than
the first configuration (the defaults) and than the previous general path (``flow="sinkhorn"``
with its defaults). ``--pyshaper``: also run pyshaper 1.2.0 (the bench's runner and venv, the paper's settings, one
thread) on the same held-out jets -- once; its output is cached in
``bench/.cache/pyshaper_out_heldout<seed>.npz`` -- and score its fits by the same exact EMD as
the bench (``bench/shaper_exact_eval.py``): adds, for 2-point-diskiness, the share of jets where
each configuration is at most pyshaper's exact EMD (+1e-4 relative).

``--koopman``: the Koopman (DMD) jump-ahead experiment on the general path: the exact flow of
the observable from the kT start on the held-out jets (single start, the default flow settings
-- ``--koopman-flow sinkhorn``: the previous Adam flow on the Sinkhorn divergence --,
its step limit raised so that every row converges), with and without
:class:`physkit.flow.Koopman` jumps of several windows: mean flow steps per row to convergence,
rows at the step limit, and the final exact values (mean, and the share of rows better / worse
than without jumps).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

#: (label, Shaper keyword arguments); the first row is the reference
CONFIGS = [
    ("defaults (exact flow)", {}),
    ("previous general path (flow='sinkhorn', its defaults)", {"flow": "sinkhorn"}),
    ("exact flow, no extra starts", {"starts": ()}),
    ("exact flow, extra start 'kt' only", {"starts": ("kt",)}),
    ("exact flow, no screening (every start flows to the end)", {"screen_steps": 0}),
    ("exact flow, full jets (no coarse-graining)", {"coarse_points": None}),
    ("exact flow, 32 nodes per shape", {"n_samples": 32}),
    ("exact flow, weight lr 0.04", {"lr": 0.04}),
    ("exact flow, weight lr 0.15", {"lr": 0.15}),
    ("exact flow, 40 steps", {"steps": 40}),
    ("exact flow, 150 steps", {"steps": 150}),
    ("exact flow, no polish steps at the reported resolution", {"polish_steps": 0}),
    ("exact flow, nested=True (smaller members' optima as starts)", {"nested": True}),
    ("exact flow, Koopman jumps (window 6)", {"koopman": "koopman6"}),
    ("exact flow, 6 polish steps at the reported resolution", {"polish_steps": 6}),
    ("exact flow, full jets, 32 nodes per shape", {"coarse_points": None, "n_samples": 32}),
    ("exact flow, 15 screening steps", {"screen_steps": 15}),
    ("exact flow, 30 screening steps", {"screen_steps": 30}),
    ("exact flow, the 2 best starts flow on after screening", {"screen_keep": 2}),
    ("exact flow, the 3 best starts flow on after screening", {"screen_keep": 3}),
    ("exact flow, 12 screening steps, the 2 best flow on", {"screen_steps": 12, "screen_keep": 2}),
    ("exact flow, 16 nodes per shape, 12 screening steps, the 2 best flow on",
     {"n_samples": 16, "screen_steps": 12, "screen_keep": 2}),
    ("exact flow, 16 nodes per shape, no screening", {"n_samples": 16, "screen_steps": 0}),
    ("exact flow, 6 screening steps, the best flows on (defaults before screen_keep)",
     {"screen_steps": 6, "screen_keep": 1}),
    ("exact flow, 1 polish step at the reported resolution", {"polish_steps": 1}),
    ("exact flow, extra starts 'wide' only (no raw kT start)", {"starts": ("wide",)}),
    ("exact flow, 8 screening steps", {"screen_steps": 8}),
    ("exact flow, patience 1", {"patience": 1}),
    ("exact flow, 2 polish steps at the reported resolution", {"polish_steps": 2}),
    ("exact flow, 8 polish steps at the reported resolution", {"polish_steps": 8}),
    ("exact flow, 60 steps, 12 screening steps, the 2 best flow on",
     {"steps": 60, "screen_steps": 12, "screen_keep": 2}),
]
TIE = 1e-4


def held_out_jets(path: str, n_jets: int, seed: int = 777):
    import torch

    from physkit.io import read_events, read_labels
    from shaper_bench import pick_jets

    _, _, _, bench_idx = pick_jets(path, 200, 2302)
    labels = read_labels(path)
    rest = np.setdiff1d(np.arange(len(labels)), bench_idx)
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([
        rng.choice(rest[labels[rest] == lab], k, replace=False)
        for lab, k in ((1, n_jets // 2), (0, n_jets - n_jets // 2))]))
    ev = read_events(path, dtype=torch.float64)[torch.as_tensor(idx)].trim()
    return ev.centered(), idx


def _kwargs(kw: dict) -> dict:
    from physkit.flow import Koopman

    if kw.get("koopman") == "koopman6":
        kw = dict(kw, koopman=Koopman(window=6))
    return kw


def pyshaper_exact(ev, seed: int, R: float, beta: float, threads: int) -> np.ndarray:
    """Exact EMD ``(N,)`` at pyshaper's fitted 2-(point+disk) parameters of the held-out jets
    (bench's scorer); runs pyshaper first when its cached output is missing."""
    from shaper_bench import CACHE, load_npz, start_pyshaper
    from shaper_exact_eval import exact_emd, shape_cloud

    tag = f"heldout{seed}" if len(ev) == 200 else f"heldout{seed}_{len(ev)}"
    path = os.path.join(CACHE, f"pyshaper_out_{tag}.npz")
    if not os.path.exists(path):
        proc, path = start_pyshaper(ev, ["2-Point-Diskiness"], 1, 50, tag)
        if proc.wait() != 0:
            raise SystemExit(f"pyshaper runner failed, see {path}.log")
    out = load_npz(path)
    name = "2-Point-Diskiness"
    cloud = shape_cloud("point-disk", out[f"{name}/points"], out[f"{name}/weights"],
                        out[f"{name}/radius"])
    return exact_emd(ev.points().numpy(), ev.weights().numpy(), *cloud, R, beta, threads)


def physkit_exact(ev, res, R: float, beta: float, threads: int) -> np.ndarray:
    """Exact EMD at physkit's fitted 2-(point+disk) parameters by the bench's scorer."""
    from shaper_exact_eval import exact_emd, shape_cloud

    p = res.params
    cloud = shape_cloud("point-disk", p["centers"], p["weights"], p["radii"])
    return exact_emd(ev.points().numpy(), ev.weights().numpy(), *cloud, R, beta, threads)


def compare_settings(args, ev) -> list:
    from shaper import Shaper

    py = None
    if args.pyshaper and args.observable == "2-point-diskiness":
        py = pyshaper_exact(ev, args.seed, args.R, args.beta, args.threads)
    rows, ref, prev = [], None, None
    configs = CONFIGS
    if args.only:
        keep = {0, 1} | {int(i) for i in args.only.split(",")}
        configs = [c for i, c in enumerate(CONFIGS) if i in keep]
    for label, kw in configs:
        sh = Shaper([args.observable], R=args.R, beta=args.beta, n_jobs=args.threads,
                    progress=False, **_kwargs(kw))
        sh.compute(ev[:2])
        t0, c0 = time.perf_counter(), time.process_time()
        res = sh.compute(ev)[args.observable]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        v = res.value
        ref = v if ref is None else ref
        prev = v if kw.get("flow") == "sinkhorn" else prev
        q = v / ref
        row = dict(label=label, wall=wall, cpu=cpu, mean=v.mean(), median=np.median(v),
                   status1=np.mean(res.status == 1), better=np.mean(q < 1 - TIE),
                   worse=np.mean(q > 1 + TIE), v=v)
        if py is not None and args.observable == "2-point-diskiness":
            e = physkit_exact(ev, res, args.R, args.beta, args.threads)
            row["le_pyshaper"] = np.mean(e <= py * (1 + TIE))
        rows.append(row)
        print(f"{label}: {cpu:.2f} CPU-s, mean {v.mean():.5f}", flush=True)
    for row in rows:
        qp = row["v"] / prev
        row["better_prev"], row["worse_prev"] = np.mean(qp < 1 - TIE), np.mean(qp > 1 + TIE)
    return rows


def print_settings(args, ev, rows) -> None:
    print(f"\n{args.observable}, R = {args.R}, beta = {args.beta}, {len(ev)} held-out jets, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}\n")
    py = "le_pyshaper" in rows[0]
    print("| configuration | wall s | CPU s | jets/CPU-s | mean value | median value | status 1 "
          "| better / worse than defaults | better / worse than flow='sinkhorn' |"
          + (" <= pyshaper (+1e-4) |" if py else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if py else ""))
    for r in rows:
        print(f"| {r['label']} | {r['wall']:.2f} | {r['cpu']:.2f} | {len(ev) / r['cpu']:.0f} | "
              f"{r['mean']:.5f} | {r['median']:.5f} | {r['status1']:.1%} | "
              f"{r['better']:.0%} / {r['worse']:.0%} | {r['better_prev']:.0%} / "
              f"{r['worse_prev']:.0%} |" + (f" {r['le_pyshaper']:.1%} |" if py else ""))


def koopman_experiment(args, ev) -> None:
    """Flow steps to convergence with and without Koopman jumps (single start, exact flow)."""
    import torch

    from physkit.flow import Koopman
    from shaper import Shaper, from_name
    from shaper.batching import pad_to, real_first, width_groups
    from shaper.exact_flow import flow_exact

    from shaper.sinkhorn_flow import flow_sinkhorn

    obs = from_name(args.observable)
    sh = Shaper([args.observable], R=args.R, beta=args.beta, n_jobs=1, flow=args.koopman_flow)
    evs, _ = real_first(ev)
    runs = [("no jumps", None)] + [(f"Koopman window {w}", Koopman(window=w))
                                   for w in (4, 6, 8, 12)]
    base = None
    print(f"\nKoopman experiment: {args.observable}, {len(ev)} held-out jets, {sh.flow} flow "
          f"from the kT start on the full jets, {sh.n_samples} nodes per shape, step limit "
          f"{args.koopman_steps}, tol {sh.tol}, patience {sh.patience}\n")
    print("| run | mean flow steps per row | rows at the step limit | jumps kept per row | "
          "mean exact value | better / worse than no jumps | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for label, kp in runs:
        steps, vals, lim, jumps, cpu = [], [], [], [], 0.0
        for rows, w in width_groups(evs.n_particles()):
            g = sh._prepare(pad_to(evs[rows], w))
            p0 = {k: v.to(torch.float64) for k, v in obs.init(g.refined_seeds, sh.R).items()}
            c0 = time.process_time()
            if sh.flow == "exact":
                res = flow_exact(obs, g.x, g.z, p0, steps=args.koopman_steps,
                                 n_samples=sh.n_samples, R=sh.R, beta=sh.beta, weight_lr=sh.lr,
                                 tol=sh.tol, patience=sh.patience, koopman=kp)
            else:  # the previous general path's Adam flow on the Sinkhorn divergence
                p0 = {k: obs.constraints[k].project(v.to(sh.dtype)) for k, v in p0.items()}
                res = flow_sinkhorn(obs, g.x.to(sh.dtype), g.z.to(sh.dtype), g.mask, p0,
                                    args.koopman_steps, sh, koopman=kp)
            cpu += time.process_time() - c0
            steps.append(res.n_steps.numpy())
            lim.append(res.status.numpy() == 1)
            jumps.append(res.n_jumps.numpy() if res.n_jumps is not None else np.zeros(len(g)))
            vals.append(sh.exact_values(evs[rows], obs, _input_frame(obs, res.params, g)))
        v = np.concatenate(vals)
        base = v if base is None else base
        q = v / base
        print(f"| {label} | {np.concatenate(steps).mean():.1f} | {np.concatenate(lim).mean():.1%} "
              f"| {np.concatenate(jumps).mean():.2f} | {v.mean():.5f} | "
              f"{np.mean(q < 1 - TIE):.0%} / {np.mean(q > 1 + TIE):.0%} | {cpu:.2f} |",
              flush=True)


def _input_frame(obs, params, group) -> dict:
    """Fitted parameters in the events' own frame (what ``Shaper.exact_values`` takes)."""
    out = {}
    for k, v in params.items():
        v = v.detach().to(group.axis.dtype)
        if obs.specs[k].kind == "position":
            v = v + group.axis.reshape([v.shape[0]] + [1] * (v.dim() - 2) + [2])
        out[k] = v.numpy()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-jets", type=int, default=200)
    ap.add_argument("--observable", default="2-point-diskiness")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--R", type=float, default=0.8)
    ap.add_argument("--only", default=None,
                    help="comma-separated row numbers of CONFIGS to run (0 = defaults and 1 = "
                         "flow='sinkhorn' always run)")
    ap.add_argument("--pyshaper", action="store_true",
                    help="compare with pyshaper's fits of the same jets (2-point-diskiness)")
    ap.add_argument("--seed", type=int, default=777, help="seed of the held-out jets")
    ap.add_argument("--koopman", action="store_true", help="the Koopman experiment instead")
    ap.add_argument("--koopman-steps", type=int, default=300)
    ap.add_argument("--koopman-flow", default="exact", choices=("exact", "sinkhorn"),
                    help="the flow of the Koopman experiment")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "jets_sample.h5"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    ev, _ = held_out_jets(args.data, args.n_jets, args.seed)
    if args.koopman:
        koopman_experiment(args, ev)
        return 0
    rows = compare_settings(args, ev)
    print_settings(args, ev, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
