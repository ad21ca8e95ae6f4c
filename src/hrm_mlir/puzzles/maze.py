"""Maze codec (upstream `dataset/build_maze_dataset.py`).

Encoding: charset `# SGo` -> tokens 1..5 (character index + 1): `#` wall 1, ` ` open 2, `S` start
3, `G` goal 4, `o` path 5; PAD = 0; vocab 6; the square grid row-major, seq_len = side * side
(900 for upstream's 30x30 mazes); puzzle identifier 0. The model answers with the same grid and
the path cells marked `o`.

Text format (several mazes per file): one grid per block, one maze row per line, blocks
separated by a blank (or whitespace-only) line or by a line of only `=`. Cells are `#`, ` ` (or
`.`, handy when an editor strips trailing spaces), `S`, `G`; every row has the same width, the
maze is square, with exactly one `S` and one `G`. A maze drawn with its `o` path is read as the
puzzle (path cleared) plus that reference answer. There are no comment lines (`#` is a wall).
Upstream's dataset CSV (`source,question,answer,rating` header, 900-character rows) is read too.
"""

from __future__ import annotations

from collections import deque
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

CHARSET = "# SGo"
WALL, OPEN, START, GOAL, PATH = "#", " ", "S", "G", "o"
#: Character drawn for a token outside the charset (PAD or out of vocabulary).
UNKNOWN = "?"
_INPUT_CHARS = frozenset("# SGo.")
_TOKEN_OF = {ch: i + 1 for i, ch in enumerate(CHARSET)}
_CHAR_OF = np.array([UNKNOWN, *CHARSET])


def _is_separator(line: str) -> bool:
    s = line.strip()
    return not s or set(s) == {"="}


class MazeCodec(PuzzleCodec):
    """Square mazes of `# SGo` characters."""

    family = "maze"

    # ---------------------------------------------------------------- parsing

    def parse(self, text: str, source: str) -> list[Puzzle]:
        """Parse blank-line (or `=`-line) separated maze grids, or an upstream CSV."""
        if is_upstream_csv(text):
            return self._parse_csv(text, source)
        blocks: list[list[tuple[int, str]]] = []
        current: list[tuple[int, str]] = []
        for ln, raw in enumerate(text.splitlines(), 1):
            if _is_separator(raw):
                if current:
                    blocks.append(current)
                current = []
            else:
                current.append((ln, raw))
        if current:
            blocks.append(current)
        puzzles: list[Puzzle] = []
        for block in blocks:
            first = block[0][0]
            width = len(block[0][1])
            for ln, row in block:
                self._check_chars(row, source, ln)
                if len(row) != width:
                    hint = (
                        " (write open cells at a row's end as '.' if trailing spaces get stripped)"
                        if len(row) < width
                        else ""
                    )
                    raise PuzzleError(
                        f"{source}:{ln}: maze row has {len(row)} cells, expected {width}{hint}"
                    )
            if len(block) != width:
                raise PuzzleError(
                    f"{source}:{first}: maze has {len(block)} rows of {width} cells; "
                    "mazes must be square"
                )
            grid = np.array([list(row) for _, row in block], dtype="<U1")
            puzzles.append(self._puzzle(grid, source, len(puzzles), first))
        return puzzles

    def _parse_csv(self, text: str, source: str) -> list[Puzzle]:
        puzzles: list[Puzzle] = []
        for row in read_upstream_csv(text, source):
            q = row.question
            side = isqrt_exact(len(q))
            if side is None:
                raise PuzzleError(
                    f"{source}:{row.line}: maze question has {len(q)} cells, not a square number"
                )
            self._check_chars(q, source, row.line)
            grid = np.array(list(q), dtype="<U1").reshape(side, side)
            expected = None
            if row.answer is not None:
                if len(row.answer) != len(q):
                    raise PuzzleError(
                        f"{source}:{row.line}: maze answer has {len(row.answer)} cells, "
                        f"expected {len(q)}"
                    )
                self._check_chars(row.answer, source, row.line)
                expected = np.array(list(row.answer), dtype="<U1").reshape(side, side)
                expected[expected == "."] = OPEN
            puzzles.append(self._puzzle(grid, source, len(puzzles), row.line, expected))
        return puzzles

    @staticmethod
    def _check_chars(row: str, source: str, line: int) -> None:
        for col, ch in enumerate(row, 1):
            if ch not in _INPUT_CHARS:
                raise PuzzleError(
                    f"{source}:{line}: unexpected character {ch!r} in a maze at column {col} "
                    "(expected '#', ' ', '.', 'S', 'G' or 'o')"
                )

    def _puzzle(
        self,
        grid: np.ndarray,
        source: str,
        index: int,
        line: int,
        expected: np.ndarray | None = None,
    ) -> Puzzle:
        grid = grid.copy()
        grid[grid == "."] = OPEN
        location = f"{source}:{line}"
        for mark, label in ((START, "start"), (GOAL, "goal")):
            count = int((grid == mark).sum())
            if count != 1:
                raise PuzzleError(
                    f"{location}: maze has {count} {mark!r} ({label}) cells, expected exactly 1"
                )
        drawn_path = grid == PATH
        if drawn_path.any():
            if expected is None:
                expected = grid.copy()
            grid[drawn_path] = OPEN
        return Puzzle(
            family=self.family,
            name=display_name(source, index),
            index=index,
            grid=grid,
            givens=grid != OPEN,
            location=location,
            expected=expected,
        )

    # --------------------------------------------------------------- encoding

    def check_fits(self, puzzle: Puzzle, seq_len: int) -> None:
        """A maze of side s needs seq_len == s*s."""
        side = puzzle.grid.shape[0]
        if side * side != seq_len:
            model_side = isqrt_exact(seq_len)
            want = f" (it takes {model_side}x{model_side} mazes)" if model_side else ""
            raise puzzle.error(
                f"a {side}x{side} maze has {side * side} cells but the model's seq_len is "
                f"{seq_len}{want}"
            )

    def encode(self, puzzle: Puzzle, seq_len: int) -> np.ndarray:
        """Tokens = index in `# SGo` + 1, row-major."""
        self.check_fits(puzzle, seq_len)
        return np.array([_TOKEN_OF[ch] for ch in puzzle.grid.reshape(-1)], dtype=np.int32)

    def decode(self, tokens_or_logits: np.ndarray, puzzle: Puzzle) -> np.ndarray:
        """Character grid; PAD and out-of-vocabulary tokens become `?`."""
        side = puzzle.grid.shape[0]
        tokens = predicted_tokens(tokens_or_logits, side * side, puzzle)
        tokens = np.where((tokens >= 1) & (tokens <= len(CHARSET)), tokens, 0)
        return _CHAR_OF[tokens].reshape(side, side)

    def vocab_size(self, seq_len: int) -> int:
        """PAD + the 5 characters of `# SGo`."""
        return len(CHARSET) + 1

    # ------------------------------------------------------------- validation

    def validate(self, puzzle: Puzzle, answer: np.ndarray) -> Check:
        """Walls, S and G kept, open cells only ' ' or 'o', and an `o` path joining S to G."""
        grid = puzzle.grid
        answer = np.asarray(answer)
        if answer.shape != grid.shape:
            return Check(False, f"answer has shape {answer.shape}, expected {grid.shape}")
        for (r, c), want in np.ndenumerate(grid):
            got = str(answer[r, c])
            where = f"row {r + 1}, column {c + 1}"
            if want != OPEN and got != want:
                kind = {WALL: "wall", START: "start S", GOAL: "goal G"}[want]
                return Check(False, f"{kind} at {where} overwritten with {got!r}")
            if want == OPEN and got not in (OPEN, PATH):
                return Check(False, f"open cell at {where} became {got!r}")
        start = tuple(int(v) for v in np.argwhere(grid == START)[0])
        goal = tuple(int(v) for v in np.argwhere(grid == GOAL)[0])
        walkable = (answer == PATH) | (answer == GOAL)
        seen = {start}
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if (
                    0 <= nr < grid.shape[0]
                    and 0 <= nc < grid.shape[1]
                    and (nr, nc) not in seen
                    and walkable[nr, nc]
                ):
                    seen.add((nr, nc))
                    queue.append((nr, nc))
        if goal not in seen:
            return Check(False, "no path of 'o' cells connects S to G")
        n_path = int((answer == PATH).sum())
        reason = f"path of {n_path} 'o' cells connects S to G"
        if puzzle.expected is not None:
            same = np.array_equal(answer, puzzle.expected)
            reason += " (matches the reference)" if same else " (differs from the reference path)"
        return Check(True, reason)

    # -------------------------------------------------------------- rendering

    def render(self, grid: np.ndarray) -> str:
        """The grid's rows as text, in upstream's characters."""
        return "\n".join("".join(str(ch) for ch in row) for row in np.asarray(grid))

    def to_json(self, answer: np.ndarray) -> Any:
        """The grid as a list of row strings."""
        return ["".join(str(ch) for ch in row) for row in np.asarray(answer)]


MAZE = MazeCodec()
