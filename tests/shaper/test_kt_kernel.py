"""The compiled exclusive-kT clustering (shaper/kt_kernel.py) against fastjet itself: the
exclusive jets of every n, bit for bit and in fastjet's order, on sample jets (fastjet's plain
and tiled strategies) and on edge cases (collinear and coincident pairs, jets across phi = pi,
very forward particles, zero-pT particles, one- and two-particle jets, exact distance ties);
fastjet's PseudoJet kinematics; KtSeeds built on it."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.fastjet_calls import (fastjet_call, load_fastjet, massless_four_vectors,
                                   massless_momenta)
from shaper.kt_kernel import KT_R, cluster, exclusive_jets, rap_phi
from shaper.seeds import KtSeeds

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"


def _fastjet_exclusive(counts, pt, y, phi, n):
    """fastjet's ``exclusive_jets_up_to(n)`` per jet (kt, R = 1000, E-scheme):
    ``(px, py, pz, E)`` lists, one ``(k, 4)`` array per jet."""
    fastjet = load_fastjet()
    arr = massless_four_vectors(counts, pt, y, phi)
    jd = fastjet.JetDefinition(fastjet.kt_algorithm, KT_R, fastjet.E_scheme)

    def run():
        cs = fastjet.ClusterSequence(arr, jd)
        return cs.exclusive_jets_up_to(n)

    jets = fastjet_call(run, ignore=("dcut and exclusive jets",))
    cols = [jets[k].to_list() for k in ("px", "py", "pz", "E")]
    return [np.array(list(zip(*(c[b] for c in cols)))).reshape(-1, 4)
            for b in range(len(counts))]


def _mine(counts, pt, y, phi, n):
    p = massless_momenta(pt, y, phi)
    p4, parents = cluster(p["px"], p["py"], p["pz"], p["E"], counts)
    rows = np.flatnonzero(counts >= n)
    return rows, exclusive_jets(p4, parents, counts, rows, n)


def _assert_same_as_fastjet(counts, pt, y, phi, n_values):
    counts = np.asarray(counts, dtype=np.int64)
    for n in n_values:
        ref = _fastjet_exclusive(counts, pt, y, phi, n)
        rows, got = _mine(counts, pt, y, phi, n)
        assert len(rows) > 0
        for r, b in enumerate(rows):
            # bit for bit, in fastjet's order
            assert np.array_equal(got[r], ref[b]), (n, b, got[r], ref[b])


def _flat(jets):
    """Flat ``counts, pt, y, phi`` of a list of ``(k, 3)`` arrays (pt, y, phi)."""
    counts = np.array([len(j) for j in jets])
    cat = np.concatenate(jets) if len(jets) else np.zeros((0, 3))
    return counts, cat[:, 0].copy(), cat[:, 1].copy(), cat[:, 2].copy()


@pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")
def test_sample_jets_match_fastjet_bit_for_bit():
    with h5py.File(SAMPLE, "r") as f:
        c = f["constituents"][:400].astype(np.float64)
    ev = Events(*(torch.as_tensor(c[..., k]) for k in range(3)),
                torch.as_tensor(c[..., 0] > 0)).centered()
    m = ev.mask.numpy()
    counts = m.sum(1)
    assert (counts < 75).any() and (counts >= 75).any()  # fastjet's plain and tiled strategies
    pt, y, phi = (t.double().numpy()[m] for t in (ev.pt, ev.y, ev.phi))
    _assert_same_as_fastjet(counts, pt, y, phi, range(1, 7))


def _edge_jets():
    rng = np.random.default_rng(15)
    jets = []
    # a random jet and copies of it with collinear / coincident pairs (exact ties in d_ij)
    base = np.column_stack([rng.exponential(5.0, 30), rng.normal(0, 0.3, 30),
                            rng.normal(0, 0.3, 30)])
    jets.append(base)
    dup = np.concatenate([base, base[:6]])  # coincident particles: distance 0
    jets.append(dup)
    col = base.copy()
    col[10:15, 1:] = col[0, 1:]  # collinear with particle 0, other pT
    jets.append(col)
    # across phi = +-pi, in fastjet's [0, 2 pi) convention both sides of 0 and of pi
    for centre in (np.pi, -np.pi, 0.0, np.pi - 1e-12):
        j = base.copy()
        j[:, 2] = np.remainder(j[:, 2] + centre + np.pi, 2 * np.pi) - np.pi
        jets.append(j)
    # very forward particles (|y| up to 20, E - pz tiny) and one backward
    fwd = base.copy()
    fwd[:5, 1] = [8.0, 12.0, 15.0, 19.5, -17.0]
    jets.append(fwd)
    # zero-pT particles: along the beam, fastjet's MaxRap rapidity and beam steps
    zero = base[:12].copy()
    zero[[3, 7], 0] = 0.0
    jets.append(zero)
    # one and two particles
    jets += [base[:1].copy(), base[:2].copy()]
    # exact distance ties: equal pT on a square grid, and a ring of equal pT
    g = np.array([(a, b) for a in range(-2, 3) for b in range(-2, 3)], dtype=float) * 0.125
    jets.append(np.column_stack([np.full(len(g), 3.0), g]))
    ang = np.arange(8) * (np.pi / 4)
    jets.append(np.column_stack([np.full(8, 2.0), 0.5 * np.cos(ang), 0.5 * np.sin(ang)]))
    # a large random jet (fastjet's tiled strategy) with a coincident pair
    big = np.column_stack([rng.exponential(2.0, 140), rng.normal(0, 0.4, 140),
                           rng.normal(0, 0.4, 140)])
    big[70] = big[20]
    jets.append(big)
    return jets


def test_edge_cases_match_fastjet_bit_for_bit():
    jets = _edge_jets()
    counts, pt, y, phi = _flat(jets)
    _assert_same_as_fastjet(counts, pt, y, phi, range(1, 31))
    _assert_same_as_fastjet(counts, pt, y, phi, (60, 100, 140))


def test_empty_jets_and_history_shape():
    counts = np.array([0, 3, 0, 1], dtype=np.int64)
    rng = np.random.default_rng(0)
    pt, y, phi = rng.uniform(1, 2, 4), rng.normal(0, 0.2, 4), rng.normal(0, 0.2, 4)
    p = massless_momenta(pt, y, phi)
    p4, parents = cluster(p["px"], p["py"], p["pz"], p["E"], counts)
    assert p4.shape == (4, 6, 4) and parents.shape == (4, 6, 2)
    # jet 1: two merges then a beam step; its one-jet momentum is the particles' sum
    assert list(parents[1, 5]) == [4, -1]
    assert np.allclose(p4[1, 4], [p[k][:3].sum() for k in ("px", "py", "pz", "E")])
    one = exclusive_jets(p4, parents, counts, np.array([1, 3]), 1)
    assert np.array_equal(one[1, 0], [p[k][3] for k in ("px", "py", "pz", "E")])


def test_rap_phi_follows_pseudojet():
    fastjet = load_fastjet()
    cases = [(1.0, 0.0, 0.0, 1.0), (-1.0, -1e-17, 3.0, 5.0), (0.0, 0.0, 5.0, 5.0),
             (0.0, 0.0, -2.0, 2.0), (0.0, 0.0, 0.0, 0.0), (3.0, 4.0, 1e6, 1e6 + 1e-6),
             (1e-3, -2e-3, -40.0, 40.0000001), (2.0, 1.0, 0.5, 1.0)]
    for px, py, pz, e in cases:
        j = fastjet.PseudoJet(px, py, pz, e)
        rap, phi, kt2 = rap_phi(px, py, pz, e)
        assert (rap, phi, kt2) == (j.rap(), j.phi(), j.kt2()), (px, py, pz, e)
        assert 0.0 <= phi < 2 * np.pi


def test_kt_seeds_rows_match_fastjet():
    """KtSeeds over jets with 0, 1, n and more particles: clustered jets' centres from
    fastjet's exclusive jets, small jets their particles."""
    rng = np.random.default_rng(3)
    B, M = 6, 20
    counts = np.array([0, 1, 2, 5, 20, 13])
    pt = np.where(np.arange(M) < counts[:, None], rng.exponential(3.0, (B, M)), 0.0)
    y, phi = rng.normal(0, 0.3, (B, M)), rng.normal(0, 0.3, (B, M))
    mask = pt > 0
    seeds = KtSeeds(Events(*(torch.as_tensor(a) for a in (pt, y, phi, mask))))
    for n in (2, 3):
        c, w = seeds.subjets(n)
        big = np.flatnonzero(counts > n)
        ref = _fastjet_exclusive(counts, pt[mask], y[mask], phi[mask], n)
        for b in big:
            jpx, jpy, jpz, je = ref[b].T
            jpt = np.hypot(jpx, jpy)
            order = np.argsort(-jpt, kind="stable")
            jy = 0.5 * np.log((je + jpz) / (je - jpz))
            np.testing.assert_array_equal(c[b, :, 0].numpy(), jy[order])
            np.testing.assert_array_equal(c[b, :, 1].numpy(), np.arctan2(jpy, jpx)[order])
            np.testing.assert_allclose(w[b].numpy(), jpt[order] / jpt.sum(), rtol=1e-15)
        for b in np.flatnonzero((counts <= n) & (counts > 0)):
            hard = np.argmax(pt[b])
            assert c[b, 0, 0] == y[b, hard] and w[b, 0] == pt[b, hard] / pt[b].sum()
        assert (w[0] == 0).all()
