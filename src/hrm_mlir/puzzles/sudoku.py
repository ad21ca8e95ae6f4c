"""Sudoku codec (upstream `dataset/build_sudoku_dataset.py`).

Encoding: cell value v (0 = blank, 1..N digits) -> token v + 1, so blank = 1 and digit d = d + 1;
PAD = 0 (never produced for a full board); vocab N + 2 (11 for 9x9); seq_len N*N in row-major
order; puzzle identifier 0. Sizes: 4x4 (2x2 boxes), 6x6 (boxes of 2 rows x 3 columns), 9x9 (3x3).

Text format (several puzzles per file):

* one puzzle per line: N*N characters, digits with `0` or `.` for blanks;
* or a block of N lines of N cells (one board row per line), blocks separated by blank lines;
* inside a line, spaces, tabs, `|`, `+` and `-` are ignored, and lines made only of them (box
  dividers such as `------+-------+------`) are skipped;
* lines whose first non-space character is `#` are comments.

A line with 16/36/81 cells is a whole puzzle; a line with 4/6/9 cells is a board row. Upstream's
dataset CSV (`source,question,answer,rating` header) is read too; its `answer` becomes `expected`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hrm_mlir.core.errors import PuzzleError
from hrm_mlir.puzzles.base import (
    Check,
    Puzzle,
    PuzzleCodec,
    display_name,
    is_upstream_csv,
    isqrt_exact,
    predicted_tokens,
    read_upstream_csv,
)

#: Box shape (rows, columns) of each supported board size.
BOX_SHAPES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
SEPARATORS = frozenset(" \t|+-")
CELL_CHARS = frozenset("0123456789.")
PAD_TOKEN = 0


def _cell_value(ch: str) -> int:
    return 0 if ch == "." else ord(ch) - ord("0")


def _closest(n: int, candidates: list[int]) -> int:
    return min(candidates, key=lambda c: (abs(c - n), c))


def _units(n: int) -> list[tuple[str, list[tuple[int, int]]]]:
    """Every row, column and box of an n x n board as (label, cells)."""
    br, bc = BOX_SHAPES[n]
    units: list[tuple[str, list[tuple[int, int]]]] = []
    units += [(f"row {r + 1}", [(r, c) for c in range(n)]) for r in range(n)]
    units += [(f"column {c + 1}", [(r, c) for r in range(n)]) for c in range(n)]
    for b in range(n):
        r0, c0 = (b // (n // bc)) * br, (b % (n // bc)) * bc
        cells = [(r0 + i, c0 + j) for i in range(br) for j in range(bc)]
        units.append((f"box {b + 1}", cells))
    return units


class SudokuCodec(PuzzleCodec):
    """Sudoku boards of size 4, 6 or 9."""

    family = "sudoku"

    # ---------------------------------------------------------------- parsing

    def parse(self, text: str, source: str) -> list[Puzzle]:
        """Parse one-line puzzles, N-line blocks, or an upstream CSV."""
        if is_upstream_csv(text):
            return self._parse_csv(text, source)
        boards: list[tuple[int, np.ndarray]] = []  # (first line, board)
        block: list[list[str]] = []
        block_line = 0
        sizes: set[int] = set()

        def finish_block(at_line: int) -> None:
            nonlocal block
            if block and len(block) != len(block[0]):
                raise PuzzleError(
                    f"{source}:{block_line}: sudoku block has {len(block)} rows, expected "
                    f"{len(block[0])} (it ends at line {at_line})"
                )
            if block:
                boards.append((block_line, self._board(block, source, block_line)))
            block = []

        lines = text.splitlines()
        for ln, raw in enumerate(lines, 1):
            stripped = raw.strip()
            if not stripped:
                finish_block(ln)
                continue
            if stripped.startswith("#"):
                continue
            cells = [ch for ch in stripped if ch not in SEPARATORS]
            if not cells:
                continue  # a box divider such as ------+------
            for ch in cells:
                if ch not in CELL_CHARS:
                    raise PuzzleError(
                        f"{source}:{ln}: unexpected character {ch!r} in a sudoku "
                        "(expected digits, with '0' or '.' for blanks)"
                    )
            n = len(cells)
            if block:
                if n != len(block[0]):
                    raise PuzzleError(
                        f"{source}:{ln}: sudoku row has {n} cells, expected {len(block[0])}"
                    )
                block.append(cells)
                if len(block) == n:
                    finish_block(ln)
            elif n in (4, 6, 9):
                block, block_line = [cells], ln
                sizes.add(n)
            elif isqrt_exact(n) in BOX_SHAPES:
                side = isqrt_exact(n)
                assert side is not None
                rows = [cells[r * side : (r + 1) * side] for r in range(side)]
                boards.append((ln, self._board(rows, source, ln)))
                sizes.add(side)
            else:
                known = sorted(sizes) or sorted(BOX_SHAPES)
                expected = _closest(n, [k for s in known for k in (s, s * s)])
                what = "puzzle line" if expected > 9 else "row"
                raise PuzzleError(
                    f"{source}:{ln}: sudoku {what} has {n} cells, expected {expected}"
                )
        finish_block(len(lines))
        return [
            self._puzzle(board, source, i, line, None) for i, (line, board) in enumerate(boards)
        ]

    def _parse_csv(self, text: str, source: str) -> list[Puzzle]:
        puzzles: list[Puzzle] = []
        for row in read_upstream_csv(text, source):
            q = row.question.strip()
            side = isqrt_exact(len(q))
            if side not in BOX_SHAPES:
                expected = _closest(len(q), [16, 36, 81])
                raise PuzzleError(
                    f"{source}:{row.line}: sudoku question has {len(q)} cells, expected {expected}"
                )
            assert side is not None
            board = self._board(self._square(q, side, source, row.line), source, row.line)
            expected_board = None
            if row.answer is not None:
                a = row.answer.strip()
                if len(a) != len(q):
                    raise PuzzleError(
                        f"{source}:{row.line}: sudoku answer has {len(a)} cells, expected {len(q)}"
                    )
                expected_board = self._board(
                    self._square(a, side, source, row.line), source, row.line, check=False
                )
            puzzles.append(self._puzzle(board, source, len(puzzles), row.line, expected_board))
        return puzzles

    @staticmethod
    def _square(s: str, side: int, source: str, line: int) -> list[list[str]]:
        for ch in s:
            if ch not in CELL_CHARS:
                raise PuzzleError(
                    f"{source}:{line}: unexpected character {ch!r} in a sudoku "
                    "(expected digits, with '0' or '.' for blanks)"
                )
        return [list(s[r * side : (r + 1) * side]) for r in range(side)]

    @staticmethod
    def _board(rows: list[list[str]], source: str, line: int, check: bool = True) -> np.ndarray:
        """Int board from cell characters; checks digit range and (if `check`) repeated givens."""
        n = len(rows)
        board = np.array([[_cell_value(ch) for ch in row] for row in rows], dtype=np.int64)
        too_big = np.argwhere(board > n)
        if too_big.size:
            r, c = too_big[0]
            raise PuzzleError(
                f"{source}:{line}: digit {board[r, c]} at row {r + 1}, column {c + 1} is out "
                f"of range for a {n}x{n} sudoku"
            )
        if check:
            for label, cells in _units(n):
                seen: set[int] = set()
                for r, c in cells:
                    v = int(board[r, c])
                    if v and v in seen:
                        raise PuzzleError(f"{source}:{line}: sudoku givens repeat {v} in {label}")
                    seen.add(v)
        return board

    def _puzzle(
        self, board: np.ndarray, source: str, index: int, line: int, expected: np.ndarray | None
    ) -> Puzzle:
        return Puzzle(
            family=self.family,
            name=display_name(source, index),
            index=index,
            grid=board,
            givens=board != 0,
            location=f"{source}:{line}",
            expected=expected,
        )

    # --------------------------------------------------------------- encoding

    def check_fits(self, puzzle: Puzzle, seq_len: int) -> None:
        """A sudoku of side N needs seq_len == N*N."""
        n = puzzle.grid.shape[0]
        if n * n != seq_len:
            side = isqrt_exact(seq_len)
            want = f" (it takes {side}x{side} sudokus)" if side in BOX_SHAPES else ""
            raise puzzle.error(
                f"a {n}x{n} sudoku has {n * n} cells but the model's seq_len is {seq_len}{want}"
            )

    def encode(self, puzzle: Puzzle, seq_len: int) -> np.ndarray:
        """Tokens = cell value + 1 (blank -> 1), row-major."""
        self.check_fits(puzzle, seq_len)
        return (puzzle.grid.reshape(-1) + 1).astype(np.int32)

    def decode(self, tokens_or_logits: np.ndarray, puzzle: Puzzle) -> np.ndarray:
        """Board = token - 1 (so blank -> 0 and PAD -> -1)."""
        n = puzzle.grid.shape[0]
        tokens = predicted_tokens(tokens_or_logits, n * n, puzzle)
        return (tokens - 1).reshape(n, n)

    def vocab_size(self, seq_len: int) -> int:
        """PAD + blank + N digits."""
        side = isqrt_exact(seq_len)
        if side not in BOX_SHAPES:
            raise PuzzleError(f"seq_len {seq_len} is not a 4x4, 6x6 or 9x9 sudoku")
        assert side is not None
        return side + 2

    # ------------------------------------------------------------- validation

    def validate(self, puzzle: Puzzle, answer: np.ndarray) -> Check:
        """Every cell a digit 1..N, givens kept, each digit once per row, column and box."""
        n = puzzle.grid.shape[0]
        answer = np.asarray(answer)
        if answer.shape != (n, n):
            return Check(False, f"answer has shape {answer.shape}, expected ({n}, {n})")
        bad = np.argwhere((answer < 1) | (answer > n))
        if bad.size:
            r, c = bad[0]
            v = int(answer[r, c])
            what = "is blank" if v == 0 else "is padding" if v < 0 else f"holds {v}"
            return Check(False, f"cell at row {r + 1}, column {c + 1} {what}")
        changed = np.argwhere(puzzle.givens & (answer != puzzle.grid))
        if changed.size:
            r, c = changed[0]
            return Check(
                False,
                f"given {puzzle.grid[r, c]} at row {r + 1}, column {c + 1} "
                f"changed to {answer[r, c]}",
            )
        for label, cells in _units(n):
            values = [int(answer[r, c]) for r, c in cells]
            if len(set(values)) != n:
                dup = next(v for v in values if values.count(v) > 1)
                return Check(False, f"{label} repeats {dup}")
        if puzzle.expected is not None and not np.array_equal(answer, puzzle.expected):
            return Check(True, "solved (a valid solution other than the reference answer)")
        return Check(True, "solved")

    # -------------------------------------------------------------- rendering

    def render(self, grid: np.ndarray) -> str:
        """Board with `.` for blanks, `?` for padding, and box separators."""
        grid = np.asarray(grid)
        n = grid.shape[0]
        br, bc = BOX_SHAPES.get(n, (n, n))
        if grid.ndim != 2 or grid.shape[1] != n:
            br, bc = grid.shape[0], grid.shape[-1]

        def cell(v: int) -> str:
            return "." if v == 0 else str(v) if 0 < v <= 9 else "?"

        lines: list[str] = []
        segments = 1
        for r, row in enumerate(grid):
            if r and r % br == 0:
                widths = [2 * bc] + [2 * bc + 1] * (segments - 2) + [2 * bc]
                lines.append("+".join("-" * w for w in widths))
            chunks = [
                " ".join(cell(int(v)) for v in row[c : c + bc]) for c in range(0, len(row), bc)
            ]
            segments = len(chunks)
            lines.append(" | ".join(chunks))
        return "\n".join(lines)

    def to_json(self, answer: np.ndarray) -> Any:
        """Board as a list of rows of ints (0 = blank, -1 = padding)."""
        return [[int(v) for v in row] for row in np.asarray(answer)]


SUDOKU = SudokuCodec()
