"""Evaluate a compiled model on upstream's built datasets: upstream's metrics, its predictions
files, and ARC pass@k by augmentation voting (`arc`)."""

from hrm_mlir.evaluation.dataset import (
    IGNORE_LABEL_ID,
    DatasetError,
    Split,
    load_split,
    write_split,
)
from hrm_mlir.evaluation.engine import Evaluation, evaluate_split, save_predictions
from hrm_mlir.evaluation.metrics import METRICS, Metrics

__all__ = [
    "IGNORE_LABEL_ID",
    "METRICS",
    "DatasetError",
    "Evaluation",
    "Metrics",
    "Split",
    "evaluate_split",
    "load_split",
    "save_predictions",
    "write_split",
]
