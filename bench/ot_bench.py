"""Optimal-transport benchmark: exact EMD and batched Sinkhorn divergence, side by side.

Usage::

    python bench/ot_bench.py [--n-pairs-jets 60] [--n-sinkhorn 1000] [--threads 2] [--torch-threads 1]

On the same centred jets (``data/jets_sample.h5`` if present, else synthetic jets):

* exact EMD pairs/s, R = 0.8, beta = 1, normalised: ``physkit.ot.emds`` (threads),
  POT called directly in a Python loop (numpy cost per pair, ``ot.emd2``), and
  ``energyflow.emds`` when energyflow imports (all values cross-checked);
* Sinkhorn divergences/s on CPU for a batch of jet-vs-3-point problems (the SHAPER
  pattern; the 3 points sit on the jet's three hardest particles with pT-proportional
  weights), float32 and float64, eps = 1e-3: a cold call, a call reusing the cached jet
  self term (``self_x``), and a warm-started call after moving the points by 1e-3;
  median and max |relative error| against exact EMD (``physkit.ot.emd_batch``).

Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from physkit.events import Events  # noqa: E402
from physkit.ot import emd_batch, emds, sinkhorn_divergence  # noqa: E402
from physkit.ot.cost import cost_matrix  # noqa: E402

R, BETA, EPS = 0.8, 1.0, 1e-3


def load_jets(n: int) -> tuple[Events, str]:
    path = os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5")
    if os.path.exists(path):
        import h5py
        with h5py.File(path, "r") as f:
            c = f["constituents"][:n]
        src = f"data/jets_sample.h5 (first {len(c)} jets)"
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
        from conftest import synthetic_jets
        c = synthetic_jets(n, 100, seed=0, n_prongs=3)
        src = f"synthetic jets ({n})"
    return Events.from_padded(c.astype(np.float64)).centered().trim(), src


def timeit(fn, repeat: int = 1, label: str = ""):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    print(f"  {label or getattr(fn, '__name__', 'step')}: {best:.2f} s", file=sys.stderr, flush=True)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pairs-jets", type=int, default=60,
                    help="jets for the pairwise exact benchmark (n(n-1)/2 pairs)")
    ap.add_argument("--n-sinkhorn", type=int, default=1000, help="jet-vs-3-point problems")
    ap.add_argument("--threads", type=int, default=2, help="threads for emds / emd_batch")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads for the Sinkhorn rows (1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    t_start = time.perf_counter()

    ev, src = load_jets(max(args.n_pairs_jets, args.n_sinkhorn))
    jets_np = ev.to_padded()
    evs = [j[j[:, 0] > 0] for j in jets_np[:args.n_pairs_jets]]
    n = len(evs)
    n_pairs = n * (n - 1) // 2
    rows = []

    # ---------------------------------------------------------------- exact EMD
    t_pk, D = timeit(lambda: emds(evs, R=R, beta=BETA, norm=True, periodic_phi=True,
                                  n_jobs=args.threads))
    rows.append(("exact EMD, pairwise", f"physkit.ot.emds ({args.threads} threads)",
                 f"{n_pairs / t_pk:,.0f} pairs/s", "reference"))

    import ot

    def pot_loop():
        out = np.zeros((n, n))
        for i in range(n):
            wi = evs[i][:, 0] / evs[i][:, 0].sum()
            for j in range(i + 1, n):
                wj = evs[j][:, 0] / evs[j][:, 0].sum()
                C = cost_matrix(evs[i][:, 1:], evs[j][:, 1:], R, BETA)
                out[i, j] = ot.emd2(wi, wj, C, numItermax=10**7)
        return out

    t_pot, Dpot = timeit(pot_loop)
    iu = np.triu_indices(n, 1)
    dev = np.abs(Dpot[iu] - D[iu]).max()
    rows.append(("exact EMD, pairwise", "POT ot.emd2 in a Python loop (1 thread)",
                 f"{n_pairs / t_pot:,.0f} pairs/s", f"max |diff| {dev:.1e}"))
    try:
        import energyflow as ef
        evs_f = [np.asfortranarray(e) for e in evs]  # see tests/test_ot_exact.py
        t_ef, Def = timeit(lambda: ef.emd.emds(evs_f, R=R, beta=BETA, norm=True,
                                               periodic_phi=True, n_jobs=args.threads,
                                               verbose=0))
        dev = np.abs(Def[iu] - D[iu]).max()
        rows.append(("exact EMD, pairwise",
                     f"energyflow {ef.__version__} emds ({args.threads} threads)",
                     f"{n_pairs / t_ef:,.0f} pairs/s", f"max |diff| {dev:.1e}"))
    except Exception as exc:  # noqa: BLE001
        rows.append(("exact EMD, pairwise", "energyflow emds", "n/a", f"({exc})"))

    # ---------------------------------------------------------------- Sinkhorn
    B = min(args.n_sinkhorn, len(ev))
    x, a, mx = ev.points()[:B], ev.weights()[:B], ev.mask[:B]
    order = torch.argsort(ev.pt[:B], dim=1, descending=True)[:, :3]
    y = torch.gather(x, 1, order[:, :, None].expand(-1, -1, 2)).clone()
    b = torch.gather(ev.pt[:B], 1, order)
    b = b / b.sum(1, keepdim=True)
    t_ex, exact = timeit(lambda: emd_batch(x, a, y, b, R=R, beta=BETA, n_jobs=args.threads))
    rows.append((f"exact EMD, {B} jet-vs-3-point", f"physkit.ot.emd_batch ({args.threads} threads)",
                 f"{B / t_ex:,.0f} problems/s", "reference"))
    y_moved = y + 1e-3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0),
                                     dtype=y.dtype)
    for dt in (torch.float32, torch.float64):
        xd, ad, yd, bd, ym = (t.to(dt) for t in (x, a, y, b, y_moved))
        kw = dict(R=R, beta=BETA, eps=EPS, mask_x=mx)
        t_cold, (S, P) = timeit(lambda: sinkhorn_divergence(xd, ad, yd, bd, return_potentials=True,
                                                            **kw))
        rel = np.abs(S.double().numpy() / exact - 1)
        it = P.n_iter.double()
        rows.append((f"Sinkhorn, {B} jet-vs-3-point, {str(dt)[6:]}", "cold (incl. jet self term)",
                     f"{B / t_cold:,.0f} div/s",
                     f"median/max rel. err {np.median(rel):.2%} / {rel.max():.2%}; "
                     f"iters median {it.median():.0f}, max {it.max():.0f}"))
        t_self, S2 = timeit(lambda: sinkhorn_divergence(xd, ad, yd, bd, self_x=P.p, **kw), 1)
        rows.append((f"Sinkhorn, {B} jet-vs-3-point, {str(dt)[6:]}", "cached self_x",
                     f"{B / t_self:,.0f} div/s",
                     f"max |diff| to cold {float((S2 - S).abs().max()):.1e}"))
        t_warm, (S3, P3) = timeit(lambda: sinkhorn_divergence(
            xd, ad, ym, bd, self_x=P.p, warm_start=P, return_potentials=True, **kw), 1)
        yg = ym.clone().requires_grad_(True)
        t_grad, _ = timeit(lambda: sinkhorn_divergence(
            xd, ad, yg, bd, self_x=P.p, warm_start=P, **kw).sum().backward(), 1)
        rows.append((f"Sinkhorn, {B} jet-vs-3-point, {str(dt)[6:]}",
                     "points moved 1e-3, cached self_x + warm start",
                     f"{B / t_warm:,.0f} div/s ({B / t_grad:,.0f} with grad)",
                     f"iters median {P3.n_iter.double().median():.0f}, "
                     f"max {P3.n_iter.max():.0f}"))

    print(f"Data: {src}, centred; R = {R}, beta = {BETA}, eps = {EPS}; "
          f"{os.cpu_count()} CPUs, torch threads {args.torch_threads}, torch {torch.__version__}, "
          f"POT {ot.__version__}; load average {os.getloadavg()[0]:.1f}\n")
    print("| task | engine | throughput | notes |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nTotal wall time {time.perf_counter() - t_start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
