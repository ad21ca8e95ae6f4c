"""The per-dtype tolerance table and the comparison of one output, on numpy arrays.

`hrm_mlir.verification` compares torch tensors through `compare_one`; `compile`'s self-check
(`hrm_mlir.exporter.reference`) uses it on the arrays IREE returns, without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hrm_mlir.core.types import DType


@dataclass(frozen=True)
class Tolerance:
    """An output passes when its relative L2 error ||got - ref|| / ||ref|| is at most `rel_l2`,
    or its largest absolute error is at most `atol` (for outputs near zero, such as a
    q logit of 0.2, whose relative error says little)."""

    rel_l2: float
    atol: float


# The compiled model and PyTorch round differently (fusion, reassociated reductions). Measured on
# the 27M-parameter config: float32 rel-L2 <= 5.3e-6, max abs <= 8.2e-5; bfloat16 rel-L2 <= 3.5e-2
# (each side rounds different intermediates to bf16's 8 mantissa bits, over 24 blocks).
TOLERANCES: dict[DType, Tolerance] = {
    DType.FLOAT32: Tolerance(rel_l2=1e-4, atol=1e-4),
    DType.BFLOAT16: Tolerance(rel_l2=1e-1, atol=1e-1),
}
# The outputs of a loop (`@act`): each step's rounding differences feed the next step, so they
# grow with the steps, and faster on a chaotic model than on a trained one. The 27M config with
# random weights (scripts/make_arc_checkpoint.py) after `@act`'s 2 reference steps, on an AMD
# EPYC Zen 5 (AVX-512): float32 logits rel-L2 1.4e-4 with IREE's defaults and 3.1e-4 with the
# project's kernels (max abs 7.8e-3 and 1.7e-2), where the one step gives <= 1.9e-5. A wrong
# step, carry or halt is off by O(1). bfloat16: its step tolerance, not measured beyond that.
LOOP_TOLERANCES: dict[DType, Tolerance] = {
    DType.FLOAT32: Tolerance(rel_l2=1e-3, atol=1e-3),
    DType.BFLOAT16: Tolerance(rel_l2=1e-1, atol=1e-1),
}
LOOP_FUNCTIONS = ("act",)  # judged by LOOP_TOLERANCES
# A step is itself a loop of level updates (H_cycles x (L_cycles + 1) network applications, the
# carry of each the input of the next), so its rounding compounds like `@act`'s. The step table
# holds for the depths it was measured on: the 27M HRM (6 updates, rel-L2 <= 1.9e-5) and the
# tests' TRM (8). TRM's published shapes are deeper: Sudoku 21 updates, ARC 15. Its Sudoku shape
# with random weights gave, on an AMD EPYC Zen 2 (AVX2): q_continue_logits max abs 1.6e-4 with
# the project's kernels (rel 3.0e-4 of a logit of 0.52) and ONNX Runtime's z_L rel-L2 1.2e-4,
# while its states stayed within 1.1e-5 of PyTorch's. Steps deeper than this are judged by
# LOOP_TOLERANCES; a wrong step is off by O(1) whatever the depth.
STRICT_STEP_DEPTH = 8


def step_tolerance(dtype: DType, depth: int) -> Tolerance:
    """The tolerance of one step of `depth` level updates (`models.hrm.level_schedule`)."""
    table = TOLERANCES if depth <= STRICT_STEP_DEPTH else LOOP_TOLERANCES
    return table[dtype]


@dataclass
class OutputComparison:
    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    mean_abs: float
    rel_l2: float
    worst_index: tuple[int, ...]
    problem: str | None = None  # shape/dtype mismatch or tolerance exceeded

    @property
    def passed(self) -> bool:
        return self.problem is None


_NAN = (float("nan"), float("nan"), float("nan"), ())


def compare_one(
    name: str, got: np.ndarray, ref: np.ndarray, tol: Tolerance, *, got_dtype: str, dtype: str
) -> OutputComparison:
    """Compare one output: shape, then dtype (`got_dtype` against `dtype`, by name), then
    values upcast to float64; non-finite values fail whatever the tolerance."""
    shape = tuple(ref.shape)
    if tuple(got.shape) != shape:
        return OutputComparison(
            name, shape, dtype, *_NAN, problem=f"shape {tuple(got.shape)}, expected {shape}"
        )
    if got_dtype != dtype:
        return OutputComparison(
            name, shape, dtype, *_NAN, problem=f"dtype {got_dtype}, expected {dtype}"
        )
    g, r = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(g - r)
    if diff.size == 0:
        return OutputComparison(name, shape, dtype, 0.0, 0.0, 0.0, ())
    finite = bool(np.isfinite(g).all())
    masked = np.where(np.isnan(diff), np.inf, diff)
    worst = tuple(int(i) for i in np.unravel_index(int(masked.argmax()), diff.shape))
    norm = float(np.linalg.norm(r))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
    problem = None
    if not finite:
        problem = "non-finite values"
    elif rel > tol.rel_l2 and float(diff.max()) > tol.atol:
        problem = (
            f"rel-L2 {rel:.3g} > {tol.rel_l2:g} and max abs {float(diff.max()):.3g} > {tol.atol:g}"
        )
    return OutputComparison(
        name, shape, dtype, float(diff.max()), float(diff.mean()), rel, worst, problem
    )


# ---- Reduced precision: judged against the float32 truth, relative to PyTorch's own error ----
#
# A bf16 artifact cannot match PyTorch's bf16 to a fixed tolerance: each side rounds different
# intermediates to 8 mantissa bits, and PyTorch's bf16 is often the further of the two from the
# float32 truth (a tiny model's q_halt: -0.504 in PyTorch bf16, -0.723 in float32, IREE close to
# float32). So an output of a reduced-precision artifact passes when its distance from the truth
# (the project's model in float32 on the same weights and inputs) is at most
# `REDUCED_RATIO` x PyTorch's distance in that dtype, plus `REDUCED_SLACK`: half a bf16 ulp
# (2^-9), the distance of the truth itself rounded to bf16, which a perfect bf16 artifact has
# even where PyTorch happened to be closer. Distances are rel-L2 over all rows. A q logit is one
# number per row, so its distance means something only over `MIN_ROWS` rows (batch x draws);
# with fewer it is reported, not gated (`verify` always draws enough).
# The answers are gated too: the token argmax and the halt decision must agree with the truth's
# at least as often as PyTorch's do, less `ANSWER_MARGIN` (and one row of the halts).
REDUCED_RATIO = 1.5
REDUCED_SLACK = 2.0**-9
MIN_ROWS = 32
ANSWER_MARGIN = 0.02
PER_ROW_OUTPUTS = ("q_halt_logits", "q_continue_logits")


def rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    """||got - ref|| / ||ref|| in float64 (the absolute norm where ref is zero); inf if got has
    a non-finite value."""
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not np.isfinite(g).all():
        return float("inf")
    diff = float(np.linalg.norm(g - r))
    norm = float(np.linalg.norm(r))
    return diff / norm if norm > 0 else diff


@dataclass
class ReducedOutput:
    """One output of a reduced-precision artifact against the truth."""

    name: str
    distance: float  # rel-L2 of the artifact from the truth
    pytorch: float  # rel-L2 of PyTorch in the same dtype from the truth
    rows: int
    gated: bool  # False: too few rows for this output to mean something

    @property
    def bound(self) -> float:
        return REDUCED_RATIO * self.pytorch + REDUCED_SLACK

    @property
    def problem(self) -> str | None:
        if not np.isfinite(self.distance):
            return f"{self.name}: non-finite values"
        if self.gated and self.distance > self.bound:
            return (
                f"{self.name}: {self.distance:.3g} from the float32 truth, over "
                f"{REDUCED_RATIO:g} x PyTorch's {self.pytorch:.3g} + {REDUCED_SLACK:.2g}"
            )
        return None


@dataclass
class Answers:
    """How often an artifact's answers agree with the truth's, against PyTorch's."""

    what: str  # "argmax" or "halt"
    agreement: float
    pytorch: float
    count: int  # positions or rows
    flipped: list[int]  # rows where the artifact disagrees and PyTorch agrees, the first few

    @property
    def margin(self) -> float:
        return ANSWER_MARGIN + (1.0 / self.count if self.what == "halt" and self.count else 0.0)

    @property
    def problem(self) -> str | None:
        if self.agreement + 1e-12 < self.pytorch - self.margin:
            return (
                f"{self.what} agrees with the float32 truth on {100 * self.agreement:.1f}%, "
                f"PyTorch's on {100 * self.pytorch:.1f}% (margin {100 * self.margin:.1f}); "
                f"rows {self.flipped[:8]}"
            )
        return None


@dataclass
class ReducedJudgement:
    outputs: list[ReducedOutput]
    answers: list[Answers]

    def problems(self) -> list[str]:
        found = [o.problem for o in self.outputs] + [a.problem for a in self.answers]
        return [p for p in found if p is not None]

    @property
    def passed(self) -> bool:
        return not self.problems()


def judge_reduced(
    names: tuple[str, ...] | list[str],
    got: list[np.ndarray],
    pytorch: list[np.ndarray],
    truth: list[np.ndarray],
    halts: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> ReducedJudgement:
    """Judge a reduced-precision artifact's outputs (`got`) by PyTorch's in the same dtype
    (`pytorch`) against the truth, output by output, rows first (batch x draws stacked)."""
    outputs = []
    by_name = {}
    for name, g, p, t in zip(names, got, pytorch, truth, strict=True):
        rows = int(t.shape[0]) if t.ndim else 1
        gated = name not in PER_ROW_OUTPUTS or rows >= MIN_ROWS
        outputs.append(ReducedOutput(name, rel_l2(g, t), rel_l2(p, t), rows, gated))
        by_name[name] = (g, p, t)
    answers = []
    if "logits" in by_name:
        g, p, t = (np.asarray(a, np.float64).argmax(-1) for a in by_name["logits"])
        answers.append(_answers("argmax", g, p, t))
    if halts is not None and {"q_halt_logits", "q_continue_logits"} <= set(by_name):
        (gh, ph, th), (gc, pc, tc) = by_name["q_halt_logits"], by_name["q_continue_logits"]
        g, p, t = halts(gh, gc), halts(ph, pc), halts(th, tc)
        if t.shape[0] >= MIN_ROWS:
            answers.append(_answers("halt", g, p, t))
    return ReducedJudgement(outputs, answers)


def _answers(what: str, got: np.ndarray, pytorch: np.ndarray, truth: np.ndarray) -> Answers:
    ok, ref_ok = got == truth, pytorch == truth
    per_row = ok.reshape(ok.shape[0], -1).all(axis=1) if ok.ndim else ok.reshape(1)
    ref_row = ref_ok.reshape(ok.shape[0], -1).all(axis=1) if ok.ndim else ref_ok.reshape(1)
    flipped = [int(i) for i in np.flatnonzero(~per_row & ref_row)]
    count = int(ok.size)
    return Answers(what, float(ok.mean()), float(ref_ok.mean()), count, flipped)


def float32_flips(got: np.ndarray, ref: np.ndarray, tie: float, *, logits: bool) -> list[int]:
    """Rows whose answer differs from the float32 reference's where the reference does not tie
    within `tie`: for logits, the token argmax (a tie: the reference's top logit minus the one
    the artifact chose <= `tie`); for halts, `ref` is the reference's decision margin (q_halt -
    q_continue, or q_halt) and `got` the artifact's (a tie: |margin| <= `tie`)."""
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if logits:
        gi, ri = g.argmax(-1), r.argmax(-1)
        chosen = np.take_along_axis(r, gi[..., None], -1)[..., 0]
        top = np.take_along_axis(r, ri[..., None], -1)[..., 0]
        bad = (gi != ri) & (top - chosen > tie)
    else:
        bad = ((g > 0) != (r > 0)) & (np.abs(r) > tie)
    rows = bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim else bad.reshape(1)
    return [int(i) for i in np.flatnonzero(rows)]
