"""JSON text stored in files (HDF5 attributes), parsed within bounds.

The size and the nesting depth are checked before parsing, so a crafted attribute (a
100 000-deep list, megabytes of text) gives a ``ValueError`` with a short reason instead
of a ``RecursionError`` or a long parse.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "nesting_depth", "load_json"]

#: deepest nesting of lists / objects accepted
MAX_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings ignored)."""
    b = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(b, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max()) if step.size else 0


def load_json(text: str, *, max_chars: int, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)`` if ``text`` has at most ``max_chars`` characters and nests at
    most ``max_depth`` deep; otherwise, or for malformed JSON, ``ValueError`` (one line)."""
    if len(text) > max_chars:
        raise ValueError(f"JSON text of {len(text)} characters (at most {max_chars})")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} deep (at most {max_depth})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"malformed JSON ({' '.join(str(exc).split())})") from None
