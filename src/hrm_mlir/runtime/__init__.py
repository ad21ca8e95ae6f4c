"""Load a compiled artifact (.vmfb) and call it, refusing one built for features this CPU lacks."""

from hrm_mlir.runtime.module import WORKER_STACK_BYTES, CompiledModule, to_numpy, to_torch
from hrm_mlir.runtime.target import HOST, CpuTarget, resolve_cpu

__all__ = [
    "HOST",
    "WORKER_STACK_BYTES",
    "CompiledModule",
    "CpuTarget",
    "resolve_cpu",
    "to_numpy",
    "to_torch",
]
