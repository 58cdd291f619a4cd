"""Event files: read (six layouts, auto-detected) and write (the physkit format).

Layouts read, by :func:`detect_format` name (one reader class and module each; the
table is :data:`READERS`):

``"physkit"`` (:class:`PhyskitDenseReader`, :mod:`.physkit_dense`)
    HDF5, dataset ``constituents`` ``(N, M, 3)`` (pT, y, phi) zero-padded, optional
    ``labels`` ``(N,)``, ``jets`` ``(N, 4)`` (pT, eta, phi, m), ``weights`` ``(N,)`` and
    any other per-event datasets; file attribute ``physkit_format = 1``.
``"physkit-jagged"`` (:class:`PhyskitJaggedReader`, :mod:`.physkit_jagged`)
    the same, but ``constituents`` is a group holding awkward's ``to_buffers`` form of
    records ``{pt, y, phi}`` (attributes ``form`` (JSON) and ``length``, one dataset per
    buffer). Reading ``[start, stop)`` reads only those events' offsets and values.
``"energyflow"`` (:class:`EnergyflowReader`, :mod:`.energyflow`)
    ``.npz`` with ``X`` ``(N, M, >=3)`` (pT, y, phi, ...) and labels ``y``.
``"top-tagging"`` (:class:`TopTaggingReader`, :mod:`.top_tagging`)
    the top-tagging reference data set (Kasieczka et al.): pandas HDF5 with columns
    ``E_i, PX_i, PY_i, PZ_i`` (i < 200), ``truth*``, ``ttv``, ``is_signal_new``; converted
    to (pT, y, phi). The published files hold key ``table`` in pandas' "table" format
    (``/table/table`` plus ``/table/_i_table``); "fixed" format files are read as well.
``"lhco"`` (:class:`LHCOReader`, :mod:`.lhco`)
    LHC Olympics 2020 R&D: pandas HDF5 (key ``df``, integer column names) of
    ``N x 2101`` values: (pT, eta, phi) for 700 particles, then the label; eta is used
    as y. Either pandas storage format ("fixed" or "table") is read. Rows are whole
    events (``event_level``).
``"root"`` (:class:`RootReader`, :mod:`.root`)
    ROOT TTrees through uproot (the ``root`` extra): a particle collection of list
    branches (``PFCands_pt, _eta, _phi[, _mass]``, ``px, py, pz, E``, ...); options
    ``tree``, ``particles``, ``labels``, ``level`` (default ``"event"``: whole events).

Every reader takes ``start``/``stop`` (Python slice semantics, step 1) and reads only
those rows. Each call opens the file once; :func:`open_events` gives the reader itself
for several reads on one open file. Pandas files are read with h5py alone. Bad input
raises :class:`~physkit.errors.EventFileError` naming the file, dataset and event: the
problems of a whole file (dtypes that are not real numbers, shapes, versions, labels not
one integer per event, declared sizes the stored bytes cannot hold) when its reader is
built (:meth:`EventReader.check`, metadata only), bad events when rows are validated,
unreadable rows (:class:`~physkit.errors.UnreadableRowsError`) when they are read.

Modules: :mod:`.reader` (the reader interface, :class:`EventBlock`), :mod:`.formats`
(the table and detection), :mod:`.read` (the functions below), :mod:`.write`
(:func:`write_events`); storage helpers :mod:`.containers`, :mod:`.hdf5`, :mod:`.npz`,
:mod:`.pandas_frame`; shared reader bases :mod:`.physkit_file`, :mod:`.pandas_events`.
"""
from __future__ import annotations

from .energyflow import EnergyflowReader
from .formats import FORMATS, READERS, detect_format, detect_reader, open_events
from .lhco import LHCOReader
from .physkit_dense import PhyskitDenseReader
from .physkit_file import FORMAT_VERSION
from .physkit_jagged import PhyskitJaggedReader
from .read import (count_events, read_block, read_constituents, read_dataset, read_events,
                   read_labels)
from .reader import EventBlock, EventReader
from .root import RootReader
from .top_tagging import TopTaggingReader
from .write import write_events

__all__ = ["FORMAT_VERSION", "FORMATS", "READERS", "EventBlock", "EventReader",
           "PhyskitDenseReader", "PhyskitJaggedReader", "EnergyflowReader",
           "TopTaggingReader", "LHCOReader", "RootReader", "detect_format", "detect_reader", "open_events",
           "count_events", "read_block", "read_events", "read_constituents", "read_labels",
           "read_dataset", "write_events"]
