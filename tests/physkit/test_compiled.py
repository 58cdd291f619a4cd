"""physkit.compiled.jit: cached kernels follow changes of the kernels they call."""
import os
import subprocess
import sys
import textwrap

from physkit.compiled import sources_digest

CALLER = textwrap.dedent("""
    from physkit.compiled import jit
    from .callee import value

    @jit
    def twice():
        return 2 * value()
""")
CALLEE = textwrap.dedent("""
    from physkit.compiled import jit

    @jit
    def value():
        return {}
""")


def _run(root):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.getcwd()]))
    out = subprocess.run([sys.executable, "-c", "from kernels.caller import twice; print(twice())"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_a_cached_caller_sees_its_callees_change(tmp_path):
    """numba alone keys a kernel's cache on its own file: after the callee's module changed, a
    new process would load the caller compiled against the old callee (2 * 1 instead of 2 * 5)."""
    pkg = tmp_path / "kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "caller.py").write_text(CALLER)
    (pkg / "callee.py").write_text(CALLEE.format(1))
    assert _run(tmp_path) == 2
    assert _run(tmp_path) == 2  # from the cache
    (pkg / "callee.py").write_text(CALLEE.format(5))
    assert _run(tmp_path) == 10


def test_sources_digest_follows_contents_not_order(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    d = sources_digest([str(a), str(b)])
    assert sources_digest([str(b), str(a)]) == d
    b.write_text("y = 3\n")
    assert sources_digest([str(a), str(b)]) != d


def test_refcount_false_is_dropped_where_numba_lacks_the_option(monkeypatch):
    """``jit(refcount=False)`` maps to numba's ``_nrt=False`` only where numba knows it: a
    numba without that option would otherwise fail every such kernel at its first call."""
    import physkit.compiled as compiled
    seen = {}

    def fake_njit(**options):
        seen.update(options)
        return lambda f: f

    monkeypatch.setattr(compiled.numba, "njit", fake_njit)
    monkeypatch.setattr(compiled, "_key_on_kernel_sources", lambda *a: None)
    monkeypatch.setattr(compiled, "numba_has_option", lambda name: False)
    compiled.jit(refcount=False)(lambda x: x)
    assert "_nrt" not in seen and seen["nogil"]
    monkeypatch.setattr(compiled, "numba_has_option", lambda name: True)
    compiled.jit(refcount=False)(lambda x: x)
    assert seen["_nrt"] is False


def test_a_kernel_without_refcounts_computes_the_same():
    import numpy as np
    from physkit.compiled import jit

    @jit(refcount=False)
    def total(a):
        s = 0.0
        for v in a:
            s += v
        return s

    a = np.arange(10.0)
    assert total(a) == a.sum()
