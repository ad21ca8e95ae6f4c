"""Compile's self-check: the artifact run on the reference cases that export recorded
(`hrm_mlir.exporter.reference`), judged by the per-dtype tolerance table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hrm_mlir.compiler.options import CompileOptions, Target
from hrm_mlir.core.errors import RuntimeFailure
from hrm_mlir.core.numerics import LOOP_FUNCTIONS, LOOP_TOLERANCES, TOLERANCES, compare_one
from hrm_mlir.exporter.reference import Case
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.runtime.target import HOST, resolve_cpu


def checked(cases: list[Case]) -> str:
    """The checked cases in a few words: "@step at batch 1, 3; @act at batch 1, 3"."""
    by_function: dict[str, list[str]] = {}
    for c in cases:
        by_function.setdefault(c.function, []).append(str(c.batch))
    return "; ".join(f"@{f} at batch {', '.join(bs)}" for f, bs in by_function.items())


def checker(
    options: CompileOptions,
    cases: list[Case],
    external: bool,
    parameters: str | Path | Mapping[str, Any] | None,
    notes: list[str],
    check: bool,
) -> Callable[[bytes], str | None] | None:
    """The self-check of an artifact (its bytes -> the first failure, or None), or None where
    it cannot run here, with a note saying why."""
    if not check:
        return None
    if options.target != Target.LLVM_CPU:
        notes.append(f"not checked: {options.target} artifacts are not run on this machine")
        return None
    target = options.cpu_target()
    missing = target.missing_on(resolve_cpu(HOST))
    if missing:
        lacks = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        notes.append(f"not checked: built for {target.name}, whose {lacks} this CPU lacks")
        return None
    if not cases:
        notes.append("not checked: the module has no reference outputs (export it again)")
        return None
    if external and parameters is None:
        notes.append("not checked: its external parameters were not given (--params)")
        return None

    def run(vmfb: bytes) -> str | None:
        return run_cases(CompiledModule(vmfb, parameters=parameters), cases)

    return run


def run_cases(compiled: CompiledModule, cases: Sequence[Case]) -> str | None:
    """Run every case on `compiled`; the first failure as one line, or None if all pass.

    Outputs are judged by the per-dtype table (`numerics.TOLERANCES`; `@act`'s by
    `numerics.LOOP_TOLERANCES`); NaN fails.
    """
    for case in cases:
        try:
            got = compiled.call_arrays(case.function, *case.inputs)
        except RuntimeFailure as e:
            return f"{case.describe()}: {e}"
        if len(got) != len(case.outputs):
            return f"{case.describe()}: {len(got)} outputs, expected {len(case.outputs)}"
        table = LOOP_TOLERANCES if case.function in LOOP_FUNCTIONS else TOLERANCES
        tolerance = table[case.dtype]
        for name, g, r, dtype in zip(
            case.names, got, case.outputs, case.output_dtypes, strict=True
        ):
            result = compare_one(name, g, r, tolerance, got_dtype=str(g.dtype), dtype=dtype)
            if not result.passed:
                return f"{case.describe()}: {name} {result.problem}"
    return None
