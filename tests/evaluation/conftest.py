"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sudoku6x6"


@pytest.fixture(scope="session")
def act_vmfb() -> Path:
    """The bundled example's @act compiled at batch 50, once a session: through the artifact
    cache (the session's own, `tests/conftest.py`), which `tests/test_example.py` and
    `test_evaluate.py`'s checkpoint runs at batch 50 then read instead of compiling again."""
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.compiler.cache import compile_act
    from hrm_mlir.core.types import DType

    compiled = compile_act(load_checkpoint(EXAMPLE), dtype=DType.FLOAT32, batch_size=50)
    assert compiled.entry is not None
    return compiled.entry.artifact
