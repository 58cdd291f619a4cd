"""Isotropy's rates of several source trees side by side (:mod:`affine_flow_ab`'s alternating
subprocess runs with ``NAMES = ("isotropy",)``).

Usage (from the repository root)::

    git archive <commit> | tar -x -C /tmp/tree_a     # one exported tree per version
    .venv/bin/python bench/isotropy_ab.py /tmp/tree_a /tmp/tree_b [...] [--repeats 3]
        [--n-jets 300]

Prints, per thread count (2, 1) and tree: jets/s by wall time and threads x jets per
process-CPU second (medians of the repeats), and each later tree's values against the first's.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import affine_flow_ab  # noqa: E402

if __name__ == "__main__":
    affine_flow_ab.NAMES = ("isotropy",)
    sys.exit(affine_flow_ab.main())
