"""Seeds: every random step of FINDER draws from one ``random_state`` (scikit-learn's rules)."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["int_seed", "member_seed"]


def int_seed(random_state) -> int:
    """An int seed for the random sub-steps of one fit (folds, splits, landmarks, torch).

    ``random_state`` as scikit-learn takes it (:func:`sklearn.utils.check_random_state`): an
    int is used as it is; a ``np.random.RandomState`` gives one draw (two estimators built
    with ``RandomState(0)`` fit identically); None draws from numpy's global generator (so
    ``np.random.seed`` makes the fit repeatable).
    """
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def member_seed(seed: int, i: int) -> int:
    """Seed of ensemble member ``i`` of a fit seeded ``seed``: member 0 uses ``seed`` itself
    (a one-member ensemble is the plain fit), the others independent streams
    (:class:`numpy.random.SeedSequence`)."""
    if i == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**32, int(i)]).generate_state(1)[0]
               % (2**31 - 1))
