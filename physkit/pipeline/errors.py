"""How the command line reports problems: one ``physkit: error: ...`` line, exit status 1."""
from __future__ import annotations

import sys

from ..errors import EventFileError, one_line

__all__ = ["CommandError", "print_error", "describe_exception"]


class CommandError(Exception):
    """An error reported as one ``physkit: error: ...`` line and exit status 1."""


def print_error(msg: str) -> None:
    """Print ``physkit: error: msg`` on stderr, as one line."""
    print(f"physkit: error: {one_line(msg)}", file=sys.stderr, flush=True)


def describe_exception(exc: BaseException, path=None, start=None, stop=None) -> str:
    """One line for ``exc``, naming the file (and the events ``start:stop``) where known."""
    if isinstance(exc, EventFileError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or (exc.args[0] if exc.args else "")
        return f"{name}: no such file"
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else path
        return f"{name}: {exc.strerror}" if name is not None else exc.strerror
    where = f"{path}: events {start}:{stop}: " if path is not None else ""
    return f"{where}{type(exc).__name__}: {exc}"
