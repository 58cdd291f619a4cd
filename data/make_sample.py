"""Generate ``data/jets_sample.h5``: boosted top jets and QCD jets with Pythia 8.

Usage::

    python data/make_sample.py [--n-per-class 1000] [--seed 1] [-o data/jets_sample.h5]

Physics (13 TeV pp, Pythia 8 defaults: ISR, FSR, MPI, hadronisation and decays on):

* top: ``gg -> tt~`` and ``qq~ -> tt~`` with ``W -> quarks`` only (fully hadronic tt~);
* QCD: ``HardQCD:all`` dijets;
* both with 500 < pTHat < 700 GeV.

Visible final-state particles (no neutrinos, |eta| < 4) are clustered with anti-kT,
R = 0.8. The leading jet is kept when 550 < pT < 650 GeV and |eta| < 2 (and it has at
least 4 constituents). A top jet must also contain its top's three decay quarks
(b and the two W quarks of one top, Pythia status -23) within Delta R < 0.8 of the jet
axis, so the jet holds the whole top decay.

Reference N-subjettiness per jet, beta = 1, R0 = 0.8, normalised measure,
``tau_N = sum_k pT_k min_j dR_jk / (sum_k pT_k R0)`` with dR in (rapidity, phi):

* ``tau_kt``: computed here from exclusive-kT axes (kt algorithm, R = 1000, E-scheme,
  ``exclusive_jets(N)`` on the jet's constituents) -- fastjet-contrib's ``KT_Axes``;
  cross-checked against fastjet-contrib (through the fastjet wheel's ``njettiness``).
* ``tau_onepass``: fastjet-contrib's own Nsubjettiness with ``OnePass_KT_Axes``
  (through the fastjet wheel's ``njettiness``).

Needs the optional generator: ``pip install 'physkit[generate]'`` (``pythia8mc==8.317.2``).
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

E_CM = 13000.0
PTHAT = (500.0, 700.0)
JET_R = 0.8
JET_PT = (550.0, 650.0)
JET_ABS_ETA = 2.0
PARTICLE_ABS_ETA = 4.0
R0 = 0.8
N_TAU = 4

PROCESSES = {
    "top": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on",
            "24:onMode = off", "24:onIfAny = 1 2 3 4 5"],
    "qcd": ["HardQCD:all = on"],
}


def _require_pythia():
    try:
        import pythia8mc  # noqa: F401
    except ImportError:
        sys.exit("make_sample.py needs the Pythia 8 generator, which is an optional extra:\n"
                 "    pip install 'physkit[generate]'     (or: pip install pythia8mc==8.317.2)")
    return pythia8mc


def _rapidity(e, pz):
    return 0.5 * np.log((e + pz) / (e - pz))


def _kinematics(px, py, pz, e):
    """(pT, y, eta, phi, m) of numpy/awkward four-momenta."""
    pt = np.hypot(px, py)
    p = np.sqrt(px ** 2 + py ** 2 + pz ** 2)
    eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    m = np.sqrt(np.maximum(e ** 2 - p ** 2, 0.0))
    return pt, _rapidity(e, pz), eta, phi, m


def _wrap(phi):
    from physkit.angles import wrap_angle
    return wrap_angle(phi)


def tau_exclusive_kt(pt, y, phi, mask, axes_y, axes_phi, R0: float = R0) -> np.ndarray:
    """Normalised N-subjettiness (beta = 1) of padded jets for given axes.

    pt, y, phi, mask: (B, M); axes_y, axes_phi: (B, N). Returns (B,).
    """
    dy = y[:, :, None] - axes_y[:, None, :]
    dphi = _wrap(phi[:, :, None] - axes_phi[:, None, :])
    dr = np.sqrt(dy ** 2 + dphi ** 2).min(axis=2)
    w = np.where(mask, pt, 0.0)
    return (w * dr).sum(axis=1) / (w.sum(axis=1) * R0)


def generate(kind: str, n_jets: int, seed: int, batch: int = 100, log=print) -> dict:
    """Generate ``n_jets`` selected jets of one class; returns a dict of numpy arrays."""
    import awkward as ak
    import fastjet

    pythia8mc = _require_pythia()
    py = pythia8mc.Pythia("", False)
    for s in [f"Beams:eCM = {E_CM}", *PROCESSES[kind],
              f"PhaseSpace:pTHatMin = {PTHAT[0]}", f"PhaseSpace:pTHatMax = {PTHAT[1]}",
              "Random:setSeed = on", f"Random:seed = {seed}", "Print:quiet = on"]:
        if not py.readString(s):
            raise RuntimeError(f"Pythia rejected setting {s!r}")
    if not py.init():
        raise RuntimeError("Pythia initialisation failed")

    antikt = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
    out = {"const": [], "jets": [], "n_gen": 0}
    kept = 0
    t0 = time.time()
    while kept < n_jets:
        ev = py.nextBatch(batch)
        out["n_gen"] += len(ev)
        prt = ev.prt
        p = prt.p
        px, pyy, pz, e = p.px, p.py, p.pz, p.e
        pt_all = np.hypot(px, pyy)
        final = prt.status > 0
        aid = np.abs(prt.id)
        visible = final & (aid != 12) & (aid != 14) & (aid != 16)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta_all = np.arcsinh(pz / pt_all)
        visible = visible & (pt_all > 0) & (np.abs(eta_all) < PARTICLE_ABS_ETA)
        vis = ak.zip({"px": px[visible], "py": pyy[visible], "pz": pz[visible],
                      "E": e[visible]}, with_name="Momentum4D")
        cs = fastjet.ClusterSequence(vis, antikt)
        jets = cs.inclusive_jets()
        cidx = cs.constituent_index()
        jpt = np.hypot(jets.px, jets.py)
        lead = ak.argmax(jpt, axis=1, keepdims=True)
        lj = ak.firsts(jets[lead])
        lidx = ak.firsts(cidx[lead])
        lpt, _, leta, lphi, lm = _kinematics(lj.px, lj.py, lj.pz, lj.E)
        ok = ((lpt > JET_PT[0]) & (lpt < JET_PT[1]) & (np.abs(leta) < JET_ABS_ETA)
              & (ak.num(lidx) >= N_TAU))
        ok = ak.fill_none(ok, False)
        if kind == "top":
            quark = (np.abs(prt.status) == 23) & (np.abs(prt.id) <= 5)
            qp = p[quark]
            qpt = np.hypot(qp.px, qp.py)
            qy = _rapidity(qp.e, qp.pz)
            qphi = np.arctan2(qp.py, qp.px)
            _, ly, _, _, _ = _kinematics(lj.px, lj.py, lj.pz, lj.E)
            dr = np.sqrt((qy - ly) ** 2 + _wrap_ak(qphi - lphi) ** 2)
            contained = ak.sum((dr < JET_R) & (qpt > 0), axis=1) >= 3
            ok = ok & ak.fill_none(contained, False)
        ok = ak.to_numpy(ok)
        if not ok.any():
            continue
        sel_idx = lidx[ok]
        cons = vis[ok][sel_idx]
        take = min(int(ok.sum()), n_jets - kept)
        cons = cons[:take]
        out["const"].append(cons)
        out["jets"].append(np.stack([ak.to_numpy(lpt[ok][:take]), ak.to_numpy(leta[ok][:take]),
                                     ak.to_numpy(lphi[ok][:take]), ak.to_numpy(lm[ok][:take])],
                                    axis=1))
        kept += take
        log(f"  {kind}: {kept}/{n_jets} jets from {out['n_gen']} events "
            f"({time.time() - t0:.0f} s)")
    cons = ak.concatenate(out["const"])
    return {"constituents": cons, "jets": np.concatenate(out["jets"]), "n_gen": out["n_gen"]}


def _wrap_ak(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def constituents_and_taus(cons) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded (N, M, 3) (pT, y, phi) sorted by pT, tau_kt (N, 4), tau_onepass (N, 4)."""
    import awkward as ak
    import fastjet

    pt, y, _, phi, _ = _kinematics(cons.px, cons.py, cons.pz, cons.E)
    order = ak.argsort(pt, axis=1, ascending=False)
    pt, y, phi = pt[order], y[order], phi[order]
    m = int(ak.max(ak.num(pt)))

    def pad(x):
        return ak.to_numpy(ak.fill_none(ak.pad_none(x, m, axis=1), 0.0)).astype(np.float64)

    ptp, yp, phip = pad(pt), pad(y), _wrap(pad(phi))
    mask = ptp > 0
    const = np.stack([ptp, yp, phip], axis=-1)

    # exclusive-kT axes (fastjet-contrib KT_Axes: kt, R = max_allowable_R, E-scheme)
    kt = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0, fastjet.E_scheme)
    seq = fastjet.ClusterSequence(cons, kt)
    tau = np.empty((len(ptp), N_TAU))
    for n in range(1, N_TAU + 1):
        ax = seq.exclusive_jets(n_jets=n)
        ay = ak.to_numpy(_rapidity(ax.E, ax.pz))
        aphi = ak.to_numpy(np.arctan2(ax.py, ax.px))
        tau[:, n - 1] = tau_exclusive_kt(ptp, yp, phip, mask, ay, aphi)

    # fastjet-contrib Nsubjettiness itself (through the fastjet wheel)
    ref_kt = _njettiness(seq, "KT_Axes")
    onepass = _njettiness(seq, "OnePass_KT_Axes")
    bad = np.abs(tau - ref_kt) > 1e-6 * np.maximum(1.0, np.abs(ref_kt))
    if bad.any():
        i = np.argwhere(bad)[0]
        raise RuntimeError(f"tau_kt disagrees with fastjet-contrib at jet {i[0]}, "
                           f"tau_{i[1] + 1}: {tau[tuple(i)]} vs {ref_kt[tuple(i)]}")
    return const.astype(np.float32), tau, onepass


def _njettiness(seq, axes: str) -> np.ndarray:
    import awkward as ak

    r = seq.njettiness(measure_definition="NormalizedMeasure", axes_definition=axes,
                       njets=list(range(1, N_TAU + 1)), beta=1.0, R0=R0)
    return np.asarray(ak.to_numpy(r), dtype=np.float64).reshape(-1, N_TAU)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-class", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "jets_sample.h5"))
    args = ap.parse_args(argv)
    pythia8mc = _require_pythia()
    warnings.filterwarnings("ignore", message="dcut and exclusive jets")

    import awkward as ak

    from physkit.io import write_events

    t0 = time.time()
    parts = {}
    for label, kind in ((1, "top"), (0, "qcd")):
        seed = (args.seed * 2 + label) % 900_000_000 + 1
        parts[kind] = generate(kind, args.n_per_class, seed)
    cons = ak.concatenate([parts["top"]["constituents"], parts["qcd"]["constituents"]])
    jets = np.concatenate([parts["top"]["jets"], parts["qcd"]["jets"]])
    labels = np.concatenate([np.ones(args.n_per_class, np.int8),
                             np.zeros(args.n_per_class, np.int8)])
    const, tau_kt, tau_op = constituents_and_taus(cons)
    perm = np.random.default_rng(args.seed).permutation(len(labels))
    jets[:, 2] = _wrap(jets[:, 2])
    attrs = {
        "generator": (f"Pythia {pythia8mc.__version__ if hasattr(pythia8mc, '__version__') else '8.317'}"
                      f" (pythia8mc), pp {E_CM / 1000:g} TeV, ISR/FSR/MPI/hadronisation on; "
                      f"top: gg/qq~ -> tt~, W -> quarks; qcd: HardQCD:all; "
                      f"pTHat {PTHAT[0]:g}-{PTHAT[1]:g} GeV"),
        "selection": (f"visible final state (no neutrinos, |eta| < {PARTICLE_ABS_ETA:g}), "
                      f"anti-kT R = {JET_R:g}; leading jet {JET_PT[0]:g} < pT < {JET_PT[1]:g} GeV, "
                      f"|eta| < {JET_ABS_ETA:g}, >= {N_TAU} constituents; top jets contain "
                      f"b + W quarks of one top (status -23) within dR < {JET_R:g}"),
        "labels_meaning": "1 = top, 0 = QCD",
        "jets_columns": "pT [GeV], eta, phi, m [GeV]",
        "constituents_columns": "pT [GeV], y, phi (absolute, sorted by pT descending)",
        "tau_kt_axes": ("N-subjettiness tau_1..tau_4, beta = 1, R0 = 0.8, normalised measure, "
                   "exclusive-kT axes (fastjet-contrib KT_Axes); computed by make_sample.py and "
                   "checked against fastjet-contrib Nsubjettiness to 1e-6"),
        "tau_onepass_axes": ("N-subjettiness tau_1..tau_4, beta = 1, R0 = 0.8, normalised measure, "
                        "OnePass_KT_Axes, from fastjet-contrib Nsubjettiness via the fastjet "
                        "wheel's njettiness()"),
        "seed": args.seed,
        "n_generated_top": parts["top"]["n_gen"],
        "n_generated_qcd": parts["qcd"]["n_gen"],
        "made_by": "data/make_sample.py",
    }
    write_events(args.output, const[perm], labels[perm], jets=jets[perm],
                 extra={"tau_kt": tau_kt[perm], "tau_onepass": tau_op[perm]}, attrs=attrs)
    print(f"wrote {args.output}: {len(labels)} jets, max multiplicity {const.shape[1]}, "
          f"{os.path.getsize(args.output) / 1e6:.1f} MB in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
