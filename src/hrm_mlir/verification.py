"""Compare compiled outputs with the project's PyTorch model.

Outputs are compared in order: count, then per output shape, dtype and values, each with its own
message. Values are judged by relative L2 error against a per-dtype table; the report also gives
what users care about: argmax agreement of the logits (the answer) and agreement of the halt
decision (the family's rule: `q_halt > q_continue` for HRM, `q_halt > 0` for TRM), so a small
norm cannot hide flipped answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hrm_mlir.core.numerics import (
    TOLERANCES,
    OutputComparison,
    Tolerance,
    compare_one,
    step_tolerance,
)
from hrm_mlir.core.types import DType, HaltRule
from hrm_mlir.exporter.abi import STEP_OUTPUTS
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.reference import step_depth


@dataclass
class VerifyReport:
    """The comparison of one compiled function against PyTorch."""

    dtype: DType
    tolerance: Tolerance
    outputs: list[OutputComparison] = field(default_factory=list)
    argmax_agreement: float | None = None  # fraction of logits positions with equal argmax
    halt_agreement: float | None = None  # fraction of rows with the same halt decision
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(o.passed for o in self.outputs)

    def failures(self) -> list[str]:
        return [*self.problems, *(f"{o.name}: {o.problem}" for o in self.outputs if o.problem)]

    def as_dict(self) -> dict:
        return {
            "dtype": self.dtype.value,
            "rel_l2_tolerance": self.tolerance.rel_l2,
            "atol": self.tolerance.atol,
            "passed": self.passed,
            "argmax_agreement": self.argmax_agreement,
            "halt_agreement": self.halt_agreement,
            "problems": self.failures(),
            "outputs": [
                {
                    "name": o.name,
                    "shape": list(o.shape),
                    "dtype": o.dtype,
                    "max_abs": o.max_abs,
                    "mean_abs": o.mean_abs,
                    "rel_l2": o.rel_l2,
                    "worst_index": list(o.worst_index),
                }
                for o in self.outputs
            ],
        }

    def table(self, title: str = "verification"):
        """A rich Table of the comparison."""
        from rich.table import Table

        t = Table(title=title)
        for col in ("output", "shape", "dtype", "max abs", "mean abs", "rel L2", "worst at", "ok"):
            t.add_column(col, justify="right" if col not in ("output", "ok") else "left")
        for o in self.outputs:
            t.add_row(
                o.name,
                "x".join(map(str, o.shape)),
                o.dtype,
                f"{o.max_abs:.3g}",
                f"{o.mean_abs:.3g}",
                f"{o.rel_l2:.3g}",
                str(list(o.worst_index)),
                "yes" if o.passed else f"NO: {o.problem}",
            )
        t.caption = (
            f"tolerance ({self.dtype.value}): rel-L2 {self.tolerance.rel_l2:g} "
            f"or max abs {self.tolerance.atol:g}; "
            f"logits argmax agreement {_pct(self.argmax_agreement)}; "
            f"halt decision agreement {_pct(self.halt_agreement)}"
        )
        return t


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def compare(
    names: Sequence[str],
    got: Sequence[torch.Tensor],
    ref: Sequence[torch.Tensor],
    dtype: DType,
    tolerance: Tolerance | None = None,
    rule: HaltRule = HaltRule.Q_CONTINUE,
) -> VerifyReport:
    """Compare outputs `got` with reference outputs `ref` (same order as `names`)."""
    tolerance = tolerance or TOLERANCES[dtype]
    report = VerifyReport(dtype, tolerance)
    if len(got) != len(ref):
        report.problems.append(f"got {len(got)} outputs, expected {len(ref)}")
        return report
    by_name = {}
    for name, g, r in zip(names, got, ref, strict=True):
        report.outputs.append(_compare_one(name, g, r, tolerance))
        by_name[name] = (g, r)
    if "logits" in by_name:
        g, r = by_name["logits"]
        if g.shape == r.shape:
            report.argmax_agreement = _agreement(g.float().argmax(-1), r.float().argmax(-1))
    if "q_halt_logits" in by_name and "q_continue_logits" in by_name:
        (gh, rh), (gc, rc) = by_name["q_halt_logits"], by_name["q_continue_logits"]
        if gh.shape == rh.shape and gc.shape == rc.shape:
            report.halt_agreement = _agreement(rule.halts(gh, gc), rule.halts(rh, rc))
    return report


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean()) if a.numel() else 1.0


def _compare_one(name: str, got: torch.Tensor, ref: torch.Tensor, tol: Tolerance):
    def name_of(t: torch.Tensor) -> str:
        return str(t.dtype).removeprefix("torch.")

    return compare_one(
        name,
        got.detach().double().numpy(),
        ref.detach().double().numpy(),
        tol,
        got_dtype=name_of(got),
        dtype=name_of(ref),
    )


def verify_step(model, compiled, batch_size: int, seed: int = 0) -> VerifyReport:
    """Run `@step` of a compiled module and the PyTorch model on the same random inputs.

    Args:
        model: the `HRM` computing in the exported dtype.
        compiled: a `hrm_mlir.runtime.CompiledModule` with a `@step` function.
        batch_size: the batch the module was exported for.
        seed: seeds the random inputs.
    """
    args = random_step_inputs(model.config, batch_size, seed)
    with torch.no_grad():
        ref = model.inner(*args)
    got = compiled.call("step", *args)
    cfg = model.config
    tolerance = step_tolerance(cfg.forward_dtype, step_depth(cfg))
    return compare(STEP_OUTPUTS, got, ref, cfg.forward_dtype, tolerance, rule=cfg.halt_rule)


def verify_act(model, compiled, batch_size: int, seed: int = 0) -> VerifyReport:
    """Run `@act` of a compiled module and `model.act` on the same random puzzles: the steps
    of the compile self-check's case (`exporter.reference.ACT_STEPS`, no Q-halting), judged by
    the loop tolerances (`numerics.LOOP_TOLERANCES`: rounding compounds through the carry)."""
    from hrm_mlir.core.numerics import LOOP_TOLERANCES
    from hrm_mlir.exporter.reference import ACT_NAMES, ACT_STEPS

    cfg = model.config
    _, _, inputs, ids = random_step_inputs(cfg, batch_size, seed)
    with torch.no_grad():
        ref = model.act(inputs, ids, max_steps=ACT_STEPS, q_halt=False)
    i32 = torch.int32
    steps, q_halt = torch.tensor(ACT_STEPS, dtype=i32), torch.tensor(0, dtype=i32)
    got = compiled.call("act", inputs, ids, steps, q_halt)
    expected = (ref.logits, ref.q_halt_logits, ref.q_continue_logits, ref.steps)
    tolerance = LOOP_TOLERANCES[cfg.forward_dtype]
    return compare(ACT_NAMES, got, expected, cfg.forward_dtype, tolerance, rule=cfg.halt_rule)
