"""Exact solves of small problems: physkit's transportation simplex against POT's ``emd_c``.

Usage (from the repository root)::

    .venv/bin/python bench/ot_small_bench.py [--reps 200] [--n-jets 6]
    .venv/bin/python bench/ot_small_bench.py --end [--n-jets 150]
    .venv/bin/python bench/ot_small_bench.py --warm [--n-jets 200]

One thread, same run, cold solves (no warm start). Two sets of problems:

- random: points ``N(0, 0.3^2)`` in 2D, random weights, Euclidean cost, at the general
  path's shapes (16x16, 32x24, 32x50, 74x26, 74x384);
- recorded: the exact problems SHAPER's general path solves (``1-diskiness``,
  ``2-point-diskiness``, ``isotropy`` on ``--n-jets`` held-out sample jets), captured at
  :mod:`physkit.ot.exact`'s POT calls (all problems routed to POT while recording),
  grouped by size (the batch column pads each group to its largest shape).

``--end``: the end effect on SHAPER: CPU seconds per jet of ``Shaper([obs], n_jobs=1)`` on
``--n-jets`` held-out jets with POT for every exact solve (``exact.SMALL_PROBLEM_CELLS = 0``,
"before") and with the default size rule ("after"; the exact flow's default warm starts in
both), same run, one thread, and per observable the share of jets whose value is lower /
equal / higher after, the extreme ratios ``q`` = after / before (as ``q - 1``) and the mean
values (lower: better fits).

``--warm`` (also run by ``--end``, after its table): the exact flow's warm starts
(``shaper.exact_flow.WARM_START``): CPU seconds per jet of ``Shaper([obs], n_jobs=1)`` for
1-diskiness, 1-ringiness and 2-point-diskiness with cold starts (``"off"``), the previous
solve's basis (``"last"``) and the last kept point's basis (``"kept"``), same run, one
thread, in ``--rounds`` rounds that alternate the order (best CPU per mode); per mode the
transportation simplex's solves per jet (all of the observable's small exact solves, the
flow's and the others), mean pivots per solve and the shares of solves that started warm
(the old basis) or by a crash (least-cost rule on the old basis's reduced costs: the old
tree was not primal feasible); per warm mode the share of jets whose value is lower /
equal / higher than cold and the extreme ratios (as ``q - 1``).

Prints per solve microseconds of POT, of ours one problem per call (``transport_simplex``,
its Python checks included) and of ours in one padded batch call
(``transport_simplex_batch``, as ``exact.py`` would call it), the ratios POT / ours
(> 1: ours faster), the mean pivots of ours, and the largest relative difference of the two
solvers' optimal costs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from ot.lp.emd_wrap import emd_c  # noqa: E402

from physkit.ot import transport_simplex as ts  # noqa: E402

SHAPES = [(16, 16), (32, 24), (32, 50), (74, 26), (74, 384)]


def random_problems(n: int, m: int, count: int, seed: int):
    """``count`` problems ``(a, b, C)``: Gaussian points, random weights, Euclidean cost."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x, y = rng.normal(0, 0.3, (n, 2)), rng.normal(0, 0.3, (m, 2))
        C = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
        a, b = rng.random(n), rng.random(m)
        a /= a.sum()
        b *= a.sum() / b.sum()
        out.append((a, b, C))
    return out


def recorded_problems(n_jets: int):
    """The exact problems of SHAPER's general path on ``n_jets`` held-out jets:
    ``{observable: [(a, b, C), ...]}`` (zero weights dropped, as the solvers see them)."""
    import physkit.ot.exact as exact
    from shaper import Shaper
    from shaper_settings import held_out_jets

    ev, _ = held_out_jets(os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5"),
                          n_jets)
    seen: list = []
    orig_duals, orig_solve = exact._solve_with_duals, exact._solve

    def keep(a, b, C):
        ia, ib = a > 0, b > 0
        seen.append((a[ia].copy(), b[ib].copy(), np.ascontiguousarray(C[np.ix_(ia, ib)])))

    def duals(a, b, C, n_iter_max):
        keep(a, b, C)
        return orig_duals(a, b, C, n_iter_max)

    def solve(a, b, C, n_iter_max, flow=False):
        keep(a, b, C)
        return orig_solve(a, b, C, n_iter_max, flow)

    out = {}
    cells = exact.SMALL_PROBLEM_CELLS
    exact._solve_with_duals, exact._solve = duals, solve
    exact.SMALL_PROBLEM_CELLS = 0  # every problem through POT's entry points, recorded
    try:
        for obs in ("1-diskiness", "2-point-diskiness", "isotropy"):
            seen.clear()
            Shaper([obs], n_jobs=1, progress=False).compute(ev)
            out[obs] = list(seen)
    finally:
        exact._solve_with_duals, exact._solve = orig_duals, orig_solve
        exact.SMALL_PROBLEM_CELLS = cells
    return out


def time_pot(problems) -> tuple:
    t0 = time.perf_counter()
    costs = [emd_c(a, b, C, 10_000_000, 1, None, None)[1] for a, b, C in problems]
    return (time.perf_counter() - t0) / len(problems), np.array(costs)


def time_ours(problems) -> tuple:
    """Per solve seconds of the batch entry point, one problem per call (as
    ``exact.py`` calls it per row), costs and pivots."""
    costs, piv = np.empty(len(problems)), np.empty(len(problems))
    t0 = time.perf_counter()
    for k, (a, b, C) in enumerate(problems):
        res = ts.transport_simplex(a, b, C)
        costs[k], piv[k] = res.cost, res.pivots
    return (time.perf_counter() - t0) / len(problems), costs, piv


def time_ours_batch(problems) -> float:
    """Per solve seconds when all problems go in one batch call (padded to the largest
    shape with zero weights, as ``exact.emd_batch_plans`` would pass them)."""
    N = max(p[2].shape[0] for p in problems)
    M = max(p[2].shape[1] for p in problems)
    C, a, b = np.zeros((len(problems), N, M)), np.zeros((len(problems), N)), \
        np.zeros((len(problems), M))
    for k, (ak, bk, Ck) in enumerate(problems):
        n, m = Ck.shape
        C[k, :n, :m], a[k, :n], b[k, :m] = Ck, ak, bk
    t0 = time.perf_counter()
    ts.transport_simplex_batch(C, a, b)
    return (time.perf_counter() - t0) / len(problems)


def report(label: str, problems) -> None:
    if not problems:
        return
    tp, cp = time_pot(problems)
    to, co, piv = time_ours(problems)
    tb = time_ours_batch(problems)
    rel = np.max(np.abs(co - cp) / np.maximum(np.abs(cp), 1e-300))
    print(f"{label:38s} {len(problems):6d} {tp * 1e6:9.1f} {to * 1e6:9.1f} {tb * 1e6:9.1f} "
          f"{tp / to:7.2f} {tp / tb:7.2f} {piv.mean():7.1f} {rel:9.1e}", flush=True)


def end_effect(n_jets: int) -> None:
    import torch

    import physkit.ot.exact as exact
    from shaper import Shaper
    from shaper_settings import held_out_jets

    torch.set_num_threads(1)
    ev, _ = held_out_jets(os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5"),
                          n_jets)
    default = exact.SMALL_PROBLEM_CELLS
    import shaper.exact_flow as ef

    print(f"{len(ev)} held-out jets, one thread, SMALL_PROBLEM_CELLS = {default}, "
          f"WARM_START = {ef.WARM_START!r}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'observable':20s} {'POT ms/jet':>10s} {'ours ms/jet':>11s} {'speed-up':>8s} "
          f"{'lower':>6s} {'equal':>6s} {'higher':>6s} {'min q-1':>9s} {'max q-1':>9s} "
          f"{'mean POT':>9s} {'mean ours':>9s}")
    for obs in ("1-diskiness", "2-point-diskiness", "isotropy"):
        cpu, vals = {}, {}
        for label, cells in (("pot", 0), ("ours", default)):
            exact.SMALL_PROBLEM_CELLS = cells
            try:
                sh = Shaper([obs], n_jobs=1, progress=False)
                sh.compute(ev[:2])
                c0 = time.process_time()
                vals[label] = sh.compute(ev)[obs].value
                cpu[label] = (time.process_time() - c0) / len(ev)
            finally:
                exact.SMALL_PROBLEM_CELLS = default
        q = vals["ours"] / vals["pot"]
        print(f"{obs:20s} {cpu['pot'] * 1e3:10.2f} {cpu['ours'] * 1e3:11.2f} "
              f"{cpu['pot'] / cpu['ours']:8.2f} {np.mean(q < 1):6.1%} {np.mean(q == 1):6.1%} "
              f"{np.mean(q > 1):6.1%} {q.min() - 1:9.1e} {q.max() - 1:9.1e} "
              f"{vals['pot'].mean():9.6f} {vals['ours'].mean():9.6f}", flush=True)


def _count_solves(exact, tally: dict):
    """Wrap ``exact._small_solve`` so that every solved row adds to ``tally`` (solves,
    pivots, warm starts); returns the original to restore."""
    orig = exact._small_solve

    def counted(a, b, C, n_iter_max, start, stop, out=None, basis=None):
        out = orig(a, b, C, n_iter_max, start, stop, out=out, basis=basis)
        done = out.status[start:stop] != ts.SKIPPED
        tally["solves"] += int(done.sum())
        tally["pivots"] += int(out.pivots[start:stop][done].sum())
        tally["warm"] += int((out.warm[start:stop][done] == ts.WARM).sum())
        tally["crash"] += int((out.warm[start:stop][done] == ts.CRASH).sum())
        return out

    exact._small_solve = counted
    return orig


def warm_effect(n_jets: int, rounds: int = 2) -> None:
    import torch

    import physkit.ot.exact as exact
    import shaper.exact_flow as ef
    from shaper import Shaper
    from shaper_settings import held_out_jets

    torch.set_num_threads(1)
    ev, _ = held_out_jets(os.path.join(os.path.dirname(HERE), "data", "jets_sample.h5"),
                          n_jets)
    default = ef.WARM_START
    print(f"{len(ev)} held-out jets, one thread, WARM_START default {default!r}, {rounds} "
          f"rounds (best CPU per mode), load average {os.getloadavg()[0]:.1f}")
    print(f"{'observable':18s} {'mode':5s} {'ms/jet':>7s} {'vs off':>6s} {'solves/jet':>10s} "
          f"{'pivots':>7s} {'warm':>6s} {'crash':>6s} {'lower':>6s} {'equal':>6s} {'higher':>6s} "
          f"{'min q-1':>9s} {'max q-1':>9s} {'mean':>9s}")
    modes = ("off", "last", "kept")
    for obs in ("1-diskiness", "1-ringiness", "2-point-diskiness"):
        cpu, vals, tallies = {}, {}, {}
        for rnd in range(rounds):
            for mode in (modes if rnd % 2 == 0 else modes[::-1]):
                tally = {"solves": 0, "pivots": 0, "warm": 0, "crash": 0}
                ef.WARM_START = mode
                orig = _count_solves(exact, tally)
                try:
                    sh = Shaper([obs], n_jobs=1, progress=False)
                    sh.compute(ev[:2])
                    tally.update(solves=0, pivots=0, warm=0, crash=0)
                    c0 = time.process_time()
                    vals[mode] = sh.compute(ev)[obs].value
                    t = (time.process_time() - c0) / len(ev)
                finally:
                    exact._small_solve = orig
                    ef.WARM_START = default
                cpu[mode] = min(cpu.get(mode, np.inf), t)
                tallies[mode] = tally
        for mode in modes:
            tl = tallies[mode]
            q = vals[mode] / vals["off"]
            print(f"{obs:18s} {mode:5s} {cpu[mode] * 1e3:7.2f} {cpu['off'] / cpu[mode]:6.2f} "
                  f"{tl['solves'] / len(ev):10.1f} {tl['pivots'] / max(tl['solves'], 1):7.1f} "
                  f"{tl['warm'] / max(tl['solves'], 1):6.1%} "
                  f"{tl['crash'] / max(tl['solves'], 1):6.1%} {np.mean(q < 1):6.1%} "
                  f"{np.mean(q == 1):6.1%} {np.mean(q > 1):6.1%} {q.min() - 1:9.1e} "
                  f"{q.max() - 1:9.1e} {vals[mode].mean():9.6f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="random problems per shape")
    ap.add_argument("--n-jets", type=int, default=6, help="held-out jets for recorded problems")
    ap.add_argument("--end", action="store_true", help="end effect on Shaper (see above)")
    ap.add_argument("--warm", action="store_true", help="warm starts of the exact flow")
    ap.add_argument("--rounds", type=int, default=2, help="--warm: timing rounds per mode")
    args = ap.parse_args()
    if args.end:
        end_effect(args.n_jets)
        warm_effect(args.n_jets, args.rounds)
        return
    if args.warm:
        warm_effect(args.n_jets, args.rounds)
        return
    warm = random_problems(4, 5, 2, 0)
    report("(compile)", warm)
    print(f"one thread, load average {os.getloadavg()[0]:.1f}")
    print(f"{'problems':38s} {'count':>6s} {'POT us':>9s} {'ours us':>9s} {'batch us':>9s} "
          f"{'ratio':>7s} {'r batch':>7s} {'pivots':>7s} {'max rel':>9s}")
    for n, m in SHAPES:
        reps = args.reps if n * m < 5000 else max(args.reps // 10, 5)
        report(f"random {n}x{m}", random_problems(n, m, reps, n * 1000 + m))
    if args.n_jets > 0:
        for obs, probs in recorded_problems(args.n_jets).items():
            groups = (("n*m <= 1600", 0, 1600), ("1600 < n*m <= 10000", 1600, 10_000),
                      ("n*m > 10000", 10_000, np.inf))
            for key, lo, hi in groups:
                report(f"{obs[:17]} {key}", [p for p in probs if lo < p[2].size <= hi])

if __name__ == "__main__":
    main()
