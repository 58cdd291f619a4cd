"""Shaper's options are checked in one place, with one message per option."""
import numpy as np
import pytest
import torch

from shaper import Shaper, observables as O

NAME = "2-subjettiness"


@pytest.mark.parametrize("option,value,message", [
    ("R", 0.0, "R must be a number > 0"),
    ("R", float("inf"), "R must be a number > 0"),
    ("beta", -1.0, "beta must be a number > 0"),
    ("eps", 0, "eps must be a number > 0"),
    ("n_samples", 0, "n_samples must be an integer >= 1"),
    ("n_samples", 2.5, "n_samples must be an integer >= 1"),
    ("n_eval_samples", 0, "n_eval_samples must be an integer >= 1"),
    ("steps", -1, "steps must be an integer >= 0"),
    ("lr", 0.0, "lr must be a number > 0"),
    ("lr", "fast", "lr must be a number > 0"),
    ("tol", -1e-3, "tol must be a number >= 0"),
    ("patience", 0, "patience must be an integer >= 1"),
    ("schedule", "linear", "schedule must be None, 'cosine', 'exp' or a callable"),
    ("scaling", 1.0, "scaling must be a number in (0, 1)"),
    ("sinkhorn_iter", -1, "sinkhorn_iter must be an integer >= 0 or None"),
    ("sinkhorn_warmup", -1, "sinkhorn_warmup must be an integer >= 0"),
    ("sinkhorn_tol", -1.0, "sinkhorn_tol must be a number >= 0"),
    ("lloyd_iter", -1, "lloyd_iter must be an integer >= 0"),
    ("point_restarts", -1, "point_restarts must be an integer >= 0"),
    ("point_swaps", 1.5, "point_swaps must be an integer >= 0"),
    ("chunk_size", 0, "chunk_size must be an integer >= 1"),
    ("bucket_size", 0, "bucket_size must be an integer >= 1"),
    ("coarse_points", 40, "coarse_points must be a positive multiple of 32, None or 'auto'"),
    ("coarse_points", 0, "coarse_points must be a positive multiple of 32, None or 'auto'"),
    ("coarse_points", "many", "coarse_points must be a positive multiple of 32, None or 'auto'"),
    ("coarse_iter", -1, "coarse_iter must be an integer >= 0"),
    ("polish_steps", -2, "polish_steps must be an integer >= 0"),
    ("screen_steps", -1, "screen_steps must be an integer >= 0"),
    ("screen_keep", 1.5, "screen_keep must be an integer >= 0"),
    ("dtype", np.float32, "dtype must be a torch floating-point dtype"),
    ("dtype", torch.int32, "dtype must be a torch floating-point dtype"),
    ("n_jobs", 0, "n_jobs must be None, -1 or an integer >= 1"),
    ("torch_threads", 0, "torch_threads must be an integer >= 1 or None"),
    ("seed", 1.5, "seed must be an integer"),
])
def test_bad_option_message(option, value, message):
    with pytest.raises(ValueError) as err:
        Shaper(NAME, **{option: value})
    text = str(err.value)
    assert text.startswith(message) and text.endswith(f"got {value!r}"), text


def test_duplicate_observables():
    with pytest.raises(ValueError, match="duplicate observable names"):
        Shaper([NAME, O.nsubjettiness(2)])


def test_options_stored_in_normal_form():
    sh = Shaper(NAME, R=1, steps=50.0, n_jobs=-1, sinkhorn_iter=None)
    assert sh.R == 1.0 and isinstance(sh.R, float)
    assert sh.steps == 50 and isinstance(sh.steps, int)
    assert sh.n_jobs == -1 and sh._workers() >= 1
    assert sh.device == torch.device("cpu") and sh.bucket_size == 128
    assert sh.coarse_points == 32 and Shaper(NAME, beta=0.5).coarse_points is None
    assert Shaper(NAME, coarse_points=64.0).coarse_points == 64
    assert Shaper(NAME, coarse_points=None).coarse_points is None
    assert sh.sinkhorn_iter is None and sh.scaling == 0.5 and sh.sinkhorn_tol == 1e-2
    assert Shaper(NAME, schedule=lambda t: 1.0).schedule(3) == 1.0
    assert Shaper(NAME, n_jobs=3)._workers() == 3
