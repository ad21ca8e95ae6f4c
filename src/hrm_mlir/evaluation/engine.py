"""Evaluate a split batch by batch on one machine: the compiled `@act` (or the PyTorch model, for
comparison), upstream's metrics, and the predictions upstream's `evaluate.py` saves.

Every batch runs the ACT loop from a reset carry for `max_steps` steps (upstream's evaluation:
`halt_max_steps`, every row to the end), or with `q_halt` until each row halts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.evaluation.dataset import Split
from hrm_mlir.evaluation.metrics import Metrics

if TYPE_CHECKING:
    from hrm_mlir.models.hrm import HRM
    from hrm_mlir.runner import CompiledACT

# Keys of upstream's saved predictions (`pretrain.py` evaluate: the batch and `eval_save_outputs`)
PREDICTION_KEYS = ("inputs", "labels", "puzzle_identifiers", "q_halt_logits", "q_continue_logits")


class Runner(Protocol):
    """One ACT loop over a batch: (logits [B, S, V], q_halt [B], q_continue [B], steps [B])."""

    @property
    def batch_size(self) -> int | None:
        """Rows per call; None: any number."""

    def __call__(
        self, inputs: np.ndarray, ids: np.ndarray, max_steps: int, q_halt: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class CompiledRunner:
    """The compiled `@act` (`hrm_mlir.runner.CompiledACT`)."""

    act: CompiledACT

    @property
    def batch_size(self) -> int | None:
        return self.act.batch_size

    def __call__(self, inputs, ids, max_steps, q_halt):
        import torch

        out = self.act.act(torch.from_numpy(inputs), torch.from_numpy(ids), max_steps, q_halt)
        return tuple(t.float().numpy() if t.is_floating_point() else t.numpy() for t in out)


@dataclass
class PyTorchRunner:
    """The PyTorch model's ACT loop (`HRM.act`), upstream's eval loop in this port."""

    model: HRM
    batch_size: int | None = None

    def __call__(self, inputs, ids, max_steps, q_halt):
        import torch

        with torch.no_grad():
            x, p = torch.from_numpy(inputs), torch.from_numpy(ids)
            out = self.model.act(x, p, max_steps=max_steps, q_halt=q_halt)
        return (
            out.logits.float().numpy(),
            out.q_halt_logits.float().numpy(),
            out.q_continue_logits.float().numpy(),
            out.steps.numpy(),
        )


@dataclass
class Evaluation:
    """What `evaluate_split` measured."""

    metrics: dict[str, float]
    count: int  # examples with labels: the divisor of every metric
    examples: int  # examples evaluated
    seconds: float  # the evaluation loop (no load, no compile)
    max_steps: int
    q_halt: bool
    batch_size: int
    continuous: bool
    exact: np.ndarray  # per example, in dataset order: all labelled tokens right
    steps: np.ndarray  # per example
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def puzzles_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "count": self.count,
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
            "puzzles_per_second": round(self.puzzles_per_second, 3),
            "max_steps": self.max_steps,
            "q_halt": self.q_halt,
            "batch_size": self.batch_size,
            "continuous": self.continuous,
        }


def evaluate_split(
    runner: Runner,
    split: Split,
    *,
    max_steps: int,
    q_halt: bool = False,
    batch_size: int = 64,
    limit: int | None = None,
    keep: str | None = None,
    continuous: bool = False,
    progress: Callable[[int, int], None] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Evaluation:
    """Run every example of `split` (the first `limit`) and compute upstream's metrics.

    `batch_size` is the compiled batch where the runner has one. `keep`: None keeps no
    predictions, "logits" keeps upstream's full `logits`, "preds" only their argmax (a
    Sudoku-Extreme test set's logits are 1.5 GB). `continuous` (a compiled runner, with
    `q_halt`): refill each halted row's slot at once (`hrm_mlir.evaluation.continuous`).
    `progress(done, total)` as examples finish. `start`/`stop`: only the examples numbered
    `start` to `stop` (exclusive) of the whole split (a shard; `Split.batches`); the per-example
    arrays and the predictions then hold those examples alone.
    """
    if max_steps < 1:
        raise HrmMlirError(f"--max_steps must be >= 1, got {max_steps}")
    b = runner.batch_size or batch_size
    first, end = split.example_range(limit, start=start, stop=stop)
    total = end - first
    began = time.perf_counter()
    if continuous:
        if not isinstance(runner, CompiledRunner) or not q_halt:
            raise HrmMlirError("--continuous needs the compiled @act and --q_halt")
        from hrm_mlir.evaluation.continuous import run_continuous

        outs = run_continuous(
            runner.act.module, split, batch_size=b, max_steps=max_steps, q_halt=q_halt,
            limit=limit, keep_logits=keep == "logits", progress=progress, start=start, stop=stop,
        )  # fmt: skip
        offset = 0

        def chunk(inputs, ids, n):
            nonlocal offset
            rows = slice(offset, offset + n)
            offset += n
            logits = None if outs.logits is None else outs.logits[rows]
            return (outs.preds[rows], logits, outs.q_halt_logits[rows],
                    outs.q_continue_logits[rows], outs.steps[rows])  # fmt: skip
    else:

        def chunk(inputs, ids, n):
            logits, q_h, q_c, st = runner(inputs, ids, max_steps, q_halt)
            return logits.argmax(-1).astype(np.int32)[:n], logits[:n], q_h[:n], q_c[:n], st[:n]

    metrics = Metrics()
    kept: dict[str, list[np.ndarray]] = {}
    exact, steps = [], []
    done = 0
    for inputs, labels, ids, n in split.batches(b, limit, start=start, stop=stop):
        preds, logits, q_h, q_c, st = chunk(inputs, ids, n)
        exact.append(metrics.add(preds, labels[:n], q_h, st))
        steps.append(st)
        if keep is not None:
            values = {
                "inputs": inputs[:n], "labels": labels[:n], "puzzle_identifiers": ids[:n],
                "q_halt_logits": q_h, "q_continue_logits": q_c, "steps": st,
                keep: logits if keep == "logits" else preds,
            }  # fmt: skip
            for key, value in values.items():
                kept.setdefault(key, []).append(np.asarray(value))
        done += n
        if progress is not None and not continuous:
            progress(done, total)
    seconds = time.perf_counter() - began
    return Evaluation(
        metrics.result(),
        metrics.count,
        done,
        seconds,
        max_steps,
        q_halt,
        b,
        continuous,
        np.concatenate(exact) if exact else np.zeros(0, bool),
        np.concatenate(steps) if steps else np.zeros(0, np.int32),
        {k: np.concatenate(v) for k, v in kept.items()},
    )


def save_predictions(predictions: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write predictions as upstream's `evaluate.py` does: a `torch.save`d dict of tensors
    (`inputs`, `labels`, `puzzle_identifiers`, `logits` or `preds`, `q_halt_logits`,
    `q_continue_logits`, and `steps`), atomically."""
    import torch

    from hrm_mlir.core.fileio import write_atomic

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in predictions.items()}
    return write_atomic(path, lambda f: torch.save(tensors, f))
