"""Errors raised on bad input, with the file, dataset and event they concern."""
from __future__ import annotations

import os


class EventFileError(ValueError):
    """Bad or unreadable event data.

    The message names the file, the dataset and the first offending event index
    (when known), e.g. ``jets.h5: dataset 'constituents': event 17: negative pT``.
    """

    def __init__(self, reason: str, path=None, dataset: str | None = None,
                 event: int | None = None):
        self.reason = reason
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
        parts.append(reason)
        super().__init__(": ".join(parts))
