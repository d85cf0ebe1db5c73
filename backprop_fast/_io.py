"""Small file helpers shared by the exporters and the command line."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left
    as it was. ``mode`` is "wb" or "w" (then ``kwargs`` go to ``open``, e.g.
    ``newline=""``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".backprop_fast-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
