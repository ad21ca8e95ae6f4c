"""Load a compiled IREE module (.vmfb) and call its functions with torch tensors or arrays.

Loading a module and calling it on numpy arrays (`call_arrays`) imports no torch: `compile`'s
self-check runs the new artifact that way.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
from iree import runtime as rt

from hrm_mlir.core.errors import CompileError, RuntimeFailure, first_line
from hrm_mlir.exporter.abi import PARAMETER_SCOPE
from hrm_mlir.runtime.target import (
    CPU_KEY,
    FEATURES_KEY,
    HOST,
    TARGET_KEY,
    TRIPLE_KEY,
    cpuinfo_features,
    host_arch,
    resolve_cpu,
    triple_arch,
)

if TYPE_CHECKING:
    import torch


_BF16 = np.dtype(ml_dtypes.bfloat16)
# IREE's worker threads get 128 KiB stacks by default. The default compile flags stay within
# 64 KiB of stack allocations, but `--tuned` allows 256 KiB: a 27M step at batch 16 segfaulted
# in iree-worker with `sub rsp, 0x218c0`. Give the workers room for that limit.
WORKER_STACK_BYTES = 1 << 20
rt.flags.parse_flags(f"--task_worker_stack_size={WORKER_STACK_BYTES}")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A host array IREE accepts (bf16 through ml_dtypes, which numpy lacks)."""
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy().view(_BF16)
    return t.numpy()


def to_torch(a: np.ndarray) -> torch.Tensor:
    import torch

    a = np.ascontiguousarray(a)
    if a.dtype == _BF16:
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


class ModuleFacts:
    """What a loaded VM module tells without running (its public functions and their
    reflection), and calls with tensors over a subclass's `call_arrays`: `CompiledModule` and
    `hrm_mlir.runtime.tool.ToolModule`."""

    _vm_module: rt.VmModule

    @property
    def function_names(self) -> list[str]:
        return sorted(f for f in self._vm_module.function_names if not f.startswith("__"))

    def reflection(self, function: str) -> dict[str, str]:
        """The function's reflection metadata (its `iree.reflection` attributes)."""
        fn = self._vm_module.lookup_function(function)
        if fn is None:
            raise RuntimeFailure(f"the compiled module has no function @{function}")
        return dict(fn.reflection)

    def call_arrays(self, function: str, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def call(self, function: str, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Invoke `function` and return its results as CPU tensors (through `call_arrays`)."""
        results = self.call_arrays(function, *(to_numpy(a) for a in args))
        return tuple(to_torch(r) for r in results)


class CompiledModule(ModuleFacts):
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
        self.driver = driver
        # Keep the index: the provider reads the tensors it was given for as long as it lives.
        self._index = None
        if parameters is not None:
            from hrm_mlir.exporter.archive import load_index

            self._index = load_index(parameters)
        try:
            self._config = rt.Config(device=_device(driver))
            self._context = rt.SystemContext(config=self._config)
            if self._index is not None:
                provider = self._index.create_provider(scope=PARAMETER_SCOPE)
                io = rt.create_io_parameters_module(self._config.vm_instance, provider)
                self._context.add_vm_module(io)
            self._vm_module = rt.VmModule.copy_buffer(self._config.vm_instance, data)
            if driver.startswith("local"):
                self._require_architecture(vmfb if isinstance(vmfb, str | Path) else None)
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
        if driver.startswith("local"):
            self._require_cpu_features(vmfb if isinstance(vmfb, str | Path) else None)

    def _require_architecture(self, path: str | Path | None) -> None:
        """Refuse, in one line, an llvm-cpu artifact of another architecture (ARM64 on x86)."""
        triple = _target_of(self._vm_module).get("triple", "")
        arch = triple_arch(triple)
        if arch and arch != host_arch():
            what = f"{path}: " if path is not None else ""
            raise RuntimeFailure(
                f"{what}built for {triple}, not this {host_arch()} machine: run it there "
                "(pip install iree-base-runtime; iree-run-module --module=...), or check it "
                "here under emulation with hrm-mlir verify (qemu-aarch64)"
            )

    def _require_cpu_features(self, path: str | Path | None) -> None:
        """Refuse, in one line, an llvm-cpu artifact built for features this CPU lacks."""
        for function in self.function_names:
            recorded = self.reflection(function)
            if FEATURES_KEY not in recorded:
                continue
            wanted = set(recorded[FEATURES_KEY].split(",")) - {""}
            try:
                host = resolve_cpu(HOST)
                have, name = host.features, host.name
            except (ImportError, CompileError):  # IREE's runtime without its compiler
                have, told = cpuinfo_features()
                wanted &= told
                name = "read from /proc/cpuinfo"
            missing = sorted(wanted - have)
            if missing:
                what = f"{path}: " if path is not None else ""
                more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
                shown = ", ".join(missing[:8]) + more
                raise RuntimeFailure(
                    f"{what}built for CPU {recorded.get(CPU_KEY, '?')}, whose features {shown} "
                    f"this CPU ({name}) lacks: compile it again with --cpu host, or for a "
                    "baseline such as x86-64-v3 or x86-64-v4"
                )
            return

    def close(self) -> None:
        """Release the module, its context and (for a GPU driver) its device now, rather than
        when the last reference goes. Calls after this fail."""
        held = "_context" in self.__dict__
        for name in ("_context", "_vm_module", "_config", "_index"):
            self.__dict__.pop(name, None)
        if held and not self.driver.startswith("local"):
            gc.collect()  # IREE's SystemContext and its bound modules refer to each other

    def __enter__(self) -> CompiledModule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_device(self, array: np.ndarray):
        """`array` copied once to this module's device, as an argument for `invoke` that stays
        there between calls (what an ACT loop does with its carry)."""
        return rt.asdevicearray(self._config.device, np.ascontiguousarray(array))

    def invoke(self, function: str, *args) -> tuple:
        """Invoke `function` on host arrays or `on_device` arrays; the results stay on the
        device (`DeviceArray`s: `.to_host()` reads one back). The call returns once they are
        computed (IREE's synchronous calling convention)."""
        try:
            fn = self._context.modules[self.name][function]
        except KeyError:
            raise RuntimeFailure(
                f"the compiled module has no function @{function} "
                f"(it has: {', '.join(self.function_names)})"
            ) from None
        try:
            results = fn(*args)
        except (RuntimeError, ValueError) as e:
            raise RuntimeFailure(f"@{function} failed: {first_line(e)}") from None
        return tuple(results) if isinstance(results, tuple | list) else (results,)

    def call_arrays(self, function: str, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        """Invoke `function` on host arrays and return its results as host arrays."""
        return tuple(read_back(r) for r in self.invoke(function, *args))


def _device(driver: str) -> rt.HalDevice:
    """The HAL device a module runs on. The CPU's is IREE's process-wide cached one; a GPU
    driver's is the module's own, released with it. IREE's cache would keep a Vulkan device
    for the life of the process, and Mesa's lavapipe then spins two threads (clock_gettime)
    until exit: a second burnt per second of idle (docs/known-issues.md)."""
    if driver.startswith("local"):
        return rt.get_first_device([driver])
    return rt.get_device(driver, cache=False)


def read_back(array) -> np.ndarray:
    """A result of `invoke` copied to the host (a host array of its own); a failed copy is one
    line.

    A buffer the host can map is copied out of the mapping. Any other goes through a staging
    buffer that the device allocates, mappable, rather than IREE 3.13's `to_host`, which imports
    a numpy allocation as the copy's target: a Vulkan device whose
    minImportedHostPointerAlignment is 4096 (lavapipe's) refuses that. This reads the
    `DeviceArray`'s buffer view and device, which iree-base-runtime==3.13.0 (pinned) keeps as
    `_buffer_view` and `_device`."""
    try:
        if array._is_mappable():
            return np.array(array.to_host())
        return _staged_copy(array._device, array._buffer_view)
    except (RuntimeError, ValueError) as e:
        raise RuntimeFailure(
            f"cannot read a result back from the device: {first_line(e)}"
        ) from None


def _staged_copy(device: rt.HalDevice, view: rt.HalBufferView) -> np.ndarray:
    source = view.get_buffer()
    staging = device.allocator.allocate_buffer(
        memory_type=int(rt.MemoryType.HOST_LOCAL | rt.MemoryType.DEVICE_VISIBLE),
        allowed_usage=int(rt.BufferUsage.TRANSFER_TARGET | rt.BufferUsage.MAPPING_SCOPED),
        allocation_size=source.byte_length(),
    )
    done = device.create_semaphore(0)
    device.queue_copy(
        source,
        staging,
        wait_semaphores=rt.HalFence.create_at(done, 0),
        signal_semaphores=rt.HalFence.create_at(done, 1),
    )
    rt.HalFence.create_at(done, 1).wait()
    dtype = rt.HalElementType.map_to_dtype(view.element_type)
    return np.array(staging.map().asarray(view.shape, dtype))


def recorded_target(vmfb: bytes) -> dict[str, str]:
    """What an artifact records of its target (`target`: "llvm-cpu:host", "vulkan:...";
    `triple`: the llvm-cpu triple), read without a device: {} for one hrm-mlir did not build."""
    try:
        return _target_of(rt.VmModule.copy_buffer(rt.VmInstance(), vmfb))
    except (RuntimeError, ValueError) as e:
        raise RuntimeFailure(f"not a compiled IREE module: {first_line(e)}") from None


def _target_of(vm_module) -> dict[str, str]:
    for name in vm_module.function_names:
        fn = vm_module.lookup_function(name)
        if name.startswith("__") or fn is None:
            continue
        meta = dict(fn.reflection)
        if TARGET_KEY in meta:
            out = {"target": meta[TARGET_KEY]}
            if TRIPLE_KEY in meta:
                out["triple"] = meta[TRIPLE_KEY]
            return out
    return {}


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise RuntimeFailure(f"{path}: no such compiled module")
    return path.read_bytes()
