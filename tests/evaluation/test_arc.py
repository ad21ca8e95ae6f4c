"""ARC pass@k by augmentation voting, on a hand-made ARC build and prediction rows whose right
answers are known.

The build is written the way upstream's `dataset/build_arc_dataset.py` writes its test split
(each task once under its own name, then once per augmentation `<task>_t<id>_<colours>`, the
grids `dihedral(colours[grid])` on the top-left 30x30 canvas with an EOS row and column); the
prediction rows vote, through those augmentations, for grids chosen per test input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.evaluation.arc import (
    DIHEDRAL_INVERSE,
    crop_sizes,
    dihedral_transform,
    inverse_dihedral_transform,
    parse_name,
    score,
)
from hrm_mlir.evaluation.arc_io import (
    load_arc_split,
    load_predictions,
    submission,
    write_submission,
)
from hrm_mlir.evaluation.plots import plot_tasks
from hrm_mlir.puzzles.arc import crop_canvas

# Upstream's eight transforms (dataset/common.py), restated here independently of the module.
UPSTREAM_DIHEDRAL = [
    lambda a: a,
    lambda a: np.rot90(a, k=1),
    lambda a: np.rot90(a, k=2),
    lambda a: np.rot90(a, k=3),
    np.fliplr,
    np.flipud,
    lambda a: a.T,
    lambda a: np.fliplr(np.rot90(a, k=1)),
]

RNG = np.random.default_rng(7)
# (dihedral id, colour map with black kept), as upstream's builder draws them
AUGS = [(t, (0, *RNG.permutation(np.arange(1, 10)).tolist())) for t in (1, 4, 7, 6, 3)]


def _grid(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 10, size=(h, w)).astype(np.int64)


def canvas(grid: np.ndarray, junk: bool = False) -> np.ndarray:
    """Top-left placed grid + 2, EOS below and right of it, PAD elsewhere (upstream's layout);
    `junk` adds colour tokens beyond the EOS border, which the crop must ignore."""
    g = np.asarray(grid)
    h, w = g.shape
    c = np.zeros((30, 30), np.uint8)
    c[:h, :w] = g + 2
    if h < 30:
        c[h, :w] = 1
    if w < 30:
        c[:h, w] = 1
    if junk:
        c[h + 2 :, : w + 3] = 7
        c[: h + 1, w + 2 :] = 5
    return c.reshape(-1)


def augment(grid: np.ndarray, aug: int | None) -> np.ndarray:
    if aug is None:
        return np.asarray(grid)
    tid, colours = AUGS[aug]
    return UPSTREAM_DIHEDRAL[tid](np.asarray(colours)[np.asarray(grid)])


def aug_name(task: str, aug: int | None) -> str:
    if aug is None:
        return task
    tid, colours = AUGS[aug]
    return f"{task}_t{tid}_{''.join(map(str, colours))}"


# Tasks: name -> [(input, expected output)] per test input. E gets no prediction rows.
TASKS = {
    "a1b2c3d4": [(_grid(3, 2), _grid(2, 3))],
    "b_task": [(_grid(4, 3), _grid(3, 5)), (_grid(2, 2), _grid(4, 1))],
    "c0ffee00": [(_grid(5, 4), _grid(2, 6))],
    "d00d0001": [(_grid(1, 3), _grid(3, 3)), (_grid(6, 2), _grid(2, 2))],
    "e0000005": [(_grid(2, 2), _grid(2, 2))],
}
WRONG = {k: _grid(3, 3) for k in ("A", "B", "C", "C2", "D", "D2")}
RIGHT = object()

# (task, test) -> votes: (augmentation index or None for the task itself, grid, q_halt logit)
VOTES = {
    ("a1b2c3d4", 0): [(None, RIGHT, 0.0), (0, RIGHT, 0.0), (1, RIGHT, 0.0),
                      (2, WRONG["A"], 3.0), (3, WRONG["A"], 3.0)],
    ("b_task", 0): [(None, RIGHT, 0.0), (0, RIGHT, 0.0), (1, WRONG["B"], 0.0)],
    ("b_task", 1): [(None, WRONG["B"], 0.0), (0, WRONG["B"], 0.0), (1, WRONG["B"], 0.0),
                    (2, RIGHT, 4.0), (3, RIGHT, 4.0)],
    # a tie on votes, broken by mean sigmoid(q_halt); a one-vote grid with a high q ranks last
    ("c0ffee00", 0): [(None, RIGHT, 2.0), (0, RIGHT, 1.0), (1, WRONG["C"], -1.0),
                      (2, WRONG["C"], -0.5), (3, WRONG["C2"], 6.0)],
    ("d00d0001", 0): [(None, RIGHT, 0.0), (0, RIGHT, 0.0), (4, RIGHT, 0.0)],
    ("d00d0001", 1): [(None, WRONG["D"], 0.0), (0, WRONG["D"], 0.0), (1, WRONG["D2"], 0.0)],
}  # fmt: skip
# A solved at 1; B at 2 (its second input is right only at rank 2); C at 1 by the tie-break;
# D never (its second input is never right); E has no rows and is not counted.
WANT = {1: 2 / 4, 2: 3 / 4, 10: 3 / 4, 100: 3 / 4, 1000: 3 / 4}


def build(root: Path, extra_names: tuple[str, ...] = ("trainonly",)) -> Path:
    """Write the ARC build: identifiers.json and test/ as upstream's builder lays them out."""
    names = ["<blank>"]
    inputs, labels, pids, starts = [], [], [], [0]
    for task, tests in TASKS.items():
        for aug in (None, *range(len(AUGS))):
            names.append(aug_name(task, aug))
            for x, y in tests:
                inputs.append(canvas(augment(x, aug)))
                labels.append(canvas(augment(y, aug)))
            pids.append(len(names) - 1)
            starts.append(len(inputs))
    names.extend(extra_names)  # puzzles of the train split share the identifier table
    test = root / "test"
    test.mkdir(parents=True)
    arrays = {
        "inputs": np.stack(inputs),
        "labels": np.stack(labels),
        "puzzle_identifiers": np.array(pids, np.int32),
        "puzzle_indices": np.array(starts, np.int32),
        "group_indices": np.arange(0, len(pids) + 1, len(AUGS) + 1, dtype=np.int32),
    }
    for k, v in arrays.items():
        np.save(test / f"all__{k}.npy", v)
    meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 12,
            "seq_len": 900, "num_puzzle_identifiers": len(names), "total_groups": len(TASKS),
            "mean_puzzle_examples": 1.4, "sets": ["all"]}  # fmt: skip
    (test / "dataset.json").write_text(json.dumps(meta))
    (root / "identifiers.json").write_text(json.dumps(names))
    return root


def predictions(names: list[str], votes=VOTES, blank_rows: int = 3) -> dict[str, np.ndarray]:
    """Prediction rows for `votes`, shuffled, with blank (identifier 0) padding rows."""
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for (task, k), vs in votes.items():
        x, y = TASKS[task][k]
        for aug, grid, q in vs:
            g = y if grid is RIGHT else grid
            rows.append((index[aug_name(task, aug)], canvas(augment(x, aug)),
                         canvas(augment(g, aug), junk=True), q))  # fmt: skip
    order = np.random.default_rng(3).permutation(len(rows))
    rows = [rows[i] for i in order]
    rows += [(0, np.zeros(900, np.uint8), np.full(900, 5, np.uint8), 9.0)] * blank_rows
    return {
        "puzzle_identifiers": np.array([r[0] for r in rows], np.int32),
        "inputs": np.stack([r[1] for r in rows]),
        "preds": np.stack([r[2] for r in rows]),
        "q_halt_logits": np.array([r[3] for r in rows], np.float32),
    }


@pytest.fixture
def data(tmp_path):
    split = load_arc_split(build(tmp_path / "arc"))
    return split, predictions(list(split.identifiers))


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------ augmentations


def test_dihedral_transforms_match_upstream_and_invert():
    g = np.arange(15).reshape(3, 5)
    seen = set()
    for tid in range(8):
        t = dihedral_transform(g, tid)
        assert np.array_equal(t, UPSTREAM_DIHEDRAL[tid](g))
        assert np.array_equal(inverse_dihedral_transform(t, tid), g)
        assert np.array_equal(dihedral_transform(t, DIHEDRAL_INVERSE[tid]), g)
        seen.add((t.shape, t.tobytes()))
    assert len(seen) == 8


def test_parse_name_undoes_an_augmentation():
    aug, augmented = parse_name("a_b_t7_0918273645")
    assert augmented and aug.task == "a_b" and aug.tid == 7
    g = _grid(2, 5)
    assert np.array_equal(aug.undo(aug.apply(g)), g)
    assert np.array_equal(aug.apply(g), UPSTREAM_DIHEDRAL[7](np.array(aug.colours)[g]))
    plain, augmented = parse_name("007bbfd7")
    assert not augmented and plain.task == "007bbfd7" and plain.undo(g) is g
    with pytest.raises(ValueError, match="not a permutation"):
        parse_name("x_t1_0123456788")


def test_crop_sizes_match_the_codec_crop():
    rng = np.random.default_rng(0)
    canvases = [np.zeros(900, np.int64), np.full(900, 4)]
    for _ in range(200):
        c = rng.choice(12, size=900, p=[0.01, 0.01] + [0.098] * 10)
        canvases.append(c)
    canvases.append(canvas(_grid(4, 7), junk=True))
    h, w = crop_sizes(np.stack(canvases))
    for c, hh, ww in zip(canvases, h, w, strict=True):
        assert crop_canvas(c).shape == (hh, ww)
    assert (h[0], w[0]) == (0, 0) and (h[1], w[1]) == (30, 30) and (h[-1], w[-1]) == (4, 7)
    # equal areas: the crop keeps the one with fewer rows (2x3, not 3x2)
    c = np.zeros((30, 30), np.int64)
    c[:2, :3] = 2
    c[2, :2] = 2
    assert crop_canvas(c).shape == (2, 3)
    assert tuple(x[0] for x in crop_sizes(c.reshape(1, 900))) == (2, 3)


# ------------------------------------------------------------------------------ the build


def test_load_arc_split_reads_the_original_tasks(data):
    split, _ = data
    assert list(split.tasks) == list(TASKS)
    for name, tests in TASKS.items():
        got = split.tasks[name].tests
        assert len(got) == len(tests)
        for t, (x, y) in zip(got, tests, strict=True):
            assert np.array_equal(t.input, x) and np.array_equal(t.output, y)


def test_load_arc_split_rejects_a_mismatched_identifier_table(tmp_path):
    root = build(tmp_path / "arc")
    names = json.loads((root / "identifiers.json").read_text())
    (root / "identifiers.json").write_text(json.dumps([*names, "extra"]))
    with pytest.raises(HrmMlirError) as e:
        load_arc_split(root)
    msg = one_line(e)
    assert "identifiers.json" in msg and "puzzle table" in msg


def test_load_arc_split_rejects_another_dataset(tmp_path):
    root = build(tmp_path / "arc")
    meta = json.loads((root / "test" / "dataset.json").read_text())
    meta.update(seq_len=81, vocab_size=11)  # a Sudoku build
    (root / "test" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(HrmMlirError) as e:
        load_arc_split(root)
    assert "dataset.json" in one_line(e) and "not an ARC build" in one_line(e)
    with pytest.raises(HrmMlirError, match="no such dataset directory"):
        load_arc_split(tmp_path / "nowhere")


# -------------------------------------------------------------------------------- scoring


def test_score_votes_through_the_augmentations(data):
    split, preds = data
    result = score(preds, split.identifiers, split.tasks)
    assert result.pass_at == pytest.approx(WANT)
    assert result.puzzles == 4 and result.unpredicted == ["e0000005"]
    assert result.blank_rows == 3 and result.rows == sum(len(v) for v in VOTES.values())
    a, b, c, d, e = result.tasks
    top = a.tests[0].candidates
    assert [(x.votes, x.correct) for x in top] == [(3, True), (2, False)]
    assert np.array_equal(top[0].grid, TASKS["a1b2c3d4"][0][1])
    assert np.array_equal(top[1].grid, WRONG["A"])
    assert top[1].mean_q == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert [t.rank for t in b.tests] == [1, 2]  # one wrong input at k=1 fails the task
    assert b.solved_at(2) and not b.solved_at(1)
    assert [x.votes for x in c.tests[0].candidates] == [2, 2, 1] and c.tests[0].rank == 1
    assert d.tests[0].rank == 1 and d.tests[1].rank is None and not d.solved_at(1000)
    assert e.rows == 0 and e.tests[0].candidates == ()


def test_score_breaks_a_vote_tie_by_mean_q(data):
    split, _ = data
    votes = dict(VOTES)
    votes[("c0ffee00", 0)] = [(None, RIGHT, -1.0), (0, RIGHT, -0.5), (1, WRONG["C"], 2.0),
                              (2, WRONG["C"], 1.0), (3, WRONG["C2"], 6.0)]  # fmt: skip
    result = score(predictions(list(split.identifiers), votes), split.identifiers, split.tasks)
    assert result.tasks[2].tests[0].rank == 2
    assert result.pass_at[1] == pytest.approx(1 / 4) and result.pass_at[2] == pytest.approx(3 / 4)


def test_score_drops_blank_rows_that_would_not_decode(data):
    split, preds = data
    assert (preds["puzzle_identifiers"] == 0).sum() == 3  # their inputs are all PAD
    result = score(preds, split.identifiers, split.tasks, ks=(1,))
    assert result.pass_at == {1: pytest.approx(0.5)}
    kept = preds["puzzle_identifiers"] != 0
    again = score({k: v[kept] for k, v in preds.items()}, split.identifiers, split.tasks, ks=(1,))
    assert again.pass_at == result.pass_at and again.blank_rows == 0
    logits = np.eye(12, dtype=np.float32)[preds.pop("preds")] * 2.0 - 1.0  # the logits form
    assert score({**preds, "logits": logits}, split.identifiers, split.tasks).pass_at == WANT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, n: p.update(inputs=p["inputs"][:, :81], preds=p["preds"][:, :81]),
         "another dataset"),
        (lambda p, n: p["preds"].__setitem__((0, 0), 40), "ARC's are 0..11"),
        (lambda p, n: p["puzzle_identifiers"].__setitem__(0, len(n)), "identifiers.json names"),
        (lambda p, n: p["puzzle_identifiers"].__setitem__(0, n.index("trainonly")),
         "not in the data's test split"),
        (lambda p, n: p["inputs"].__setitem__(0, canvas(_grid(3, 3))), "none of the task's test"),
        (lambda p, n: p.pop("q_halt_logits"), "no q_halt_logits"),
        (lambda p, n: p.update(q_halt_logits=p["q_halt_logits"][:-1]), "q_halt_logits for"),
    ],
)  # fmt: skip
def test_score_rejects_bad_predictions_in_one_line(data, change, message):
    split, preds = data
    change(preds, list(split.identifiers))
    with pytest.raises(HrmMlirError) as e:
        score(preds, split.identifiers, split.tasks, source="preds.pt")
    assert message in one_line(e) and one_line(e).startswith("preds.pt")


# ----------------------------------------------------------------------------- outputs


def test_submission_has_two_attempts_per_test_input(data, tmp_path):
    split, preds = data
    result = score(preds, split.identifiers, split.tasks)
    sub = submission(result)
    assert list(sub) == list(TASKS)
    assert [len(v) for v in sub.values()] == [len(v) for v in TASKS.values()]
    a = sub["a1b2c3d4"][0]
    assert a["attempt_1"] == TASKS["a1b2c3d4"][0][1].tolist()
    assert a["attempt_2"] == WRONG["A"].tolist()
    d = sub["d00d0001"][0]  # one candidate: the second attempt repeats it
    assert d["attempt_1"] == d["attempt_2"] == TASKS["d00d0001"][0][1].tolist()
    assert sub["e0000005"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]
    path = write_submission(result, tmp_path / "submission.json")
    assert json.loads(path.read_text()) == sub
    assert all(type(v) is int for row in a["attempt_1"] for v in row)


def test_plot_tasks_writes_a_png(data, tmp_path):
    pytest.importorskip("matplotlib")
    split, preds = data
    result = score(preds, split.identifiers, split.tasks)
    path = plot_tasks(result, tmp_path / "tasks.png", limit=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(HrmMlirError, match="no task 'nope'"):
        plot_tasks(result, tmp_path / "x.png", names=["nope"])


# ---------------------------------------------------------------------- prediction files


def test_load_predictions_reads_upstream_files(data, tmp_path):
    torch = pytest.importorskip("torch")
    split, preds = data
    half = len(preds["inputs"]) // 2
    # file 1 as upstream's evaluate.py saves it (logits, labels, q_continue_logits ...)
    logits = torch.nn.functional.one_hot(torch.from_numpy(preds["preds"][:half]).long(), 12)
    torch.save(
        {"inputs": torch.from_numpy(preds["inputs"][:half]).int(),
         "labels": torch.zeros(half, 900, dtype=torch.int32),
         "puzzle_identifiers": torch.from_numpy(preds["puzzle_identifiers"][:half]),
         "logits": (logits * 3.0 - 1.0).to(torch.bfloat16),
         "q_halt_logits": torch.from_numpy(preds["q_halt_logits"][:half]),
         "q_continue_logits": torch.zeros(half)},
        tmp_path / "step_1_all_preds.0",
    )  # fmt: skip
    # file 2 in the smaller `preds` form
    torch.save({k: torch.from_numpy(v[half:]) for k, v in preds.items()}, tmp_path / "p.1")
    got = load_predictions([tmp_path / "step_1_all_preds.0", tmp_path / "p.1"])
    for k, v in preds.items():
        assert np.array_equal(got[k], v), k
    assert score(got, split.identifiers, split.tasks).pass_at == pytest.approx(WANT)


def test_load_predictions_rejects_bad_files_in_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    good = {"inputs": torch.zeros(2, 900, dtype=torch.int32), "q_halt_logits": torch.zeros(2),
            "puzzle_identifiers": torch.ones(2, dtype=torch.int32),
            "preds": torch.zeros(2, 900, dtype=torch.int64)}  # fmt: skip
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "q_halt_logits"}, "no q_halt_logits"),
        "rows": ({**good, "q_halt_logits": torch.zeros(3)}, "puzzle_identifiers has 2 rows"),
        "notdict": ([1, 2], "expected a dict of tensors"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(HrmMlirError) as e:
            load_predictions([tmp_path / name])
        assert message in one_line(e) and str(tmp_path / name) in one_line(e)
    (tmp_path / "junk").write_bytes(b"not a torch file")
    with pytest.raises(HrmMlirError) as e:
        load_predictions([tmp_path / "junk"])
    assert "not a torch.save'd predictions file" in one_line(e)
    torch.save({**good, "inputs": torch.zeros(2, 81, dtype=torch.int32),
                "preds": torch.zeros(2, 81, dtype=torch.int64)}, tmp_path / "sudoku")  # fmt: skip
    torch.save(good, tmp_path / "arc")
    with pytest.raises(HrmMlirError, match="different lengths"):
        load_predictions([tmp_path / "arc", tmp_path / "sudoku"])
    with pytest.raises(HrmMlirError, match="no such predictions file"):
        load_predictions([tmp_path / "absent"])
