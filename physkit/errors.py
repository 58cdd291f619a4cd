"""Errors raised on bad input, with the file, dataset and event they concern."""
from __future__ import annotations

import os

__all__ = ["EventFileError", "UnreadableRowsError", "one_line"]


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


class EventFileError(ValueError):
    """Bad or unreadable event data.

    The message names the file, the dataset and the first offending event index
    (when known), e.g. ``jets.h5: dataset 'constituents': event 17: negative pT``; it is
    always one line (library messages quoted in ``reason`` are collapsed onto it).
    """

    def __init__(self, reason: str, path=None, dataset: str | None = None,
                 event: int | None = None):
        self.reason = one_line(reason)
        self.path = os.fspath(path) if path is not None else None
        self.dataset = dataset
        self.event = None if event is None else int(event)
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if dataset is not None:
            parts.append(f"dataset '{dataset}'")
        if self.event is not None:
            parts.append(f"event {self.event}")
        parts.append(self.reason)
        super().__init__(": ".join(parts))


class UnreadableRowsError(EventFileError):
    """Rows whose stored bytes cannot be read (a corrupt or truncated chunk of an otherwise
    well-formed file). The only read error that ``--skip-bad-events`` records per row
    (:attr:`physkit.status.EventProblem.UNREADABLE`); every other :class:`EventFileError` is
    a problem of the whole file."""
