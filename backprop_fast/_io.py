"""Small file helpers shared by the exporters and the command line."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import IO, Dict, Iterator, Tuple, Union

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


class StagedFiles:
    """Files written beside their destinations and moved into place together.

    ``reserve(path)`` creates a temporary file in ``path``'s folder at once
    (so a missing or read-only folder fails before any work is done),
    ``open(path)`` writes it, and ``commit()`` moves every staged file onto
    its destination. Leaving the ``with`` block without ``commit`` (an
    exception, say) removes the temporary files and leaves every
    destination as it was: a failed run changes no output.

    A file that is replaced keeps its permission bits; a new file gets
    ``0o666`` less the umask, as ``open`` would give it. A symbolic link is
    followed: the file it points to is replaced and the link stays. Errors
    about the folder or the final rename name the given path, not the
    temporary file.
    """

    def __init__(self) -> None:
        self._staged: Dict[str, Tuple[str, str]] = {}  # given path -> (temporary, target)

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def reserve(self, path: PathLike) -> None:
        """Create the temporary file for ``path`` (an OSError names ``path``)."""
        given = os.fspath(path)
        if given in self._staged:
            return
        target = os.path.realpath(given)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".backprop_fast-", suffix=".tmp",
                                       dir=os.path.dirname(target))
        except OSError as exc:
            raise _naming(exc, given) from None
        os.close(fd)
        self._staged[given] = (tmp, target)
        try:
            os.chmod(tmp, _target_mode(target))
        except OSError:  # a file system without permission bits: keep mkstemp's
            pass

    @contextlib.contextmanager
    def open(self, path: PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
        """Write the temporary file of ``path`` (reserving it first if needed)."""
        self.reserve(path)
        tmp = self._staged[os.fspath(path)][0]
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> None:
        """Move every staged file onto its destination."""
        while self._staged:
            given, (tmp, target) = next(iter(self._staged.items()))
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _naming(exc, given) from None
            del self._staged[given]

    def discard(self) -> None:
        """Remove the temporary files not yet moved into place."""
        for tmp, _ in self._staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged.clear()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left
    as it was. ``mode`` is "wb" or "w" (then ``kwargs`` go to ``open``, e.g.
    ``newline=""``). Permission bits, symbolic links and error messages are
    handled as by :class:`StagedFiles`.
    """
    with StagedFiles() as staged:
        with staged.open(path, mode, **kwargs) as fh:
            yield fh
        staged.commit()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
