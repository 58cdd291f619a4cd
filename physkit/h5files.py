"""HDF5 files written whole or not at all, and cheap checks of what a file is."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_h5(path, *, track_order: bool = False):
    """Yield an ``h5py.File`` open for writing on a temporary file next to ``path``.

    On a clean exit the file is closed and renamed to ``path`` (atomic on one file system;
    an existing ``path`` is replaced only then); on any error the temporary file is
    removed and ``path`` is left as it was. The file gets the usual permissions
    (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    import h5py

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with h5py.File(tmp, "w", track_order=track_order) as f:
            yield f
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
