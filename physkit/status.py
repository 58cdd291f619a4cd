"""Per-row outcome codes, one place for every layer.

:class:`Status` is what a fit reports per row (``status`` datasets, int8);
:class:`EventProblem` is why an input event was rejected (``event_problem``, int8).
"""
from __future__ import annotations

from enum import IntEnum

__all__ = ["Status", "EventProblem", "EVENT_PROBLEMS", "STATUS_MEANING",
           "MAX_ABS_RAPIDITY", "MAX_ABS_PHI"]


class Status(IntEnum):
    """Per-row outcome of a fit (stored as int8)."""

    CONVERGED = 0
    MAX_STEPS = 1
    NONFINITE = 2
    BAD_INPUT = 3  # the input row was rejected before any fit


#: one-line meaning of each :class:`Status`, as files and reports spell it
STATUS_MEANING = {
    Status.CONVERGED: "converged",
    Status.MAX_STEPS: "step limit",
    Status.NONFINITE: "non-finite",
    Status.BAD_INPUT: "bad input",
}


class EventProblem(IntEnum):
    """Why an event was rejected (0 = fine); the first problem found, in this order."""

    OK = 0
    NONFINITE = 1
    NEGATIVE_PT = 2
    LARGE_RAPIDITY = 3
    EMPTY = 4
    UNREADABLE = 5  # rows that could not be read at all (corrupt or truncated file)
    LARGE_AZIMUTH = 6  # |phi| beyond MAX_ABS_PHI on a real particle (checked before EMPTY)


#: largest |rapidity| accepted in an event (beyond it the input is almost surely garbage)
MAX_ABS_RAPIDITY = 10.0

#: largest |phi| (radians) accepted on a particle: azimuths are wrapped into (-pi, pi] when
#: read, exactly up to this size; beyond it a value is garbage (or not in radians)
MAX_ABS_PHI = 100.0

#: message of each :class:`EventProblem`
EVENT_PROBLEMS = {
    EventProblem.OK: "ok",
    EventProblem.NONFINITE: "non-finite value (NaN or inf)",
    EventProblem.NEGATIVE_PT: "negative pT",
    EventProblem.LARGE_RAPIDITY: f"|y| > {MAX_ABS_RAPIDITY:g}",
    EventProblem.EMPTY: "event has no particles",
    EventProblem.UNREADABLE: "unreadable rows (corrupt or truncated file)",
    EventProblem.LARGE_AZIMUTH: f"|phi| > {MAX_ABS_PHI:g}",
}
