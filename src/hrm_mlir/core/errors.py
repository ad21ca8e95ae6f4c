"""The one exception family of hrm-mlir.

Every error a user can cause (a bad checkpoint, a bad flag, a failed compile) is an
`HrmMlirError`. The CLI prints its message on one line and exits non-zero; `--debug` shows the
trace. Programming errors stay ordinary Python exceptions.
"""

from __future__ import annotations


def first_line(e: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error; `default` (or the
    exception's type name) when the message is empty."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else default if default is not None else type(e).__name__


class HrmMlirError(Exception):
    """Base class of every user-facing error."""


class CheckpointError(HrmMlirError):
    """The checkpoint directory, its config or its weights are unusable."""


class ExportError(HrmMlirError):
    """torch.export or the torch-mlir lowering failed."""


class CompileError(HrmMlirError):
    """iree-compile (or an MLIR pass pipeline before it) failed."""


class RuntimeFailure(HrmMlirError):
    """Loading or invoking a compiled module failed."""


class VerificationError(HrmMlirError):
    """Compiled outputs differ from PyTorch beyond tolerance."""


class PuzzleError(HrmMlirError):
    """A puzzle file could not be parsed or encoded."""


class UnwritableOutput(HrmMlirError, OSError):
    """An output's directory refuses new files (read-only, permissions, /proc). An OSError too,
    for callers to whom writing is best effort (the artifact cache)."""
