"""Solve puzzles with a compiled `@act`: encode, run the ACT loop, decode, check the answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hrm_mlir.checkpoint.load import Checkpoint
from hrm_mlir.compiler.cache import compile_act
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.types import DType
from hrm_mlir.exporter.act import DYNAMIC
from hrm_mlir.exporter.params import Params
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.registry import config_from_json
from hrm_mlir.puzzles import Puzzle, encode_batch, get_codec
from hrm_mlir.runtime.module import CompiledModule


@dataclass
class CompiledACT:
    """A compiled `@act` with the model config and batch size it was exported for."""

    module: CompiledModule
    config: ReasoningConfig
    batch_size: int | None  # None: a symbolic batch, any number of rows per call

    @classmethod
    def from_vmfb(cls, path: str | Path, *, parameters: str | Path | None = None) -> CompiledACT:
        """Load a .vmfb written by `hrm-mlir compile` from an `--entry act` export.

        `parameters` is its parameter archive when it was exported with external parameters.
        """
        module = CompiledModule(path, parameters=parameters)
        if "act" not in module.function_names:
            raise HrmMlirError(f"{path}: no @act function (export with --entry act)")
        meta = module.reflection("act")
        if "hrm.config" not in meta:
            raise HrmMlirError(f"{path}: @act carries no hrm.config (not built by hrm-mlir)")
        if "hrm.batch_size" not in meta:
            raise HrmMlirError(f"{path}: @act carries no hrm.batch_size (not built by hrm-mlir, "
                               "or by an older one: export and compile it again)")  # fmt: skip
        config = config_from_json(meta["hrm.config"])
        batch = meta["hrm.batch_size"]
        return cls(module, config, None if batch == DYNAMIC else int(batch))

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        dtype: DType = DType.FLOAT32,
        batch_size: int | None = 1,
        compile_options: CompileOptions | None = None,
        params: Params | None = None,
        cache: bool = True,
        status: Callable[[str], None] | None = None,
    ) -> CompiledACT:
        """Export `@act` (linalg-on-tensors) and compile it for this machine, or read the
        artifact an earlier call left in the cache (`hrm_mlir.compiler.cache`).

        `params` None keeps small models' weights inline and serves large ones (an ARC puzzle
        table) from memory as external parameters. `cache` False neither reads nor writes the
        cache. `status` sees a line before the compile, or on a cache hit.
        """
        built = compile_act(
            checkpoint,
            dtype=dtype,
            batch_size=batch_size,
            options=compile_options,
            params=params,
            cache=cache,
            status=status,
        )
        return cls(built.module, built.config, batch_size)

    def act(
        self, inputs: torch.Tensor, ids: torch.Tensor, max_steps: int, q_halt: bool
    ) -> tuple[torch.Tensor, ...]:
        """One call of `@act` on `batch_size` rows (any number for a symbolic batch):
        (logits, q_halt, q_continue, steps)."""
        return self.module.call(
            "act",
            inputs,
            ids,
            torch.tensor(max_steps, dtype=torch.int32),
            torch.tensor(int(q_halt), dtype=torch.int32),
        )


@dataclass
class Solution:
    puzzle: Puzzle
    answer: np.ndarray
    steps: int
    q_halt_logit: float
    q_continue_logit: float
    valid: bool | None
    reason: str

    def as_dict(self) -> dict:
        codec = get_codec(self.puzzle.family)
        return {
            "name": self.puzzle.name,
            "family": self.puzzle.family,
            "answer": codec.to_json(self.answer),
            "steps": self.steps,
            "q_halt_logit": self.q_halt_logit,
            "q_continue_logit": self.q_continue_logit,
            "valid": self.valid,
            "reason": self.reason,
        }


def solve(
    model: CompiledACT, puzzles: Sequence[Puzzle], *, max_steps: int, q_halt: bool
) -> list[Solution]:
    """Run `@act` over `puzzles` in batches of the compiled batch size (all at once for a
    symbolic batch).

    A short last batch is padded with copies of its first puzzle; their results are dropped.
    """
    if max_steps < 1:
        raise HrmMlirError(f"--max_steps must be >= 1, got {max_steps}")
    seq_len, b = model.config.seq_len, model.batch_size or max(len(puzzles), 1)
    inputs, ids = encode_batch(puzzles, seq_len)
    solutions: list[Solution] = []
    for start in range(0, len(puzzles), b):
        chunk = list(range(start, min(start + b, len(puzzles))))
        rows = chunk + [chunk[0]] * (b - len(chunk))
        x = torch.from_numpy(inputs[rows]).to(torch.int32)
        p = torch.from_numpy(ids[rows]).to(torch.int32)
        logits, q_h, q_c, steps = model.act(x, p, max_steps, q_halt)
        for row, index in enumerate(chunk):
            puzzle = puzzles[index]
            codec = get_codec(puzzle.family)
            answer = codec.decode(logits[row].float().numpy(), puzzle)
            check = codec.validate(puzzle, answer)
            solutions.append(
                Solution(
                    puzzle,
                    answer,
                    int(steps[row]),
                    float(q_h[row]),
                    float(q_c[row]),
                    check.ok,
                    check.reason,
                )
            )
    return solutions


def solutions_json(solutions: Sequence[Solution], **header) -> str:
    return json.dumps({**header, "puzzles": [s.as_dict() for s in solutions]}, indent=2)


def assign_identifiers(
    puzzles: Sequence[Puzzle], path: str | Path, num_identifiers: int
) -> list[Puzzle]:
    """Give each ARC puzzle its learned embedding row, looked up by task name.

    `path` is the dataset's `identifiers.json` (upstream writes a list whose index is the row and
    whose entry 0 is the blank identifier; a {name: row} mapping is accepted too). Its length
    must equal the checkpoint's puzzle table: a rebuilt dataset silently shifts every row.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HrmMlirError(f"{path}: not a readable identifiers JSON file: {e}") from None
    if isinstance(raw, list):
        rows = {str(name): i for i, name in enumerate(raw)}
        size = len(raw)
    elif isinstance(raw, dict) and all(isinstance(v, int) for v in raw.values()):
        rows = {str(k): v for k, v in raw.items()}
        size = max(rows.values(), default=-1) + 1
    else:
        raise HrmMlirError(f"{path}: expected a list of names or a {{name: row}} mapping")
    if size != num_identifiers:
        raise HrmMlirError(
            f"{path}: {size} identifiers, but the checkpoint's puzzle table has "
            f"{num_identifiers} rows (was the dataset rebuilt after training?)"
        )
    out = []
    for p in puzzles:
        if p.task is None:
            out.append(p)  # not an ARC task: keeps its identifier (0, blank)
        elif p.task not in rows:
            raise HrmMlirError(f"{path}: no identifier for task {p.task!r} ({p.location})")
        else:
            out.append(p.with_puzzle_id(rows[p.task]))
    return out


def pytorch_agreement(
    checkpoint: Checkpoint,
    model: CompiledACT,
    puzzles: Sequence[Puzzle],
    solutions: Sequence[Solution],
    max_steps: int,
    q_halt: bool,
) -> dict:
    """Run the PyTorch ACT loop on the same puzzles; count equal answers and step counts."""
    inputs, ids = encode_batch(puzzles, model.config.seq_len)
    ref = checkpoint.build_model(model.config.forward_dtype).act(
        torch.from_numpy(inputs), torch.from_numpy(ids), max_steps=max_steps, q_halt=q_halt
    )
    answers = steps = 0
    diff = 0.0
    for i, s in enumerate(solutions):
        codec = get_codec(s.puzzle.family)
        answers += bool(
            np.array_equal(codec.decode(ref.logits[i].float().numpy(), s.puzzle), s.answer)
        )
        steps += int(ref.steps[i]) == s.steps
        diff = max(diff, abs(float(ref.q_halt_logits[i]) - s.q_halt_logit))
    return {"answers": answers, "steps": steps, "max_q_halt_diff": diff}
