"""The bundled trained checkpoints (HRM and TRM), solved through the compiled `@act` (not only
in PyTorch), at the accuracy the README states for each."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_mlir.checkpoint.load import load_checkpoint
from hrm_mlir.puzzles import encode_batch, get_codec
from hrm_mlir.runner import CompiledACT, solve

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
README = Path(__file__).resolve().parents[1] / "README.md"
# each example and the words that introduce its figure in the README
STATED = {"sudoku6x6": "Its", "trm-sudoku6x6": "The TRM's"}


def _documented_accuracy(example: str, q_halt: bool = False) -> float:
    """The held-out exact accuracy the README states for a bundled checkpoint: fixed steps,
    or the "With Q-halting it is ..." figure that follows it."""
    text = README.read_text()
    m = re.search(
        re.escape(STATED[example])
        + r" held-out exact accuracy through the compiled `@act`: \*\*([\d.]+)%\*\*",
        text,
    )
    assert m, f"README must state the accuracy of examples/{example}"
    if q_halt:
        m = re.compile(r"With Q-halting it is (?:also )?([\d.]+)%").search(text, m.end())
        assert m, f"README must state examples/{example}'s accuracy with Q-halting"
    return float(m.group(1)) / 100 - 1e-9  # the README rounds to 0.1%; 94.4/100 > 0.944


@pytest.fixture(scope="module", params=list(STATED))
def example(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def heldout(example):
    lines = (EXAMPLES / example / "heldout.txt").read_text().split("\n")
    pairs = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    codec = get_codec("sudoku")
    puzzles = codec.parse("\n".join(p for p, _ in pairs), "heldout.txt")
    solutions = [np.array([int(c) for c in s]).reshape(puzzles[0].grid.shape) for _, s in pairs]
    return puzzles, solutions


@pytest.fixture(scope="module")
def compiled(example):
    ck = load_checkpoint(EXAMPLES / example)
    return ck, CompiledACT.from_checkpoint(ck, batch_size=50)


@pytest.mark.parametrize("q_halt", [False, True], ids=["fixed-steps", "q-halting"])
def test_compiled_model_solves_heldout_puzzles(example, heldout, compiled, q_halt):
    puzzles, solutions = heldout
    ck, model = compiled
    assert len(puzzles) >= 200
    results = solve(model, puzzles, max_steps=ck.config.halt_max_steps, q_halt=q_halt)
    exact = np.mean([np.array_equal(r.answer, s) for r, s in zip(results, solutions, strict=True)])
    valid = np.mean([r.valid is True for r in results])
    assert exact >= _documented_accuracy(example, q_halt), f"exact {exact:.3f}"
    assert valid >= exact  # a solution equal to the unique answer is valid
    if q_halt:  # Q-halting saves steps on easy puzzles
        assert np.mean([r.steps for r in results]) < ck.config.halt_max_steps


def test_compiled_loop_agrees_with_pytorch(heldout, compiled):
    puzzles, _ = heldout
    ck, model = compiled
    puzzles = puzzles[:50]
    steps = ck.config.halt_max_steps
    results = solve(model, puzzles, max_steps=steps, q_halt=True)
    inputs, ids = encode_batch(puzzles, ck.config.seq_len)
    ref = ck.build_model("float32").act(
        torch.from_numpy(inputs), torch.from_numpy(ids), max_steps=steps, q_halt=True
    )
    codec = get_codec("sudoku")
    for i, r in enumerate(results):
        assert r.steps == int(ref.steps[i])
        assert np.array_equal(r.answer, codec.decode(ref.logits[i].numpy(), puzzles[i]))
        assert abs(r.q_halt_logit - float(ref.q_halt_logits[i])) < 1e-3
