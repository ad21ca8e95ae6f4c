"""The files of ARC scoring (`hrm_mlir.evaluation.arc`): an ARC build's original tasks, read
from upstream's `build_arc_dataset.py` output (`load_arc_split`); prediction files, read from
upstream's `evaluate.py` output (`load_predictions`); and the ARC Prize (Kaggle)
`submission.json` of a score, written (`submission`, `write_submission`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrm_mlir.core.errors import HrmMlirError, first_line
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.evaluation.arc import (
    BLANK_IDENTIFIER,
    PREDICTION_FIELDS,
    VOCAB_SIZE,
    ArcScore,
    ArcTask,
    ArcTest,
    Augmentation,
    crop_all,
    parse_name,
)
from hrm_mlir.evaluation.dataset import Split, load_metadata, load_split
from hrm_mlir.puzzles.arc import SEQ_LEN

# ------------------------------------------------------------------------------ predictions


def load_predictions(paths: Iterable[str | Path]) -> dict[str, np.ndarray]:
    """Read prediction files (upstream's `evaluate.py` output, or the `preds` form) and join
    their rows.

    Each file is a `torch.save`d dict of tensors with `puzzle_identifiers` [N], `inputs`
    [N, 900], `q_halt_logits` [N] and either `logits` [N, 900, V] or `preds` [N, 900] (argmax
    taken). Logits are reduced to their argmax as each file is read, so the result holds
    `puzzle_identifiers` (int64), `inputs` and `preds` (uint8) and `q_halt_logits` (float32).
    Files are read with `weights_only=True`: tensors only, no pickled code.
    """
    try:
        import torch
    except ImportError:
        raise HrmMlirError("reading prediction files needs torch (pip install torch)") from None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*PREDICTION_FIELDS, "preds")}
    files = [Path(p) for p in paths]
    if not files:
        raise HrmMlirError("no prediction files given")
    for path in files:
        if not path.is_file():
            raise HrmMlirError(f"{path}: no such predictions file")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # torch raises pickle, zip and runtime errors alike
            raise HrmMlirError(
                f"{path}: not a torch.save'd predictions file: {first_line(e)}"
            ) from None
        if not isinstance(raw, dict):
            raise HrmMlirError(f"{path}: holds a {type(raw).__name__}, expected a dict of tensors")
        token_key = "preds" if "preds" in raw else "logits"
        missing = [k for k in (*PREDICTION_FIELDS, token_key) if k not in raw]
        if missing:
            raise HrmMlirError(
                f"{path}: no {', '.join(missing)} (has {', '.join(sorted(map(str, raw)))}); "
                "expected upstream evaluate.py's outputs"
            )
        tensors = {k: raw[k] for k in (*PREDICTION_FIELDS, token_key)}
        for k, v in tensors.items():
            if not isinstance(v, torch.Tensor):
                raise HrmMlirError(f"{path}: {k} is a {type(v).__name__}, expected a tensor")
        if tensors["puzzle_identifiers"].ndim != 1:
            raise HrmMlirError(
                f"{path}: puzzle_identifiers has shape "
                f"{list(tensors['puzzle_identifiers'].shape)}, expected [rows]"
            )
        rows = tensors["puzzle_identifiers"].shape[0]
        for k, v in tensors.items():
            if v.ndim == 0 or v.shape[0] != rows:
                raise HrmMlirError(
                    f"{path}: {k} has shape {list(v.shape)}, but puzzle_identifiers has {rows} rows"
                )
        tokens = tensors[token_key]
        if token_key == "logits":
            if tokens.ndim != 3:
                raise HrmMlirError(
                    f"{path}: logits have shape {list(tokens.shape)}, expected [rows, seq, vocab]"
                )
            tokens = tokens.argmax(dim=-1)
        elif tokens.dtype.is_floating_point:
            raise HrmMlirError(f"{path}: preds are {tokens.dtype}, expected integer tokens")
        for k, v in (("inputs", tensors["inputs"]), ("preds", tokens)):
            if v.ndim != 2 or v.dtype.is_floating_point:
                raise HrmMlirError(
                    f"{path}: {k} is {v.dtype} {list(v.shape)}, expected integer [rows, seq]"
                )
            if v.numel() and (int(v.min()) < 0 or int(v.max()) > 255):
                raise HrmMlirError(
                    f"{path}: {k} hold tokens {int(v.min())}..{int(v.max())}, not ARC's 0..11"
                )
            parts[k].append(v.to(torch.uint8).numpy())
        parts["puzzle_identifiers"].append(tensors["puzzle_identifiers"].to(torch.int64).numpy())
        parts["q_halt_logits"].append(tensors["q_halt_logits"].float().reshape(rows).numpy())
    widths = {p.shape[1] for p in parts["inputs"] + parts["preds"]}
    if len(widths) > 1:
        raise HrmMlirError(
            f"{', '.join(map(str, files))}: the files hold rows of different lengths "
            f"{sorted(widths)}: predictions of different datasets"
        )
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


# ------------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class ArcSplit:
    """What scoring needs of an ARC build: `identifiers.json` and the split's original tasks."""

    directory: Path
    identifiers: tuple[str, ...]
    tasks: dict[str, ArcTask]


def load_arc_split(
    data_dir: str | Path, split: str = "test", loaded: Split | None = None
) -> ArcSplit:
    """The tasks of an ARC build of upstream's `build_arc_dataset.py`: the split's un-augmented
    puzzles, each of their examples a test input (its input and label cropped to grids).

    The split is read and checked by `hrm_mlir.evaluation.dataset` (`loaded`, if the caller has
    it already); here only what makes it ARC: 900 tokens and 12 of vocabulary, an
    `identifiers.json` naming every row of the puzzle table."""
    root = Path(data_dir)
    meta_path = root / split / "dataset.json"
    meta = loaded.metadata if loaded is not None else load_metadata(root, split)
    if meta.seq_len != SEQ_LEN or meta.vocab_size != VOCAB_SIZE:
        raise HrmMlirError(
            f"{meta_path}: seq_len {meta.seq_len}, vocab_size {meta.vocab_size}: not an ARC "
            f"build (ARC has {SEQ_LEN} and {VOCAB_SIZE})"
        )
    data = loaded if loaded is not None else load_split(root, split)
    ids_path = root / "identifiers.json"
    names = data.identifiers
    if not names:
        raise HrmMlirError(f"{ids_path}: missing (an ARC build of build_arc_dataset.py has one)")
    if len(names) != meta.num_puzzle_identifiers:
        raise HrmMlirError(
            f"{ids_path}: {len(names)} names, but {meta_path} has {meta.num_puzzle_identifiers} "
            "puzzle identifiers (the puzzle table): identifiers.json of another build?"
        )
    parsed: dict[int, tuple[Augmentation, bool]] = {}
    tasks: dict[str, ArcTask] = {}
    for puzzle_set in data.sets:
        prefix = data.directory / f"{puzzle_set.name}__"
        ids = np.asarray(puzzle_set.puzzle_identifiers, dtype=np.int64)
        starts = np.asarray(puzzle_set.puzzle_indices, dtype=np.int64)
        originals: list[int] = []
        for p, pid in enumerate(ids.tolist()):
            if pid not in parsed:
                try:
                    parsed[pid] = parse_name(names[pid])
                except ValueError as e:
                    raise HrmMlirError(f"{ids_path}: identifier {pid}: {e}") from None
            if pid != BLANK_IDENTIFIER and not parsed[pid][1]:
                originals.append(p)
        rows = np.concatenate(
            [np.arange(starts[p], starts[p + 1]) for p in originals] or [np.zeros(0, np.int64)]
        )
        grids_in = crop_all(np.asarray(puzzle_set.inputs[rows]))
        grids_out = crop_all(np.asarray(puzzle_set.labels[rows]))
        at = 0
        for p in originals:
            name = names[int(ids[p])]
            n = int(starts[p + 1] - starts[p])
            where = f"{prefix}inputs.npy: puzzle {name!r}"
            if name in tasks:
                raise HrmMlirError(f"{where}: appears twice in the {split} split")
            tests = []
            for k in range(n):
                if grids_in[at + k].size == 0:
                    raise HrmMlirError(f"{where} test {k}: the input holds no colour grid")
                if grids_out[at + k].size == 0:
                    raise HrmMlirError(
                        f"{prefix}labels.npy: puzzle {name!r} test {k}: no expected output grid"
                    )
                tests.append(ArcTest(grids_in[at + k], grids_out[at + k]))
            at += n
            tasks[name] = ArcTask(name, tuple(tests))
    if not tasks:
        raise HrmMlirError(
            f"{data.directory}: no un-augmented ARC puzzles in the {split} split (names in "
            f"{ids_path})"
        )
    return ArcSplit(root, tuple(names), tasks)


# -------------------------------------------------------------------------------- submission


def _grid_json(grid: np.ndarray | None) -> list[list[int]]:
    if grid is None or grid.size == 0:
        return [[0]]  # Kaggle needs a grid; an empty or missing prediction is scored wrong
    return [[int(v) for v in row] for row in grid]


def submission(result: ArcScore) -> dict[str, list[dict[str, list[list[int]]]]]:
    """The ARC Prize (Kaggle) `submission.json`: per task, one {attempt_1, attempt_2} per test
    input, the two best-voted candidates (the first again when there is one; [[0]] when none)."""
    out: dict[str, list[dict[str, list[list[int]]]]] = {}
    for task in result.tasks:
        entries = []
        for t in task.tests:
            first = t.candidates[0].grid if t.candidates else None
            second = t.candidates[1].grid if len(t.candidates) > 1 else first
            entries.append({"attempt_1": _grid_json(first), "attempt_2": _grid_json(second)})
        out[task.name] = entries
    return out


def write_submission(result: ArcScore, path: str | Path) -> Path:
    """Write `submission(result)` as JSON, atomically."""
    return write_atomic(path, json.dumps(submission(result)).encode())


__all__ = ["ArcSplit", "load_arc_split", "load_predictions", "submission", "write_submission"]
