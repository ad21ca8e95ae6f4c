"""Load a compiled artifact (.vmfb) and call it, refusing one built for features this CPU lacks;
run one built for another machine (ARM64 under qemu, Vulkan) with IREE's `iree-run-module`."""

from hrm_mlir.runtime.module import WORKER_STACK_BYTES, CompiledModule, to_numpy, to_torch
from hrm_mlir.runtime.target import HOST, VULKAN_BASELINE, CpuTarget, resolve_cpu
from hrm_mlir.runtime.tool import ToolModule, open_artifact

__all__ = [
    "HOST",
    "VULKAN_BASELINE",
    "WORKER_STACK_BYTES",
    "CompiledModule",
    "CpuTarget",
    "ToolModule",
    "open_artifact",
    "resolve_cpu",
    "to_numpy",
    "to_torch",
]
