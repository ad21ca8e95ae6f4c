"""Compile exported MLIR with IREE: targets and flags, the project's CPU kernels, the TOSA route,
and the self-check of every artifact against the reference outputs recorded at export.

The names below are imported on first use: the command line reads `Target` from
`hrm_mlir.compiler.options` on a machine with IREE's runtime but no compiler (`hrm-mlir kit run`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hrm_mlir.compiler.driver import compile_and_load, compile_module
    from hrm_mlir.compiler.options import CompileOptions, Target

_PUBLIC = {
    "CompileOptions": "options",
    "Target": "options",
    "compile_and_load": "driver",
    "compile_module": "driver",
}
__all__ = ["CompileOptions", "Target", "compile_and_load", "compile_module"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
