"""The subcommands of ``physkit``: one module each, with ``add_parser(subparsers)`` and
``run(args) -> exit status``. :mod:`physkit.pipeline.cli` assembles them."""
from __future__ import annotations

from . import demo, fit, info, report, score, search, shape

#: subcommand modules in the order ``physkit --help`` lists them
COMMANDS = (shape, fit, search, score, report, demo, info)

__all__ = ["COMMANDS"]
