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
    MIN_ROWS,
    REDUCED_RATIO,
    REDUCED_SLACK,
    TOLERANCES,
    OutputComparison,
    ReducedJudgement,
    Tolerance,
    compare_one,
    float32_flips,
    judge_reduced,
    step_tolerance,
)
from hrm_mlir.core.types import DType, HaltRule
from hrm_mlir.exporter.abi import STEP_OUTPUTS
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.reference import float32_twin, step_depth, upcast


@dataclass
class VerifyReport:
    """The comparison of one compiled function against PyTorch."""

    dtype: DType
    tolerance: Tolerance
    outputs: list[OutputComparison] = field(default_factory=list)
    argmax_agreement: float | None = None  # fraction of logits positions with equal argmax
    halt_agreement: float | None = None  # fraction of rows with the same halt decision
    problems: list[str] = field(default_factory=list)
    # A reduced-precision artifact: judged against the float32 truth relative to PyTorch's own
    # error in its dtype (`numerics.judge_reduced`), not by `outputs`' table (shown for
    # reference); `rows` is batch x draws.
    reduced: ReducedJudgement | None = None
    rows: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        if self.reduced is not None:
            shapes = [f"{o.name}: {o.problem}" for o in self.outputs if _structural(o)]
            return [*self.problems, *shapes, *self.reduced.problems()]
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
            "rows": self.rows,
            "against_float32_truth": None
            if self.reduced is None
            else [
                {
                    "name": o.name,
                    "rel_l2": o.distance,
                    "pytorch_rel_l2": o.pytorch,
                    "gated": o.gated,
                }
                for o in self.reduced.outputs
            ]
            + [
                {"answer": a.what, "agreement": a.agreement, "pytorch_agreement": a.pytorch}
                for a in self.reduced.answers
            ],
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
                "yes" if o.passed or (self.reduced and not _structural(o)) else f"NO: {o.problem}",
            )
        judged = (
            f"against PyTorch {self.dtype.value}; judged against the float32 truth over "
            f"{self.rows} rows: rel-L2 <= {REDUCED_RATIO:g} x PyTorch's + {REDUCED_SLACK:.2g}"
            + "".join(
                f"; {o.name} {o.distance:.3g} (PyTorch {o.pytorch:.3g})"
                for o in self.reduced.outputs
            )
            if self.reduced is not None
            else f"tolerance ({self.dtype.value}): rel-L2 {self.tolerance.rel_l2:g} "
            f"or max abs {self.tolerance.atol:g}"
        )
        t.caption = (
            f"{judged}; "
            f"logits argmax agreement {_pct(self.argmax_agreement)}; "
            f"halt decision agreement {_pct(self.halt_agreement)}"
        )
        return t


def _structural(o: OutputComparison) -> bool:
    """A shape or dtype mismatch (or NaN), which fails whatever the values are judged by."""
    return o.problem is not None and o.problem.startswith(("shape", "dtype", "non-finite"))


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
            if dtype == DType.FLOAT32:
                tie = max(tolerance.atol, _max_abs(report, "q_halt_logits", "q_continue_logits"))
                flips = float32_flips(
                    _margin(rule, gh, gc), _margin(rule, rh, rc), tie, logits=False
                )
                if flips:
                    report.problems.append(f"the halt decision flipped at rows {flips[:8]}")
    if dtype == DType.FLOAT32 and "logits" in by_name:
        g, r = by_name["logits"]
        if g.shape == r.shape:
            tie = max(tolerance.atol, _max_abs(report, "logits"))
            flips = float32_flips(g.double().numpy(), r.double().numpy(), tie, logits=True)
            if flips:
                report.problems.append(f"the token argmax flipped at rows {flips[:8]}")
    return report


def _margin(rule: HaltRule, q_halt: torch.Tensor, q_continue: torch.Tensor):
    """The halt decision's margin: positive halts."""
    h = q_halt.double().numpy()
    return h if rule is HaltRule.POSITIVE else h - q_continue.double().numpy()


def _max_abs(report: VerifyReport, *names: str) -> float:
    found = [o.max_abs for o in report.outputs if o.name in names and o.max_abs == o.max_abs]
    return max(found, default=0.0)


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

    A float32 artifact is compared with PyTorch float32 on one draw. A reduced-precision one is
    judged against the float32 truth relative to PyTorch in its dtype (`reduced_report`), over
    draws (seeds `seed`, `seed + 1`, ...) until batch x draws >= `numerics.MIN_ROWS`.

    Args:
        model: the `HRM` computing in the exported dtype.
        compiled: a `hrm_mlir.runtime.CompiledModule` with a `@step` function.
        batch_size: the batch the module was exported for.
        seed: seeds the random inputs.
    """
    cfg = model.config
    tolerance = step_tolerance(cfg.forward_dtype, step_depth(cfg))
    twin = float32_twin(model)
    got, ref, truth = [], [], []
    for draw in range(1 if twin is None else draws_for(batch_size)):
        args = random_step_inputs(cfg, batch_size, seed + draw)
        with torch.no_grad():
            ref.append(model.inner(*args))
            if twin is not None:
                truth.append(twin.inner(*upcast(args)))
        got.append(compiled.call("step", *args))
    return reduced_report(STEP_OUTPUTS, got, ref, truth, cfg.forward_dtype, tolerance, cfg)


def draws_for(batch_size: int) -> int:
    """Draws of a batch that give at least `numerics.MIN_ROWS` rows."""
    return -(-MIN_ROWS // max(batch_size, 1))


def reduced_report(
    names: Sequence[str],
    got: Sequence[Sequence[torch.Tensor]],
    ref: Sequence[Sequence[torch.Tensor]],
    truth: Sequence[Sequence[torch.Tensor]],
    dtype: DType,
    tolerance: Tolerance,
    config,
) -> VerifyReport:
    """The report of draws (each a list of outputs): `compare` of the artifact with PyTorch in
    its dtype, rows stacked; where `truth` is given (a reduced dtype), judged against it."""

    def stacked(draws: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        return [
            torch.cat([d[i].reshape(d[i].shape or (1,)) for d in draws]) for i in range(len(names))
        ]

    g, r = stacked(got), stacked(ref)
    report = compare(names, g, r, dtype, tolerance, rule=config.halt_rule)
    report.rows = int(g[0].shape[0]) if g and g[0].ndim else 1
    if truth and all(a.shape == b.shape for a, b in zip(g, r, strict=True)):
        t = stacked(truth)
        report.reduced = judge_reduced(
            tuple(names),
            [x.float().numpy() for x in g],
            [x.float().numpy() for x in r],
            [x.float().numpy() for x in t],
            halts=config.halt_rule.halts,
        )
    return report


def verify_act(model, compiled, batch_size: int, seed: int = 0) -> VerifyReport:
    """Run `@act` of a compiled module and `model.act` on the same random puzzles: the steps
    of the compile self-check's case (`exporter.reference.ACT_STEPS`, no Q-halting), judged by
    the loop tolerances (`numerics.LOOP_TOLERANCES`: rounding compounds through the carry)."""
    from hrm_mlir.core.numerics import LOOP_TOLERANCES
    from hrm_mlir.exporter.reference import ACT_NAMES, ACT_STEPS

    cfg = model.config
    twin = float32_twin(model)
    i32 = torch.int32
    steps, q_halt = torch.tensor(ACT_STEPS, dtype=i32), torch.tensor(0, dtype=i32)
    got, ref, truth = [], [], []
    for draw in range(1 if twin is None else draws_for(batch_size)):
        _, _, inputs, ids = random_step_inputs(cfg, batch_size, seed + draw)
        with torch.no_grad():
            out = model.act(inputs, ids, max_steps=ACT_STEPS, q_halt=False)
            ref.append((out.logits, out.q_halt_logits, out.q_continue_logits, out.steps))
            if twin is not None:
                t = twin.act(inputs, ids, max_steps=ACT_STEPS, q_halt=False)
                truth.append((t.logits, t.q_halt_logits, t.q_continue_logits, t.steps))
        got.append(compiled.call("act", inputs, ids, steps, q_halt))
    tolerance = LOOP_TOLERANCES[cfg.forward_dtype]
    return reduced_report(ACT_NAMES, got, ref, truth, cfg.forward_dtype, tolerance, cfg)
