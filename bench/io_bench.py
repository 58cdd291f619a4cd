"""Event input benchmark: read throughput and clustering throughput, side by side with the
raw libraries in one run.

Usage::

    OMP_NUM_THREADS=1 python bench/io_bench.py [--events 200000] [--chunk 20000]
        [--cluster-events 4000] [--repeat 3]

On synthetic files written by the script (deterministic; the particle multiplicities of
NanoAOD PF candidates and LHCO events):

* **read** events/s, chunk by chunk (``--chunk`` entries per call, a fresh call per chunk
  as the pipeline does):

  - ROOT (jagged ``PFCands_{pt,eta,phi,mass}`` float32, ~60 particles per event):
    ``physkit.io.read_events(path, s, e, level="jet")`` (validated ``Events``, rapidity
    from the mass through ``vector``, padded) against ``uproot``'s raw
    ``tree.arrays([...the four branches...], entry_start=s, entry_stop=e)`` on a file
    opened once;
  - HDF5 (the physkit dense layout, ``constituents (N, 100, 3)`` float32, chunked):
    ``read_events(path, s, e)`` against ``h5py``'s raw ``f["constituents"][s:e]``;

* **clustering** events/s of LHCO-like events (~200 particles, 700 slots): anti-kT
  R = 1.0, leading 2 jets, ``physkit.jets.cluster`` on the padded ``(N, 700, 3)`` events
  (building the four-vectors, clustering, sorting, cuts, gathering each jet's
  constituents into padded rows) against fastjet called directly on the same arrays
  (the awkward four-vectors built from the real particles, ``ClusterSequence``,
  ``inclusive_jets``, ``constituent_index``: the clustering itself) and, for context,
  fastjet's per-event PseudoJet interface in a Python loop (what users write by hand).

Best of ``--repeat`` runs for each. Prints a markdown table with the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from best_time import best  # noqa: E402  (bench/, the script's own folder)


def particles(n: int, mean: float, seed: int):
    """``counts (n,)`` and flat float32 (pt, eta, phi, mass) of ``n`` events."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(mean, n).astype(np.int64) + 1
    p = int(counts.sum())
    cols = (rng.exponential(5.0, p) + 0.5, rng.uniform(-2.5, 2.5, p),
            rng.uniform(-np.pi, np.pi, p), rng.uniform(0.0, 0.2, p))
    return counts, [c.astype(np.float32) for c in cols]


def write_root(path: str, counts, cols) -> list[str]:
    import awkward as ak
    import uproot

    rec = ak.zip({k: ak.unflatten(c, counts) for k, c in zip(("pt", "eta", "phi", "mass"), cols)})
    with uproot.recreate(path) as f:
        f.mktree("Events", {"PFCands": ak.type(rec)})
        step = 50_000
        for s in range(0, len(counts), step):
            f["Events"].extend({"PFCands": rec[s:s + step]})
    return [f"PFCands_{k}" for k in ("pt", "eta", "phi", "mass")]


def read_rows(args, tmp: str) -> list[tuple]:
    import h5py
    import uproot

    from physkit.events import pad_jagged
    from physkit.io import read_events, write_events

    n, chunk = args.events, args.chunk
    counts, cols = particles(n, 60.0, seed=1)
    root = os.path.join(tmp, "events.root")
    branches = write_root(root, counts, cols)
    ranges = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]

    def ours_root():
        for s, e in ranges:
            read_events(root, s, e, level="jet", empty="zero")

    def raw_root():
        with uproot.open(root) as f:
            tree = f["Events"]
            for s, e in ranges:
                tree.arrays(branches, entry_start=s, entry_stop=e)

    t_ours, t_raw = best(ours_root, args.repeat), best(raw_root, args.repeat)
    rows = [("read ROOT (jagged PFCands, ~61 particles/event)",
             f"{n / t_ours:,.0f}", f"{n / t_raw:,.0f}", f"{t_ours / t_raw:.2f}")]

    m = 100
    clipped = np.minimum(counts, m)
    arr = pad_jagged(clipped, *(np.concatenate([c[o:o + k] for o, k in zip(
        np.cumsum(counts) - counts, clipped)]) for c in cols[:3])).astype(np.float32)
    h5 = os.path.join(tmp, "events.h5")
    write_events(h5, arr)

    def ours_h5():
        for s, e in ranges:
            read_events(h5, s, e, empty="zero")

    def raw_h5():
        with h5py.File(h5, "r") as f:
            ds = f["constituents"]
            for s, e in ranges:
                ds[s:e]

    t_ours, t_raw = best(ours_h5, args.repeat), best(raw_h5, args.repeat)
    rows.append((f"read HDF5 (physkit dense, (N, {arr.shape[1]}, 3) float32)",
                 f"{n / t_ours:,.0f}", f"{n / t_raw:,.0f}", f"{t_ours / t_raw:.2f}"))
    return rows


def cluster_rows(args) -> list[tuple]:
    import awkward as ak
    import fastjet

    from physkit.events import pad_jagged
    from physkit.jets import cluster

    n = args.cluster_events
    counts, cols = particles(n, 200.0, seed=2)
    counts = np.minimum(counts, 700)
    flat = [np.concatenate([c[o:o + k] for o, k in zip(np.cumsum(counts) - counts, counts)])
            for c in cols[:3]]
    events = pad_jagged(counts, *flat)
    events = np.concatenate([events, np.zeros((n, 700 - events.shape[1], 3))], axis=1)

    def ours():
        return cluster(events, "antikt", 1.0, n_jets=2)

    def direct():
        real = events[..., 0] > 0
        pt, y, phi = (events[..., k][real] for k in range(3))
        c = real.sum(axis=1)
        arr = ak.zip({"px": ak.unflatten(pt * np.cos(phi), c),
                      "py": ak.unflatten(pt * np.sin(phi), c),
                      "pz": ak.unflatten(pt * np.sinh(y), c),
                      "E": ak.unflatten(pt * np.cosh(y), c)})
        cs = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0))
        return cs.inclusive_jets(), cs.constituent_index()

    def per_event():
        jd = fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0)
        for ev in events:
            ev = ev[ev[:, 0] > 0]
            parts = [fastjet.PseudoJet(p * np.cos(f), p * np.sin(f), p * np.sinh(y),
                                       p * np.cosh(y)) for p, y, f in ev]
            cs = fastjet.ClusterSequence(parts, jd)
            [j.constituents() for j in fastjet.sorted_by_pt(cs.inclusive_jets())[:2]]

    ours()  # warm-up (fastjet banner, awkward kernels)
    t_ours, t_direct = best(ours, args.repeat), best(direct, args.repeat)
    sub = max(1, n // 10)
    full = events
    events = full[:sub]
    t_loop = best(per_event, 1) * (n / sub)
    events = full
    return [(f"cluster anti-kT R=1.0, leading 2 (~{counts.mean():.0f} particles/event)",
             f"{n / t_ours:,.0f}", f"{n / t_direct:,.0f}", f"{t_ours / t_direct:.2f}"),
            ("  (context) fastjet PseudoJet loop, one event per call", "",
             f"{n / t_loop:,.0f}", f"{t_ours / t_loop:.2f}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--cluster-events", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = read_rows(args, tmp)
    rows += cluster_rows(args)
    print("| task | physkit (events/s) | reference (events/s) | time ratio physkit / reference |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
