"""Cost per step of physkit.flow.minimize (batched) vs a Python loop of torch.optim.Adam, one problem each.

Toy: B independent least-squares problems L_b(w) = |A_b w - y_b|^2, A_b (8, 4), w (4,), float32, CPU.
- batched: ``minimize(..., optimizer="adam", steps=S)`` with convergence disabled (patience > steps), so every
  step runs on all B rows; time / S.
- loop: for each problem its own ``torch.nn.Parameter`` and ``torch.optim.Adam``; one "step" = one Adam step of
  every problem (zero_grad, loss, backward, step); measured over S_loop steps (fewer for large B so the run stays
  short -- every figure is measured, none extrapolated); time / S_loop.
- torch Adam, one tensor: ``torch.optim.Adam`` on a single (B, 4) parameter with the summed loss (no masks,
  no projection, no per-row convergence): the floor a batched engine can approach.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/flow_bench.py [--sizes 1 10 100 1000 10000]
Prints a markdown table (microseconds per step).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from physkit.flow import minimize

P, M = 8, 4


def problems(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(B, P, M, generator=g)
    y = torch.randn(B, P, generator=g)
    return A, y


def time_batched(B, steps):
    A, y = problems(B)

    def loss(p, idx):
        r = torch.einsum("bpm,bm->bp", A.index_select(0, idx), p["w"]) - y.index_select(0, idx)
        return (r * r).sum(1)

    w0 = {"w": torch.zeros(B, M)}
    minimize(loss, w0, steps=5, patience=10**9)  # warm-up
    t0 = time.perf_counter()
    res = minimize(loss, w0, steps=steps, patience=10**9, lr=1e-2)
    dt = time.perf_counter() - t0
    assert int(res.n_steps.min()) == steps
    return dt / steps * 1e6


def time_single_tensor(B, steps):
    A, y = problems(B)
    w = torch.nn.Parameter(torch.zeros(B, M))
    opt = torch.optim.Adam([w], lr=1e-2)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        r = torch.einsum("bpm,bm->bp", A, w) - y
        (r * r).sum().backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1e6


def time_loop(B, steps):
    A, y = problems(B)
    ws = [torch.nn.Parameter(torch.zeros(M)) for _ in range(B)]
    opts = [torch.optim.Adam([w], lr=1e-2) for w in ws]
    t0 = time.perf_counter()
    for _ in range(steps):
        for b in range(B):
            opts[b].zero_grad()
            r = A[b] @ ws[b] - y[b]
            (r * r).sum().backward()
            opts[b].step()
    return (time.perf_counter() - t0) / steps * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 100, 1000, 10000])
    ap.add_argument("--steps", type=int, default=200, help="steps of the batched engine")
    ap.add_argument("--loop-calls", type=int, default=20000, help="budget of single-problem Adam steps per B")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print()
    print("| B | µs/step batched (physkit) | µs/step loop (torch.optim.Adam per problem) | loop steps | ratio loop/batched | µs/step torch Adam on one (B,4) tensor |")
    print("|---:|---:|---:|---:|---:|---:|")
    for B in args.sizes:
        sl = max(3, min(args.steps, args.loop_calls // B))
        tb = time_batched(B, args.steps)
        tl = time_loop(B, sl)
        ts = time_single_tensor(B, args.steps)
        print(f"| {B} | {tb:.0f} | {tl:.0f} | {sl} | {tl / tb:.1f} | {ts:.0f} |", flush=True)


if __name__ == "__main__":
    main()
