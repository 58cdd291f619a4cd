"""One decorator for physkit's and SHAPER's numba kernels.

:func:`jit` is ``numba.njit(cache=True, nogil=True, **options)``: each kernel compiles on its
first call and is cached next to its source for later processes, and it runs released from
the GIL, so threads run kernels side by side. Where numba finds no writable cache directory
it warns and compiles in each process instead of failing.

numba keys a kernel's cache on its own source file only, so a cached kernel that calls a
kernel of another module would keep running the old callee after that module changed. The
caches of :func:`jit` are therefore also keyed on :func:`kernel_sources_digest`: the sources of
every kernel module of physkit and of the kernel's own top-level package (the ``.py`` files
that import a ``jit`` decorator). Any change to one of them recompiles all kernels.

``jit(refcount=False)`` compiles a kernel without numba's reference counting (numba's
``_nrt=False``, outside its documented options): for small helpers that allocate nothing and
are called per pivot or per particle with array arguments, where the counts on each call cost
more than the arithmetic. numba compiles a kernel's callees in the caller's context, so such
a kernel may only call kernels that allocate nothing either (numba otherwise refuses to
compile it: "NRT required but not enabled"). Where the installed numba has no such option the
kernel is compiled with reference counting (same numbers, slower).
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings
from functools import lru_cache
from typing import Iterable, List

import numba

__all__ = ["jit", "kernel_sources_digest", "numba_has_option", "sources_digest"]

#: a module whose source contains this imports a jit decorator: it holds kernels
_KERNEL_MARK = b"import jit"


def jit(fn=None, *, refcount: bool = True, **options):
    """``numba.njit(cache=True, nogil=True, **options)(fn)``, as a decorator with or without
    options; without the on-disk cache (a ``RuntimeWarning``) where numba cannot write one;
    ``refcount=False``: without reference counting where numba offers it (module docstring)."""
    if fn is None:
        return lambda f: jit(f, refcount=refcount, **options)
    if not refcount and numba_has_option("_nrt"):
        options["_nrt"] = False
    try:
        dispatcher = numba.njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
        warnings.warn(f"numba cannot cache {fn.__name__} ({err}); compiling in this process",
                      RuntimeWarning, stacklevel=2)
        return numba.njit(nogil=True, **options)(fn)
    _key_on_kernel_sources(dispatcher, fn.__module__)
    return dispatcher


@lru_cache(maxsize=None)
def numba_has_option(name: str) -> bool:
    """Whether the installed numba's CPU target knows the compile option ``name``."""
    from numba.core import cpu
    return hasattr(cpu.CPUTargetOptions, name)


def sources_digest(paths: Iterable[str]) -> bytes:
    """sha256 over the contents of the files ``paths`` (in sorted order, each with its name)."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.digest()


@lru_cache(maxsize=None)
def kernel_sources_digest(module: str) -> bytes:
    """:func:`sources_digest` of the kernel modules of physkit and of ``module``'s top-level
    package (``"shaper.point_kernel"``: shaper's)."""
    roots = {os.path.dirname(os.path.abspath(__file__))}  # physkit/
    package = sys.modules.get(module.split(".")[0])
    if getattr(package, "__file__", None):
        roots.add(os.path.dirname(os.path.abspath(package.__file__)))
    return sources_digest(set(_kernel_files(roots)) | {os.path.abspath(__file__)})


def _kernel_files(roots: Iterable[str]) -> List[str]:
    out = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        if _KERNEL_MARK in f.read():
                            out.append(path)
    return out


def _key_on_kernel_sources(dispatcher, module: str) -> None:
    """Add :func:`kernel_sources_digest` to the stamp numba checks before using a cached
    kernel (numba's own stamp: the kernel's source file). numba internals: where they differ,
    numba's own stamp stays."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    stamp = getattr(cache_file, "_source_stamp", None)
    if stamp is not None:
        cache_file._source_stamp = (stamp, kernel_sources_digest(module))
