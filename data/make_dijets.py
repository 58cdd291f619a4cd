"""Generate the dijet resonance anomaly-search benchmark (QCD dijets + W' -> X Y) with Pythia 8.

Usage::

    python data/make_dijets.py pools   [--n-qcd-shards 70] [--n-signal-shards 2] [--workers 2]
    python data/make_dijets.py search  [--signal-fraction 0.005] [--n-data 60000] [--seed 1]
    python data/make_dijets.py slice   # the small test files shipped in data/

``pools`` generates events in shards (``--shard-events`` generated events each, one seed per
shard, so the output does not depend on ``--workers`` or on interruptions) and caches every
finished shard under ``data/.cache/dijets/`` (git-ignored); a rerun only makes the missing
shards. ``search`` draws a weakly supervised search sample from the cached pools
(deterministically from ``--seed``): a "data" file (QCD background in the signal region plus
injected signal) and a background-only "reference" file of the same size, plus a held-out
truth-labelled "test" file; ``slice`` writes small such files into ``data/`` for the tests.

Physics (pp at 13 TeV; Pythia 8 defaults for ISR, FSR, hadronisation and decays, pi0 stable;
**multiparton interactions off** for both processes: with MPI on, Pythia made ~100 events/s
on this machine's shared cores against ~380 without, and the sample needs ~700 000 events):

* background: ``HardQCD:all`` with 3.0 < mHat < 4.2 TeV and pTHat > 1 TeV. The signal
  region is 3.3 < m_jj < 3.7 TeV; the window keeps ~35% of the selected dijets inside it.
  Events generated outside the window that would pass the selection with m_jj in the
  signal region (m_jj more than 10% above mHat needs hard ISR inside the R = 1 jets) are
  neglected; the sidebands 3.0-3.3 and 3.7-4.0 TeV are stored but are shaped by the
  window's edges;
* signal: ``W' -> X Y`` (``NewGaugeBoson:ffbar2Wprime``, m_W' = 3.5 TeV, 3 < m < 4 TeV),
  ``X -> q q'`` (m_X = 500 GeV, charge +-1: u d~, c s~), ``Y -> q q~`` (m_Y = 100 GeV, the five
  light flavours equally), all narrow (forced widths 1% of the mass).

Visible final-state particles (no neutrinos, |eta| < 4) are clustered with anti-kT,
R = 1.0 (fastjet). Event selection: the two leading jets have |eta| < 2.5 and the leading
one pT > 1.2 TeV. Per event: ``mjj`` (the two leading jets' invariant mass), and with J1
the lighter and J2 the heavier of the two: ``mj1``, ``dmj = m_J2 - m_J1`` (GeV),
``tau21_j1``, ``tau21_j2`` (fastjet-contrib N-subjettiness tau_2/tau_1, beta = 1, R0 = 1,
exclusive-kT axes), ``features`` = those four as an ``(N, 4)`` dataset, ``jets``
``(N, 4)`` (pT, eta, phi, m of J1), and the jets' constituents: ``constituents`` holds J1's
(the physkit event layout: one jet per row, so SHAPER and jet images run on it) and
``constituents_j2`` J2's, each the 150 highest-pT particles (pT, y, phi), zero-padded
(32 in the shipped slice). ``labels``: 1 = signal, 0 = QCD (truth; a search never trains on it).

Needs the optional generator: ``pip install 'physkit[generate]'`` (``pythia8mc==8.317.2``)
and fastjet (a physkit dependency).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)

CACHE = os.path.join(HERE, ".cache", "dijets")
E_CM = 13000.0
MHAT = (3000.0, 4200.0)
PTHAT_MIN = 1000.0
JET_R = 1.0
JET_ABS_ETA = 2.5
LEAD_PT_MIN = 1200.0
PARTICLE_ABS_ETA = 4.0
SIGNAL_REGION = (3300.0, 3700.0)
SIDEBANDS = ((3000.0, 3300.0), (3700.0, 4000.0))
M_WPRIME, M_X, M_Y = 3500.0, 500.0, 100.0
FEATURES = ("mj1", "dmj", "tau21_j1", "tau21_j2")
MAX_CONSTITUENTS = 150

PROCESSES = {
    "qcd": ["HardQCD:all = on", "PartonLevel:MPI = off", f"PhaseSpace:mHatMin = {MHAT[0]}",
            f"PhaseSpace:mHatMax = {MHAT[1]}", f"PhaseSpace:pTHatMin = {PTHAT_MIN}"],
    "signal": ["NewGaugeBoson:ffbar2Wprime = on", "PartonLevel:MPI = off", f"34:m0 = {M_WPRIME}", "34:mMin = 3000.",
               "34:mMax = 4000.", "34:onMode = off", "34:doForceWidth = on",
               f"34:mWidth = {0.01 * M_WPRIME}", "34:addChannel = 1 1.0 100 9000001 9000002",
               # X: charge +-1 (chargeType 3), colour singlet, decays to u d~ or c s~
               f"9000001:all = X X~ 1 3 0 {M_X} {0.01 * M_X} {0.8 * M_X} {1.2 * M_X} 0.",
               "9000001:isResonance = on", "9000001:doForceWidth = on",
               "9000001:addChannel = 1 0.5 100 2 -1", "9000001:addChannel = 1 0.5 100 4 -3",
               # Y: neutral colour singlet, decays to q q~ of the five light flavours
               f"9000002:all = Y void 1 0 0 {M_Y} {0.01 * M_Y} {0.8 * M_Y} {1.2 * M_Y} 0.",
               "9000002:isResonance = on", "9000002:doForceWidth = on",
               *(f"9000002:addChannel = 1 0.2 100 {q} -{q}" for q in range(1, 6))],
}
#: base seeds of the two processes; shard k of a process uses base + k
SEED_BASE = {"qcd": 1_000_000, "signal": 2_000_000}


def _require_pythia():
    try:
        import pythia8mc
    except ImportError:
        sys.exit("make_dijets.py needs the Pythia 8 generator, an optional extra:\n"
                 "    pip install 'physkit[generate]'     (or: pip install pythia8mc==8.317.2)")
    return pythia8mc


def _pythia(kind: str, seed: int):
    pythia8mc = _require_pythia()
    py = pythia8mc.Pythia("", False)
    for s in [f"Beams:eCM = {E_CM}", *PROCESSES[kind], "111:mayDecay = off",
              "Random:setSeed = on", f"Random:seed = {seed}", "Print:quiet = on"]:
        if not py.readString(s):
            raise RuntimeError(f"Pythia rejected setting {s!r}")
    if not py.init():
        raise RuntimeError(f"Pythia initialisation failed for {kind}")
    return py


def _visible(prt):
    """Awkward Momentum4D of the visible final-state particles of a batch of events."""
    import awkward as ak

    p = prt.p
    pt = np.hypot(p.px, p.py)
    aid = np.abs(prt.id)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(p.pz / pt)
    keep = ((prt.status > 0) & (aid != 12) & (aid != 14) & (aid != 16) & (pt > 0)
            & (np.abs(eta) < PARTICLE_ABS_ETA))
    return ak.zip({"px": p.px[keep], "py": p.py[keep], "pz": p.pz[keep], "E": p.e[keep]},
                  with_name="Momentum4D")


def _four(j):
    """(pT, eta, phi, m) numpy columns of awkward jet records."""
    import awkward as ak

    px, py, pz, e = (ak.to_numpy(getattr(j, c)) for c in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    m = np.sqrt(np.maximum(e ** 2 - px ** 2 - py ** 2 - pz ** 2, 0.0))
    return pt, np.arcsinh(pz / pt), np.arctan2(py, px), m


def _padded_constituents(cons, max_n: int) -> np.ndarray:
    """``(N, max_n, 3)`` float32 (pT, y, phi) of jagged Momentum4D constituents, by pT."""
    import awkward as ak

    pt = np.hypot(cons.px, cons.py)
    y = 0.5 * np.log((cons.E + cons.pz) / (cons.E - cons.pz))
    phi = np.arctan2(cons.py, cons.px)
    order = ak.argsort(pt, axis=1, ascending=False)
    out = []
    for x in (pt, y, phi):
        x = ak.pad_none(x[order][:, :max_n], max_n, axis=1, clip=True)
        out.append(ak.to_numpy(ak.fill_none(x, 0.0)).astype(np.float32))
    arr = np.stack(out, axis=-1)
    arr[arr[..., 0] <= 0] = 0.0
    return arr


def _tau21(cons) -> np.ndarray:
    """tau_2 / tau_1 (beta = 1, R0 = 1, exclusive-kT axes, fastjet-contrib) per jet."""
    import awkward as ak
    import fastjet

    kt = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0, fastjet.E_scheme)
    r = fastjet.ClusterSequence(cons, kt).njettiness(
        measure_definition="NormalizedMeasure", axes_definition="KT_Axes", njets=[1, 2],
        beta=1.0, R0=JET_R)
    tau = np.asarray(ak.to_numpy(r), dtype=np.float64).reshape(-1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tau[:, 0] > 0, tau[:, 1] / tau[:, 0], 0.0)


def select_dijets(prt, max_constituents: int = MAX_CONSTITUENTS) -> dict[str, np.ndarray]:
    """Cluster a batch of Pythia events and keep the selected dijets (module docstring)."""
    import awkward as ak
    import fastjet

    vis = _visible(prt)
    cs = fastjet.ClusterSequence(vis, fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R))
    jets = cs.inclusive_jets()
    cidx = cs.constituent_index()
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False)
    jets, cidx = jets[order][:, :2], cidx[order][:, :2]
    two = ak.to_numpy(ak.num(jets) == 2)
    jets, cidx, vis = jets[two], cidx[two], vis[two]
    j = [jets[:, 0], jets[:, 1]]
    kin = [_four(x) for x in j]
    ok = (kin[0][0] > LEAD_PT_MIN) & (np.abs(kin[0][1]) < JET_ABS_ETA) & \
         (np.abs(kin[1][1]) < JET_ABS_ETA)
    jets, cidx, vis = jets[ok], cidx[ok], vis[ok]
    kin = [tuple(c[ok] for c in k) for k in kin]
    tot = {c: ak.to_numpy(getattr(jets[:, 0], c) + getattr(jets[:, 1], c))
           for c in ("px", "py", "pz", "E")}
    mjj = np.sqrt(np.maximum(tot["E"] ** 2 - tot["px"] ** 2 - tot["py"] ** 2
                             - tot["pz"] ** 2, 0.0))
    cons = [vis[cidx[:, 0]], vis[cidx[:, 1]]]
    tau = [_tau21(c) for c in cons]
    light = kin[0][3] <= kin[1][3]  # J1 = the lighter jet
    pick = lambda a, b: np.where(light, a, b)  # noqa: E731
    pick3 = lambda a, b: np.where(light[:, None, None], a, b)  # noqa: E731
    c0 = _padded_constituents(cons[0], max_constituents)
    c1 = _padded_constituents(cons[1], max_constituents)
    jet1 = np.stack([pick(kin[0][i], kin[1][i]) for i in range(4)], axis=1)
    m1, m2 = np.minimum(kin[0][3], kin[1][3]), np.maximum(kin[0][3], kin[1][3])
    return {"mjj": mjj, "mj1": m1, "dmj": m2 - m1, "tau21_j1": pick(tau[0], tau[1]),
            "tau21_j2": pick(tau[1], tau[0]), "jets": jet1,
            "constituents": pick3(c0, c1), "constituents_j2": pick3(c1, c0)}


def _shard_path(kind: str, k: int) -> str:
    return os.path.join(CACHE, f"{kind}_shard{k:03d}.h5")


def make_shard(kind: str, k: int, n_events: int, batch: int = 500) -> str:
    """Generate shard ``k`` of ``kind`` (``n_events`` Pythia events, seed SEED_BASE + k),
    keep the selected dijets and write them atomically to the cache; returns the path."""
    import h5py

    warnings.filterwarnings("ignore", message="dcut and exclusive jets")
    path = _shard_path(kind, k)
    if os.path.exists(path):
        return path
    py = _pythia(kind, SEED_BASE[kind] + k)
    parts, done, t0 = [], 0, time.time()
    while done < n_events:
        ev = py.nextBatch(min(batch, n_events - done))
        done += len(ev)
        parts.append(select_dijets(ev.prt))
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    tmp = path + f".{os.getpid()}.tmp"
    with h5py.File(tmp, "w") as f:
        for key, v in out.items():
            f.create_dataset(key, data=v, compression="gzip" if v.ndim == 3 else None)
        f.attrs.update(kind=kind, shard=k, seed=SEED_BASE[kind] + k, n_generated=done,
                       seconds=time.time() - t0)
    os.replace(tmp, path)
    print(f"  {kind} shard {k}: {len(out['mjj'])} dijets of {done} events "
          f"({done / (time.time() - t0):.0f} events/s)", flush=True)
    return path


def make_pools(n_qcd_shards: int, n_signal_shards: int, shard_events: int, workers: int):
    """Every missing shard, on ``workers`` processes (results do not depend on it)."""
    from concurrent.futures import ProcessPoolExecutor

    os.makedirs(CACHE, exist_ok=True)
    jobs = [("signal", k) for k in range(n_signal_shards)] + \
           [("qcd", k) for k in range(n_qcd_shards)]
    jobs = [(kind, k) for kind, k in jobs if not os.path.exists(_shard_path(kind, k))]
    print(f"make_dijets: {len(jobs)} shards to generate ({shard_events} events each) on "
          f"{workers} processes into {CACHE}", flush=True)
    if workers <= 1:
        for kind, k in jobs:
            make_shard(kind, k, shard_events)
        return
    with ProcessPoolExecutor(workers) as ex:
        for f in [ex.submit(make_shard, kind, k, shard_events) for kind, k in jobs]:
            f.result()


def read_pool(kind: str, region=SIGNAL_REGION, max_shards: int | None = None,
              keys=None) -> dict[str, np.ndarray]:
    """The cached dijets of ``kind`` with ``region[0] <= mjj < region[1]``, shards in order."""
    import h5py

    names = sorted(n for n in os.listdir(CACHE) if n.startswith(kind + "_shard")
                   and n.endswith(".h5")) if os.path.isdir(CACHE) else []
    if max_shards is not None:
        names = names[:max_shards]
    if not names:
        raise FileNotFoundError(f"no cached {kind} shards in {CACHE}: run "
                                f"'python data/make_dijets.py pools' first")
    parts = []
    for n in names:
        with h5py.File(os.path.join(CACHE, n)) as f:
            mjj = f["mjj"][:]
            sel = (mjj >= region[0]) & (mjj < region[1])
            parts.append({k: f[k][:][sel] for k in (keys or f.keys())})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _write(path: str, pool: dict, rows: np.ndarray, labels: np.ndarray, attrs: dict,
           max_constituents: int) -> str:
    from physkit.io import write_events

    extra = {k: pool[k][rows] for k in ("mjj", *FEATURES)}
    extra["features"] = np.stack([pool[k][rows] for k in FEATURES], axis=1)
    extra["constituents_j2"] = pool["constituents_j2"][rows][:, :max_constituents]
    cons = pool["constituents"][rows][:, :max_constituents]
    return write_events(path, cons, labels, jets=pool["jets"][rows], extra=extra,
                        attrs={**attrs, "features_columns": ", ".join(FEATURES),
                               "labels_meaning": "1 = signal (W' -> X Y), 0 = QCD (truth)",
                               "made_by": "data/make_dijets.py"})


def draw_search(n_qcd: int, n_sig: int, n_data: int, signal_fraction: float,
                n_test_bkg: int, n_test_sig: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices of a search sample drawn from pools of ``n_qcd`` QCD and ``n_sig`` signal
    dijets (signal rows numbered after the QCD ones), deterministic in ``seed``.

    ``data``: ``n_data`` rows, ``round(signal_fraction * n_data)`` of them signal, the rest QCD;
    ``reference``: ``n_data`` other QCD rows; ``test``: ``n_test_bkg`` QCD and ``n_test_sig``
    signal rows held out from both. Each shuffled.
    """
    k_sig = int(round(signal_fraction * n_data))
    need_q, need_s = 2 * n_data - k_sig + n_test_bkg, k_sig + n_test_sig
    if n_qcd < need_q or n_sig < need_s:
        raise ValueError(f"the cached pools hold {n_qcd} QCD and {n_sig} signal dijets in the "
                         f"signal region; this sample needs {need_q} and {need_s}: generate "
                         f"more shards ('python data/make_dijets.py pools --n-qcd-shards ...')")
    rng = np.random.default_rng(seed)
    q, s = rng.permutation(n_qcd), n_qcd + rng.permutation(n_sig)
    n_bkg = n_data - k_sig
    out = {"data": np.r_[q[:n_bkg], s[:k_sig]],
           "reference": q[n_bkg:n_bkg + n_data],
           "test": np.r_[q[n_bkg + n_data:n_bkg + n_data + n_test_bkg],
                         s[k_sig:k_sig + n_test_sig]]}
    return {k: rng.permutation(v) for k, v in out.items()}


def make_search(out_prefix: str, n_data: int, signal_fraction: float, n_test_bkg: int,
                n_test_sig: int, seed: int, max_constituents: int = MAX_CONSTITUENTS,
                max_shards: int | None = None) -> dict[str, str]:
    """Write ``PREFIX_{data,reference,test}.h5`` (:func:`draw_search`) from the cached pools
    (signal region); ``labels`` 1 = signal, 0 = QCD. ``max_shards``: use only the first that
    many QCD shards and the first signal shard (so the output does not depend on how many
    shards exist). Returns the paths."""
    qcd = read_pool("qcd", max_shards=max_shards)
    sig = read_pool("signal", max_shards=None if max_shards is None else 1)
    both = {k: np.concatenate([qcd[k], sig[k]]) for k in qcd}
    n_q = len(qcd["mjj"])
    groups = draw_search(n_q, len(sig["mjj"]), n_data, signal_fraction, n_test_bkg,
                         n_test_sig, seed)
    attrs = {"signal_region_mjj_GeV": list(SIGNAL_REGION), "seed": seed,
             "signal_fraction_in_data": round(signal_fraction * n_data) / max(n_data, 1)}
    return {name: _write(f"{out_prefix}_{name}.h5", both, rows, (rows >= n_q).astype(np.int8),
                         {**attrs, "sample": name}, max_constituents)
            for name, rows in groups.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pools", help="generate (missing) shards into data/.cache/dijets/")
    p.add_argument("--n-qcd-shards", type=int, default=70)
    p.add_argument("--n-signal-shards", type=int, default=2)
    p.add_argument("--shard-events", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("search", help="data/reference/test files from the cached pools")
    s.add_argument("--n-data", type=int, default=60_000)
    s.add_argument("--signal-fraction", type=float, default=0.005)
    s.add_argument("--n-test-bkg", type=int, default=20_000)
    s.add_argument("--n-test-sig", type=int, default=5_000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("-o", "--out-prefix", default=None)
    sl = sub.add_parser("slice", help="the small test files shipped in data/")
    sl.add_argument("--out-prefix", default=os.path.join(HERE, "dijets_slice"))
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.cmd == "pools":
        make_pools(a.n_qcd_shards, a.n_signal_shards, a.shard_events, a.workers)
    elif a.cmd == "search":
        prefix = a.out_prefix or os.path.join(
            CACHE, f"search_n{a.n_data}_s{a.signal_fraction:g}_seed{a.seed}")
        for k, v in make_search(prefix, a.n_data, a.signal_fraction, a.n_test_bkg,
                                a.n_test_sig, a.seed).items():
            print(f"wrote {v} ({k})")
    else:  # slice: 2000 data events at 2% signal, 2000 reference, 400 + 400 test; 3 shards
        for k, v in make_search(a.out_prefix, 2000, 0.02, 400, 400, seed=7,
                                max_constituents=32, max_shards=3).items():
            print(f"wrote {v} ({k}, {os.path.getsize(v) / 1e6:.2f} MB)")
    print(f"make_dijets: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
