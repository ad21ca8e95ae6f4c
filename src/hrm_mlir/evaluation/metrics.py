"""Upstream's evaluation metrics (`models/losses.py` `ACTLossHead`, reduced as `pretrain.py`
`evaluate` reduces them), on numpy arrays.

For each example with at least one label (`labels != IGNORE_LABEL_ID`; padded rows have none):
- `accuracy`: the fraction of its labelled tokens whose argmax prediction is the label;
- `exact_accuracy`: 1 when every labelled token is right;
- `q_halt_accuracy`: 1 when `q_halt_logits >= 0` says what `exact_accuracy` says;
- `steps`: the ACT steps it ran.
Each is summed over the examples and divided by their count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hrm_mlir.evaluation.dataset import IGNORE_LABEL_ID

METRICS = ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps")


@dataclass
class Metrics:
    """Sums over the examples seen so far; `result()` divides them by `count`."""

    count: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))

    def add(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        q_halt_logits: np.ndarray,
        steps: np.ndarray,
    ) -> np.ndarray:
        """Count a batch: `predictions` [B, seq_len] argmax tokens. Returns each row's
        exactness (True / False, and False for rows without labels)."""
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        valid = counts > 0
        correct = mask & (predictions == labels)
        exact = correct.sum(-1) == counts
        self.count += int(valid.sum())
        per_row = correct.sum(-1) / np.maximum(counts, 1)
        self.sums["accuracy"] += float(per_row[valid].sum())
        self.sums["exact_accuracy"] += float((valid & exact).sum())
        self.sums["q_halt_accuracy"] += float((valid & ((q_halt_logits >= 0) == exact)).sum())
        self.sums["steps"] += float(steps[valid].sum())
        return valid & exact

    def result(self) -> dict[str, float]:
        divisor = max(self.count, 1)  # upstream's guard against an empty set
        return {name: self.sums[name] / divisor for name in METRICS}
