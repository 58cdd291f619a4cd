"""Every code block of README.md runs (in order, in a scratch directory)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")


def _blocks() -> list[tuple[str, str]]:
    text = open(README).read()
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)]


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


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1",
                PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])


def _scratch(tmp_path, monkeypatch):
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    blocks = [(lang, code) for lang, code in _blocks()[1:] if lang != "text"]  # text: not run
    assert {lang for lang, _ in blocks} <= {"python", "bash"}, "only python/bash blocks"
    assert sum(lang == "python" for lang, _ in blocks) >= 3
    return blocks


def test_every_other_block_runs_in_process(tmp_path, monkeypatch):
    """Fast form: python blocks run with exec (a fresh namespace each), ``physkit ...``
    lines through :func:`physkit.pipeline.cli.main` (the console script's entry point), other
    shell lines in bash; all in order in one scratch directory."""
    from physkit.pipeline.cli import main

    for i, (lang, code) in enumerate(_scratch(tmp_path, monkeypatch), start=2):
        if lang == "python":
            exec(compile(code, f"README block {i}", "exec"), {"__name__": "__main__"})
            continue
        for line in code.splitlines():
            if line.startswith("physkit "):
                assert main(shlex.split(line)[1:] + ["--no-progress"] *
                            (line.split()[1] in ("shape", "score", "finder"))) == 0, line
            elif line.strip():
                r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", line],
                                   cwd=tmp_path, env=_env(), capture_output=True, text=True,
                                   timeout=120)
                assert r.returncode == 0, f"README block {i}: {line}\n{r.stderr}"
    assert os.path.exists(tmp_path / "report" / "index.html")


@pytest.mark.slow
def test_every_other_block_runs_as_written(tmp_path, monkeypatch):
    """Slow form: each block exactly as a user would run it (python / bash subprocesses)."""
    for i, (lang, code) in enumerate(_scratch(tmp_path, monkeypatch), start=2):
        cmd = ([sys.executable, "-c", code] if lang == "python"
               else ["bash", "-e", "-o", "pipefail", "-c", code])
        r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"README block {i} ({lang}) failed:\n{code}\n{r.stderr[-3000:]}"
    assert os.path.exists(tmp_path / "report" / "index.html")
