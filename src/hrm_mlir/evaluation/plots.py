"""Plots of an evaluation: a few ARC tasks with their inputs, top predictions and expected
outputs (`plot_tasks`, for `hrm-mlir evaluate --plot`). Needs matplotlib (`hrm-mlir[bench]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.evaluation.arc import ArcScore
from hrm_mlir.puzzles.arc import NUM_COLORS

# The ARC palette (black, blue, red, green, yellow, grey, magenta, orange, azure, maroon).
ARC_PALETTE = (
    "#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
    "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25",
)  # fmt: skip


def plot_tasks(
    result: ArcScore, path: str | Path, limit: int = 4, names: Sequence[str] | None = None
) -> Path:
    """A PNG of `limit` tasks with rows (`names`, default the first tasks with prediction rows):
    one row per test input with its input, top prediction and expected output."""
    try:
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
    except ImportError:
        raise HrmMlirError(
            "plotting ARC tasks needs matplotlib (pip install matplotlib, or hrm-mlir[bench])"
        ) from None
    by_name = {t.name: t for t in result.tasks}
    if names is None:
        chosen = [t for t in result.tasks if t.rows][:limit]
    else:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise HrmMlirError(f"{path}: no task {unknown[0]!r} in the score to plot")
        chosen = [by_name[n] for n in names][:limit]
    rows = [(task, i, t) for task in chosen for i, t in enumerate(task.tests)]
    if not rows:
        raise HrmMlirError(f"{path}: no tasks to plot")
    cmap = ListedColormap(list(ARC_PALETTE))
    fig = Figure(figsize=(9, 3 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (task, i, t) in enumerate(rows):
        top = t.candidates[0] if t.candidates else None
        label = f"{task.name}" + (f" #{i}" if len(task.tests) > 1 else "")
        if top is None:
            verdict = "no prediction"
        else:
            mark = "right" if top.correct else "wrong"
            verdict = f"top prediction, {mark}\n{top.votes} votes, mean q {top.mean_q:.2f}"
        panels = (
            (t.input, f"{label}\ninput"),
            (None if top is None else top.grid, verdict),
            (t.expected, "expected output"),
        )
        for ax, (grid, title) in zip(axes[r], panels, strict=True):
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if grid is None or grid.size == 0:
                ax.text(0.5, 0.5, "(empty)", ha="center", va="center", transform=ax.transAxes)
                continue
            h, w = grid.shape
            ax.imshow(grid, cmap=cmap, vmin=0, vmax=NUM_COLORS - 1, interpolation="nearest")
            ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
            ax.grid(which="minor", color="#555555", linewidth=0.5)
            ax.tick_params(which="both", length=0)
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))


__all__ = ["ARC_PALETTE", "plot_tasks"]
