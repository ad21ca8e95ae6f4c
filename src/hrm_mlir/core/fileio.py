"""Atomic file output: a reader never sees a partial file, even after Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from hrm_mlir.core.errors import HrmMlirError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only when the block succeeds.

    For writers that take a file name (IREE's archive writer) rather than a file object.
    """
    path = Path(path)
    if path.is_dir():
        raise HrmMlirError(f"{path}: is a directory, expected an output file path")
    if not path.parent.is_dir():
        raise HrmMlirError(f"{path}: output directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
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
    if not path.parent.is_dir():
        raise HrmMlirError(f"{path}: output directory {path.parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            path.rmdir()
        os.rename(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave a partial directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise
