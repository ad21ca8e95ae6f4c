"""Shared pieces of the puzzle codecs: the `Puzzle` record, the `Check` verdict, the codec base.

A codec turns puzzle files into `Puzzle`s, a `Puzzle` into the int32 token row the HRM model reads
(exactly as upstream's `dataset/build_*_dataset.py` builders lay it out), and the model's output
row back into an answer grid that it can validate, render and serialise.
"""

from __future__ import annotations

import csv
import io
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, NamedTuple

import numpy as np

from hrm_mlir.core.errors import PuzzleError


@dataclass(frozen=True, eq=False)
class Puzzle:
    """One puzzle read from a file.

    `grid` is the input grid: sudoku digits (int, 0 = blank), maze characters (`<U1`, one of
    `# SG`), ARC colours (int 0..9). `givens` is a bool mask of the cells the answer must keep
    (sudoku clues, maze walls/S/G, every ARC input cell). `expected` is a reference answer when
    the file carries one (sudoku/maze CSV `answer` column, a maze drawn with its `o` path, an ARC
    test `output`). `location` prefixes error messages (`file:line` or `file: task X test 0`).
    `task` is the ARC task id (the key into upstream's `identifiers.json`), `puzzle_id` the
    puzzle-identifier index fed to the model (0 = blank, upstream's value for sudoku and mazes).
    """

    family: str
    name: str
    index: int
    grid: np.ndarray
    givens: np.ndarray
    location: str
    expected: np.ndarray | None = None
    task: str | None = None
    puzzle_id: int = 0

    def with_puzzle_id(self, puzzle_id: int) -> Puzzle:
        """Return a copy that feeds `puzzle_id` to the model's puzzle embedding."""
        if puzzle_id < 0:
            raise PuzzleError(f"{self.location}: puzzle identifier {puzzle_id} is negative")
        return replace(self, puzzle_id=int(puzzle_id))

    def error(self, problem: str) -> PuzzleError:
        """A `PuzzleError` naming this puzzle's file and line."""
        return PuzzleError(f"{self.location}: {problem}")


class Check(NamedTuple):
    """Verdict on an answer: `ok` is True/False, or None when no rule check is possible."""

    ok: bool | None
    reason: str


class PuzzleCodec(ABC):
    """Parse, encode, decode, validate, render and serialise one puzzle family."""

    family: str = ""

    @abstractmethod
    def parse(self, text: str, source: str) -> list[Puzzle]:
        """Parse every puzzle of a file's text; `source` names the file in errors."""

    @abstractmethod
    def check_fits(self, puzzle: Puzzle, seq_len: int) -> None:
        """Raise `PuzzleError` unless `puzzle` fills a model input of `seq_len` tokens exactly."""

    @abstractmethod
    def encode(self, puzzle: Puzzle, seq_len: int) -> np.ndarray:
        """The model's input row for `puzzle`: int32 tokens of shape (seq_len,)."""

    @abstractmethod
    def decode(self, tokens_or_logits: np.ndarray, puzzle: Puzzle) -> np.ndarray:
        """The answer grid from the model's predicted tokens (or logits, argmax'ed here)."""

    @abstractmethod
    def validate(self, puzzle: Puzzle, answer: np.ndarray) -> Check:
        """Whether `answer` solves `puzzle`, with a one-line reason."""

    @abstractmethod
    def render(self, grid: np.ndarray) -> str:
        """A multi-line text picture of a grid for the terminal."""

    @abstractmethod
    def to_json(self, answer: np.ndarray) -> Any:
        """An answer grid as plain Python (lists, ints, strings) for JSON output."""

    @abstractmethod
    def vocab_size(self, seq_len: int) -> int:
        """Size of the token vocabulary (PAD included) of this family at `seq_len`."""

    def puzzle_identifier(self, puzzle: Puzzle) -> int:
        """The puzzle-identifier index to feed the model alongside `encode(puzzle)`."""
        return puzzle.puzzle_id


def predicted_tokens(x: np.ndarray, seq_len: int, puzzle: Puzzle) -> np.ndarray:
    """Coerce model output to a (seq_len,) int64 token row.

    Float arrays are logits and are argmax'ed over the last axis; integer arrays are token ids.
    Leading batch dimensions of size 1 are dropped.
    """
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if arr.ndim < 2:
            raise puzzle.error(f"logits need a vocabulary axis, got shape {arr.shape}")
        arr = arr.argmax(axis=-1)
    elif arr.dtype.kind not in "iu":
        raise puzzle.error(f"model output has dtype {arr.dtype}, expected integer tokens")
    while arr.ndim > 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (seq_len,):
        raise puzzle.error(f"model output has shape {arr.shape}, expected ({seq_len},) tokens")
    return arr.astype(np.int64)


def source_stem(source: str) -> str:
    """File name of `source` without directory or extension (`data/x.json` -> `x`)."""
    return PurePath(source).stem or source


def display_name(source: str, index: int) -> str:
    """Default puzzle name: `file.txt#3` for the third puzzle of a file."""
    return f"{PurePath(source).name or source}#{index + 1}"


def isqrt_exact(n: int) -> int | None:
    """The integer square root of `n` if `n` is a positive perfect square, else None."""
    if n <= 0:
        return None
    r = math.isqrt(n)
    return r if r * r == n else None


class CsvRow(NamedTuple):
    """One data row of an upstream dataset CSV (`source,question,answer,rating`)."""

    line: int
    question: str
    answer: str | None


def is_upstream_csv(text: str) -> bool:
    """True if the first non-blank line is a CSV header with a `question` column."""
    for line in text.splitlines():
        if line.strip():
            return "question" in [c.strip().lower() for c in line.split(",")]
    return False


def read_upstream_csv(text: str, source: str) -> list[CsvRow]:
    """Rows of an upstream HF dataset CSV (a header naming `question`, optionally `answer`)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[CsvRow] = []
    for record in reader:
        line = reader.line_num
        if not any(field.strip() for field in record):
            continue
        if header is None:
            header = [c.strip().lower() for c in record]
            continue
        if len(record) != len(header):
            raise PuzzleError(
                f"{source}:{line}: CSV row has {len(record)} fields, expected {len(header)}"
            )
        fields = dict(zip(header, record, strict=True))
        rows.append(
            CsvRow(
                line=line,
                question=fields["question"],
                answer=fields.get("answer") or None,
            )
        )
    if header is None or "question" not in header:
        raise PuzzleError(f"{source}:1: CSV header has no 'question' column")
    return rows
