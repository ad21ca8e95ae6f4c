"""Puzzle codecs: read puzzle files, encode them as HRM tokens, decode and check the answers.

Families (`CODECS`): `sudoku`, `maze`, `arc`; each codec follows upstream's dataset builder
token layout (see the module docstrings). Typical use::

    puzzles = load_puzzles("puzzles.txt", family=None, seq_len=cfg.seq_len)
    codec = get_codec(puzzles[0].family)
    inputs, ids = encode_batch(puzzles, cfg.seq_len)        # (B, seq_len), (B,) int32
    answer = codec.decode(preds[i], puzzles[i])             # preds: tokens or logits
    ok, reason = codec.validate(puzzles[i], answer)
    print(codec.render(answer))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hrm_mlir.core.errors import PuzzleError
from hrm_mlir.puzzles.arc import ARC, ArcCodec, crop_canvas
from hrm_mlir.puzzles.base import Check, Puzzle, PuzzleCodec, is_upstream_csv, read_upstream_csv
from hrm_mlir.puzzles.maze import MAZE, MazeCodec
from hrm_mlir.puzzles.sudoku import CELL_CHARS, SEPARATORS, SUDOKU, SudokuCodec

__all__ = [
    "ARC",
    "CODECS",
    "FAMILIES",
    "MAZE",
    "SUDOKU",
    "ArcCodec",
    "Check",
    "MazeCodec",
    "Puzzle",
    "PuzzleCodec",
    "SudokuCodec",
    "crop_canvas",
    "detect_family",
    "encode_batch",
    "get_codec",
    "load_puzzles",
]

#: The codec of each puzzle family, by name.
CODECS: dict[str, PuzzleCodec] = {"sudoku": SUDOKU, "maze": MAZE, "arc": ARC}
FAMILIES: tuple[str, ...] = tuple(CODECS)


def get_codec(family: str) -> PuzzleCodec:
    """The codec for `family` (`sudoku`, `maze` or `arc`, any case)."""
    try:
        return CODECS[family.lower()]
    except KeyError:
        raise PuzzleError(
            f"unknown puzzle family {family!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def _is_sudoku_text(text: str) -> bool:
    lines = [s for s in (line.strip() for line in text.splitlines()) if s]
    content = [s for s in lines if not s.startswith("#")]
    return bool(content) and all(set(s) <= CELL_CHARS | SEPARATORS for s in content)


def _is_maze_text(text: str) -> bool:
    return "S" in text and "G" in text and set(text) <= set("# SGo.=\r\n")


def detect_family(text: str, source: str) -> str:
    """Guess a file's family from its name and text (JSON -> arc, `# SG` grids -> maze,
    digits/dots -> sudoku); raise `PuzzleError` when it cannot tell."""
    suffix = Path(source).suffix.lower()
    stripped = text.lstrip()
    if suffix == ".json" or stripped.startswith(("{", "[")):
        return "arc"
    if is_upstream_csv(text):
        rows = read_upstream_csv(text, source)
        if rows:
            question = rows[0].question
            if set(question.strip()) <= CELL_CHARS:
                return "sudoku"
            if set(question) <= set("# SGo."):
                return "maze"
        raise PuzzleError(f"{source}:1: cannot tell the puzzle family of this CSV; name it")
    if _is_sudoku_text(text):
        return "sudoku"
    if _is_maze_text(text):
        return "maze"
    # Not clean: pick the likelier family so that its parser names the offending character.
    if any(ch.isdigit() for ch in text):
        return "sudoku"
    if any(ch in "#SG" for ch in text):
        return "maze"
    raise PuzzleError(
        f"{source}:1: cannot tell the puzzle family (not sudoku digits, a '# SG' maze grid or "
        "ARC JSON); name it"
    )


def load_puzzles(path: str | Path, family: str | None, seq_len: int | None) -> list[Puzzle]:
    """Read every puzzle of the file at `path`.

    `family` None detects it from the file (see `detect_family`). With a `seq_len`, every puzzle
    must fill exactly that many tokens (sudoku N*N, maze side*side, ARC 900). Every problem
    raises a one-line `PuzzleError` naming the file and the line or puzzle.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise PuzzleError(f"{source}: cannot read the puzzle file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PuzzleError(f"{source}:{line}: not UTF-8 text") from None
    if not text.strip():
        raise PuzzleError(f"{source}:1: the puzzle file is empty")
    codec = get_codec(family) if family is not None else CODECS[detect_family(text, source)]
    puzzles = codec.parse(text, source)
    if not puzzles:
        raise PuzzleError(f"{source}:1: no {codec.family} puzzles found in the file")
    if seq_len is not None:
        for puzzle in puzzles:
            codec.check_fits(puzzle, seq_len)
    return puzzles


def encode_batch(
    puzzles: Sequence[Puzzle], seq_len: int, puzzle_ids: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack puzzles into model inputs: tokens (B, seq_len) and puzzle identifiers (B,), int32.

    `puzzle_ids` overrides each puzzle's own `puzzle_id` (default 0, the blank identifier).
    """
    if not puzzles:
        raise PuzzleError("no puzzles to encode")
    if puzzle_ids is not None and len(puzzle_ids) != len(puzzles):
        raise PuzzleError(f"{len(puzzle_ids)} puzzle identifiers for {len(puzzles)} puzzles")
    tokens = np.stack([get_codec(p.family).encode(p, seq_len) for p in puzzles]).astype(np.int32)
    ids = [p.puzzle_id for p in puzzles] if puzzle_ids is None else list(puzzle_ids)
    return tokens, np.asarray(ids, dtype=np.int32)
