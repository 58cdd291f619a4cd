"""The compiled exact flow of rings and disks (shaper.affine_flow) against the torch path
(shaper.exact_flow.flow_exact driven by physkit.flow.minimize) on sample jets, and its dispatch
in the general path."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physkit.events import Events
from physkit.flow import Koopman
from physkit.ot import emd_batch
from shaper import Observable, Shaper, from_name
from shaper.affine_flow import flow_affine, is_affine, new_warm_starts, node_pattern
from shaper.exact_flow import flow_exact
from shaper.general import GeneralPath
from shaper.group import JetGroup

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jets_sample.h5"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="data/jets_sample.h5 not generated")
R = 0.8


@pytest.fixture(scope="module")
def group():
    with h5py.File(SAMPLE, "r") as f:
        lab = f["labels"][:]
        idx = np.sort(np.r_[np.flatnonzero(lab == 1)[40:50], np.flatnonzero(lab == 0)[40:50]])
        jets = f["constituents"][idx].astype(np.float64)
    return JetGroup.from_events(Events.from_padded(jets, dtype=torch.float64))


def _start(obs, group):
    """The kT start, with every other jet's radius widened (rows far from their optimum)."""
    p = {k: v.to(torch.float64) for k, v in obs.init(group.seeds, R).items()}
    p["radii"][::2] = p["radii"][::2] * 2.0 + 0.05
    return p


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("name", ["1-ringiness", "1-diskiness"])
@pytest.mark.parametrize("n_samples,steps", [(24, 40), (96, 4)])  # the flow; the polish
def test_reproduces_the_torch_flow(group, name, beta, n_samples, steps):
    """Same algorithm: the values, parameters, statuses and step counts of flow_exact, up to the
    order of floating-point sums."""
    obs = from_name(name)
    p0 = _start(obs, group)
    kw = dict(steps=steps, n_samples=n_samples, R=R, beta=beta, tol=1e-4, patience=2)
    ref = flow_exact(obs, group.x, group.z, p0, weight_lr=0.25, n_jobs=1, **kw)
    got = flow_affine(obs, group.x, group.z, p0, **kw)
    rel = ((got.loss - ref.loss).abs() / ref.loss).numpy()
    assert (rel <= 1e-9).mean() >= 0.95 and rel.max() < 1e-6
    same = rel <= 1e-9
    for k in ref.params:
        assert torch.allclose(got.params[k][same], ref.params[k][same], rtol=1e-7, atol=1e-9), k
    assert (got.status == ref.status).float().mean() >= 0.95
    assert (got.n_steps == ref.n_steps).float().mean() >= 0.95
    assert (ref.loss < ref.loss.new_tensor(np.inf)).all()


def test_padding_rows_and_warm_starts_do_not_change_a_row(group):
    """A row's result depends on that row only: more zero padding, another batch, and a warm
    start (which changes the pivots, not the optimum) leave it unchanged (to rounding)."""
    obs = from_name("1-diskiness")
    p0 = _start(obs, group)
    kw = dict(steps=4, n_samples=48, R=R, beta=1.0, tol=1e-4, patience=2)
    full = flow_affine(obs, group.x, group.z, p0, **kw)
    x = torch.nn.functional.pad(group.x, (0, 0, 0, 17))
    z = torch.nn.functional.pad(group.z, (0, 17))
    rows = torch.tensor([5, 2, 9])
    padded = flow_affine(obs, x[rows], z[rows], {k: v[rows] for k, v in p0.items()}, **kw)
    assert torch.equal(padded.loss, full.loss[rows])
    assert torch.equal(padded.params["centers"], full.params["centers"][rows])
    warm = new_warm_starts(len(group), group.x.shape[1], 48)
    first = flow_affine(obs, group.x, group.z, p0, **{**kw, "steps": 0}, warm=warm)
    assert (warm[:, 0, 0] >= 0).all()  # filled by the solves
    again = flow_affine(obs, group.x, group.z, p0, **{**kw, "steps": 0}, warm=warm)
    torch.testing.assert_close(again.loss, first.loss, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="warm must be"):
        flow_affine(obs, group.x, group.z, p0, **kw, warm=warm[:, :, :-1].copy())


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_zero_steps_is_the_exact_value(group, beta):
    obs = from_name("1-ringiness")
    p0 = _start(obs, group)
    got = flow_affine(obs, group.x, group.z, p0, steps=0, n_samples=40, R=R, beta=beta,
                      tol=1e-4, patience=2)
    y, b = obs.sample(p0, 40, R)
    ref = emd_batch(group.x, group.z, y, b, R=R, beta=beta)
    np.testing.assert_allclose(got.loss.numpy(), ref, rtol=1e-12)
    assert (got.status == 1).all() and (got.n_steps == 0).all()


def test_node_pattern_is_the_samplers():
    obs = from_name("1-diskiness")
    u, m = node_pattern(obs, 30, R)
    p = {"centers": torch.tensor([[[0.1, -0.2]]], dtype=torch.float64),
         "weights": torch.ones(1, 1, dtype=torch.float64),
         "radii": torch.tensor([[0.3]], dtype=torch.float64)}
    y, b = obs.sample(p, 30, R)
    assert torch.equal(y[0], p["centers"][0, 0] + 0.3 * torch.from_numpy(u))
    assert np.array_equal(b[0].numpy(), m)
    # sampled once per observable, node count and R: the same arrays again, others apart
    assert node_pattern(obs, 30, R)[0] is u
    assert node_pattern(obs, 24, R)[0].shape == (24, 2)
    ring = from_name("1-ringiness")
    assert not np.array_equal(node_pattern(ring, 30, R)[0], u)


def test_dispatch():
    """The compiled engine takes exactly the affine built-ins, on CPU, with the exact flow and
    no Koopman jumps, unless flow_engine='torch'."""
    assert is_affine(from_name("1-ringiness")) and is_affine(from_name("1-Diskiness"))
    for name in ["2-ringiness", "1-ellipsiness", "1-point-diskiness", "1-diskiness+pileup",
                 "1-subjettiness", "1-ringiness+1-diskiness"]:
        assert not is_affine(from_name(name)), name
    ring = from_name("1-ringiness")
    assert not is_affine(Observable("mine", ring.specs, ring.sample))  # not declared

    def path(**kw):
        return GeneralPath(Shaper(["1-ringiness"], **kw))

    assert path().compiled(ring)
    assert not path(flow_engine="torch").compiled(ring)
    assert not path(flow="sinkhorn").compiled(ring)
    assert not path(koopman=Koopman()).compiled(ring)
    assert not path().compiled(from_name("2-ringiness"))
    with pytest.raises(ValueError, match="flow_engine"):
        Shaper(["1-ringiness"], flow_engine="numba")


@pytest.mark.parametrize("name,beta", [("1-ringiness", 1.0), ("1-diskiness", 2.0)])
def test_shaper_engine_matches_torch(name, beta):
    """Shaper with its defaults (coarse-grained flow, screening, polish, selection): the engine
    reports the torch path's values and statuses (to rounding)."""
    with h5py.File(SAMPLE, "r") as f:
        jets = f["constituents"][300:316].astype(np.float64)
    got = Shaper([name], beta=beta).compute(jets)[name]
    ref = Shaper([name], beta=beta, flow_engine="torch").compute(jets)[name]
    rel = np.abs(got.value - ref.value) / ref.value
    assert (rel <= 1e-9).mean() >= 0.9 and rel.max() < 1e-4
    assert (got.value <= ref.value * (1 + 1e-9)).mean() >= 0.9
    assert (got.status == ref.status).mean() >= 0.9


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_exact_values_and_lower_bound_skips(group, beta):
    """exact_affine: the exact EMD (emd_batch); a row is skipped (+inf) exactly when its lower
    bound, the bounds of physkit.ot.bounds.emd_lower_bound, is not below ``beat``."""
    from physkit.ot.bounds import emd_lower_bound
    from shaper.affine_flow import exact_affine

    obs = from_name("1-diskiness")
    p = _start(obs, group)
    y, b = obs.sample(p, 48, R)
    ref = emd_batch(group.x, group.z, y, b, R=R, beta=beta)
    kw = dict(n_samples=48, R=R, beta=beta)
    got = exact_affine(obs, group.x, group.z, p, **kw)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    above = exact_affine(obs, group.x, group.z, p, **kw, beat=got * (1 + 1e-9))
    assert torch.equal(above, got)  # a lower bound never reaches the value
    lb = emd_lower_bound(group.x, group.z, y, b, R=R, beta=beta,
                         centers=p["centers"]).to(torch.float64)
    assert (lb <= got * (1 + 1e-12)).all()
    below = exact_affine(obs, group.x, group.z, p, **kw, beat=lb * (1 - 1e-9))
    assert torch.isinf(below).all()  # the same bounds: every row skipped


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("name", ["1-ringiness", "1-diskiness"])
def test_dual_bound_of_a_warm_start(group, name, beta):
    """exact_affine with warm starts: the dual bound of the kept basis never skips a row whose
    exact value is below ``beat`` (moved shapes, emd_batch's values), and at the basis's own
    optimum it reaches the value, so every row is skipped just below it (the bounds of
    emd_lower_bound alone skip none there)."""
    from physkit.ot.bounds import emd_lower_bound
    from shaper.affine_flow import exact_affine

    obs = from_name(name)
    p = _start(obs, group)
    kw = dict(n_samples=48, R=R, beta=beta)
    warm = new_warm_starts(len(group), group.x.shape[1], 48)
    got = exact_affine(obs, group.x, group.z, p, warm=warm, **kw)
    y, b = obs.sample(p, 48, R)
    lb = emd_lower_bound(group.x, group.z, y, b, R=R, beta=beta, centers=p["centers"])
    assert (lb < got * (1 - 1e-6)).all()  # the cheap bounds would solve every row
    below = exact_affine(obs, group.x, group.z, p, warm=warm.copy(), beat=got * (1 - 1e-9), **kw)
    assert torch.isinf(below).all()
    rng = np.random.default_rng(3)
    for scale in (1e-3, 3e-2, 0.3):
        q = {k: v.clone() for k, v in p.items()}
        q["centers"] += torch.as_tensor(rng.normal(0, scale, q["centers"].shape))
        q["radii"] = (q["radii"] * (1 + torch.as_tensor(rng.normal(0, scale, q["radii"].shape)))
                      ).abs()
        yq, bq = obs.sample(q, 48, R)
        ref = torch.as_tensor(emd_batch(group.x, group.z, yq, bq, R=R, beta=beta))
        for beat in (ref * (1 + 1e-9), got):
            v = exact_affine(obs, group.x, group.z, q, warm=warm.copy(), beat=beat, **kw)
            keep = (ref < beat) | torch.isfinite(v)  # skipped only where it cannot win
            np.testing.assert_allclose(v[keep].numpy(), ref[keep].numpy(), rtol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("name", ["1-ringiness", "1-diskiness"])
def test_coarse_start_keeps_the_optimum(group, name, beta, monkeypatch):
    """A row's first solve started through the pattern at a quarter of the nodes (96 >=
    COARSE_START_MIN, beta >= 1; beta < 1 keeps the least-cost start): the exact EMD of
    emd_batch, and the same values as without that start (the least-cost rule), for the exact
    values and for the polish's flow."""
    import shaper.affine_flow as af

    obs = from_name(name)
    p = _start(obs, group)
    y, b = obs.sample(p, 96, R)
    ref = emd_batch(group.x, group.z, y, b, R=R, beta=beta)
    assert af._coarse_pattern(obs, 96, R, beta)[0].shape == ((24, 2) if beta >= 1 else (0, 2))
    got = af.exact_affine(obs, group.x, group.z, p, n_samples=96, R=R, beta=beta)
    kw = dict(steps=4, n_samples=96, R=R, beta=beta, tol=1e-4, patience=2)
    flowed = flow_affine(obs, group.x, group.z, p, **kw)
    monkeypatch.setattr(af, "COARSE_START_MIN", 10 ** 9)  # the least-cost start throughout
    assert af._coarse_pattern(obs, 96, R, beta)[0].shape == (0, 2)
    plain = af.exact_affine(obs, group.x, group.z, p, n_samples=96, R=R, beta=beta)
    flowed_plain = flow_affine(obs, group.x, group.z, p, **kw)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(plain.numpy(), ref, rtol=1e-12)
    rel = ((flowed.loss - flowed_plain.loss).abs() / flowed_plain.loss).numpy()
    assert (rel <= 1e-9).mean() >= 0.95 and rel.max() < 1e-6  # degenerate plans may differ
