"""Run an artifact that this process cannot load itself, with IREE's own `iree-run-module`.

Two cases, both checked here against PyTorch before anyone copies the artifact elsewhere:

- an ARM64 (aarch64) llvm-cpu artifact on an x86 machine: the aarch64 `iree-run-module` of
  IREE's aarch64 runtime wheel, under `qemu-aarch64` (user-mode emulation) with Debian's
  aarch64 C and C++ libraries (`libc6-arm64-cross`, `libstdc++6-arm64-cross`) as its root;
- a Vulkan artifact: this machine's `iree-run-module --device=vulkan`. IREE 3.13's Python
  runtime cannot read a result back from a Vulkan device whose minimum host-pointer import
  alignment is 4096 (lavapipe's): "host allocation import pointer does not satisfy Vulkan
  minImportedHostPointerAlignment 4096"; the tool copies through a staging buffer.

Inputs and outputs cross as .npy files (`--input=@a.npy`, `--output=@r.npy`), so a result is
the bytes the device wrote. `ToolModule` has the calls of `hrm_mlir.runtime.CompiledModule`
(`call`, `call_arrays`, `function_names`, `reflection`) so that verify and compile's self-check
run either the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from iree import runtime as rt

from hrm_mlir.core.errors import RuntimeFailure
from hrm_mlir.runtime.module import ModuleFacts
from hrm_mlir.runtime.target import host_arch, triple_arch, vulkan_mismatch

AARCH64_RUNTIME_ENV = "HRM_MLIR_AARCH64_RUNTIME"  # an aarch64 iree-run-module to use
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")  # Debian's libc6-arm64-cross
# Where `make venv` unpacks the aarch64 runtime wheel's tools (scripts/aarch64_runtime.sh).
AARCH64_RUNTIME_DIR = "aarch64"
_TIMEOUT_S = 900


@dataclass(frozen=True)
class Runner:
    """How to start `iree-run-module` for one kind of artifact."""

    command: tuple[str, ...]  # the program and the arguments before iree-run-module's own
    device: str  # iree-run-module's --device
    how: str  # in words, for reports: "qemu-aarch64 (user-mode emulation)"


def host_tool(name: str = "iree-run-module") -> Path:
    """This machine's IREE runtime tool (the iree-base-runtime wheel's)."""
    import iree._runtime_libs as libs

    return Path(libs.__file__).parent / name


def aarch64_runner() -> Runner | str:
    """The aarch64 runner, or why there is none here (one line naming what is missing)."""
    tool = Path(os.environ.get(AARCH64_RUNTIME_ENV) or _default_aarch64_tool())
    if not tool.is_file():
        return (
            f"no aarch64 iree-run-module at {tool} (make venv unpacks IREE's aarch64 runtime "
            f"wheel there; or set {AARCH64_RUNTIME_ENV})"
        )
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if qemu is None:
        return "qemu-aarch64 is not installed (Debian: apt-get install qemu-user)"
    root = Path(os.environ.get("QEMU_LD_PREFIX") or AARCH64_SYSROOT)
    if not (root / "lib" / "ld-linux-aarch64.so.1").exists():
        return f"no aarch64 C library under {root} (Debian: apt-get install libc6-arm64-cross)"
    if not (root / "lib" / "libstdc++.so.6").exists():
        return f"no aarch64 libstdc++ under {root} (apt-get install libstdc++6-arm64-cross)"
    return Runner((qemu, "-L", str(root), str(tool)), "local-task", "qemu-aarch64")


def _default_aarch64_tool() -> Path:
    return Path(sys.prefix) / AARCH64_RUNTIME_DIR / "iree" / "_runtime_libs" / "iree-run-module"


def vulkan_runner() -> Runner:
    return Runner((str(host_tool()),), "vulkan", "iree-run-module --device=vulkan")


GPU_DRIVERS = {"cuda": "cuda", "rocm": "hip"}  # artifact kind -> IREE's HAL driver


def gpu_devices(driver: str) -> list[str]:
    """The names of the devices IREE's `driver` sees here ([] without a driver or a device)."""
    try:
        return [d["name"] for d in rt.get_driver(driver).query_available_devices()]
    except (RuntimeError, ValueError):
        return []


def vulkan_devices() -> list[str]:
    """The names of the Vulkan devices IREE sees here ([] without a driver or a device)."""
    return gpu_devices("vulkan")


class ToolModule(ModuleFacts):
    """A .vmfb run by `iree-run-module`, one process per call.

    Args:
        vmfb: the artifact's bytes or path.
        runner: how to start the tool (`aarch64_runner()`, `vulkan_runner()`).
        parameters: the artifact's parameter archive (.irpa), if it has external parameters.
    """

    def __init__(self, vmfb: bytes | str | Path, runner: Runner, *, parameters=None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="hrm-mlir-tool-")
        self.path = Path(self._tmp.name) / "module.vmfb"
        data = vmfb if isinstance(vmfb, bytes) else Path(vmfb).read_bytes()
        self.path.write_bytes(data)
        self.runner = runner
        if parameters is not None and not isinstance(parameters, str | Path):
            from hrm_mlir.exporter.archive import save_archive

            parameters = save_archive(parameters, Path(self._tmp.name) / "params.irpa")
        self.parameters = None if parameters is None else Path(parameters)
        # The module's functions and reflection, read without a device (no code runs).
        self._vm_module = rt.VmModule.copy_buffer(rt.VmInstance(), data)

    def _results(self, function: str) -> int:
        declaration = self.reflection(function).get("iree.abi.declaration", "")
        return len(re.findall(r"%output\d+", declaration))

    def call_arrays(self, function: str, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        if function not in self.function_names:
            raise RuntimeFailure(
                f"the compiled module has no function @{function} "
                f"(it has: {', '.join(self.function_names)})"
            )
        with tempfile.TemporaryDirectory(dir=self._tmp.name) as tmp:
            work = Path(tmp)
            command = [
                *self.runner.command,
                f"--module={self.path}",
                f"--device={self.runner.device}",
                f"--function={function}",
            ]
            if self.parameters is not None:
                command.append(f"--parameters=model={self.parameters}")
            for i, a in enumerate(args):
                if a.ndim == 0:  # iree-run-module reads a 0-d .npy as shape [1]
                    command.append(f"--input={_SCALAR[a.dtype.str[1:]]}={a.item()}")
                    continue
                np.save(work / f"in{i}.npy", _npy_safe(a))
                command.append(f"--input=@{work / f'in{i}.npy'}")
            outputs = [work / f"out{i}.npy" for i in range(self._results(function))]
            command += [f"--output=@{o}" for o in outputs]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
                status = [ln for ln in lines if re.search(r"[A-Z_]{4,}; ", ln)] or lines
                raise RuntimeFailure(
                    f"@{function} failed under {self.runner.how}: "
                    f"{status[0][:300] if status else f'exit {done.returncode}'}"
                )
            return tuple(np.load(o) for o in outputs)


_SCALAR = {"i4": "i32", "i8": "i64", "f4": "f32"}  # numpy's -> iree-run-module's element types


def _npy_safe(a: np.ndarray) -> np.ndarray:
    """The array as .npy can hold it: float32 for the ABI's floats (bf16 has no .npy type)."""
    if a.dtype.kind == "V" or str(a.dtype) == "bfloat16":
        raise RuntimeFailure("bfloat16 inputs cannot cross to iree-run-module as .npy files")
    return np.ascontiguousarray(a)


def open_artifact(vmfb: bytes | str | Path, *, parameters=None):
    """The artifact loaded where it can run here: in this process (`CompiledModule`) for this
    machine's CPU, under qemu for an aarch64 one, through `iree-run-module --device=vulkan` for
    a Vulkan one (after checking the device suits it).

    Raises:
        RuntimeFailure: where it cannot run here, saying why in one line.
    """
    from hrm_mlir.runtime.module import CompiledModule, recorded_target

    data = vmfb if isinstance(vmfb, bytes) else Path(vmfb).read_bytes()
    target = recorded_target(data)
    kind = target.get("target", "llvm-cpu").split(":")[0]
    if kind == "vulkan":
        devices = vulkan_devices()
        if not devices:
            raise RuntimeFailure(
                "a Vulkan artifact, and no Vulkan device here "
                "(Debian: apt-get install mesa-vulkan-drivers for lavapipe)"
            )
        problem = vulkan_mismatch(target["target"].split(":", 1)[1], devices[0])
        if problem is not None:
            raise RuntimeFailure(problem)
        return ToolModule(data, vulkan_runner(), parameters=parameters)
    arch = triple_arch(target.get("triple", ""))
    if kind == "llvm-cpu" and arch and arch != host_arch():
        if arch != "aarch64":
            raise RuntimeFailure(f"an {arch} artifact: only aarch64 ones run here (qemu)")
        runner = aarch64_runner()
        if isinstance(runner, str):
            raise RuntimeFailure(f"an aarch64 artifact cannot run here: {runner}")
        return ToolModule(data, runner, parameters=parameters)
    if kind in GPU_DRIVERS:
        driver = GPU_DRIVERS[kind]
        if not gpu_devices(driver):
            raise RuntimeFailure(f"a {kind} artifact, and no {driver} device here")
        return CompiledModule(data, driver=driver, parameters=parameters)
    if kind not in ("llvm-cpu", ""):
        raise RuntimeFailure(f"a {kind} artifact: this machine runs none")
    return CompiledModule(data, parameters=parameters)
