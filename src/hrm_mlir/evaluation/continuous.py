"""Continuous batching under Q-halting: a row that halts frees its slot at once, and the next
example starts there from the reset carry, so the batch stays full until the queue runs dry.

Upstream's ACT wrapper does the same during training (`reset_carry`, and
`torch.where(carry.halted, batch, ...)` to bring in new data for the halted rows). Here the loop
runs on the host around the compiled artifact's own functions, which an `@act` export already
has (its ABI in the README):

    initial_carry(puzzle_identifiers [B]) -> (z_H [B,S,D], z_L [B,S,D])
    step(z_H, z_L, inputs [B,seq_len], puzzle_identifiers [B])
      -> (z_H, z_L, logits [B,seq_len,V], q_halt_logits [B], q_continue_logits [B])

Each slot holds one example: its carry, its step count and its last step's outputs. After each
call of `@step` a slot stops when its row meets the halting rule `@act` records
(`hrm.halt_rule`: HRM's `q_halt_logits > q_continue_logits`, TRM's `q_halt_logits > 0`), or
at `max_steps`, exactly as `@act` and `HRM.act` stop a row; its outputs are those of that step.
The rows of a batch do not interact, so every example gets the answer and step count it gets
when it runs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.types import HaltRule
from hrm_mlir.evaluation.dataset import Split
from hrm_mlir.runtime.module import CompiledModule


@dataclass
class Outputs:
    """Per example, in dataset order."""

    preds: np.ndarray  # [N, seq_len] argmax tokens
    q_halt_logits: np.ndarray  # [N]
    q_continue_logits: np.ndarray  # [N]
    steps: np.ndarray  # [N]
    logits: np.ndarray | None = None  # [N, seq_len, V] when kept
    calls: int = 0  # calls of @step


def _examples(
    split: Split, limit: int | None, start: int = 0, stop: int | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """(inputs row, puzzle identifier) of every example (of the range), in order."""
    for inputs, _, ids, n in split.batches(256, limit, start=start, stop=stop):
        for row in range(n):
            yield inputs[row], int(ids[row])


def run_continuous(
    module: CompiledModule,
    split: Split,
    *,
    batch_size: int,
    max_steps: int,
    q_halt: bool = True,
    limit: int | None = None,
    keep_logits: bool = False,
    progress: Callable[[int, int], None] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Outputs:
    """Every example of `split` through `batch_size` slots of the artifact's `@step`;
    `start`/`stop`: only the examples numbered so in the whole split (`Split.batches`)."""
    if max_steps < 1:
        raise HrmMlirError(f"--max_steps must be >= 1, got {max_steps}")
    for name in ("step", "initial_carry"):
        if name not in module.function_names:
            raise HrmMlirError(f"the artifact has no @{name}: continuous batching needs an @act "
                               "export (--entry act)")  # fmt: skip
    rule = halt_rule(module)
    first, end = split.example_range(limit, start=start, stop=stop)
    total = end - first
    seq_len = split.metadata.seq_len
    blank = split.metadata.blank_identifier_id
    inputs = np.full((batch_size, seq_len), split.metadata.pad_id, np.int32)
    ids = np.full(batch_size, blank, np.int32)
    reset_H, reset_L = module.call_arrays("initial_carry", ids)  # the same for every row
    z_H, z_L = reset_H.copy(), reset_L.copy()
    slot_example = np.full(batch_size, -1, np.int64)  # -1: idle
    slot_steps = np.zeros(batch_size, np.int32)
    out = Outputs(
        np.zeros((total, seq_len), np.int32),
        np.zeros(total, np.float32),
        np.zeros(total, np.float32),
        np.zeros(total, np.int32),
    )
    queue = _examples(split, limit, start, stop)
    next_index = 0

    def refill(slots: np.ndarray) -> None:
        nonlocal next_index
        for s in slots:
            item = next(queue, None)
            if item is None:
                slot_example[s] = -1
                continue
            inputs[s], ids[s] = item
            slot_example[s] = next_index
            slot_steps[s] = 0
            z_H[s], z_L[s] = reset_H[s], reset_L[s]
            next_index += 1

    refill(np.arange(batch_size))
    done = 0
    while (slot_example >= 0).any():
        z_H, z_L, logits, q_h, q_c = module.call_arrays("step", z_H, z_L, inputs, ids)
        out.calls += 1
        slot_steps += 1
        halts = slot_steps >= max_steps
        if q_halt:
            halts |= rule.halts(q_h, q_c)
        halts &= slot_example >= 0
        finished = np.flatnonzero(halts)
        if finished.size:
            rows = slot_example[finished]
            out.preds[rows] = logits[finished].argmax(-1)
            out.q_halt_logits[rows] = q_h[finished]
            out.q_continue_logits[rows] = q_c[finished]
            out.steps[rows] = slot_steps[finished]
            if keep_logits:
                if out.logits is None:
                    out.logits = np.zeros((total, *logits.shape[1:]), np.float32)
                out.logits[rows] = logits[finished]
            done += finished.size
            z_H, z_L = np.array(z_H), np.array(z_L)  # writable copies for the refill
            refill(finished)
            if progress is not None:
                progress(done, total)
    return out


def halt_rule(module: CompiledModule) -> HaltRule:
    """The halting rule `@act` was built with; artifacts from before the rule was recorded are
    HRM's."""
    recorded = (
        module.reflection("act").get("hrm.halt_rule") if "act" in module.function_names else None
    )
    return HaltRule(recorded) if recorded else HaltRule.Q_CONTINUE
