"""Load a compiled IREE module (.vmfb) and call its functions with torch tensors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
from iree import runtime as rt

from hrm_mlir.errors import RuntimeFailure, first_line
from hrm_mlir.params import SCOPE, load_index

_BF16 = np.dtype(ml_dtypes.bfloat16)
# IREE's worker threads get 128 KiB stacks by default. The default compile flags stay within
# 64 KiB of stack allocations, but `--tuned` allows 256 KiB: a 27M step at batch 16 segfaulted
# in iree-worker with `sub rsp, 0x218c0`. Give the workers room for that limit.
WORKER_STACK_BYTES = 1 << 20
rt.flags.parse_flags(f"--task_worker_stack_size={WORKER_STACK_BYTES}")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A host array IREE accepts (bf16 through ml_dtypes, which numpy lacks)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy().view(_BF16)
    return t.numpy()


def to_torch(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if a.dtype == _BF16:
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


class CompiledModule:
    """A loaded .vmfb on one IREE device.

    Args:
        vmfb: the module's bytes or path.
        driver: IREE HAL driver ("local-task" = multithreaded CPU, "cuda", "vulkan").
        parameters: for a module built with external parameters, the archive (.irpa,
            .safetensors, .gguf) or the tensors by key, served under the scope `model`.
    """

    def __init__(
        self,
        vmfb: bytes | str | Path,
        *,
        driver: str = "local-task",
        parameters: str | Path | Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        data = vmfb if isinstance(vmfb, bytes) else _read(Path(vmfb))
        # Keep the index: the provider reads the tensors it was given for as long as it lives.
        self._index = None if parameters is None else load_index(parameters)
        try:
            self._config = rt.Config(driver)
            self._context = rt.SystemContext(config=self._config)
            if self._index is not None:
                provider = self._index.create_provider(scope=SCOPE)
                io = rt.create_io_parameters_module(self._config.vm_instance, provider)
                self._context.add_vm_module(io)
            self._vm_module = rt.VmModule.copy_buffer(self._config.vm_instance, data)
            self._context.add_vm_module(self._vm_module)
        except (RuntimeError, ValueError) as e:
            if parameters is None and "'io_parameters' not registered" in str(e):
                raise RuntimeFailure(
                    "the compiled module was built with external parameters: pass its "
                    "parameter archive (--params FILE.irpa)"
                ) from None
            first = first_line(e)
            raise RuntimeFailure(f"cannot load the compiled module on {driver}: {first}") from None
        self.name = self._vm_module.name

    @property
    def function_names(self) -> list[str]:
        return sorted(f for f in self._vm_module.function_names if not f.startswith("__"))

    def reflection(self, function: str) -> dict[str, str]:
        """The function's reflection metadata (its `iree.reflection` attributes)."""
        fn = self._vm_module.lookup_function(function)
        if fn is None:
            raise RuntimeFailure(f"the compiled module has no function @{function}")
        return dict(fn.reflection)

    def call(self, function: str, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Invoke `function` and return its results as CPU tensors."""
        try:
            fn = self._context.modules[self.name][function]
        except KeyError:
            raise RuntimeFailure(
                f"the compiled module has no function @{function} "
                f"(it has: {', '.join(self.function_names)})"
            ) from None
        try:
            results = fn(*(to_numpy(a) for a in args))
        except (RuntimeError, ValueError) as e:
            raise RuntimeFailure(f"@{function} failed: {first_line(e)}") from None
        if not isinstance(results, tuple | list):
            results = (results,)
        return tuple(to_torch(np.asarray(r.to_host())) for r in results)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise RuntimeFailure(f"{path}: no such compiled module")
    return path.read_bytes()
