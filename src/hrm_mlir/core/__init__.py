"""What every stage shares: the errors, the choice enums, atomic writes, the tolerance table."""

from hrm_mlir.core.errors import (
    CheckpointError,
    CompileError,
    ExportError,
    HrmMlirError,
    PuzzleError,
    RuntimeFailure,
    VerificationError,
)
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.core.numerics import TOLERANCES, Tolerance
from hrm_mlir.core.types import DType, Entry, OutputType

__all__ = [
    "TOLERANCES",
    "CheckpointError",
    "CompileError",
    "DType",
    "Entry",
    "ExportError",
    "HrmMlirError",
    "OutputType",
    "PuzzleError",
    "RuntimeFailure",
    "Tolerance",
    "VerificationError",
    "write_atomic",
]
