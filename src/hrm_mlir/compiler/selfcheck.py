"""Compile's self-check: the artifact run on the reference cases that export recorded
(`hrm_mlir.exporter.reference`), judged by the per-dtype tolerance table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrm_mlir.compiler.options import CompileOptions, Target
from hrm_mlir.core.errors import RuntimeFailure
from hrm_mlir.core.numerics import (
    LOOP_FUNCTIONS,
    LOOP_TOLERANCES,
    compare_one,
    judge_reduced,
    step_tolerance,
)
from hrm_mlir.core.types import DType
from hrm_mlir.exporter.reference import Case
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.runtime.target import HOST, resolve_cpu, vulkan_mismatch
from hrm_mlir.runtime.tool import (
    GPU_DRIVERS,
    Runner,
    ToolModule,
    aarch64_runner,
    gpu_devices,
    vulkan_devices,
    vulkan_runner,
)


def checked(cases: list[Case]) -> str:
    """The checked cases in a few words: "@step at batch 1, 3; @act at batch 1, 3"."""
    by_function: dict[str, list[str]] = {}
    for c in cases:
        by_function.setdefault(c.function, []).append(str(c.batch))
    return "; ".join(f"@{f} at batch {', '.join(bs)}" for f, bs in by_function.items())


@dataclass(frozen=True)
class Check:
    """How an artifact is checked: `run(vmfb)` gives the first failure or None; `where` says
    on what it ran ("this CPU", "qemu-aarch64", ...)."""

    run: Callable[[bytes], str | None]
    where: str


def checker(
    options: CompileOptions,
    cases: list[Case],
    external: bool,
    parameters: str | Path | Mapping[str, Any] | None,
    notes: list[str],
    check: bool,
) -> Check | None:
    """The self-check of an artifact, or None where it cannot run here, with a note saying why.

    This machine's CPU runs the artifact in this process; an aarch64 one runs under qemu, a
    Vulkan one on the Vulkan device here (`hrm_mlir.runtime.tool`), float32 only there.
    """
    if not check:
        return None
    if not cases:
        notes.append("not checked: the module has no reference outputs (export it again)")
        return None
    if external and parameters is None:
        notes.append("not checked: its external parameters were not given (--params)")
        return None
    runner = _tool_runner(options, cases, notes)
    if runner is None:
        return None
    if isinstance(runner, str):  # in this process: this CPU, or a CUDA / ROCm device
        driver = GPU_DRIVERS.get(runner, "local-task")

        def run(vmfb: bytes) -> str | None:
            return run_cases(CompiledModule(vmfb, driver=driver, parameters=parameters), cases)

        return Check(run, "this CPU" if runner == "host" else f"this {runner} device")

    def run_tool(vmfb: bytes) -> str | None:
        return run_cases(ToolModule(vmfb, runner, parameters=parameters), cases)

    return Check(run_tool, runner.how)


def _tool_runner(options: CompileOptions, cases: list[Case], notes: list[str]):
    """ "host" or "cuda"/"rocm" (run in this process), a `Runner` for iree-run-module, or None
    (with a note)."""
    if options.target in (Target.CUDA, Target.ROCM):
        if not gpu_devices(GPU_DRIVERS[options.target.value]):
            notes.append(f"not checked: no {options.target} device here")
            return None
        return options.target.value  # run in this process, on that device (not tested here)
    tool: Runner | str
    if options.target == Target.VULKAN:
        devices = vulkan_devices()
        if not devices:
            notes.append("not checked: no Vulkan device here")
            return None
        problem = vulkan_mismatch(options.vulkan_target, devices[0])
        if problem is not None:
            notes.append(f"not checked: {problem}")
            return None
        tool = vulkan_runner()
    elif options.emulated:
        target = options.cpu_target()
        if target.arch != "aarch64":
            notes.append(f"not checked: {target.arch} artifacts are not run on this machine")
            return None
        tool = aarch64_runner()
        if isinstance(tool, str):
            notes.append(f"not checked: {tool}")
            return None
    else:
        target = options.cpu_target()
        missing = target.missing_on(resolve_cpu(HOST))
        if missing:
            lacks = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
            notes.append(f"not checked: built for {target.name}, whose {lacks} this CPU lacks")
            return None
        return "host"
    if any(c.dtype != DType.FLOAT32 for c in cases):
        notes.append(f"not checked: bfloat16 cases do not cross to {tool.how} (float32 do)")
        return None
    return tool


def run_cases(compiled: CompiledModule | ToolModule, cases: Sequence[Case]) -> str | None:
    """Run every case on `compiled`; the first failure as one line, or None if all pass.

    float32 outputs are judged by the per-dtype table (`numerics.TOLERANCES`; `@act`'s by
    `numerics.LOOP_TOLERANCES`); a reduced-precision case that recorded the float32 truth by
    `numerics.judge_reduced` (its q logits, one per row, are gated by `verify` over enough rows,
    not here); NaN fails.
    """
    for case in cases:
        try:
            got = compiled.call_arrays(case.function, *case.inputs)
        except RuntimeFailure as e:
            return f"{case.describe()}: {e}"
        if len(got) != len(case.outputs):
            return f"{case.describe()}: {len(got)} outputs, expected {len(case.outputs)}"
        if case.truth is not None:
            problem = _judge_reduced(case, got)
            if problem is not None:
                return f"{case.describe()}: {problem}"
            continue
        if case.function in LOOP_FUNCTIONS:
            tolerance = LOOP_TOLERANCES[case.dtype]
        else:
            tolerance = step_tolerance(case.dtype, case.depth)
        for name, g, r, dtype in zip(
            case.names, got, case.outputs, case.output_dtypes, strict=True
        ):
            result = compare_one(name, g, r, tolerance, got_dtype=str(g.dtype), dtype=dtype)
            if not result.passed:
                return f"{case.describe()}: {name} {result.problem}"
    return None


def _judge_reduced(case: Case, got: Sequence[np.ndarray]) -> str | None:
    assert case.truth is not None
    for name, g, r, dtype in zip(case.names, got, case.outputs, case.output_dtypes, strict=True):
        if tuple(g.shape) != tuple(r.shape) or str(g.dtype) != dtype:
            return f"{name}: {g.dtype}{list(g.shape)}, expected {dtype}{list(r.shape)}"
    judged = judge_reduced(case.names, list(got), list(case.outputs), list(case.truth))
    problems = judged.problems()
    return problems[0] if problems else None
