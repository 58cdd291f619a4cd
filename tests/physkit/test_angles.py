"""Azimuth wrapping: skipping it where no difference can leave (-pi, pi) changes no bit."""
import math

import numpy as np
import torch

from physkit.angles import differences_in_range, wrap_angle
from physkit.ot.cost import cost_matrix


def test_differences_in_range_decides_by_the_largest_azimuths():
    a = np.array([0.5, -1.0])
    assert differences_in_range(a, np.array([2.0]))
    assert not differences_in_range(a, np.array([2.2]))  # 1.0 + 2.2 > pi
    assert differences_in_range(torch.tensor([3.0]), torch.tensor([]))
    assert not differences_in_range(torch.tensor([-1.6]), torch.tensor([[0.1, 1.6]]))


def test_wrap_is_the_identity_where_differences_are_in_range():
    rng = np.random.default_rng(3)
    for dtype in (np.float64, np.float32):
        x = rng.uniform(-1.5, 1.5, (200, 2)).astype(dtype)
        y = rng.uniform(-1.6, 1.6, (300, 2)).astype(dtype)
        assert differences_in_range(x[:, 1], y[:, 1])
        d = x[:, None, 1] - y[None, :, 1]
        assert np.array_equal(wrap_angle(d), d)
        t = torch.from_numpy(d)
        assert torch.equal(wrap_angle(t), t) and torch.equal(wrap_angle(t, exact=True), t)


def test_cost_matrix_still_wraps_where_needed():
    x = np.array([[0.0, math.pi - 0.1]])
    y = np.array([[0.0, -math.pi + 0.1]])
    assert np.isclose(cost_matrix(x, y)[0, 0], 0.2)
    assert np.isclose(cost_matrix(torch.tensor(x), torch.tensor(y))[0, 0].item(), 0.2)
    assert np.isclose(cost_matrix(x, y, periodic_phi=False)[0, 0], 2 * math.pi - 0.2)
