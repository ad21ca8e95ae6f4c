"""End to end on the full 27M-parameter Sudoku-shaped config (upstream's published size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hrm_mlir.checkpoint.load import load_checkpoint
from hrm_mlir.cli.app import main
from hrm_mlir.models.config import HRMConfig
from hrm_mlir.models.hrm import HRM
from tests.conftest import SUDOKU_ARCH, randomize, write_checkpoint


@pytest.fixture(scope="module")
def sudoku_27m(tmp_path_factory) -> Path:
    cfg = HRMConfig(**SUDOKU_ARCH, vocab_size=11, seq_len=81, num_puzzle_identifiers=1)
    torch.manual_seed(0)
    model = randomize(HRM(cfg))
    return write_checkpoint(tmp_path_factory.mktemp("sudoku"), model, weights_name="checkpoint")


@pytest.mark.slow
def test_full_size_bf16_checkpoint_exports_compiles_and_verifies_with_defaults(
    sudoku_27m: Path, capsys, tmp_path: Path
):
    """Upstream's published shape in its own dtype (bfloat16), every option left as it is: the
    step is computed in float32 behind its bf16 ABI and judged against the float32 truth over
    32 draws at batch 1, relative to PyTorch's own bf16."""
    ck = load_checkpoint(sudoku_27m, seq_len=81)
    assert ck.parameter_count == 27_275_266 and ck.config.forward_dtype.value == "bfloat16"
    report = tmp_path / "verify.json"
    assert main(["verify", str(sudoku_27m), "--seq_len", "81", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "verification passed" in out and "bfloat16 computed in float32" in out
    step = json.loads(report.read_text())["reports"][0]
    assert step["dtype"] == "bfloat16" and step["passed"] and step["rows"] >= 32


@pytest.mark.slow
@pytest.mark.parametrize("batch", ["16", "dynamic"])
def test_full_size_batch_16_and_symbolic_batch_keep_the_fast_cpu_flags(
    sudoku_27m: Path, capsys, batch: str
):
    """Two GEMMs once needed more than 64 KiB of stack, so the whole step fell back to IREE's
    default flags: the LM head at batch 16 (130 KiB, a batched GEMM with its packing inside)
    and the Q head on z_H[:, 0] with a symbolic batch (263,168 B)."""
    argv = ["verify", str(sudoku_27m), "--seq_len", "81", "--dtype", "float32"]
    assert main([*argv, "--output_type", "linalg-on-tensors", "--batch_size", batch]) == 0
    out = capsys.readouterr().out
    assert "verification passed" in out
    assert "instead" not in out  # no fallback: neither IREE nor the self-check refused them
