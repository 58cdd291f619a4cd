"""Annealed Langevin noise and learning-rate schedules for :func:`physkit.flow.minimize`.

Convention (Euler-Maruyama step of ``dw = -grad L dt + sqrt(2 T(t)) dW`` with time step ``h``):
after the optimizer step, every active parameter gets ``sqrt(2 * h * T(t)) * xi``, ``xi ~ N(0, 1)``
i.i.d., where ``h`` is the effective learning rate of that parameter at step ``t`` (``lr`` times the
``schedule`` factor), then the constraint projection is applied. For ``optimizer="gd"`` this is exactly
the overdamped Langevin dynamics at temperature ``T``; with Adam/Nesterov it is the same additive noise.

Temperature schedules (``t`` = step index from 0, ``T0`` the initial temperature):

- ``"exp"``:    ``T(t) = T0 * exp(-decay * t)``
- ``"linear"``: ``T(t) = T0 * max(0, 1 - decay * t)``
- ``"log"``:    ``T(t) = T0 / (1 + decay * log(1 + t))``
- callable ``f``: ``T(t) = T0 * f(t)``

Noise is switched off once ``T(t) < cutoff * T0`` (default ``cutoff = 1e-3``): from then on ``T = 0``.
``decay=None`` picks the rate so that the cutoff is reached at ``fraction * steps`` (default half the
run), leaving the rest of the run as a plain deterministic flow that settles into the basin found.
While noise is on, rows are not declared converged (noisy loss differences say nothing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

__all__ = ["Annealing", "lr_factor"]


@dataclass
class Annealing:
    """Annealed Langevin noise: ``Annealing(T0, schedule="exp", decay=None, seed=None)``.

    ``seed`` seeds a private ``torch.Generator`` (on the parameters' device) when :func:`minimize` is
    given no ``generator`` (a ``generator`` passed to :func:`minimize` must live on that device); with
    the same seed (or generator state) a run is bit-for-bit reproducible on the same device. Noise is
    drawn for the full batch every step and index-selected, so a row's noise does not depend on which
    other rows are still active.
    """

    T0: float
    schedule: Union[str, Callable[[int], float]] = "exp"
    decay: Optional[float] = None
    seed: Optional[int] = None
    cutoff: float = 1e-3
    fraction: float = 0.5

    def __post_init__(self):
        if not (self.T0 >= 0.0 and math.isfinite(self.T0)):
            raise ValueError(f"Annealing: T0 must be finite and >= 0, got {self.T0}")
        if isinstance(self.schedule, str) and self.schedule not in ("exp", "linear", "log"):
            raise ValueError(f"Annealing: unknown schedule {self.schedule!r} (exp, linear, log or a callable)")
        if not (0.0 < self.cutoff < 1.0):
            raise ValueError("Annealing: cutoff must be in (0, 1)")

    def resolved_decay(self, steps: int) -> float:
        """The decay rate used for a run of ``steps`` steps (``decay`` if given)."""
        if self.decay is not None:
            return float(self.decay)
        horizon = max(1.0, self.fraction * steps)
        if self.schedule == "exp":
            return math.log(1.0 / self.cutoff) / horizon
        if self.schedule == "linear":
            return 1.0 / horizon
        if self.schedule == "log":
            return (1.0 / self.cutoff - 1.0) / math.log1p(horizon)
        return 0.0

    def temperature(self, t: int, steps: int) -> float:
        """``T(t)`` (0 once below ``cutoff * T0``)."""
        if self.T0 == 0.0:
            return 0.0
        d = self.resolved_decay(steps)
        if callable(self.schedule):
            f = float(self.schedule(t))
        elif self.schedule == "exp":
            f = math.exp(-d * t)
        elif self.schedule == "linear":
            f = max(0.0, 1.0 - d * t)
        else:
            f = 1.0 / (1.0 + d * math.log1p(t))
        if f < self.cutoff:
            return 0.0
        return self.T0 * f


def lr_factor(schedule, t: int, steps: int) -> float:
    """Learning-rate factor at step ``t``.

    ``None`` -> 1; ``"cosine"`` -> ``0.5 * (1 + cos(pi * t / steps))``;
    ``"exp"`` -> ``0.01 ** (t / steps)`` (down to 1 % at the end); a callable ``f`` -> ``f(t)``.
    """
    if schedule is None:
        return 1.0
    if callable(schedule):
        return float(schedule(t))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / max(1, steps)))
    if schedule == "exp":
        return 0.01 ** (t / max(1, steps))
    raise ValueError(f"unknown lr schedule {schedule!r} (None, 'cosine', 'exp' or a callable step -> factor)")
