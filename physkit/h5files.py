"""HDF5 files written whole or not at all, and cheap checks of what a file is."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_h5(path, *, track_order: bool = False, in_memory: bool = False):
    """Yield an ``h5py.File`` open for writing on a temporary file next to ``path``.

    On a clean exit the file is closed and renamed to ``path`` (atomic on one file system;
    an existing ``path`` is replaced only then); on any error the temporary file is
    removed and ``path`` is left as it was. The file gets the usual permissions
    (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.

    ``in_memory=True`` (for small files) builds the file in memory and writes its bytes
    with plain file I/O, so a full disk or a file-size limit is an ``OSError`` of that
    write; HDF5 itself never meets a failing write (after which it can crash the process
    at exit).
    """
    import h5py

    if in_memory:
        with _in_memory(path, track_order) as f:
            yield f
        return
    with _temporary_beside(path) as tmp:
        with h5py.File(tmp, "w", track_order=track_order) as f:
            yield f


@contextmanager
def _in_memory(path, track_order: bool):
    import io

    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w", track_order=track_order) as f:
        yield f
    with atomic_bytes(path) as fh:
        fh.write(buf.getbuffer())


@contextmanager
def atomic_bytes(path):
    """Yield a binary file open on a temporary file next to ``path``, renamed to ``path``
    on a clean exit and removed on any error (usual permissions, as :func:`atomic_h5`)."""
    with _temporary_beside(path) as tmp:
        with open(tmp, "wb") as fh:
            yield fh


@contextmanager
def _temporary_beside(path):
    """Yield the name of a new, empty temporary file in ``path``'s directory, with the usual
    permissions (``0o666`` less the umask); it is renamed to ``path`` on a clean exit and
    removed on any error."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def has_root_attr(path, name: str) -> bool:
    """Whether ``path`` is a readable HDF5 file whose root carries attribute ``name``."""
    import h5py

    try:
        with h5py.File(os.fspath(path), "r") as f:
            return name in f.attrs
    except OSError:
        return False
