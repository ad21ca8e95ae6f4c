"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import hrm_mlir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sudoku6x6"


@pytest.fixture(scope="module")
def act_vmfb(tmp_path_factory) -> Path:
    """The bundled example's @act compiled at batch 50, once."""
    out = tmp_path_factory.mktemp("act")
    exported = hrm_mlir.export(
        EXAMPLE, out / "act.mlirbc", entry="act", output_type="linalg-on-tensors",
        dtype="float32", batch_size=50,
    )  # fmt: skip
    return hrm_mlir.compile(exported.path, out / "act.vmfb").path
