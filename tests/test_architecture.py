"""The architecture holds: layering contracts, no import cycles, short functions, and the
README's Architecture section names modules that exist."""
from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("physkit", "shaper", "finder")
MAX_FUNCTION_LINES = 120


def _modules() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_import_contracts_hold():
    """import-linter's contracts in pyproject.toml (core never imports shaper/finder/pipeline,
    shaper and finder never import each other, no cycles)."""
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    if not exe.exists():  # pragma: no cover - installed by `make test`
        pytest.skip("import-linter not installed")
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]


def test_every_module_imports_alone():
    """Each module imports first, on its own (our packages dropped from sys.modules before
    each): an import cycle would show up as a partially initialised module."""
    code = (
        "import sys, importlib, torch, numpy\n"
        f"mods = {_modules()!r}\n"
        "bad = []\n"
        "for m in mods:\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] in "
        f"{PACKAGES!r}]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{m}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def test_no_function_outgrows_a_screen():
    long = []
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_readme_architecture_names_modules_that_exist():
    """Every file and folder named in the README's Architecture tree exists, so the map
    stays in sync with the code."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```text", 1)[1].split("```", 1)[0]
    names: list[str] = []
    parents: list[str] = []
    for line in tree.splitlines():
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if not body or indent > 20:  # blank, or a description's continuation line
            continue
        parents = parents[: indent // 2]
        words = re.split(r"\s{2,}", body)[0].split()
        for word in words:
            assert re.fullmatch(r"[a-z0-9_]+(\.py|/)", word), f"not a module name: {word!r}"
            names.append("/".join(parents + [word]))
        if len(words) == 1 and words[0].endswith("/"):
            parents.append(words[0].rstrip("/"))
    assert len(names) > 20, names
    missing = [n for n in names if not (ROOT / n).exists()]
    assert not missing, missing
    for pkg in ("physkit/", "physkit/io/", "physkit/ot/", "physkit/flow/", "physkit/pipeline/",
                "shaper/", "finder/"):
        assert pkg in names, pkg
