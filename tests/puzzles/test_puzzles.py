"""Puzzle codecs: parsing, upstream-compatible encodings, decoding, validation, rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrm_mlir.core.errors import PuzzleError
from hrm_mlir.puzzles import (
    ARC,
    CODECS,
    MAZE,
    SUDOKU,
    Puzzle,
    crop_canvas,
    detect_family,
    encode_batch,
    get_codec,
    load_puzzles,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "puzzles"

SUDOKU9_Q = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
SUDOKU9_A = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
SUDOKU4_Q = "1.3..4.22......1"
SUDOKU4_A = "1234341221434321"
SUDOKU6_A = "123456456123231564564231312645645312"  # boxes of 2 rows x 3 columns

MAZE_Q = ["######", "#S   #", "#### #", "#    #", "# ##G#", "######"]
MAZE_A = ["######", "#Sooo#", "####o#", "#   o#", "# ##G#", "######"]


def grid_of(s: str, n: int) -> np.ndarray:
    return np.array([int(ch) for ch in s.replace(".", "0")]).reshape(n, n)


def one(codec, text: str, source: str = "t.txt") -> Puzzle:
    (puzzle,) = codec.parse(text, source)
    return puzzle


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path, family: str | None = None, seq_len: int | None = None) -> str:
    with pytest.raises(PuzzleError) as info:
        load_puzzles(path, family, seq_len)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message


# ---------------------------------------------------------------------------- sudoku


def test_sudoku_4x4_tokens_follow_upstream() -> None:
    tokens = SUDOKU.encode(one(SUDOKU, SUDOKU4_Q), 16)
    assert tokens.dtype == np.int32 and tokens.shape == (16,)
    assert tokens.tolist() == [2, 1, 4, 1, 1, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 2]


def test_sudoku_9x9_tokens_are_digit_plus_one() -> None:
    puzzle = one(SUDOKU, SUDOKU9_Q)
    tokens = SUDOKU.encode(puzzle, 81)
    expected = [int(ch) + 1 for ch in SUDOKU9_Q]
    assert tokens.tolist() == expected
    assert tokens[:4].tolist() == [6, 4, 1, 1]
    assert SUDOKU.vocab_size(81) == 11 and SUDOKU.vocab_size(16) == 6


def test_sudoku_round_trip_of_solution_tokens() -> None:
    puzzle = one(SUDOKU, SUDOKU9_Q)
    solution = grid_of(SUDOKU9_A, 9)
    solution_tokens = (solution.reshape(-1) + 1).astype(np.int32)
    np.testing.assert_array_equal(SUDOKU.decode(solution_tokens, puzzle), solution)
    np.testing.assert_array_equal(SUDOKU.decode(SUDOKU.encode(puzzle, 81), puzzle), puzzle.grid)
    # logits with a batch dimension are argmax'ed
    logits = np.eye(11, dtype=np.float32)[solution_tokens][None]
    np.testing.assert_array_equal(SUDOKU.decode(logits, puzzle), solution)
    assert SUDOKU.decode(np.zeros(81, np.int64), puzzle)[0, 0] == -1  # PAD -> -1


def test_sudoku_decode_rejects_wrong_length() -> None:
    puzzle = one(SUDOKU, SUDOKU9_Q, "p.txt")
    with pytest.raises(PuzzleError, match=r"p\.txt:1: .*shape"):
        SUDOKU.decode(np.ones(80, np.int64), puzzle)


def test_sudoku_validate_accepts_solution_and_rejects_broken_ones() -> None:
    puzzle = one(SUDOKU, SUDOKU9_Q)
    solution = grid_of(SUDOKU9_A, 9)
    assert SUDOKU.validate(puzzle, solution) == (True, "solved")

    swapped = solution.copy()  # (0, 2) and (0, 3) are blanks: rows stay fine, columns break
    swapped[0, 2], swapped[0, 3] = swapped[0, 3], swapped[0, 2]
    ok, reason = SUDOKU.validate(puzzle, swapped)
    assert ok is False and "column 3 repeats" in reason

    changed = solution.copy()  # given 5 at (0, 0) swapped with the 4 at (0, 2)
    changed[0, 0], changed[0, 2] = changed[0, 2], changed[0, 0]
    ok, reason = SUDOKU.validate(puzzle, changed)
    assert ok is False and "given 5 at row 1, column 1" in reason

    blank = solution.copy()
    blank[4, 4] = 0
    ok, reason = SUDOKU.validate(puzzle, blank)
    assert ok is False and "row 5, column 5 is blank" in reason


def test_sudoku_6x6_boxes_are_two_rows_by_three_columns() -> None:
    solution = grid_of(SUDOKU6_A, 6)
    puzzle = one(SUDOKU, "." * 36)
    assert SUDOKU.validate(puzzle, solution).ok is True
    # The transpose is a Latin square whose 3x2 boxes are fine but whose 2x3 boxes are not.
    ok, reason = SUDOKU.validate(puzzle, solution.T)
    assert ok is False and reason.startswith("box 1 repeats")
    assert SUDOKU.encode(puzzle, 36).tolist() == [1] * 36
    assert SUDOKU.vocab_size(36) == 8


def test_sudoku_render_has_box_separators() -> None:
    assert SUDOKU.render(one(SUDOKU, SUDOKU4_Q).grid) == (
        "1 . | 3 .\n. 4 | . 2\n----+----\n2 . | . .\n. . | . 1"
    )
    lines = SUDOKU.render(grid_of(SUDOKU9_A, 9)).splitlines()
    assert len(lines) == 11
    assert lines[0] == "5 3 4 | 6 7 8 | 9 1 2"
    assert lines[3] == lines[7] == "------+-------+------"
    six = SUDOKU.render(grid_of(SUDOKU6_A, 6)).splitlines()
    assert six[0] == "1 2 3 | 4 5 6" and six[2] == "------+------" and len(six) == 8


def test_sudoku_line_and_block_formats_agree() -> None:
    puzzles = load_puzzles(DATA / "sudoku9.txt", None, 81)
    assert [p.family for p in puzzles] == ["sudoku", "sudoku"]
    assert puzzles[0].location.endswith("sudoku9.txt:2")
    assert puzzles[1].location.endswith("sudoku9.txt:4")
    np.testing.assert_array_equal(puzzles[0].grid, grid_of(SUDOKU9_Q, 9))
    np.testing.assert_array_equal(puzzles[1].grid, puzzles[0].grid)
    np.testing.assert_array_equal(puzzles[0].givens, grid_of(SUDOKU9_Q, 9) > 0)
    assert puzzles[1].name == "sudoku9.txt#2"


def test_sudoku_zero_dot_and_plain_blocks() -> None:
    text = "# a comment\n1.3.\n0402\n\n2...\n...1\n"
    with pytest.raises(PuzzleError, match=r"t\.txt:2: sudoku block has 2 rows, expected 4"):
        SUDOKU.parse(text, "t.txt")
    text = "1.3.\n0402\n2000\n...1\n\n" + SUDOKU4_Q + "\n"
    a, b = SUDOKU.parse(text, "t.txt")
    np.testing.assert_array_equal(a.grid, b.grid)


def test_sudoku_upstream_csv_with_answers(tmp_path: Path) -> None:
    q = SUDOKU9_Q.replace("0", ".")
    path = write(tmp_path, "test.csv", f"source,question,answer,rating\nkaggle,{q},{SUDOKU9_A},3\n")
    (puzzle,) = load_puzzles(path, None, 81)
    assert puzzle.family == "sudoku" and puzzle.location.endswith("test.csv:2")
    np.testing.assert_array_equal(puzzle.grid, grid_of(SUDOKU9_Q, 9))
    np.testing.assert_array_equal(puzzle.expected, grid_of(SUDOKU9_A, 9))


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (SUDOKU9_Q + "\n\n\n" + SUDOKU9_Q[1:] + "\n", 4, "has 80 cells, expected 81"),
        ("# c\n" + SUDOKU9_Q[:40] + "x" + SUDOKU9_Q[41:] + "\n", 2, "character 'x'"),
        ("1234\n3412\n214\n4321\n", 3, "sudoku row has 3 cells, expected 4"),
        ("1234\n3412\n\n", 1, "has 2 rows, expected 4 (it ends at line 3)"),
        ("1.3..4.22.....71\n", 1, "digit 7 at row 4, column 3 is out of range"),
        ("11..............\n", 1, "givens repeat 1 in row 1"),
        ("1...\n....\n....\n1...\n", 1, "givens repeat 1 in column 1"),
    ],
)
def test_sudoku_bad_input_names_file_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = write(tmp_path, "bad.txt", text)
    message = load_error(path, "sudoku")
    assert f"bad.txt:{line}:" in message and needle in message


def test_sudoku_size_must_match_seq_len(tmp_path: Path) -> None:
    message = load_error(DATA / "sudoku9.txt", None, 16)
    assert "sudoku9.txt:2:" in message and "seq_len is 16" in message
    assert len(load_puzzles(write(tmp_path, "s4.txt", SUDOKU4_Q + "\n"), None, 16)) == 1


# ------------------------------------------------------------------------------ maze


def test_maze_tokens_follow_upstream_charset() -> None:
    puzzle = one(MAZE, "#S\nG \n")
    assert MAZE.encode(puzzle, 4).tolist() == [1, 3, 4, 2]
    full = MAZE.encode(one(MAZE, "\n".join(MAZE_Q)), 36)
    assert full.dtype == np.int32 and full.shape == (36,)
    assert full[6:12].tolist() == [1, 3, 2, 2, 2, 1]  # "#S   #"
    assert MAZE.vocab_size(900) == 6


def test_maze_round_trip_and_reference_path() -> None:
    question, drawn = MAZE.parse((DATA / "maze6.txt").read_text(), "maze6.txt")
    assert question.expected is None and drawn.expected is not None
    np.testing.assert_array_equal(question.grid, drawn.grid)  # the drawn path is cleared
    answer_tokens = np.array(["# SGo".index(ch) + 1 for ch in "".join(MAZE_A)], np.int32)
    answer = MAZE.decode(answer_tokens, question)
    assert MAZE.render(answer) == "\n".join(MAZE_A)
    np.testing.assert_array_equal(answer, drawn.expected)
    np.testing.assert_array_equal(MAZE.decode(MAZE.encode(question, 36), question), question.grid)
    assert MAZE.render(question.grid) == "\n".join(MAZE_Q)
    assert MAZE.to_json(answer) == MAZE_A
    assert MAZE.decode(np.zeros(36, np.int64), question)[0, 0] == "?"


def answer_grid(rows: list[str]) -> np.ndarray:
    return np.array([list(r) for r in rows])


def test_maze_validate_accepts_path_and_rejects_broken_ones() -> None:
    _, puzzle = MAZE.parse("\n".join(MAZE_Q) + "\n\n" + "\n".join(MAZE_A), "m.txt")
    ok, reason = MAZE.validate(puzzle, answer_grid(MAZE_A))
    assert ok is True and "matches the reference" in reason

    broken = MAZE_A.copy()
    broken[2] = "#### #"
    ok, reason = MAZE.validate(puzzle, answer_grid(broken))
    assert ok is False and "no path" in reason

    wall = MAZE_A.copy()
    wall[2] = "###oo#"
    ok, reason = MAZE.validate(puzzle, answer_grid(wall))
    assert ok is False and "wall at row 3, column 4" in reason

    moved = MAZE_A.copy()
    moved[1] = "# So #"
    ok, reason = MAZE.validate(puzzle, answer_grid(moved))
    assert ok is False and "start S at row 2, column 2" in reason

    new_wall = MAZE_A.copy()
    new_wall[3] = "## #o#"
    ok, reason = MAZE.validate(puzzle, answer_grid(new_wall))
    assert ok is False and "open cell at row 4, column 2 became '#'" in reason

    detour = ["######", "#Sooo#", "####o#", "#oooo#", "#o##G#", "######"]
    ok, reason = MAZE.validate(puzzle, answer_grid(detour))
    assert ok is True and "differs from the reference" in reason


def test_maze_dots_and_equals_separators() -> None:
    text = "#S..\n#..#\n#..G\n####\n====\n#S  \n#  #\n#  G\n####\n"
    a, b = MAZE.parse(text, "t.txt")
    np.testing.assert_array_equal(a.grid, b.grid)
    assert a.grid[0, 3] == " " and b.location == "t.txt:6"


def test_maze_upstream_csv(tmp_path: Path) -> None:
    q, a = "".join(MAZE_Q), "".join(MAZE_A)
    path = write(tmp_path, "maze.csv", f"source,question,answer,rating\nx,{q},{a},0\n")
    (puzzle,) = load_puzzles(path, None, 36)
    assert puzzle.family == "maze"
    assert MAZE.validate(puzzle, puzzle.expected).ok is True


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("####\n#S #\n#G\n####\n", 3, "maze row has 2 cells, expected 4"),
        ("####\n#SG#\n####\n", 1, "3 rows of 4 cells; mazes must be square"),
        ("####\n#SS#\n#G #\n####\n", 1, "2 'S'"),
        ("####\n#S #\n#  #\n####\n", 1, "0 'G'"),
        ("####\n#S #\n#G*#\n####\n", 3, "character '*'"),
        ("####\n#S #\n#G #\n####\n\n####\n#S x\n", 7, "character 'x'"),
    ],
)
def test_maze_bad_input_names_file_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = write(tmp_path, "bad.txt", text)
    message = load_error(path, "maze")
    assert f"bad.txt:{line}:" in message and needle in message


def test_maze_size_must_match_seq_len() -> None:
    message = load_error(DATA / "maze6.txt", None, 900)
    assert "maze6.txt:1:" in message and "30x30" in message


# ------------------------------------------------------------------------------- ARC


def test_arc_canvas_follows_upstream_test_layout() -> None:
    (puzzle, _) = ARC.parse((DATA / "arc_task.json").read_text(), "arc_task.json")
    tokens = ARC.encode(puzzle, 900)
    assert tokens.dtype == np.int32 and tokens.shape == (900,)
    canvas = tokens.reshape(30, 30)
    # input [[0, 0, 3], [0, 0, 0]]: colours + 2 at the top left, EOS below and to the right
    assert canvas[:3, :4].tolist() == [[2, 2, 5, 1], [2, 2, 2, 1], [1, 1, 1, 0]]
    assert canvas.sum() == 2 + 2 + 5 + 2 + 2 + 2 + 5 * 1
    assert ARC.vocab_size(900) == 12


def test_arc_full_size_grids_have_no_eos_row_or_column() -> None:
    wide = {"test": [{"input": [[7] * 30] * 2}, {"input": [[1] * 30] * 30}]}
    a, b = ARC.parse(json.dumps(wide), "w.json")
    canvas = ARC.encode(a, 900).reshape(30, 30)
    assert (canvas[:2] == 9).all() and (canvas[2] == 1).all() and (canvas[3:] == 0).all()
    full = ARC.encode(b, 900)
    assert (full == 3).all()
    np.testing.assert_array_equal(ARC.decode(full, b), b.grid)


def test_arc_round_trip_and_crop() -> None:
    puzzles = ARC.parse((DATA / "arc_task.json").read_text(), "arc_task.json")
    for puzzle in puzzles:
        np.testing.assert_array_equal(ARC.decode(ARC.encode(puzzle, 900), puzzle), puzzle.grid)
    answer_canvas = np.zeros((30, 30), np.int64)
    answer_canvas[:2, :3] = np.array(puzzles[0].expected) + 2
    answer_canvas[2, :3] = 1
    answer_canvas[:2, 3] = 1
    answer_canvas[5:, 5:] = 4  # junk beyond the EOS boundary is ignored
    decoded = ARC.decode(answer_canvas.reshape(-1), puzzles[0])
    np.testing.assert_array_equal(decoded, puzzles[0].expected)
    assert ARC.validate(puzzles[0], decoded) == (True, "matches the expected output")


def test_arc_crop_picks_largest_top_left_rectangle() -> None:
    canvas = np.zeros((30, 30), np.int64)
    canvas[0, :5] = 2  # 1x5 row, then three rows of width 2: area 8 beats 5
    canvas[1:4, :2] = 3
    np.testing.assert_array_equal(crop_canvas(canvas), np.array([[0, 0]] + [[1, 1]] * 3))
    canvas[:] = 0
    canvas[0, :3] = 2  # widths 3, 1 -> 1x3 (area 3) beats 2x1 (area 2)
    canvas[1, 0] = 2
    assert crop_canvas(canvas).shape == (1, 3)
    assert crop_canvas(np.ones(900, np.int64)).shape == (0, 0)


def test_arc_validate_without_expected_is_unchecked() -> None:
    _, puzzle = ARC.parse((DATA / "arc_task.json").read_text(), "arc_task.json")
    ok, reason = ARC.validate(puzzle, np.array([[1]]))
    assert ok is None and "unchecked" in reason
    first, _ = ARC.parse((DATA / "arc_task.json").read_text(), "arc_task.json")
    assert ARC.validate(first, np.array([[0, 3, 0], [0, 0, 1]])).ok is False
    ok, reason = ARC.validate(first, np.zeros((3, 3), np.int64))
    assert ok is False and "3x3, expected 2x3" in reason


def test_arc_task_names_and_collections() -> None:
    puzzles = load_puzzles(DATA / "arc_task.json", None, 900)
    assert [p.name for p in puzzles] == ["arc_task#0", "arc_task#1"]
    assert {p.task for p in puzzles} == {"arc_task"} and puzzles[1].expected is None
    tasks = {"abc": {"test": [{"input": [[1]]}]}, "def": {"test": [{"input": [[2]]}]}}
    assert [p.task for p in ARC.parse(json.dumps(tasks), "c.json")] == ["abc", "def"]
    listed = [{"name": "n1", "test": [{"input": [[1]]}]}, {"test": [{"input": [[2]]}]}]
    assert [p.name for p in ARC.parse(json.dumps(listed), "l.json")] == ["n1", "l_1"]
    assert ARC.render(np.array([[1, 2], [3, 4]])) == "1 2\n3 4"
    assert "\x1b[" in ARC.render(np.array([[1]]), color=True)
    assert ARC.to_json(np.array([[1, 2]])) == [[1, 2]]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"test": [\n{"input": [[1, 2]\n}]}', "bad.json:3: invalid JSON"),
        ('{"test": [{"input": [[1, 10]]}]}', "test 0: input cell at row 1, column 2 is 10"),
        ('{"test": [{"input": [[1, 2], [3]]}]}', "input row 2 has 1 cells, expected 2"),
        ('{"test": [{"input": [[true]]}]}', "is True"),
        ('{"test": [{"input": [[1]]}, {"output": [[1]]}]}', "test 1: test entry has no 'input'"),
        ('{"test": [{"input": [[1]], "output": [[-1]]}]}', "output cell at row 1"),
        ('{"x": {"train": []}}', "task 'x': expected an ARC task object"),
        (json.dumps({"test": [{"input": [[0] * 31]}]}), "input is 1x31, larger than 30x30"),
        ("[]", "no arc puzzles"),
    ],
)
def test_arc_bad_input_is_reported(tmp_path: Path, text: str, needle: str) -> None:
    message = load_error(write(tmp_path, "bad.json", text))
    assert needle in message


def test_arc_needs_seq_len_900() -> None:
    message = load_error(DATA / "arc_task.json", None, 81)
    assert "arc_task.json: task 'arc_task' test 0:" in message and "seq_len 900" in message


# ---------------------------------------------------------------- loading and batching


def test_family_detection() -> None:
    assert [load_puzzles(DATA / f, None, None)[0].family for f in sorted(DATA.iterdir())] == [
        "arc",
        "maze",
        "sudoku",
    ]
    assert detect_family('{"test": []}', "tasks.txt") == "arc"
    assert detect_family("# Sudoku from the Gazette\n" + SUDOKU9_Q, "p.txt") == "sudoku"
    assert detect_family("\n".join(MAZE_Q), "p.txt") == "maze"
    assert detect_family("  S\nG  \n", "p.txt") == "maze"
    with pytest.raises(PuzzleError, match=r"p\.txt:1: cannot tell"):
        detect_family("hello world\n", "p.txt")


def test_explicit_family_overrides_detection(tmp_path: Path) -> None:
    message = load_error(DATA / "maze6.txt", "sudoku")  # its '#' rows read as comments
    assert "maze6.txt:1: no sudoku puzzles" in message
    message = load_error(write(tmp_path, "m.txt", "S  #\n## #\n#  G\n####\n"), "sudoku")
    assert "m.txt:1:" in message and "character 'S'" in message
    assert get_codec("SUDOKU") is SUDOKU and set(CODECS) == {"sudoku", "maze", "arc"}
    with pytest.raises(PuzzleError, match="unknown puzzle family 'chess'"):
        get_codec("chess")


def test_empty_missing_and_comment_only_files(tmp_path: Path) -> None:
    assert "empty.txt:1: the puzzle file is empty" in load_error(write(tmp_path, "empty.txt", ""))
    assert "blank.txt:1:" in load_error(write(tmp_path, "blank.txt", "\n  \n"), "maze")
    message = load_error(write(tmp_path, "c.txt", "# only a comment\n"), "sudoku")
    assert "c.txt:1: no sudoku puzzles" in message
    assert "cannot read" in load_error(tmp_path / "missing.txt")
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"1234\n\xe9\n")
    assert "latin1.txt:2: not UTF-8" in load_error(path)


def test_encode_batch_and_puzzle_identifiers() -> None:
    puzzles = load_puzzles(DATA / "arc_task.json", None, 900)
    tokens, ids = encode_batch(puzzles, 900)
    assert tokens.shape == (2, 900) and tokens.dtype == np.int32
    assert ids.tolist() == [0, 0] and ids.dtype == np.int32
    tagged = [p.with_puzzle_id(17) for p in puzzles]
    assert encode_batch(tagged, 900)[1].tolist() == [17, 17]
    assert ARC.puzzle_identifier(tagged[0]) == 17 and puzzles[0].puzzle_id == 0
    assert encode_batch(puzzles, 900, [3, 4])[1].tolist() == [3, 4]
    np.testing.assert_array_equal(tokens[1], ARC.encode(puzzles[1], 900))
    with pytest.raises(PuzzleError):
        encode_batch(puzzles, 900, [1])


def test_to_json_is_plain_python() -> None:
    sudoku = one(SUDOKU, SUDOKU4_Q)
    maze = one(MAZE, "\n".join(MAZE_Q))
    payload = [
        SUDOKU.to_json(grid_of(SUDOKU4_A, 4)),
        MAZE.to_json(maze.grid),
        ARC.to_json(np.array([[0, 9]])),
    ]
    assert json.loads(json.dumps(payload)) == payload
    assert payload[0][0] == [1, 2, 3, 4] and SUDOKU.validate(sudoku, grid_of(SUDOKU4_A, 4)).ok
