"""What the kernel tests share: compiling MLIR for this CPU and calling its @main, and the
error measure they check the kernels with."""

from __future__ import annotations

import numpy as np
from iree import runtime as rt
from iree.compiler import tools


def call_main(source: str, *args: np.ndarray) -> np.ndarray:
    """Compile MLIR `source` for this CPU and call its @main."""
    vmfb = tools.compile_str(
        source, target_backends=["llvm-cpu"], extra_args=["--iree-llvmcpu-target-cpu=host"]
    )
    config = rt.Config("local-task")
    ctx = rt.SystemContext(config=config)
    ctx.add_vm_module(rt.VmModule.copy_buffer(config.vm_instance, vmfb))
    return np.asarray(ctx.modules.module["main"](*args).to_host())


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))
