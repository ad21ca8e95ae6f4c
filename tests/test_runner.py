"""Puzzle identifiers for ARC (identifiers.json), and the runner's batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.puzzles import load_puzzles
from hrm_mlir.runner import assign_identifiers

ARC = Path(__file__).parent / "data" / "puzzles" / "arc_task.json"


def _ids_file(tmp_path: Path, names) -> Path:
    path = tmp_path / "identifiers.json"
    path.write_text(json.dumps(names))
    return path


def test_task_names_map_to_their_rows(tmp_path: Path):
    puzzles = load_puzzles(ARC, None, 900)
    ids = _ids_file(tmp_path, ["<blank>", "other", "arc_task"])
    assert [p.puzzle_id for p in assign_identifiers(puzzles, ids, 3)] == [2, 2]
    mapping = _ids_file(tmp_path, {"<blank>": 0, "arc_task": 1})
    assert [p.puzzle_id for p in assign_identifiers(puzzles, mapping, 2)] == [1, 1]


def test_length_mismatch_with_the_table_is_an_error(tmp_path: Path):
    ids = _ids_file(tmp_path, ["<blank>", "arc_task"])
    with pytest.raises(
        HrmMlirError, match=r"2 identifiers, but the checkpoint's puzzle table has 5"
    ):
        assign_identifiers(load_puzzles(ARC, None, 900), ids, 5)


def test_unknown_task_is_an_error_and_blank_stays_usable(tmp_path: Path):
    puzzles = load_puzzles(ARC, None, 900)
    ids = _ids_file(tmp_path, ["<blank>", "something"])
    with pytest.raises(HrmMlirError, match=r"no identifier for task 'arc_task'"):
        assign_identifiers(puzzles, ids, 2)
    assert [p.puzzle_id for p in puzzles] == [0, 0]  # without identifiers.json: blank row 0
