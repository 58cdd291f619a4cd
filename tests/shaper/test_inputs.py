"""What Shaper.compute accepts (through physkit.events.Events.as_jets): awkward records in
every coordinate system vector knows (same values to 1e-6), lists of (M_i, 3|4) arrays as
in emds, nested events -> jets -> particles; whole events refused; pyshaper's names."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from physkit.events import Events
from shaper import Shaper
from shaper.observables import canonical_name, from_name

ak = pytest.importorskip("awkward")
vector = pytest.importorskip("vector")

OBS = ["2-subjettiness", "1-diskiness"]


def _jets():
    """Eight toy jets (pT, y, phi, mass) with massive particles, and their true rapidities."""
    from conftest import synthetic_jets

    x = synthetic_jets(8, 20, seed=12, n_prongs=2).astype(np.float64)
    real = x[..., 0] > 0
    mass = np.where(real, np.random.default_rng(1).uniform(0.0, 2.0, x.shape[:2]), 0.0)
    return x, real, mass


def _coordinate_systems(x, real, mass):
    """The same particles as awkward records in several coordinate systems; all carry the
    rapidity of the (pt, y, phi) columns (mass given, eta computed to match)."""
    counts = real.sum(1)
    pt, y, phi, m = x[..., 0][real], x[..., 1][real], x[..., 2][real], mass[real]
    mt = np.sqrt(pt ** 2 + m ** 2)
    px, py, pz, e = pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y), mt * np.cosh(y)
    eta = np.arcsinh(pz / pt)
    tau = m

    def rec(**cols):
        return ak.zip({k: ak.unflatten(v, counts) for k, v in cols.items()})

    return {
        "pt, y, phi": rec(pt=pt, y=y, phi=phi),
        "pt, eta, phi, mass": rec(pt=pt, eta=eta, phi=phi, mass=m),
        "PT, Eta, Phi, M (Delphes)": rec(PT=pt, Eta=eta, Phi=phi, M=m),
        "pt, eta, phi, mass + vertex x, y, z": rec(pt=pt, eta=eta, phi=phi, mass=m, x=0 * pt,
                                                   y=0 * pt + 0.1, z=pz),
        "px, py, pz, E": rec(px=px, py=py, pz=pz, E=e),
        "x, y, z, t": rec(x=px, y=py, z=pz, t=e),
        "rho, eta, phi, tau": rec(rho=pt, eta=eta, phi=phi, tau=tau),
        "pt, eta, phi, energy": rec(pt=pt, eta=eta, phi=phi, energy=e),
        "Momentum4D": vector.zip({"px": ak.unflatten(px, counts), "py": ak.unflatten(py, counts),
                                  "pz": ak.unflatten(pz, counts), "E": ak.unflatten(e, counts)}),
        "list of (M, 4) arrays": [np.stack([pt_i, y_i, phi_i, np.full(len(pt_i), 211.0)], 1)
                                  for pt_i, y_i, phi_i in zip(*(np.split(c, np.cumsum(counts)[:-1])
                                                                for c in (pt, y, phi)))],
    }


def test_every_coordinate_system_gives_the_same_shaper_values():
    x, real, mass = _jets()
    shaper = Shaper(OBS, steps=30)
    ref = shaper.compute(x)
    for name, jets in _coordinate_systems(x, real, mass).items():
        got = shaper.compute(jets)
        for o in OBS:
            np.testing.assert_allclose(got[o].value, ref[o].value, rtol=1e-6, atol=1e-6,
                                       err_msg=name)


def test_rapidity_comes_from_the_mass():
    x, real, mass = _jets()
    systems = _coordinate_systems(x, real, mass)
    rec = systems["pt, eta, phi, mass"]
    ev = Events.from_awkward(rec, dtype=torch.float64)
    want = vector.zip({k: rec[k] for k in ("pt", "eta", "phi", "mass")}).rapidity
    got = ev.to_padded()[..., 1][ev.mask.numpy()]
    np.testing.assert_allclose(got, ak.to_numpy(ak.flatten(want)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, x[..., 1][real], rtol=1e-10, atol=1e-10)
    assert np.abs(got - ak.to_numpy(ak.flatten(rec.eta))).max() > 1e-2  # eta is not y here
    with pytest.raises(ValueError, match="no longitudinal coordinate"):
        Events.from_awkward(ak.zip({"x": rec.pt, "y": rec.phi}))
    with pytest.raises(ValueError, match="not a coordinate system vector knows"):
        Events.from_awkward(ak.zip({"pt": rec.pt, "foo": rec.phi}))


def test_nested_events_jets_particles_one_row_per_jet():
    x, real, mass = _jets()
    flat = _coordinate_systems(x, real, mass)["pt, eta, phi, mass"]
    nested = ak.unflatten(flat, [3, 0, 1, 4])  # 4 events holding 3, 0, 1, 4 jets
    ev = Events.as_jets(nested, dtype=torch.float64)
    np.testing.assert_array_equal(ev.origin, [[0, 0], [0, 1], [0, 2], [2, 0], [3, 0], [3, 1],
                                              [3, 2], [3, 3]])
    np.testing.assert_array_equal(ev[2:5].origin, [[0, 2], [2, 0], [3, 0]])
    ref = Shaper(OBS[:1]).compute(x)[OBS[0]].value
    np.testing.assert_allclose(Shaper(OBS[:1]).compute(nested)[OBS[0]].value, ref, rtol=1e-6,
                               atol=1e-6)


def test_whole_events_are_refused():
    x, _, _ = _jets()
    ev = Events.from_padded(x)
    ev.level = "event"
    with pytest.raises(ValueError, match=r"whole events.*--cluster antikt:1.0"):
        Shaper(OBS[:1]).compute(ev)
    with pytest.raises(TypeError, match="jets must be physkit Events"):
        Shaper(OBS[:1]).compute({"pt": 1})


@pytest.mark.parametrize("name,canonical", [
    ("3-Subjettiness", "3-subjettiness"), ("2-Point-Diskiness", "2-point-diskiness"),
    ("Isotropy", "isotropy"), ("1-Ellipsiness+Pileup", "1-ellipsiness+pileup"),
    ("2-(point+disk)iness", "2-point-diskiness"), ("2-(Ellipse+Point)iness", "2-point-ellipsiness"),
    ("3-point-ellipsiness-plus-pileup", "3-point-ellipsiness+pileup"),
    (" 2-Ringiness + Isotropy ", "2-ringiness+isotropy")])
def test_pyshaper_and_paper_names(name, canonical):
    assert canonical_name(name) == canonical
    obs, ref = from_name(name), from_name(canonical)
    assert obs.name == name.strip() and obs.family == ref.family
    assert repr(obs.specs) == repr(ref.specs)


def test_a_sequence_holding_events_or_other_objects_is_refused_at_once():
    """A tuple such as ``(events, indices)`` passed by mistake used to be taken for a list of
    jets: numpy turned the Events into a nested object array until memory ran out."""
    x, _, _ = _jets()
    ev = Events.from_padded(x[..., :3], dtype=torch.float64)
    with pytest.raises(TypeError, match="jet 0: expected an \\(M, 3\\) array.*got Events"):
        Shaper(OBS).compute((ev, np.arange(len(ev))))
    with pytest.raises(TypeError, match="jet 1: .*got dict"):
        Events.as_jets([x[0, :, :3], {"pt": 1.0}])
