"""One decorator for physkit's and SHAPER's numba kernels.

:func:`jit` is ``numba.njit(cache=True, nogil=True, **options)``: each kernel compiles on its
first call and is cached next to its source for later processes, and it runs released from
the GIL, so threads run kernels side by side. Where numba finds no writable cache directory
it warns and compiles in each process instead of failing.
"""
from __future__ import annotations

import warnings

import numba

__all__ = ["jit"]


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, **options)(fn)``, as a decorator with or without
    options; without the on-disk cache (a ``RuntimeWarning``) where numba cannot write one."""
    if fn is None:
        return lambda f: jit(f, **options)
    try:
        return numba.njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
        warnings.warn(f"numba cannot cache {fn.__name__} ({err}); compiling in this process",
                      RuntimeWarning, stacklevel=2)
        return numba.njit(nogil=True, **options)(fn)
