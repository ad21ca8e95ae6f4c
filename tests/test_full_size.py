"""End to end on the full 27M-parameter Sudoku-shaped config (upstream's published size)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hrm_mlir.checkpoint import load_checkpoint
from hrm_mlir.cli import main
from hrm_mlir.config import HRMConfig
from hrm_mlir.model import HRM
from tests.conftest import SUDOKU_ARCH, randomize, write_checkpoint


@pytest.mark.slow
def test_full_size_checkpoint_exports_compiles_and_verifies(tmp_path: Path, capsys):
    cfg = HRMConfig(**SUDOKU_ARCH, vocab_size=11, seq_len=81, num_puzzle_identifiers=1)
    torch.manual_seed(0)
    model = randomize(HRM(cfg))
    ckpt = write_checkpoint(tmp_path / "sudoku", model, weights_name="checkpoint")
    del model
    ck = load_checkpoint(ckpt, seq_len=81)
    assert ck.parameter_count == 27_275_266
    argv = ["verify", str(ckpt), "--seq_len", "81", "--dtype", "float32"]
    assert main([*argv, "--output_type", "linalg-on-tensors"]) == 0
    assert "verification passed" in capsys.readouterr().out
