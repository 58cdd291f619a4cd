"""Lower bounds of the exact EMD (physkit.ot.bounds) never exceed it."""
import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from physkit.ot import emd_batch
from physkit.ot.bounds import emd_lower_bound, line_wasserstein


def test_line_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(5, 9)), rng.normal(size=(5, 6))
    a, b = rng.random((5, 9)), rng.random((5, 6))
    a[:, 7:] = 0.0
    w = line_wasserstein(torch.tensor(p), torch.tensor(a), torch.tensor(q), torch.tensor(b))
    ref = [wasserstein_distance(p[k], q[k], a[k], b[k]) for k in range(5)]
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12, atol=1e-14)
    # beta = 2: the monotone coupling of two-point measures by hand
    w2 = line_wasserstein(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]]),
                          torch.tensor([[2.0, 4.0]]), torch.tensor([[0.5, 0.5]]), beta=2.0)
    assert abs(float(w2[0]) - 0.5 * (4.0 + 9.0)) < 1e-12


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_lower_bound_never_exceeds_the_exact_emd(beta, sample_path):
    import h5py

    from physkit.events import Events

    with h5py.File(sample_path, "r") as f:
        c = f["constituents"][:40].astype(np.float64)
    ev = Events.from_padded(c, dtype=torch.float64).centered()
    x, a = ev.points(), ev.weights()
    rng = np.random.default_rng(int(beta * 10))
    for spread in (0.05, 0.3):  # shapes near the jet and far from it
        y = torch.tensor(rng.normal(0, spread, (len(ev), 20, 2)))
        b = torch.tensor(rng.random((len(ev), 20)))
        centers = y[:, :3]
        lb = emd_lower_bound(x, a, y, b, R=0.8, beta=beta, centers=centers)
        ex = emd_batch(x, a, y, b, R=0.8, beta=beta)
        assert (lb.numpy() <= ex * (1 + 1e-12) + 1e-15).all()
        assert (lb.numpy() > 0.3 * ex).mean() > 0.5  # and it is not trivial
