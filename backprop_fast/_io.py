"""Small file helpers shared by the exporters and the command line."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from typing import IO, Dict, Iterator, Optional, Union

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


_PREFIX, _SUFFIX = ".backprop_fast-", ".tmp"


def _unnamed_file(folder: str):
    """A file descriptor of a new file in ``folder`` that has no name yet
    (Linux's O_TMPFILE), so that it vanishes with the process if that is
    killed before the file is moved into place; None where the system or
    the file system cannot make one, or cannot name it later through
    /proc/self/fd."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o600)
    except OSError as exc:
        # A file system without unnamed files: fall back to a named one.
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


def _name_unnamed(fd: int, folder: str) -> str:
    """Give the unnamed file ``fd`` a fresh temporary name in ``folder``."""
    # A directory descriptor makes os.link call linkat, whose
    # AT_SYMLINK_FOLLOW reaches the file behind /proc/self/fd (plain link
    # would try to link the /proc entry itself).
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        while True:
            name = f"{_PREFIX}{secrets.token_hex(6)}{_SUFFIX}"
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
                return os.path.join(folder, name)
            except FileExistsError:
                continue
    finally:
        os.close(dir_fd)


class _Staged:
    """One staged file: an unnamed file's descriptor (``fd``) or a named
    temporary file (``tmp``), and the destination it will replace."""

    def __init__(self, target: str, fd: Optional[int], tmp: Optional[str]) -> None:
        self.target, self.fd, self.tmp = target, fd, tmp

    def discard(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


class StagedFiles:
    """Files written beside their destinations and moved into place together.

    ``reserve(path)`` creates a temporary file in ``path``'s folder at once
    (so a missing or read-only folder fails before any work is done),
    ``open(path)`` writes it, and ``commit()`` moves every staged file onto
    its destination. Leaving the ``with`` block without ``commit`` (an
    exception, say) removes the temporary files and leaves every
    destination as it was: a failed run changes no output. On Linux the
    temporary file has no name until ``commit`` (O_TMPFILE), so even a
    process killed while writing leaves nothing behind; elsewhere it is a
    hidden ``.backprop_fast-*.tmp`` file beside the destination.

    A file that is replaced keeps its permission bits; a new file gets
    ``0o666`` less the umask, as ``open`` would give it. A symbolic link is
    followed: the file it points to is replaced and the link stays. Errors
    about the folder or the final rename name the given path, not the
    temporary file.
    """

    def __init__(self) -> None:
        self._staged: Dict[str, _Staged] = {}  # by the given path

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
        folder = os.path.dirname(target)
        try:
            fd = _unnamed_file(folder)
            tmp = None
            if fd is None:
                named, tmp = tempfile.mkstemp(prefix=_PREFIX, suffix=_SUFFIX, dir=folder)
                os.close(named)
        except OSError as exc:
            raise _naming(exc, given) from None
        self._staged[given] = _Staged(target, fd, tmp)
        try:
            if fd is not None:
                os.fchmod(fd, _target_mode(target))
            elif tmp is not None:
                os.chmod(tmp, _target_mode(target))
        except OSError:  # a file system without permission bits: keep the default
            pass

    @contextlib.contextmanager
    def open(self, path: PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
        """Write the temporary file of ``path`` (reserving it first if needed)."""
        self.reserve(path)
        staged = self._staged[os.fspath(path)]
        if staged.fd is not None:
            fh = open(staged.fd, mode, closefd=False, **kwargs)
        else:
            assert staged.tmp is not None
            fh = open(staged.tmp, mode, **kwargs)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> None:
        """Move every staged file onto its destination."""
        while self._staged:
            given, staged = next(iter(self._staged.items()))
            try:
                if staged.fd is not None:
                    staged.tmp = _name_unnamed(staged.fd, os.path.dirname(staged.target))
                    os.close(staged.fd)
                    staged.fd = None
                assert staged.tmp is not None
                os.replace(staged.tmp, staged.target)
            except OSError as exc:
                raise _naming(exc, given) from None
            staged.tmp = None
            del self._staged[given]

    def discard(self) -> None:
        """Remove the temporary files not yet moved into place."""
        for staged in self._staged.values():
            staged.discard()
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
