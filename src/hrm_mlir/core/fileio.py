"""Atomic file output: a reader never sees a partial file, even after Ctrl-C; and the check
that an output can be written, made before the slow work that produces it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from hrm_mlir.core.errors import HrmMlirError, UnwritableOutput


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only when the block succeeds.

    For writers that take a file name (IREE's archive writer) rather than a file object.
    """
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave a partial file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block completes without error."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write bytes (or let `data(f)` write) to `path` atomically; returns the path."""
    with atomic_output(path) as f:
        if callable(data):
            data(f)
        else:
            f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`, renamed to `path` only when the block
    succeeds; `path` must not exist yet, or be an empty directory (checked before the block)."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise HrmMlirError(f"{path}: already exists; remove it or choose another output")
    _check_parent(path, path.parent)
    tmp = _temp_in(path.parent, path, directory=True)
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            path.rmdir()
        os.rename(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave a partial directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(*paths: str | Path | None, directory: bool = False) -> None:
    """Fail now, before the slow work, where an output could not be written at its end.

    Each of `paths` (None ones skipped) must be a file path whose directory exists and takes
    new files (a file is created there and removed); with `directory`, a directory that exists
    and takes new files, or that `mkdir -p` can make in one that does.

    Raises:
        HrmMlirError: one line naming the path and the problem.
    """
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if not directory:
            os.unlink(_temp_beside(path))
            continue
        if path.exists() and not path.is_dir():
            raise HrmMlirError(f"{path}: not a directory, expected an output directory")
        where = path
        while not where.exists():  # mkdir -p makes the rest
            where = where.parent
        _check_parent(path, where)
        os.rmdir(_temp_in(where, path, directory=True))


def read_input(path: str | Path, what: str) -> bytes:
    """The bytes of an input file, or an `HrmMlirError` naming it: "PATH: no such WHAT", or
    "PATH: cannot read the WHAT: REASON"."""
    path = Path(path)
    if not path.is_file():
        raise HrmMlirError(f"{path}: no such {what}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise HrmMlirError(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def _check_parent(path: Path, parent: Path) -> None:
    if parent.exists() and not parent.is_dir():
        raise HrmMlirError(f"{path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise HrmMlirError(f"{path}: output directory {parent} does not exist")


def _temp_beside(path: Path) -> Path:
    """A new empty file beside the output file `path`, checked to be a possible one."""
    if path.is_dir():
        raise HrmMlirError(f"{path}: is a directory, expected an output file path")
    _check_parent(path, path.parent)
    return _temp_in(path.parent, path)


def _temp_in(parent: Path, path: Path, *, directory: bool = False) -> Path:
    """A new temporary file (or directory) in `parent` for the output `path`; an OSError
    (read-only, permissions, a directory such as /proc that takes no new files) becomes one
    line naming `path`."""
    prefix, suffix = f".{path.name}.", ".tmp"
    try:
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    except OSError as e:
        why = "it takes no new files" if e.errno == errno.ENOENT else e.strerror or str(e)
        raise UnwritableOutput(f"{path}: cannot write in {parent}: {why}") from None
    os.close(fd)
    return Path(tmp)
