"""Upstream's built datasets, as `dataset/build_{sudoku,maze,arc}_dataset.py` write them.

    DATA_DIR/identifiers.json                  puzzle identifier -> name (ARC); entry 0 blank
    DATA_DIR/<split>/dataset.json              `PuzzleDatasetMetadata`
    DATA_DIR/<split>/<set>__inputs.npy         [examples, seq_len] tokens
    DATA_DIR/<split>/<set>__labels.npy         [examples, seq_len] tokens, ignore_label_id = none
    DATA_DIR/<split>/<set>__puzzle_identifiers.npy   [puzzles] the embedding row of each puzzle
    DATA_DIR/<split>/<set>__puzzle_indices.npy       [puzzles + 1] first example of each puzzle
    DATA_DIR/<split>/<set>__group_indices.npy        [groups + 1] first puzzle of each group

Evaluation walks every example of every set in order, each with its puzzle's identifier, as
upstream's test mode does (`puzzle_dataset.py`, `_iter_test`): labels equal to
`ignore_label_id` become `IGNORE_LABEL_ID` (-100), and a short last batch is padded with
`pad_id` inputs, ignored labels and the blank identifier. Inputs and labels are memory-mapped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.fileio import atomic_path

IGNORE_LABEL_ID = -100  # upstream's `models/losses.py`
FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


class DatasetError(HrmMlirError):
    """A dataset directory that cannot be evaluated: one line naming the file."""


class Metadata(BaseModel):
    """`dataset.json`: upstream's `PuzzleDatasetMetadata` (dataset/common.py)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    num_puzzle_identifiers: int = Field(ge=0)
    total_groups: int = Field(ge=0)
    mean_puzzle_examples: float
    sets: list[str] = Field(min_length=1)
    total_puzzles: int | None = Field(default=None, ge=0)  # TRM's builders add it


@dataclass(frozen=True)
class PuzzleSet:
    """One set (`all`, ...) of a split: its arrays, checked against each other."""

    name: str
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def examples(self) -> int:
        return int(self.inputs.shape[0])

    def example_identifiers(self) -> np.ndarray:
        """The puzzle identifier of every example (its puzzle's, through `puzzle_indices`)."""
        offsets = np.asarray(self.puzzle_indices, dtype=np.int64)
        counts = (offsets[1:] - offsets[:-1]).astype(np.int64)
        return np.repeat(np.asarray(self.puzzle_identifiers, dtype=np.int32), counts)


@dataclass(frozen=True)
class Split:
    """A split of a built dataset (`test` by default), validated."""

    directory: Path
    metadata: Metadata
    sets: tuple[PuzzleSet, ...]
    identifiers: list[str] | None  # identifiers.json of the dataset directory, if it has one

    @property
    def examples(self) -> int:
        return sum(s.examples for s in self.sets)

    def check_model(self, *, vocab_size: int, seq_len: int, num_puzzle_identifiers: int,
                    puzzle_embedding: bool, where: str) -> None:  # fmt: skip
        """Refuse a dataset the model cannot read. The puzzle-identifier count only matters
        with a puzzle embedding: upstream's Sudoku and maze builders write 1 and their models
        have none."""
        meta, path = self.metadata, self.directory / "dataset.json"
        if meta.seq_len != seq_len:
            raise DatasetError(f"{path}: seq_len {meta.seq_len}, but {where} has {seq_len}")
        if meta.vocab_size != vocab_size:
            raise DatasetError(
                f"{path}: vocab_size {meta.vocab_size}, but {where} has {vocab_size} tokens"
            )
        if puzzle_embedding and meta.num_puzzle_identifiers > num_puzzle_identifiers:
            raise DatasetError(
                f"{path}: {meta.num_puzzle_identifiers} puzzle identifiers, but {where} has "
                f"{num_puzzle_identifiers} puzzle-embedding rows"
            )

    def batches(
        self,
        batch_size: int,
        limit: int | None = None,
        *,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        """(inputs, labels, puzzle identifiers, real rows) of `batch_size` rows each, in order,
        the last padded as upstream pads it; at most `limit` examples in all.

        `start`/`stop`: only the examples numbered `start` to `stop` (exclusive) in the order of
        the whole split, its sets one after the other (a shard of `evaluation.distributed`);
        batches begin at `start` and never span two sets, as the whole split's never do.
        """
        start, end = self.example_range(limit, start=start, stop=stop)
        meta = self.metadata
        base = 0  # the split's number of the set's first example
        for s in self.sets:
            lo, hi = max(start - base, 0), min(end - base, s.examples)
            base += s.examples
            if lo >= hi:
                continue
            ids = s.example_identifiers()
            for first in range(lo, hi, batch_size):
                last = min(first + batch_size, hi)
                n = last - first
                inputs = np.array(s.inputs[first:last], dtype=np.int32)
                labels = np.array(s.labels[first:last], dtype=np.int32)
                if meta.ignore_label_id is not None:
                    labels[labels == meta.ignore_label_id] = IGNORE_LABEL_ID
                pids = ids[first:last]
                if n < batch_size:
                    pad = batch_size - n
                    inputs = np.pad(inputs, ((0, pad), (0, 0)), constant_values=meta.pad_id)
                    labels = np.pad(labels, ((0, pad), (0, 0)), constant_values=IGNORE_LABEL_ID)
                    pids = np.pad(pids, (0, pad), constant_values=meta.blank_identifier_id)
                yield inputs, labels, pids.astype(np.int32), n

    def example_range(
        self, limit: int | None = None, *, start: int = 0, stop: int | None = None
    ) -> tuple[int, int]:
        """The examples `batches(.., limit, start=, stop=)` walks: (first, end), clipped to the
        split and to its first `limit` examples."""
        if start < 0 or (stop is not None and stop < start):
            raise HrmMlirError(f"example range {start}..{stop}: expected 0 <= start <= stop")
        end = self.examples if limit is None else min(limit, self.examples)
        if stop is not None:
            end = min(end, stop)
        return min(start, end), end


def load_split(data_dir: str | Path, split: str = "test") -> Split:
    """Read and check a split of a built dataset; every problem is one line naming its file."""
    root = Path(data_dir)
    metadata = load_metadata(root, split)
    sets = tuple(_load_set(root / split, name, metadata) for name in metadata.sets)
    identifiers = _load_identifiers(root / "identifiers.json", metadata)
    return Split(root / split, metadata, sets, identifiers)


def load_metadata(data_dir: str | Path, split: str = "test") -> Metadata:
    """`<split>/dataset.json` alone, checked (what a build is, before its arrays are read)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    meta_path = root / split / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(
            f"{meta_path}: missing (is {root} a built dataset with a {split} split?)"
        )
    try:
        return Metadata.model_validate(json.loads(meta_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as e:
        first = str(e).splitlines()
        raise DatasetError(
            f"{meta_path}: not upstream's dataset.json: {' '.join(first[:3])}"
        ) from e


def _load_set(directory: Path, name: str, metadata: Metadata) -> PuzzleSet:
    arrays = {}
    for field in FIELDS:
        path = directory / f"{name}__{field}.npy"
        if not path.is_file():
            raise DatasetError(f"{path}: missing")
        try:
            if field in ("inputs", "labels"):  # memory-mapped: a test set can be large
                arrays[field] = np.load(path, mmap_mode="r", allow_pickle=False)
            else:
                arrays[field] = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"{path}: not a numpy array file: {e}") from e
    s = PuzzleSet(name, **arrays)
    prefix = directory / f"{name}__"
    for field in ("inputs", "labels"):
        a = arrays[field]
        if a.ndim != 2 or a.shape[1] != metadata.seq_len or not np.issubdtype(a.dtype, np.integer):
            raise DatasetError(
                f"{prefix}{field}.npy: shape {list(a.shape)} {a.dtype}, expected integer "
                f"[examples, {metadata.seq_len}] (dataset.json's seq_len)"
            )
    if s.labels.shape[0] != s.examples:
        raise DatasetError(
            f"{prefix}labels.npy: {s.labels.shape[0]} rows, inputs have {s.examples}"
        )
    indices = s.puzzle_indices.astype(np.int64)
    puzzles = s.puzzle_identifiers.shape[0]
    if (
        indices.ndim != 1
        or indices.size != puzzles + 1
        or indices[0] != 0
        or indices[-1] != s.examples
        or np.any(np.diff(indices) < 0)
    ):
        raise DatasetError(
            f"{prefix}puzzle_indices.npy: expected {puzzles + 1} non-decreasing example offsets "
            f"from 0 to {s.examples}"
        )
    ids = s.puzzle_identifiers.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= max(metadata.num_puzzle_identifiers, 1)):
        raise DatasetError(
            f"{prefix}puzzle_identifiers.npy: identifiers {ids.min()}..{ids.max()} outside "
            f"0..{max(metadata.num_puzzle_identifiers, 1) - 1} (dataset.json's "
            "num_puzzle_identifiers)"
        )
    return s


def _load_identifiers(path: Path, metadata: Metadata) -> list[str] | None:
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: expected a list of puzzle names (index = identifier)")
    if metadata.num_puzzle_identifiers > 1 and len(names) != metadata.num_puzzle_identifiers:
        raise DatasetError(
            f"{path}: {len(names)} names, but dataset.json has {metadata.num_puzzle_identifiers} "
            "puzzle identifiers (the puzzle table)"
        )
    return names


def write_split(
    data_dir: str | Path,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    split: str = "test",
    vocab_size: int,
    pad_id: int = 0,
    ignore_label_id: int | None = 0,
    puzzle_identifiers: np.ndarray | None = None,
    num_puzzle_identifiers: int = 1,
    trm: bool = False,
) -> Path:
    """Write one example per puzzle and one puzzle per group, as upstream's Sudoku builder
    does, in upstream's layout (the bundled examples' `data/test`, tests); `trm` adds TRM's
    `total_puzzles` to `dataset.json`."""
    n, seq_len = inputs.shape
    ids = np.zeros(n, np.int32) if puzzle_identifiers is None else puzzle_identifiers
    arrays = {
        "inputs": inputs,
        "labels": labels,
        "puzzle_identifiers": ids.astype(np.int32),
        "puzzle_indices": np.arange(n + 1, dtype=np.int32),
        "group_indices": np.arange(n + 1, dtype=np.int32),
    }
    metadata = Metadata(
        pad_id=pad_id,
        ignore_label_id=ignore_label_id,
        blank_identifier_id=0,
        vocab_size=vocab_size,
        seq_len=seq_len,
        num_puzzle_identifiers=num_puzzle_identifiers,
        total_groups=n,
        mean_puzzle_examples=1,
        sets=["all"],
        total_puzzles=n if trm else None,
    )
    directory = Path(data_dir) / split
    directory.mkdir(parents=True, exist_ok=True)
    for field, array in arrays.items():
        with atomic_path(directory / f"all__{field}.npy") as tmp, tmp.open("wb") as f:
            np.save(f, array)
    with atomic_path(directory / "dataset.json") as tmp:
        tmp.write_text(json.dumps(metadata.model_dump(exclude_none=True)))
    return directory
