"""Compile exported MLIR with IREE: targets and flags, the project's CPU kernels, the TOSA route,
and the self-check of every artifact against the reference outputs recorded at export."""

from hrm_mlir.compiler.driver import compile_and_load, compile_module
from hrm_mlir.compiler.options import CompileOptions, Target

__all__ = ["CompileOptions", "Target", "compile_and_load", "compile_module"]
