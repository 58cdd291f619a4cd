"""physkit.pipeline: the application layer over SHAPER and FINDER.

The command line (:mod:`~physkit.pipeline.cli`, one module per subcommand in
:mod:`~physkit.pipeline.commands`), feature specifications and the pure chunk functions
(:mod:`~physkit.pipeline.features`), chunked resumable runs (:mod:`~physkit.pipeline.runner`),
results files (:mod:`~physkit.pipeline.results`), model files
(:mod:`~physkit.pipeline.modelfile`), the HTML report (:mod:`~physkit.pipeline.report`), file
descriptions (:mod:`~physkit.pipeline.info`) and the demo (:mod:`~physkit.pipeline.demo`).

This is the only part of physkit that imports ``shaper`` or ``finder`` (an import-linter
contract in pyproject.toml checks it). Submodules load lazily::

    from physkit.pipeline import read_results, load_model
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "main": "physkit.pipeline.cli",
    "read_results": "physkit.pipeline.results",
    "result_groups": "physkit.pipeline.results",
    "results_settings": "physkit.pipeline.results",
    "save_model": "physkit.pipeline.modelfile",
    "load_model": "physkit.pipeline.modelfile",
    "make_report": "physkit.pipeline.report",
    "map_chunks": "physkit.parallel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'physkit.pipeline' has no attribute {name!r}")
