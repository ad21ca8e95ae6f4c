"""What this machine is, for `hrm-mlir doctor` and bug reports: versions, the CPU and its vector
features, the IREE targets it can compile for and the devices it can run them on, and the
optional tools and peers it has. Nothing here imports torch."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
from pathlib import Path
from typing import Any

from hrm_mlir.core.errors import CompileError
from hrm_mlir.runtime.target import HOST, CpuTarget, cpuinfo_features, resolve_cpu

PACKAGES = ("hrm-mlir", "torch", "torch-mlir", "iree-base-compiler", "iree-base-runtime",
            "iree-turbine")  # fmt: skip
PEERS = ("onnxruntime", "openvino", "ray", "huggingface-hub")
DRIVERS = ("local-task", "vulkan", "cuda", "hip")  # IREE HAL drivers that run artifacts


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_line() -> str:
    """`hrm-mlir --version`: one line with the versions that decide what it produces."""
    parts = [f"{p} {version(p) or 'not installed'}" for p in PACKAGES[1:5]]
    return f"hrm-mlir {version('hrm-mlir') or 'unknown'} ({', '.join(parts)})"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    m = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.machine()


def cpu() -> dict[str, Any]:
    """The host CPU as IREE's LLVM sees it (what `--cpu host` compiles for); on a machine with
    IREE's runtime but no compiler, its vector features as /proc/cpuinfo tells them."""
    try:
        target = resolve_cpu(HOST)
    except (ImportError, CompileError):
        target = CpuTarget(HOST, "unknown (no iree-compile here)", platform.machine(),
                           cpuinfo_features()[0])  # fmt: skip
    f = target.features
    classes = []
    if {"avx2", "fma"} <= f:
        classes.append("AVX2+FMA")
    avx512 = sorted(x for x in f if x.startswith("avx512"))
    if avx512:
        classes.append("AVX-512 (" + ", ".join(x.removeprefix("avx512") for x in avx512) + ")")
    amx = sorted(x for x in f if x.startswith("amx"))
    if amx:
        classes.append("AMX (" + ", ".join(x.removeprefix("amx-") for x in amx) + ")")
    if "neon" in f or target.triple.startswith("aarch64"):
        classes.append("NEON")
    return {
        "model": _cpu_model(),
        "machine": platform.machine(),
        "llvm_cpu": target.name,
        "triple": target.triple,
        "vector_isa": target.isa,
        "feature_classes": classes,
    }


def cpu_line() -> str:
    """The CPU in one line for a benchmark's table and JSON: model, LLVM name, vector classes."""
    c = cpu()
    return f"{c['model']} ({c['llvm_cpu']}): {', '.join(c['feature_classes']) or 'no SIMD class'}"


def targets() -> dict[str, Any]:
    """IREE's compile targets (HAL backends of iree-compile) and run targets (drivers with a
    device here), each driver with its devices or why it has none."""
    from iree import runtime as rt

    try:
        from iree.compiler import tools

        compile_targets: list[str] | str = sorted(tools.query_available_targets())
    except ImportError:  # a machine with IREE's runtime alone runs what was compiled elsewhere
        compile_targets = "unavailable: iree-base-compiler is not installed"
    run: dict[str, Any] = {}
    for name in DRIVERS:
        try:
            devices = rt.get_driver(name).query_available_devices()
            run[name] = [d.get("name", str(d)) for d in devices] or "no device"
        except Exception as e:  # the driver's library or device is absent
            reason = str(e).splitlines()[0].rsplit(";", 1)[-1].strip().rstrip(":")
            run[name] = f"unavailable: {reason}"
    return {"compile": compile_targets, "run": run}


def tools() -> dict[str, str | None]:
    """qemu-aarch64 (to run ARM64 artifacts here), the aarch64 runtime that runs under it
    (`hrm_mlir.runtime.tool`: its path, or why there is none), and the optional peers, with
    their versions."""
    from hrm_mlir.runtime.tool import aarch64_runner

    runner = aarch64_runner()
    found: dict[str, str | None] = {
        "qemu-aarch64": shutil.which("qemu-aarch64"),
        "aarch64 runtime": runner if isinstance(runner, str) else runner.command[-1],
    }
    found.update({p: version(p) for p in PEERS})
    return found


def report() -> dict[str, Any]:
    """Everything `hrm-mlir doctor` prints."""
    return {
        "versions": {p: version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "cpu": cpu(),
        "targets": targets(),
        "tools": tools(),
    }
