"""Reproducible generator of small N x N Sudoku puzzles with unique solutions.

Grids are numpy int arrays of shape (N, N): 0 is a blank, 1..N a digit. Supported sizes are
4 (2x2 boxes), 6 (2x3 boxes: 2 rows by 3 columns) and 9 (3x3 boxes).

The token encoding matches upstream HRM's `dataset/build_sudoku_dataset.py`: token = digit + 1,
so a blank is 1 and PAD is 0, and `vocab_size = N + 2` (11 for 9x9, as upstream). Inputs are the
encoded puzzle, labels the encoded solution, and every puzzle identifier is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOX_SHAPES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
MIN_BLANK_FRACTION = 0.4
PAD_ID = 0
BLANK_TOKEN = 1
PUZZLE_IDENTIFIER = 0
HELDOUT_SEED_OFFSET = 1_000_003


def box_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of one box of an n x n Sudoku."""
    if n not in BOX_SHAPES:
        raise ValueError(f"unsupported Sudoku size {n}; valid sizes: {sorted(BOX_SHAPES)}")
    return BOX_SHAPES[n]


def vocab_size(n: int) -> int:
    """PAD + blank + digits 1..n."""
    box_shape(n)
    return n + 2


class _Board:
    """Bitmask bookkeeping of one board: which digits each row, column and box already holds."""

    def __init__(self, grid: np.ndarray) -> None:
        n = grid.shape[0]
        br, bc = box_shape(n)
        self.n = n
        self.full = (1 << n) - 1
        self.box_of = [(r // br) * (n // bc) + c // bc for r in range(n) for c in range(n)]
        self.cells = [int(v) for v in grid.reshape(-1)]
        self.rows = [0] * n
        self.cols = [0] * n
        self.boxes = [0] * n
        for i, v in enumerate(self.cells):
            if v:
                bit = 1 << (v - 1)
                r, c, b = i // n, i % n, self.box_of[i]
                if (self.rows[r] | self.cols[c] | self.boxes[b]) & bit:
                    raise ValueError("grid breaks the Sudoku rules")
                self.rows[r] |= bit
                self.cols[c] |= bit
                self.boxes[b] |= bit

    def candidates(self, i: int) -> int:
        n = self.n
        used = self.rows[i // n] | self.cols[i % n] | self.boxes[self.box_of[i]]
        return self.full & ~used

    def place(self, i: int, v: int) -> None:
        bit = 1 << (v - 1)
        n = self.n
        self.cells[i] = v
        self.rows[i // n] |= bit
        self.cols[i % n] |= bit
        self.boxes[self.box_of[i]] |= bit

    def unplace(self, i: int, v: int) -> None:
        mask = ~(1 << (v - 1))
        n = self.n
        self.cells[i] = 0
        self.rows[i // n] &= mask
        self.cols[i % n] &= mask
        self.boxes[self.box_of[i]] &= mask

    def most_constrained(self) -> tuple[int, int]:
        """(cell, candidate mask) of the blank with fewest candidates; cell -1 if none blank."""
        best, best_mask, best_count = -1, 0, self.n + 1
        for i, v in enumerate(self.cells):
            if v == 0:
                mask = self.candidates(i)
                count = mask.bit_count()
                if count < best_count:
                    best, best_mask, best_count = i, mask, count
                    if count <= 1:
                        break
        return best, best_mask


def _digits(mask: int) -> list[int]:
    return [d + 1 for d in range(mask.bit_length()) if mask >> d & 1]


def count_solutions(puzzle: np.ndarray, limit: int = 2) -> int:
    """Number of solutions of `puzzle`, counting no further than `limit`."""
    try:
        board = _Board(np.asarray(puzzle))
    except ValueError:
        return 0

    def search() -> int:
        cell, mask = board.most_constrained()
        if cell < 0:
            return 1
        found = 0
        for v in _digits(mask):
            board.place(cell, v)
            found += search()
            board.unplace(cell, v)
            if found >= limit:
                break
        return found

    return search()


def solve(puzzle: np.ndarray) -> np.ndarray | None:
    """One solution of `puzzle` (the first found), or None if it has none."""
    try:
        board = _Board(np.asarray(puzzle))
    except ValueError:
        return None

    def search() -> bool:
        cell, mask = board.most_constrained()
        if cell < 0:
            return True
        for v in _digits(mask):
            board.place(cell, v)
            if search():
                return True
            board.unplace(cell, v)
        return False

    if not search():
        return None
    return np.array(board.cells, dtype=np.int64).reshape(board.n, board.n)


def random_solution(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random valid full n x n grid (backtracking with digits tried in random order)."""
    board = _Board(np.zeros((n, n), dtype=np.int64))

    def search() -> bool:
        cell, mask = board.most_constrained()
        if cell < 0:
            return True
        options = _digits(mask)
        for k in rng.permutation(len(options)):
            v = options[int(k)]
            board.place(cell, v)
            if search():
                return True
            board.unplace(cell, v)
        return False

    if not search():  # pragma: no cover - an empty board always has a solution
        raise RuntimeError("failed to fill an empty board")
    return np.array(board.cells, dtype=np.int64).reshape(n, n)


def make_puzzle(
    solution: np.ndarray, rng: np.random.Generator, blank_fraction: float
) -> np.ndarray:
    """Blank cells of `solution` in random order while the solution stays unique.

    Stops once `blank_fraction` of the cells are blank (or no more cell can go).
    """
    n = solution.shape[0]
    target = int(np.ceil(blank_fraction * n * n))
    puzzle = solution.copy()
    flat = puzzle.reshape(-1)
    blanks = 0
    for i in rng.permutation(n * n):
        if blanks >= target:
            break
        v = flat[i]
        flat[i] = 0
        if count_solutions(puzzle, limit=2) == 1:
            blanks += 1
        else:
            flat[i] = v
    return puzzle


@dataclass(frozen=True)
class SudokuSet:
    """Puzzles (B, N, N) with 0 blanks and their unique solutions (B, N, N)."""

    puzzles: np.ndarray
    solutions: np.ndarray

    def __len__(self) -> int:
        return int(self.puzzles.shape[0])

    @property
    def n(self) -> int:
        return int(self.puzzles.shape[1])

    def puzzle_strings(self) -> list[str]:
        return [grid_to_string(p) for p in self.puzzles]

    def solution_strings(self) -> list[str]:
        return [grid_to_string(s) for s in self.solutions]


def generate(
    count: int,
    n: int,
    seed: int,
    blank_range: tuple[float, float] = (0.4, 0.6),
    exclude: set[str] | None = None,
) -> SudokuSet:
    """`count` distinct puzzles with unique solutions, reproducible from `seed`.

    Each puzzle aims at a blank fraction drawn uniformly from `blank_range`; one that ends with
    fewer than 40% blanks is dropped. Puzzles whose string is in `exclude` are skipped.
    """
    box_shape(n)
    lo, hi = blank_range
    if not MIN_BLANK_FRACTION <= lo <= hi <= 1.0:
        raise ValueError(
            f"blank_range must lie within [{MIN_BLANK_FRACTION}, 1], got {blank_range}"
        )
    rng = np.random.default_rng(seed)
    seen = set(exclude or ())
    puzzles: list[np.ndarray] = []
    solutions: list[np.ndarray] = []
    while len(puzzles) < count:
        solution = random_solution(n, rng)
        puzzle = make_puzzle(solution, rng, float(rng.uniform(lo, hi)))
        if (puzzle == 0).mean() < MIN_BLANK_FRACTION:
            continue
        key = grid_to_string(puzzle)
        if key in seen:
            continue
        seen.add(key)
        puzzles.append(puzzle)
        solutions.append(solution)
    return SudokuSet(np.stack(puzzles), np.stack(solutions))


def heldout(
    count: int,
    n: int,
    seed: int,
    train: SudokuSet,
    blank_range: tuple[float, float] = (0.4, 0.6),
) -> SudokuSet:
    """A held-out split disjoint from `train`: a distinct seed plus explicit dedupe by string.

    The seed is offset by `HELDOUT_SEED_OFFSET`; puzzles equal to a training puzzle are skipped.
    """
    return generate(
        count,
        n,
        seed + HELDOUT_SEED_OFFSET,
        blank_range=blank_range,
        exclude=set(train.puzzle_strings()),
    )


def grid_to_string(grid: np.ndarray) -> str:
    """Row-major digits, '.' for blanks (N <= 9, so one character per cell)."""
    return "".join("." if v == 0 else str(int(v)) for v in np.asarray(grid).reshape(-1))


def string_to_grid(text: str) -> np.ndarray:
    """Inverse of `grid_to_string`; accepts '.' or '0' for blanks."""
    n = math.isqrt(len(text))
    if n * n != len(text):
        raise ValueError(f"a puzzle string needs a square length, got {len(text)}")
    box_shape(n)
    digits = [0 if ch in ".0" else int(ch) for ch in text]
    if any(d > n for d in digits):
        raise ValueError(f"digit out of range 1..{n} in {text!r}")
    return np.array(digits, dtype=np.int64).reshape(n, n)


def is_valid_solution(solution: np.ndarray) -> bool:
    """True iff `solution` is a full grid obeying the row, column and box rules."""
    s = np.asarray(solution)
    n = s.shape[0]
    br, bc = box_shape(n)
    want = np.arange(1, n + 1)
    groups = list(s) + list(s.T)
    groups += [
        s[r : r + br, c : c + bc].reshape(-1) for r in range(0, n, br) for c in range(0, n, bc)
    ]
    return all(np.array_equal(np.sort(g), want) for g in groups)


def encode(grids: np.ndarray) -> np.ndarray:
    """Tokens of puzzles or solutions: digit + 1 (blank -> 1), flattened to (B, N*N) int32."""
    g = np.asarray(grids)
    return (g.reshape(g.shape[0], -1) + 1).astype(np.int32)


def decode(tokens: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `encode`: (B, N*N) tokens -> (B, N, N) digits (PAD and blank -> 0)."""
    t = np.asarray(tokens).astype(np.int64)
    return np.clip(t - 1, 0, None).reshape(-1, n, n)
