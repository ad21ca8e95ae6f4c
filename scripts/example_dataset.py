"""Write a bundled example's held-out puzzles as upstream's built test split, so that
`hrm-mlir evaluate examples/sudoku6x6 --data examples/sudoku6x6/data` runs on them:
data/test/all__{inputs,labels,puzzle_identifiers,puzzle_indices,group_indices}.npy, next to the
dataset.json that scripts/train_example.py wrote (checked to match).

    .venv/bin/python scripts/example_dataset.py [examples/sudoku6x6]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hrm_mlir.evaluation import load_split, write_split
from hrm_mlir.puzzles import datagen


def main(example: Path) -> None:
    pairs = [
        line.split()
        for line in (example / "heldout.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    puzzles = np.stack([datagen.string_to_grid(p) for p, _ in pairs])
    solutions = np.stack([datagen.string_to_grid(s) for _, s in pairs])
    expected = json.loads((example / "data" / "test" / "dataset.json").read_text())
    write_split(
        example / "data",
        datagen.encode(puzzles).astype(np.uint8),
        datagen.encode(solutions).astype(np.uint8),
        vocab_size=expected["vocab_size"],
        pad_id=expected["pad_id"],
        ignore_label_id=expected["ignore_label_id"],
        trm="total_puzzles" in expected,  # TRM's dataset.json has it
    )
    written = load_split(example / "data").metadata.model_dump(exclude_none=True)
    assert written == {**written, **expected}, (written, expected)
    print(f"wrote {len(pairs)} puzzles to {example / 'data' / 'test'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/sudoku6x6"))
