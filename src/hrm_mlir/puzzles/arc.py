"""ARC codec (upstream `dataset/build_arc_dataset.py` and its ARC evaluator's crop).

Encoding: a 30x30 canvas, row-major, seq_len 900; PAD = 0, EOS = 1, colour k -> token k + 2
(vocab 12). At test time upstream places the grid at the top-left corner (the random translation
is a training-set augmentation only): an h x w grid fills rows 0..h-1 and columns 0..w-1; if
h < 30 the row below it gets EOS in columns 0..w-1; if w < 30 the column right of it gets EOS in
rows 0..h-1; the corner cell (h, w) and everything else stays PAD.

Decoding crops the predicted canvas the way upstream's evaluator does: the largest-area rectangle
anchored at the top-left corner that holds only colour tokens (2..11), where each row's width is
capped by the rows above it; ties keep the one with fewer rows.

Input: JSON in the public ARC task format, `{"train": [...], "test": [{"input": grid, "output":
grid?}]}`, as a single task, a dict of tasks keyed by task id (as in the ARC Prize challenge
files), or a list of tasks. Each test input is one puzzle; a test `output`, if present, is the
expected answer. The task id (identifiers.json name) is the task's `name` field if it has one,
else its key, else the file's stem (with `_<i>` appended for the i-th task of a list).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hrm_mlir.core.errors import PuzzleError
from hrm_mlir.puzzles.base import Check, Puzzle, PuzzleCodec, predicted_tokens, source_stem

GRID_MAX = 30
SEQ_LEN = GRID_MAX * GRID_MAX
PAD_TOKEN = 0
EOS_TOKEN = 1
COLOR_OFFSET = 2
NUM_COLORS = 10

# ANSI 256-colour backgrounds approximating the ARC palette (for `render(..., color=True)`).
_ANSI = [16, 27, 196, 40, 226, 244, 201, 208, 45, 88]


def _grid(raw: Any, what: str, where: str) -> np.ndarray:
    """Validate one ARC grid (a non-empty list of equal-length rows of colours 0..9)."""
    if not isinstance(raw, list) or not raw:
        raise PuzzleError(f"{where}: {what} must be a non-empty list of rows")
    rows = []
    width = None
    for r, row in enumerate(raw):
        if not isinstance(row, list) or not row:
            raise PuzzleError(f"{where}: {what} row {r + 1} must be a non-empty list of colours")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise PuzzleError(f"{where}: {what} row {r + 1} has {len(row)} cells, expected {width}")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < NUM_COLORS:
                raise PuzzleError(
                    f"{where}: {what} cell at row {r + 1}, column {c + 1} is {v!r}, "
                    "expected a colour 0..9"
                )
        rows.append(row)
    grid = np.array(rows, dtype=np.int64)
    if grid.shape[0] > GRID_MAX or grid.shape[1] > GRID_MAX:
        raise PuzzleError(
            f"{where}: {what} is {grid.shape[0]}x{grid.shape[1]}, larger than {GRID_MAX}x{GRID_MAX}"
        )
    return grid


def crop_canvas(canvas: np.ndarray) -> np.ndarray:
    """Upstream's crop: the largest top-left rectangle of colour tokens, minus the offset."""
    canvas = np.asarray(canvas).reshape(GRID_MAX, GRID_MAX)
    colour = (canvas >= COLOR_OFFSET) & (canvas < COLOR_OFFSET + NUM_COLORS)
    best_area, best = 0, (0, 0)
    width = GRID_MAX
    for r in range(GRID_MAX):
        stops = np.flatnonzero(~colour[r, :width])
        if stops.size:
            width = int(stops[0])
        if (r + 1) * width > best_area:
            best_area, best = (r + 1) * width, (r + 1, width)
    return (canvas[: best[0], : best[1]] - COLOR_OFFSET).astype(np.int64)


class ArcCodec(PuzzleCodec):
    """ARC-AGI test inputs on upstream's 30x30 canvas."""

    family = "arc"

    # ---------------------------------------------------------------- parsing

    def parse(self, text: str, source: str) -> list[Puzzle]:
        """Parse a task, a dict of tasks or a list of tasks; one puzzle per test input."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PuzzleError(f"{source}:{e.lineno}: invalid JSON: {e.msg}") from None
        stem = source_stem(source)
        tasks: list[tuple[str, Any]]
        if isinstance(data, dict) and "test" in data:
            tasks = [(stem, data)]
        elif isinstance(data, dict):
            tasks = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, list):
            tasks = [(f"{stem}_{i}", v) for i, v in enumerate(data)]
        else:
            raise PuzzleError(f"{source}:1: expected an ARC task object, or a dict or list of them")
        puzzles: list[Puzzle] = []
        for default_id, task in tasks:
            where = f"{source}: task {default_id!r}"
            if not isinstance(task, dict) or not isinstance(task.get("test"), list):
                raise PuzzleError(f"{where}: expected an ARC task object with a 'test' list")
            name = task.get("name")
            task_id = name if isinstance(name, str) and name else default_id
            tests = task["test"]
            for k, entry in enumerate(tests):
                loc = f"{source}: task {task_id!r} test {k}"
                if not isinstance(entry, dict) or "input" not in entry:
                    raise PuzzleError(f"{loc}: test entry has no 'input' grid")
                grid = _grid(entry["input"], "input", loc)
                output = entry.get("output")
                expected = None if output is None else _grid(output, "output", loc)
                puzzles.append(
                    Puzzle(
                        family=self.family,
                        name=task_id if len(tests) == 1 else f"{task_id}#{k}",
                        index=len(puzzles),
                        grid=grid,
                        givens=np.ones(grid.shape, dtype=bool),
                        location=loc,
                        expected=expected,
                        task=task_id,
                    )
                )
        return puzzles

    # --------------------------------------------------------------- encoding

    def check_fits(self, puzzle: Puzzle, seq_len: int) -> None:
        """ARC always needs seq_len 900 (the 30x30 canvas)."""
        if seq_len != SEQ_LEN:
            raise puzzle.error(
                f"ARC puzzles need seq_len {SEQ_LEN} (a 30x30 canvas), the model's is {seq_len}"
            )

    def encode(self, puzzle: Puzzle, seq_len: int) -> np.ndarray:
        """Top-left placed grid + 2, EOS row below and EOS column right of it, PAD elsewhere."""
        self.check_fits(puzzle, seq_len)
        h, w = puzzle.grid.shape
        canvas = np.full((GRID_MAX, GRID_MAX), PAD_TOKEN, dtype=np.int32)
        canvas[:h, :w] = puzzle.grid + COLOR_OFFSET
        if h < GRID_MAX:
            canvas[h, :w] = EOS_TOKEN
        if w < GRID_MAX:
            canvas[:h, w] = EOS_TOKEN
        return canvas.reshape(-1)

    def decode(self, tokens_or_logits: np.ndarray, puzzle: Puzzle) -> np.ndarray:
        """The answer grid cropped from the predicted canvas (may be 0x0)."""
        return crop_canvas(predicted_tokens(tokens_or_logits, SEQ_LEN, puzzle))

    def vocab_size(self, seq_len: int) -> int:
        """PAD + EOS + 10 colours."""
        return NUM_COLORS + 2

    # ------------------------------------------------------------- validation

    def validate(self, puzzle: Puzzle, answer: np.ndarray) -> Check:
        """Exact match against the test `output` if the task has one, else unchecked (None)."""
        answer = np.asarray(answer)
        if puzzle.expected is None:
            if answer.size == 0:
                return Check(None, "unchecked (no expected output); the prediction is empty")
            return Check(None, "unchecked (no expected output in the task)")
        want = puzzle.expected
        if answer.shape != want.shape:
            got = "x".join(map(str, answer.shape))
            return Check(False, f"answer is {got}, expected {want.shape[0]}x{want.shape[1]}")
        wrong = int((answer != want).sum())
        if wrong:
            return Check(False, f"{wrong} of {want.size} cells differ from the expected output")
        return Check(True, "matches the expected output")

    # -------------------------------------------------------------- rendering

    def render(self, grid: np.ndarray, color: bool = False) -> str:
        """Rows of colour digits; with `color`, ANSI background colours as well."""
        grid = np.asarray(grid)
        if grid.size == 0:
            return "(empty grid)"
        lines = []
        for row in grid:
            if color:
                cells = [
                    f"\x1b[48;5;{_ANSI[int(v)]}m{int(v):>2}\x1b[0m" if 0 <= v < NUM_COLORS else "?"
                    for v in row
                ]
                lines.append("".join(cells))
            else:
                lines.append(" ".join(str(int(v)) for v in row))
        return "\n".join(lines)

    def to_json(self, answer: np.ndarray) -> Any:
        """The grid as a list of rows of colour ints (ARC's own format)."""
        return [[int(v) for v in row] for row in np.asarray(answer)]


ARC = ArcCodec()
