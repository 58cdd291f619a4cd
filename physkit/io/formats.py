"""The table of event-file readers, and the one detection step that picks a reader.

:data:`READERS` maps each format name to its reader class; detection asks the
readers in table order. To add a layout, write a reader
module (an :class:`~physkit.io.reader.EventReader` with its
:class:`~physkit.io.reader.Container`) and add it to :data:`READERS`.

Detection opens the file once: the first container that recognises the file (the
catch-all HDF5 container last) opens it, and the first reader (in table order) that
claims one of the container's candidates (in the container's order) reads it, on the
same open file.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import EventFileError
from .energyflow import EnergyflowReader
from .lhco import LHCOReader
from .physkit_dense import PhyskitDenseReader
from .physkit_jagged import PhyskitJaggedReader
from .reader import Container, EventReader, PathLike
from .root import RootReader
from .top_tagging import TopTaggingReader

__all__ = ["READERS", "FORMATS", "open_events", "detect_reader", "detect_format"]

#: format name -> reader class, in detection order
READERS: dict[str, type[EventReader]] = {
    reader.format_name: reader for reader in (
        PhyskitDenseReader,
        PhyskitJaggedReader,
        EnergyflowReader,
        TopTaggingReader,
        LHCOReader,
        RootReader,
    )
}
#: the format names :func:`detect_format` returns
FORMATS = tuple(READERS)


def _containers() -> list[Container]:
    """The containers of the registered readers, catch-all ones last."""
    found: list[Container] = []
    for reader in READERS.values():
        if not any(reader.container is c for c in found):
            found.append(reader.container)
    return sorted(found, key=lambda c: c.catch_all)


def _reader_on(container: Container, handle, path: str, options: dict) -> EventReader:
    readers = [r for r in READERS.values() if r.container is container]
    if options:  # only readers that take them; else say which layouts would
        takers = [r for r in readers if set(options) <= set(r.option_names)]
        if not takers:
            _refuse_options(readers, options, path)
        readers = takers
    for candidate in container.candidates(handle, path):
        for reader in readers:
            if reader.sniff(candidate, path, **options):
                return reader(candidate, path, **options)
    raise container.unrecognised(handle, path)


def _refuse_options(readers: list[type[EventReader]], options: dict, path: str) -> None:
    """EventFileError for reader options that no reader of this file takes."""
    given = ", ".join(sorted(options))
    takers = [r.format_name for r in READERS.values() if set(options) <= set(r.option_names)]
    if takers:
        raise EventFileError(f"reader option(s) {given} apply to {' / '.join(takers)} files, "
                             f"not to this one", path)
    known = sorted({o for r in readers for o in r.option_names})
    raise EventFileError(f"unknown reader option(s) {given} (this file's readers take "
                         f"{', '.join(known) or 'none'})", path)


@contextmanager
def open_events(path: PathLike, **options: Any) -> Iterator[EventReader]:
    """The reader for the event file ``path``, on the file opened once.

    ``options``: keyword options of the file's reader (ROOT files: ``tree``,
    ``particles``, ``labels``, ``level``; see :mod:`physkit.io.root`); options the
    file's layout does not take raise :class:`EventFileError`.

    Raises FileNotFoundError for a missing file, :class:`EventFileError` for files of
    no known layout (not HDF5 / ``.npz`` / ROOT, physkit files of an unknown
    ``physkit_format`` version, HDF5 files of no known layout).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    container = next(c for c in _containers() if c.recognises(path))
    with container.open(path) as handle:
        yield _reader_on(container, handle, path, options)


def detect_reader(path: PathLike, **options: Any) -> type[EventReader]:
    """The reader class for the event file ``path`` (see :func:`open_events`)."""
    with open_events(path, **options) as reader:
        return type(reader)


def detect_format(path: PathLike, **options: Any) -> str:
    """Name of the layout of an event file, one of :data:`FORMATS`.

    Raises :class:`EventFileError` for files that are not HDF5 / ``.npz``, physkit files
    of an unknown ``physkit_format`` version, and HDF5 files of no known layout.
    """
    return detect_reader(path, **options).format_name
