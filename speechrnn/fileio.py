"""Safe file handling shared by every stage and command.

Inputs: :func:`input_problem` says in words why a path cannot be read as a file (a URL, a
named pipe, a symbolic link loop, a directory, a missing or unreadable file), so each loader
raises its own error with the same clear reason instead of hanging on a FIFO or printing
``https:/...: no such file``.

Outputs: :class:`OutputFiles` writes each file under a temporary name in its own folder and
renames all of them into place only when every one is complete, so a failure (disk full,
an exception, Ctrl-C) leaves the previous results whole and no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # also "https:/x", what Path makes of a URL


class OutputError(OSError):
    """A file could not be written; the message names it. Partial files are removed."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot write {path}: {reason}")
        self.path = str(path)


def input_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, in words; None when it can."""
    text = str(path)
    if _URL.match(text) and not Path(text).exists():
        return "is a URL; only local files are read (download it first)"
    try:
        status = os.stat(text)
    except FileNotFoundError:
        if os.path.islink(text):
            return "is a broken symbolic link"
        return "no such file"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be opened ({error.strerror})"
    if stat.S_ISDIR(status.st_mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(status.st_mode):
        return "is a named pipe (FIFO), not a regular file"
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file (a device or socket)"
    if not os.access(text, os.R_OK):
        return "is not readable (permission denied)"
    return None


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


class _NamedHandle:
    """A file handle whose write errors name the file being made (its final path, not the
    temporary one) as :class:`OutputError`; everything else is the handle's own."""

    def __init__(self, handle: IO, target: Path):
        self._handle, self._target = handle, target

    def write(self, data):
        try:
            return self._handle.write(data)
        except OSError as error:
            raise OutputError(self._target, error.strerror or str(error)) from None

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


class OutputFiles:
    """A set of output files committed together: ``open`` hands out handles on temporary
    names; leaving the ``with`` block normally renames them all into place, an exception
    removes them (the targets keep their old content).

    >>> with OutputFiles() as out:            # doctest: +SKIP
    ...     out.open("run/hyp.trn").write("a (u1)\\n")
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, IO]] = []

    def open(self, path: str | Path, binary: bool = False) -> IO:
        target = Path(path)
        if target.is_dir():
            raise OutputError(target, "is a directory")
        temporary = _temporary_name(target)
        try:
            handle = open(temporary, "wb") if binary else open(temporary, "w", encoding="utf-8")
        except OSError as error:
            raise OutputError(target, error.strerror or str(error)) from None
        self._pending.append((target, temporary, handle))
        return _NamedHandle(handle, target)

    def write(self, path: str | Path, data: str | bytes) -> None:
        self.open(path, binary=isinstance(data, bytes)).write(data)

    def commit(self) -> None:
        for target, _, handle in self._pending:
            self._guarded(target, handle.close)
        for target, temporary, _ in self._pending:
            self._guarded(target, os.replace, temporary, target)
        self._pending.clear()

    def discard(self) -> None:
        for _, temporary, handle in self._pending:
            try:
                handle.close()
            except OSError:
                pass  # the file is being removed; a failed flush changes nothing
            temporary.unlink(missing_ok=True)
        self._pending.clear()

    def _guarded(self, target, action, *args):
        try:
            return action(*args)
        except OutputError:
            raise
        except OSError as error:
            self.discard()
            raise OutputError(target, error.strerror or str(error)) from None

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


@contextmanager
def atomic_open(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """One file written under a temporary name and renamed into place when complete; an
    OSError while writing becomes :class:`OutputError` naming ``path``."""
    with OutputFiles() as out:
        yield out.open(path, binary)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` all or nothing."""
    with OutputFiles() as out:
        out.write(path, data)
