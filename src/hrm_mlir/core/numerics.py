"""The per-dtype tolerance table and the comparison of one output, on numpy arrays.

`hrm_mlir.verification` compares torch tensors through `compare_one`; `compile`'s self-check
(`hrm_mlir.exporter.reference`) uses it on the arrays IREE returns, without importing torch.
"""

from __future__ import annotations

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
