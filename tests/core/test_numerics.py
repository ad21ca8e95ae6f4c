"""The reduced-precision criterion (`numerics.judge_reduced`) and the float32 answer gate
(`numerics.float32_flips`), on synthetic outputs whose distances are known."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from hrm_mlir.core.numerics import (
    MIN_ROWS,
    REDUCED_SLACK,
    float32_flips,
    judge_reduced,
)
from hrm_mlir.core.types import HaltRule

NAMES = ("z_H", "logits", "q_halt_logits", "q_continue_logits")


def _truth(rows: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((rows, 18, 64)),
        rng.standard_normal((rows, 16, 11)) * 3,
        rng.standard_normal(rows),
        rng.standard_normal(rows),
    ]


def _noisy(outputs: list[np.ndarray], scale: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [o + scale * np.abs(o).mean() * rng.standard_normal(o.shape) for o in outputs]


def test_noise_like_pytorchs_own_passes_and_a_wrong_artifact_fails():
    truth = _truth(MIN_ROWS)
    pytorch = _noisy(truth, 0.02, seed=1)
    twin = _noisy(truth, 0.02, seed=2)  # another bf16 rounding of the same size
    judged = judge_reduced(NAMES, twin, pytorch, truth, halts=HaltRule.Q_CONTINUE.halts)
    assert judged.passed, judged.problems()
    wrong = _noisy(truth, 0.2, seed=3)  # ten times PyTorch's error: a different model
    judged = judge_reduced(NAMES, wrong, pytorch, truth, halts=HaltRule.Q_CONTINUE.halts)
    assert not judged.passed
    assert any(p.startswith("z_H:") for p in judged.problems())


def test_the_truth_rounded_to_bf16_passes_even_where_pytorch_is_exact():
    """The slack: a perfect bf16 artifact is half a bf16 ulp from the truth."""
    truth = _truth(MIN_ROWS)
    rounded = [o.astype(ml_dtypes.bfloat16).astype(np.float64) for o in truth]
    judged = judge_reduced(NAMES, rounded, truth, truth)
    assert judged.passed, judged.problems()
    assert max(o.distance for o in judged.outputs) <= REDUCED_SLACK


def test_a_q_logit_is_gated_over_enough_rows_only():
    few, many = _truth(4), _truth(MIN_ROWS)
    for truth, gated in ((few, False), (many, True)):
        got = [t.copy() for t in truth]
        got[2] = truth[2] + 5.0  # every q_halt far off
        judged = judge_reduced(NAMES, got, truth, truth)
        q_halt = judged.outputs[2]
        assert q_halt.gated is gated and (q_halt.problem is not None) is gated


def test_flipped_answers_fail_and_name_their_rows():
    truth = _truth(MIN_ROWS)
    got = [t.copy() for t in truth]
    top = truth[1].argmax(-1)
    for row in (3, 7):  # make another token the clear winner at every position of two rows
        other = (top[row] + 1) % 11
        np.put_along_axis(got[1][row], other[:, None], truth[1][row].max(-1)[:, None] + 1, -1)
    judged = judge_reduced(NAMES, got, truth, truth)
    problems = judged.problems()
    assert any("argmax" in p and "[3, 7]" in p for p in problems), problems


def test_nan_fails_whatever_pytorch_did():
    truth = _truth(MIN_ROWS)
    got = [t.copy() for t in truth]
    got[0][0, 0, 0] = np.nan
    assert not judge_reduced(NAMES, got, truth, truth).passed


def test_float32_flips_excuse_ties_within_the_tolerance_only():
    ref = np.zeros((2, 3, 4))
    ref[..., 0] = 1.0
    ref[0, 1, 1] = 1.0 - 1e-6  # a near tie at row 0
    got = ref.copy()
    got[0, 1, 1] = 1.0 + 1e-6  # flips the tie: excused
    assert float32_flips(got, ref, 1e-4, logits=True) == []
    got[1, 2, 3] = 2.0  # a real flip at row 1
    assert float32_flips(got, ref, 1e-4, logits=True) == [1]
    margin = np.array([0.5, -1e-6, -0.3])
    assert float32_flips(np.array([0.5, 1e-6, 0.3]), margin, 1e-4, logits=False) == [2]
