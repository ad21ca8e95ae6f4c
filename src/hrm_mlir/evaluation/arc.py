"""ARC pass@k by augmentation voting, as upstream's `arc_eval.ipynb` scores an ARC build.

Upstream's `dataset/build_arc_dataset.py` puts every test input of each ARC evaluation task in
the `test` split, once as the task itself (puzzle name = task id) and once per augmentation
(name `<task>_t<dihedral id>_<colour map>`: the grids are `dihedral_transform(colour_map[grid],
id)`, the colour map written as its ten digits, black kept). `evaluate.py` saves the model's
outputs on that split (`step_<n>_all_preds.<rank>`, a `torch.save`d dict of tensors: `inputs`,
`labels`, `puzzle_identifiers`, `logits`, `q_halt_logits`, `q_continue_logits`).

Scoring follows the notebook's `test()`:

1. drop the rows with identifier 0 (the blank identifier pads the last batch);
2. take each row's predicted tokens (argmax of `logits`) and crop its input and prediction to
   the top-left rectangle of colour tokens (`hrm_mlir.puzzles.arc.crop_canvas`);
3. undo the row's augmentation, parsed from its name in `identifiers.json`: the inverse dihedral
   transform, then the inverse colour map;
4. find the original test input the un-augmented input equals, and vote for the un-augmented
   prediction there;
5. rank each test input's distinct predictions by vote count, then by the mean of
   `sigmoid(q_halt_logits)` over their votes (first seen first on a full tie);
6. a test input is right at k if its expected output is among the top k; a task counts at k
   only when all of its test inputs are right. pass@k is the fraction of the tasks that have
   prediction rows.

The expected outputs come from the build itself: the un-augmented puzzles of `<split>/` in
`identifiers.json`'s names, their examples' inputs and labels (the notebook reads the same rows
back from the predictions' `labels`).

Here: the augmentations, the crop, the tasks and the scoring. Reading the build and prediction
files and writing `submission.json` are `hrm_mlir.evaluation.arc_io`'s; the PNG of a few tasks
is `hrm_mlir.evaluation.plots`'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.puzzles.arc import COLOR_OFFSET, GRID_MAX, NUM_COLORS, SEQ_LEN

DEFAULT_KS = (1, 2, 10, 100, 1000)
BLANK_IDENTIFIER = 0
VOCAB_SIZE = NUM_COLORS + 2  # PAD, EOS, ten colours
# What every prediction row carries besides its tokens (`preds`, or `logits` to take them from)
PREDICTION_FIELDS = ("puzzle_identifiers", "inputs", "q_halt_logits")

# The 8 dihedral transforms of upstream's `dataset/common.py`, by id, and the id undoing each:
# the rotations by 90 and 270 degrees undo each other; the rest are their own inverse.
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)

_AUGMENTED = re.compile(r"(?P<task>.+)_t(?P<tid>[0-7])_(?P<colours>[0-9]{10})")


# ----------------------------------------------------------------------------- augmentations


def dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Upstream's dihedral transform `tid` (0..7) of a 2-D grid."""
    if tid == 0:
        return grid
    if tid in (1, 2, 3):
        return np.rot90(grid, k=tid)  # counter-clockwise quarter turns
    if tid == 4:
        return grid[:, ::-1]  # mirror left-right
    if tid == 5:
        return grid[::-1, :]  # mirror top-bottom
    if tid == 6:
        return grid.T  # transpose
    if tid == 7:
        return np.rot90(grid, k=1)[:, ::-1]  # anti-transpose
    raise ValueError(f"dihedral transform id {tid} is not 0..7")


def inverse_dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Undo `dihedral_transform(grid, tid)`."""
    return dihedral_transform(grid, DIHEDRAL_INVERSE[tid])


@dataclass(frozen=True)
class Augmentation:
    """The augmentation a puzzle name records: `<task>_t<tid>_<colours>`, or none (tid 0, the
    identity colour map) for a task's own name."""

    task: str
    tid: int = 0
    colours: tuple[int, ...] = tuple(range(NUM_COLORS))  # augmented colour = colours[original]

    @property
    def augmented(self) -> bool:
        return self.tid != 0 or self.colours != tuple(range(NUM_COLORS))

    def undo(self, grid: np.ndarray) -> np.ndarray:
        """The original grid of an augmented one."""
        if not self.augmented:
            return grid
        inverse = np.argsort(np.asarray(self.colours))
        return inverse[inverse_dihedral_transform(grid, self.tid)]

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """Augment an original grid, as upstream's builder does."""
        return dihedral_transform(np.asarray(self.colours)[grid], self.tid)


def parse_name(name: str) -> tuple[Augmentation, bool]:
    """(augmentation, is-augmented) of a puzzle name; raises on a colour map that is not a
    permutation of 0..9. Unlike the notebook (`name.split("_")[0]`), a task id may hold `_`."""
    m = _AUGMENTED.fullmatch(name)
    if m is None:
        return Augmentation(name), False
    colours = tuple(int(c) for c in m["colours"])
    if sorted(colours) != list(range(NUM_COLORS)):
        raise ValueError(f"puzzle name {name!r}: colour map {m['colours']} is not a permutation")
    return Augmentation(m["task"], int(m["tid"]), colours), True


# ---------------------------------------------------------------------------------- cropping


def crop_sizes(canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of `crop_canvas` for each of a batch of [N, 900] canvases, vectorised:
    the width at row r is the first non-colour column of rows 0..r (running minimum), and the
    crop is the first row count of largest area (none if every area is 0)."""
    c = np.asarray(canvases).reshape(-1, GRID_MAX, GRID_MAX)
    colour = (c >= COLOR_OFFSET) & (c < COLOR_OFFSET + NUM_COLORS)
    stops = np.where(colour.all(axis=2), GRID_MAX, np.argmin(colour, axis=2))
    widths = np.minimum.accumulate(stops, axis=1)
    areas = widths * np.arange(1, GRID_MAX + 1)
    best = np.argmax(areas, axis=1)
    some = areas.max(axis=1) > 0
    rows = np.where(some, best + 1, 0)
    cols = np.where(some, widths[np.arange(len(c)), best], 0)
    return rows, cols


def crop_all(canvases: np.ndarray, chunk: int = 8192) -> list[np.ndarray]:
    """Each canvas cropped to its colour grid (0..9, uint8)."""
    out: list[np.ndarray] = []
    for start in range(0, len(canvases), chunk):
        part = np.asarray(canvases[start : start + chunk]).reshape(-1, GRID_MAX, GRID_MAX)
        rows, cols = crop_sizes(part)
        out.extend(
            (part[i, :h, :w] - COLOR_OFFSET).astype(np.uint8)
            for i, (h, w) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True))
        )
    return out


def _key(grid: np.ndarray) -> tuple[int, int, bytes]:
    g = np.ascontiguousarray(grid, dtype=np.uint8)
    return g.shape[0], g.shape[1], g.tobytes()


# ------------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class ArcTest:
    """One test input of a task and its expected output."""

    input: np.ndarray
    output: np.ndarray


@dataclass(frozen=True)
class ArcTask:
    """An original (un-augmented) ARC task of the build: its test inputs in order."""

    name: str
    tests: tuple[ArcTest, ...]


# ----------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Candidate:
    """A distinct (un-augmented) predicted grid of a test input with its votes."""

    grid: np.ndarray
    votes: int
    mean_q: float  # mean sigmoid(q_halt_logits) over the rows that voted for it
    correct: bool


@dataclass(frozen=True)
class InputResult:
    """One test input: its candidates best first, and the 1-based rank of the right one."""

    input: np.ndarray
    expected: np.ndarray
    candidates: tuple[Candidate, ...]

    @property
    def rank(self) -> int | None:
        return next((i + 1 for i, c in enumerate(self.candidates) if c.correct), None)

    def right_at(self, k: int) -> bool:
        r = self.rank
        return r is not None and r <= k


@dataclass(frozen=True)
class TaskResult:
    name: str
    tests: tuple[InputResult, ...]
    rows: int  # prediction rows that voted on this task

    def solved_at(self, k: int) -> bool:
        """All test inputs right at k (a task without rows never is)."""
        return self.rows > 0 and all(t.right_at(k) for t in self.tests)


@dataclass(frozen=True)
class ArcScore:
    pass_at: dict[int, float]  # fraction of the tasks with rows solved at k
    puzzles: int  # tasks with prediction rows (pass@k's denominator)
    tasks: tuple[TaskResult, ...]  # every task of the split, in the build's order
    rows: int  # rows that voted
    blank_rows: int  # rows with identifier 0, dropped

    @property
    def unpredicted(self) -> list[str]:
        """Tasks of the split that no prediction row is for (not in pass@k)."""
        return [t.name for t in self.tasks if t.rows == 0]

    def summary(self) -> dict[str, Any]:
        return {
            **{f"pass@{k}": v for k, v in self.pass_at.items()},
            "puzzles": self.puzzles,
            "unpredicted_puzzles": len(self.unpredicted),
            "rows": self.rows,
            "blank_rows": self.blank_rows,
        }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = sorted(set(ks))
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in out):
        raise HrmMlirError(f"pass@k: k must be positive integers, got {list(ks)}")
    return tuple(out)


def score(
    predictions: Mapping[str, np.ndarray],
    identifiers: Sequence[str],
    test_puzzles: Mapping[str, ArcTask],
    ks: Iterable[int] = DEFAULT_KS,
    *,
    source: str = "predictions",
) -> ArcScore:
    """pass@k of prediction rows against the build's tasks (see the module docstring).

    `predictions` holds `puzzle_identifiers`, `inputs`, `q_halt_logits` and `preds` (or
    `logits`); `identifiers` is `identifiers.json`; `source` names the predictions in errors.
    """
    ks = _check_ks(ks)
    missing = [k for k in PREDICTION_FIELDS if k not in predictions]
    if "preds" not in predictions and "logits" not in predictions:
        missing.append("preds (or logits)")
    if missing:
        raise HrmMlirError(f"{source}: no {', '.join(missing)}")
    ids = np.asarray(predictions["puzzle_identifiers"]).astype(np.int64).reshape(-1)
    inputs = np.asarray(predictions["inputs"])
    if "preds" in predictions:
        tokens = np.asarray(predictions["preds"])
    else:
        logits = np.asarray(predictions["logits"])
        if logits.ndim != 3 or logits.shape[-1] != VOCAB_SIZE:
            raise HrmMlirError(
                f"{source}: logits have shape {list(logits.shape)}, expected [rows, {SEQ_LEN}, "
                f"{VOCAB_SIZE}]: predictions of another dataset?"
            )
        tokens = logits.argmax(axis=-1)
    q = np.asarray(predictions["q_halt_logits"]).reshape(-1)
    n = ids.size
    for what, a in (("inputs", inputs), ("preds", tokens)):
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] != SEQ_LEN:
            raise HrmMlirError(
                f"{source}: {what} have shape {list(a.shape)}, expected [{n}, {SEQ_LEN}] "
                "(ARC's 30x30 canvas): predictions of another dataset?"
            )
        if a.size and (a.min() < 0 or a.max() >= VOCAB_SIZE):
            raise HrmMlirError(
                f"{source}: {what} hold tokens {a.min()}..{a.max()}, ARC's are 0..{VOCAB_SIZE - 1}"
                ": predictions of another dataset?"
            )
    if q.shape != (n,):
        raise HrmMlirError(f"{source}: {q.size} q_halt_logits for {n} rows")
    keep = np.flatnonzero(ids != BLANK_IDENTIFIER)
    blank = n - keep.size
    if keep.size and (ids[keep].min() < 0 or ids[keep].max() >= len(identifiers)):
        bad = int(ids[keep][(ids[keep] < 0) | (ids[keep] >= len(identifiers))][0])
        raise HrmMlirError(
            f"{source}: puzzle identifier {bad}, but identifiers.json names "
            f"0..{len(identifiers) - 1}: predictions of another build?"
        )
    qs = _sigmoid(q[keep])
    crops_in = crop_all(inputs[keep])
    crops_out = crop_all(tokens[keep])

    lookup: dict[str, dict[tuple[int, int, bytes], list[int]]] = {}
    for task in test_puzzles.values():
        by_input: dict[tuple[int, int, bytes], list[int]] = {}
        for i, t in enumerate(task.tests):
            by_input.setdefault(_key(t.input), []).append(i)
        lookup[task.name] = by_input
    # votes[task][test] : prediction key -> [votes, sum of q, grid], in first-seen order
    votes: dict[str, list[dict[tuple[int, int, bytes], list[Any]]]] = {
        name: [{} for _ in task.tests] for name, task in test_puzzles.items()
    }
    rows_of: dict[str, int] = dict.fromkeys(test_puzzles, 0)
    parsed: dict[int, Augmentation] = {}
    for j, row in enumerate(keep.tolist()):
        pid = int(ids[row])
        aug = parsed.get(pid)
        if aug is None:
            try:
                aug = parsed[pid] = parse_name(str(identifiers[pid]))[0]
            except ValueError as e:
                raise HrmMlirError(f"identifiers.json: identifier {pid}: {e}") from None
        where = f"{source}: row {row} (identifier {pid}, {identifiers[pid]!r})"
        if aug.task not in lookup:
            raise HrmMlirError(
                f"{where}: task {aug.task!r} is not in the data's test split: "
                "predictions of another dataset or build?"
            )
        if crops_in[j].size == 0:
            raise HrmMlirError(f"{where}: the input holds no colour grid")
        tests = lookup[aug.task].get(_key(aug.undo(crops_in[j])))
        if tests is None:
            raise HrmMlirError(
                f"{where}: its input, un-augmented, is none of the task's test inputs: "
                "predictions of another build?"
            )
        rows_of[aug.task] += 1
        grid = aug.undo(crops_out[j])
        pk = _key(grid)
        for i in tests:
            entry = votes[aug.task][i].setdefault(pk, [0, 0.0, grid])
            entry[0] += 1
            entry[1] += float(qs[j])
    if not any(rows_of.values()):
        raise HrmMlirError(f"{source}: no rows for any task ({blank} blank rows of {n})")

    results = []
    for name, task in test_puzzles.items():
        inputs_of: list[InputResult] = []
        for i, t in enumerate(task.tests):
            want = _key(t.output)
            ranked = sorted(
                votes[name][i].items(), key=lambda kv: (-kv[1][0], -kv[1][1] / kv[1][0])
            )
            cands = tuple(
                Candidate(np.asarray(g, dtype=np.uint8), c, s / c, key == want)
                for key, (c, s, g) in ranked
            )
            inputs_of.append(InputResult(t.input, t.output, cands))
        results.append(TaskResult(name, tuple(inputs_of), rows_of[name]))
    scored = [r for r in results if r.rows]
    pass_at = {k: sum(r.solved_at(k) for r in scored) / len(scored) for k in ks}
    return ArcScore(pass_at, len(scored), tuple(results), int(keep.size), int(blank))


def pass_at_text(result: ArcScore) -> str:
    """One line: `pass@1 40.00%  pass@2 ...  (N puzzles)`."""
    parts = [f"pass@{k} {100 * v:.2f}%" for k, v in result.pass_at.items()]
    extra = f", {len(result.unpredicted)} without predictions" if result.unpredicted else ""
    return "  ".join(parts) + f"  ({result.puzzles} puzzles{extra})"


__all__ = [
    "BLANK_IDENTIFIER",
    "DEFAULT_KS",
    "DIHEDRAL_INVERSE",
    "PREDICTION_FIELDS",
    "VOCAB_SIZE",
    "ArcScore",
    "ArcTask",
    "ArcTest",
    "Augmentation",
    "Candidate",
    "InputResult",
    "TaskResult",
    "crop_all",
    "crop_sizes",
    "dihedral_transform",
    "inverse_dihedral_transform",
    "parse_name",
    "pass_at_text",
    "score",
]
