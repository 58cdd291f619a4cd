"""The ``physkit`` command line: the batch pipeline SHAPER observables -> FINDER scores.

Subcommands (``physkit CMD --help`` for each; one module each in
:mod:`physkit.pipeline.commands`):

``shape``        SHAPER observables of every event into a results file
``finder fit``   fit a FINDER classifier / residual detector on features, save a model file
``score``        score events with a model file into a results file
``report``       PNG plots and an index.html from a results file
``demo``         the bundled sample through SHAPER and FINDER (``make run``)
``info``         describe an event, results or model file (or a partial run)

Long runs are chunked (``--chunk-size``), written chunk by chunk to ``OUT.partial/``,
resumable (``--resume``) and can run on dask (``--scheduler local:N | tcp://HOST:PORT``).
shaper and finder are imported lazily, only by the commands that use them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import EventFileError
from .errors import CommandError, describe_exception, print_error

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``physkit`` argument parser with every subcommand."""
    from .. import __version__
    from .commands import COMMANDS

    p = argparse.ArgumentParser(
        prog="physkit",
        description="Batch pipeline: SHAPER jet-shape observables and FINDER scores on HDF5 "
                    "event files, chunked, resumable, in-process or on dask.",
        epilog="examples:\n  physkit demo\n  physkit shape --list-observables\n"
               "  physkit shape jets.h5 -o shapes.h5 --observable 3-subjettiness --stop 1000\n"
               "\n'physkit COMMAND --help' describes each command, with examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"physkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    p.set_defaults(entry_point=main)  # handed to commands that run others (demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physkit`` console script; returns the exit status."""
    from .modelfile import ModelFileError
    from .results import ResultsFormatError

    args = build_parser().parse_args(argv)
    _write_errors_not_signals()
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print_error(str(exc))
    except (EventFileError, ModelFileError, ResultsFormatError) as exc:
        print_error(str(exc))
    except OSError as exc:  # a missing file, permissions, a full disk
        print_error(describe_exception(exc))
    except BrokenPipeError:  # e.g. `physkit info FILE | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print_error("interrupted (completed chunks are kept; rerun with --resume)")
        return 130
    return 1


def _write_errors_not_signals() -> None:
    """Make a write beyond the file-size limit (``ulimit -f``) fail with an error (EFBIG)
    the writers report, instead of SIGXFSZ killing the process mid-write."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread (main() called from a thread)
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
