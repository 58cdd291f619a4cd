"""Run pyshaper 1.2.0 on padded jets; runs INSIDE pyshaper's own venv (numpy < 2).

Usage (the bench calls it as a subprocess)::

    bench/.venvs/pyshaper/bin/python bench/pyshaper_runner.py IN.npz OUT.npz \
        [--observables 2-Subjettiness,3-Subjettiness,2-Point-Diskiness] [--batch-size 50]

Input ``IN.npz``: ``pt``, ``y``, ``phi`` (B, M) float, zero pT = padding. The coordinates are passed
through as they are (the bench centres jets on their axis first: pyshaper's cost is Euclidean in
(y, phi) and its kt seeds come from pyjet, so un-centred jets near phi = +-pi would be mis-seeded).
Weights handed to pyshaper are z_i = pT_i / sum pT (pyshaper's array format would take raw pT,
which GeomLoss treats as unnormalised mass).

Settings are the SHAPER paper's (arXiv:2302.12266): Sinkhorn epsilon = 1e-3 (GeomLoss blur =
epsilon^(1/beta)), scaling 0.9, Adam lr 0.01, 500 epochs, early stopping 25, 50 samples per shape,
beta = 1, R = 0.8; everything else is pyshaper's default (notably early_stopping_fraction = 0.95:
a batch stops once 95% of its jets have stopped).

Output ``OUT.npz``, per observable ``OBS`` (pyshaper's name):
``OBS/value`` (B,) pyshaper's reported value (its minimum Sinkhorn loss / R^beta);
``OBS/points`` (B, n, 2); ``OBS/weights`` (B, n) or (B, 2n) (points first, then disks);
``OBS/radius`` (B, n) where the shape has radii; ``OBS/wall_s`` () wall time for all B jets
(the calculate() calls only: seeding, fitting, parameter read-out); ``OBS/cpu_s`` () the
process CPU time over the same calls (all threads).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch

from pyshaper.CommonObservables import buildCommmonObservables
from pyshaper.Shaper import Shaper

PAPER = dict(epochs=500, early_stopping=25, lr=0.01, N=50, epsilon=1e-3, scaling=0.9)


def params_template(observable) -> dict:
    """NaN-shaped stand-in for a jet whose fit recorded no parameters."""
    return {k: np.asarray(m.params.detach().numpy(), dtype=np.float64)
            for k, m in observable.params.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--observables", default="2-Subjettiness,3-Subjettiness,2-Point-Diskiness")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--R", type=float, default=0.8)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=PAPER["epochs"],
                    help="override the paper's 500 epochs (smoke tests only)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = np.load(args.inp)
    pt, y, phi = data["pt"], data["y"], data["phi"]
    events = []
    for i in range(len(pt)):
        m = pt[i] > 0
        z = pt[i, m] / pt[i, m].sum()
        events.append((np.stack([y[i, m], phi[i, m]], axis=1).astype(np.float32), z.astype(np.float32)))

    settings = dict(PAPER, epochs=args.epochs)
    progress = open(args.out + ".progress", "w")  # pyshaper's own per-epoch lines
    out = {}
    for name in args.observables.split(","):
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        n_max = int(name.split("-")[0])
        obs_all, _ = buildCommmonObservables(n_max, args.beta, args.R, "cpu")
        shaper = Shaper({name: obs_all[name]}, device="cpu")
        with contextlib.redirect_stdout(io.StringIO()):  # warm-up (untimed), then reseed
            shaper.calculate(events[:1], **dict(PAPER, epochs=2))
        torch.manual_seed(args.seed)
        values, points, weights, radius = [], [], [], []
        wall = cpu = 0.0
        for s in range(0, len(events), args.batch_size):
            batch = events[s:s + args.batch_size]
            t0, c0 = time.perf_counter(), time.process_time()
            print(f"{name}: jets {s}..{s + len(batch)}", file=progress, flush=True)
            with contextlib.redirect_stdout(progress):
                losses, params = shaper.calculate(batch, verbose=True, **settings)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            values.append(np.asarray(losses[name], dtype=np.float64))
            for d in params[name]:
                if d is None:  # pyshaper never recorded a finite loss for this jet
                    d = {k: np.full_like(v, np.nan) for k, v in params_template(obs_all[name]).items()}
                points.append(np.asarray(d["Points"], dtype=np.float64))
                weights.append(np.asarray(d["Weights"], dtype=np.float64))
                if "Radius" in d:
                    radius.append(np.asarray(d["Radius"], dtype=np.float64))
        out[f"{name}/value"] = np.concatenate(values)
        out[f"{name}/points"] = np.stack(points)
        out[f"{name}/weights"] = np.stack(weights)
        if radius:
            out[f"{name}/radius"] = np.stack(radius)
        out[f"{name}/wall_s"] = np.float64(wall)
        out[f"{name}/cpu_s"] = np.float64(cpu)
        print(f"pyshaper {name}: {len(events)} jets in {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"({len(events) / wall:.3f} jets/s)", flush=True)
        np.savez(args.out, **out)  # after each observable: a killed run keeps what it finished
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
