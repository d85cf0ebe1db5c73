"""Small file helpers shared by the exporters and the command line."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import IO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the portable way: set and restore at once
    os.umask(mask)
    return mask


def _target_mode(path: str) -> int:
    """Permission bits for the file that will be at ``path``: those of the
    file it replaces, or what ``open`` would give a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _naming(exc: OSError, path: str) -> OSError:
    """``exc`` with the user's path in place of the temporary file's name."""
    return type(exc)(exc.errno, exc.strerror, path) if exc.errno else exc


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left
    as it was. ``mode`` is "wb" or "w" (then ``kwargs`` go to ``open``, e.g.
    ``newline=""``).

    A file that is replaced keeps its permission bits; a new file gets
    ``0o666`` less the umask, as ``open`` would give it. A symbolic link is
    followed: the file it points to is replaced and the link stays. Errors
    about the folder or the final rename name ``path``, not the temporary
    file.
    """
    given = os.fspath(path)
    path = os.path.realpath(given)
    folder = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".backprop_fast-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _naming(exc, given) from None
    try:
        try:
            os.chmod(tmp, _target_mode(path))
        except OSError:  # a file system without permission bits: keep mkstemp's
            pass
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, given) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
