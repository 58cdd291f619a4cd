"""Fixtures shared by the Sinkhorn solver tests."""
import pytest
import torch

import physkit.ot.sinkhorn as sk


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small batched kernels run faster on one intra-op thread on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["newton", "sinkhorn"])
def engine(request, monkeypatch):
    """Run a test with the semi-dual Newton solver (few points) and with forced Sinkhorn."""
    if request.param == "sinkhorn":
        monkeypatch.setattr(sk, "NEWTON_MAX_POINTS", 0)
    return request.param
