"""Tests of the Sudoku generator used for the example checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from hrm_mlir.puzzles import datagen

SIZES = (4, 6, 9)


@pytest.fixture(scope="module")
def sets() -> dict[int, datagen.SudokuSet]:
    return {n: datagen.generate(30 if n < 9 else 5, n, seed=7) for n in SIZES}


@pytest.mark.parametrize("n", SIZES)
def test_solutions_are_unique(sets: dict[int, datagen.SudokuSet], n: int) -> None:
    for puzzle, solution in zip(sets[n].puzzles, sets[n].solutions, strict=True):
        assert datagen.count_solutions(puzzle) == 1
        assert np.array_equal(datagen.solve(puzzle), solution)


@pytest.mark.parametrize("n", SIZES)
def test_puzzles_match_valid_solutions(sets: dict[int, datagen.SudokuSet], n: int) -> None:
    s = sets[n]
    assert s.puzzles.shape == s.solutions.shape == (len(s), n, n)
    for puzzle, solution in zip(s.puzzles, s.solutions, strict=True):
        assert datagen.is_valid_solution(solution)
        givens = puzzle != 0
        assert np.array_equal(puzzle[givens], solution[givens])
        assert puzzle.min() >= 0 and puzzle.max() <= n


@pytest.mark.parametrize("n", SIZES)
def test_blank_fraction(sets: dict[int, datagen.SudokuSet], n: int) -> None:
    blank = (sets[n].puzzles == 0).reshape(len(sets[n]), -1).mean(-1)
    assert blank.min() >= datagen.MIN_BLANK_FRACTION


def test_heldout_disjoint_from_train() -> None:
    train = datagen.generate(300, 6, seed=1)
    test = datagen.heldout(100, 6, seed=1, train=train)
    assert len(set(train.puzzle_strings())) == len(train)
    assert len(set(test.puzzle_strings())) == len(test)
    assert not set(train.puzzle_strings()) & set(test.puzzle_strings())


def test_heldout_dedupes_explicitly() -> None:
    # A training set drawn from the very stream the held-out split uses: only the explicit
    # dedupe keeps the two apart.
    train = datagen.generate(20, 4, seed=5 + datagen.HELDOUT_SEED_OFFSET)
    test = datagen.heldout(20, 4, seed=5, train=train)
    assert not set(train.puzzle_strings()) & set(test.puzzle_strings())
    assert len(test) == 20


def test_deterministic_from_seed() -> None:
    a = datagen.generate(10, 6, seed=3)
    b = datagen.generate(10, 6, seed=3)
    c = datagen.generate(10, 6, seed=4)
    assert np.array_equal(a.puzzles, b.puzzles) and np.array_equal(a.solutions, b.solutions)
    assert not np.array_equal(a.puzzles, c.puzzles)


def test_validity_checks_can_fail() -> None:
    s = datagen.generate(1, 6, seed=0)
    bad = s.solutions[0].copy()
    bad[0, [0, 1]] = bad[0, [1, 0]]
    assert not datagen.is_valid_solution(bad)
    assert datagen.count_solutions(np.zeros((4, 4), dtype=np.int64)) == 2
    assert datagen.count_solutions(bad) == 0


def test_token_encoding_matches_upstream() -> None:
    s = datagen.generate(2, 9, seed=0)
    tokens = datagen.encode(s.puzzles)
    assert tokens.shape == (2, 81) and tokens.dtype == np.int32
    blank = s.puzzles.reshape(2, -1) == 0
    assert blank.any() and (tokens[blank] == datagen.BLANK_TOKEN).all()
    assert np.array_equal(tokens[~blank], s.puzzles.reshape(2, -1)[~blank] + 1)
    assert tokens.min() >= 1 and tokens.max() <= 10  # PAD (0) never appears in a puzzle
    assert datagen.vocab_size(9) == 11 and datagen.vocab_size(6) == 8
    assert np.array_equal(datagen.decode(datagen.encode(s.solutions), 9), s.solutions)


def test_string_roundtrip() -> None:
    s = datagen.generate(3, 6, seed=2)
    for grid, text in zip(s.puzzles, s.puzzle_strings(), strict=True):
        assert len(text) == 36 and "0" not in text
        assert np.array_equal(datagen.string_to_grid(text), grid)
