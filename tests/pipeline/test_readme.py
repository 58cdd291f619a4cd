"""README.md runs as written: after the two set-up commands, every block, in order, each in
a fresh ``bash`` of a new user (a plain PATH without ``.venv``, the top of a checkout as the
working directory, a clean environment), Python blocks saved as scripts and run with
``.venv/bin/python`` as the README says; nothing written outside the git-ignored scratch
folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
#: the PATH of a new login shell (no virtualenv, no conda)
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: where the README's examples write (git-ignored)
SCRATCH = "scratch"


def _blocks() -> list[tuple[str, str]]:
    text = open(README).read()
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)]


def _runnable() -> list[tuple[int, str, str]]:
    """``(block number, language, code)`` of every block after the set-up block that a
    reader runs (``text`` blocks are pictures, not commands)."""
    out = [(i, lang, code) for i, (lang, code) in enumerate(_blocks(), start=1)
           if i > 1 and lang != "text"]
    assert {lang for _, lang, _ in out} <= {"python", "bash"}, "only python/bash blocks"
    return out


def test_readme_opening_is_the_setup_commands():
    text = open(README).read()
    assert text.startswith("# physkit\n\n```\nmake run\nmake test\n```\n")


def test_setup_block_targets_exist():
    """The opening block (``make run``, ``make test``) is how this suite itself is run;
    check both targets resolve to the demo and pytest without running them (``make -n``)."""
    lang, code = _blocks()[0]
    assert code.split() == ["make", "run", "make", "test"]
    for target, want in (("run", "physkit demo"), ("test", "pytest")):
        r = subprocess.run(["make", "-n", target, "STAMP=/dev/null"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and want in r.stdout, r.stderr


def test_blocks_say_how_to_reach_physkit():
    """A new shell has no ``physkit`` on its PATH: each shell block that calls it activates
    ``.venv`` first; examples write under the scratch folder, which git ignores."""
    for i, lang, code in _runnable():
        if lang == "bash" and re.search(r"^\s*(physkit|python)\b", code, re.M):
            assert code.startswith("source .venv/bin/activate\n"), f"README block {i}"
    r = subprocess.run(["git", "check-ignore", "-q", f"{SCRATCH}/x.h5"], cwd=ROOT,
                       capture_output=True, timeout=60)
    if r.returncode == 128:
        pytest.skip("not a git checkout")
    assert r.returncode == 0, f".gitignore does not cover {SCRATCH}/"


@pytest.fixture()
def checkout(tmp_path):
    """A fresh checkout as a new user has it after ``make run``: the repository's data and
    the installed ``.venv`` (the interpreter running these tests), nothing else."""
    venv = sys.prefix
    if not os.path.exists(os.path.join(venv, "bin", "physkit")):
        pytest.skip(f"{venv} has no physkit command: run the tests with .venv/bin/python "
                    f"(make test)")
    d = tmp_path / "physkit"
    d.mkdir()
    os.symlink(os.path.join(ROOT, "data"), d / "data")
    os.symlink(venv, d / ".venv")
    (tmp_path / "home").mkdir()
    return d


def _run_block(checkout, i: int, lang: str, code: str) -> None:
    """One block in a fresh ``bash`` of a new user in the checkout; a Python block is saved
    as a script (outside the checkout) and run with ``.venv/bin/python SCRIPT``."""
    cmd = code
    if lang == "python":
        script = checkout.parent / f"readme_block_{i}.py"
        script.write_text(code)
        cmd = f".venv/bin/python {script}\n"
    env = {"PATH": USER_PATH, "HOME": str(checkout.parent / "home"), "LANG": "C.UTF-8"}
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", cmd], cwd=checkout, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (f"README block {i} ({lang}) failed in a fresh shell:\n{code}\n"
                               f"--- stderr ---\n{r.stderr[-4000:]}")


def _written_outside_scratch(checkout) -> list[str]:
    out = []
    for dirpath, dirnames, files in os.walk(checkout):
        rel = os.path.relpath(dirpath, checkout)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in (SCRATCH, "data", ".venv")]
            out += [f for f in files]
        else:
            out += [os.path.join(rel, f) for f in files]
    return out


#: one line of each block the fast test runs: the Python quick start, the example files and
#: the block that lists observables and tries --stop (none needs another block's output)
FAST_MARKERS = ("Shaper([\"2-subjettiness\", \"3-subjettiness\"]).compute(events)",
                "write_events(\"scratch/train.h5\"", "physkit shape --list-observables\n")


def _fast_blocks() -> list[tuple[int, str, str]]:
    blocks = _runnable()
    out = []
    for marker in FAST_MARKERS:
        hits = [b for b in blocks if marker in b[2]]
        assert len(hits) == 1, f"README: {len(hits)} blocks hold {marker!r}"
        out += hits
    return sorted(out)


def test_readme_start_runs_as_written(checkout):
    """Fast form: the quick start, the example files and the listing block, each as
    written in a fresh shell (the slow test runs every block)."""
    blocks = _fast_blocks()
    for i, lang, code in blocks:
        _run_block(checkout, i, lang, code)
    assert os.path.exists(checkout / SCRATCH / "train.h5")
    assert os.path.exists(checkout / SCRATCH / "first50.h5")
    assert _written_outside_scratch(checkout) == []


@pytest.mark.slow
def test_every_readme_block_runs_as_written(checkout):
    """Every block, in order, each as written in a fresh shell (dask clusters, ROOT files
    and the resumed run included); nothing is written outside the scratch folder."""
    blocks = _runnable()
    assert sum(lang == "python" for _, lang, _ in blocks) >= 3
    for i, lang, code in blocks:
        _run_block(checkout, i, lang, code)
    for want in ("report/index.html", "jet_report/index.html", "both_shapes.h5"):
        assert os.path.exists(checkout / SCRATCH / want), want
    assert _written_outside_scratch(checkout) == []
