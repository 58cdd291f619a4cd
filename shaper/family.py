"""Nested families of SHAPER observables, parsed once from an observable's name.

A single-shape observable ``"<n>-<kind>"`` (optionally ``"+pileup"``) belongs to the family
``Family(kind, n, pileup)``: ``"3-subjettiness"`` is ``Family("subjettiness", 3)``,
``"2-point-diskiness+pileup"`` is ``Family("point-diskiness", 2, pileup=True)``, ``"isotropy"``
is ``Family("isotropy", 0)``. Members are nested: the optimum of ``n - 1`` prongs (new prong
with zero weight) and that of the observable without pileup (pileup fraction 0) are points
of the larger manifold, so :class:`shaper.Shaper` uses them as starting points.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

__all__ = ["Family", "KINDS", "ISOTROPY", "PILEUP"]

#: shape kinds with ``n`` prongs (``"<n>-<kind>"``), and the parameterless ``"isotropy"``
KINDS = ("subjettiness", "ringiness", "diskiness", "ellipsiness", "point-ringiness",
         "point-diskiness", "point-ellipsiness")
ISOTROPY = "isotropy"
#: suffix of an observable with a uniform pileup floor
PILEUP = "+pileup"

_NAME = re.compile(r"^(?:(\d+)-(" + "|".join(KINDS) + r")|(" + ISOTROPY + r"))"
                   + r"(?:" + re.escape(PILEUP) + r")?$")


@dataclass(frozen=True)
class Family:
    """Family of a single-shape observable.

    kind : shape kind, one of :data:`KINDS` or ``"isotropy"`` (or a user-defined kind).
    n : number of prongs (0 for isotropy).
    pileup : whether the observable has a uniform pileup floor (``"+pileup"``).
    """

    kind: str
    n: int
    pileup: bool = False

    @classmethod
    def from_name(cls, name: str) -> Optional["Family"]:
        """The family of ``name`` (e.g. ``"2-diskiness+pileup"``); None for mixtures and names
        that are not single built-in shapes."""
        m = _NAME.match(name)
        if m is None:
            return None
        pileup = name.endswith(PILEUP)
        if m.group(3) is not None:
            return cls(ISOTROPY, 0, pileup)
        return cls(m.group(2), int(m.group(1)), pileup)

    @classmethod
    def coerce(cls, family: Union["Family", Tuple[str, int]]) -> "Family":
        """A :class:`Family`, or one from the ``(kind, n)`` pair of earlier versions, where
        ``kind`` carried the ``"+pileup"`` suffix."""
        if isinstance(family, Family):
            return family
        kind, n = family
        pileup = kind.endswith(PILEUP)
        return cls(kind[:len(kind) - len(PILEUP)] if pileup else kind, int(n), pileup)

    @property
    def name(self) -> str:
        """The observable name of this member (:func:`shaper.observables.from_name` parses it)."""
        base = self.kind if self.kind == ISOTROPY else f"{self.n}-{self.kind}"
        return base + PILEUP if self.pileup else base

    def with_pileup(self) -> "Family":
        return Family(self.kind, self.n, True)

    def without_pileup(self) -> "Family":
        return Family(self.kind, self.n, False)

    def fewer(self) -> "Family":
        """The member with one prong less (``n - 1``; meaningful for ``n > 1``)."""
        return Family(self.kind, self.n - 1, self.pileup)

    def smaller(self) -> List["Family"]:
        """The nearest smaller members: without pileup (when it has pileup), then with one prong
        less (when ``n > 1``)."""
        out = []
        if self.pileup:
            out.append(self.without_pileup())
        if self.n > 1:
            out.append(self.fewer())
        return out
