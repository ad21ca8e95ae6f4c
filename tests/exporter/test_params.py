"""External parameters: weights in an IREE parameter archive, the MLIR referring to them by name.

End to end on a checkpoint whose puzzle-embedding table has 100,000 rows (an ARC checkpoint in
miniature): export, compile, run through the project and through IREE's own `iree-run-module`,
and compare with PyTorch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from iree import runtime as rt

from hrm_mlir.checkpoint.load import load_checkpoint
from hrm_mlir.cli.app import main
from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.exporter import params as params_mod
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.runner import CompiledACT
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.verification import STEP_OUTPUTS, compare
from tests.conftest import LOOP_TOL, TINY_DIMS, act_model, write_checkpoint

ROWS = 100_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def big_table(tmp_path_factory) -> Path:
    """A tiny model with a 100,000 x 80 puzzle table (32 MB of float32)."""
    model = act_model(seed=3, num_puzzle_identifiers=ROWS)  # its ACT loop is tested too
    root = tmp_path_factory.mktemp("arc")
    return write_checkpoint(root / "ckpt", model, dataset_seq_len=TINY_DIMS["seq_len"])


@pytest.fixture(scope="module")
def exported(big_table: Path, tmp_path_factory) -> tuple[Path, Path]:
    """`hrm-mlir export --params external` of `@step` (torch dialect, text), and its archive."""
    out = tmp_path_factory.mktemp("export")
    mlir = out / "step.mlir"
    assert main(["export", str(big_table), "-o", str(mlir), "--params", "external"]) == 0
    return mlir, out / "step.irpa"


def _entries(archive: Path) -> dict[str, np.ndarray]:
    index = rt.ParameterIndex()
    index.load(str(archive))
    return {k: rt.parameter_index_entry_as_numpy_flat_ndarray(e) for k, e in index.items()}


def test_no_weight_is_left_inlined(exported, big_table):
    mlir, archive = exported
    text = mlir.read_text()
    assert "dense_resource" not in text and "dialect_resources" not in text
    assert mlir.stat().st_size < 1 << 20  # the 32 MB table is not in the MLIR
    assert "func.func @step(%arg0: !torch.vtensor<[1,18,64],f32>" in text  # the ABI is unchanged
    assert '#stream.parameter.named<"model"::"inner.puzzle_emb.weights">' in text
    # The archive holds the checkpoint's tensors under their state-dict names, byte for byte.
    entries = _entries(archive)
    state = load_checkpoint(big_table).state_dict
    assert set(entries) == set(state) - {"inner.H_init", "inner.L_init"} | {
        "inner.rope.cos",
        "inner.rope.sin",
    }
    for key, tensor in state.items():
        if key in entries:
            assert np.array_equal(entries[key], tensor.contiguous().numpy().view(np.uint8).ravel())


def test_external_step_matches_pytorch_across_the_table(exported, big_table, capsys):
    mlir, archive = exported
    assert main(["verify", str(big_table), "--mlir", str(mlir), "--params", str(archive)]) == 0
    assert "verification passed" in capsys.readouterr().out
    # rows at both ends of the table, where a wrong offset would show
    ck = load_checkpoint(big_table)
    model = ck.build_model()
    z_H, z_L, inputs, _ = random_step_inputs(ck.config, 3, seed=7)
    compiled = CompiledModule(compile_module(mlir), parameters=archive)
    for row in (0, 54_321, ROWS - 1):
        ids = torch.tensor([row], dtype=torch.int32)
        got = compiled.call("step", z_H[:1], z_L[:1], inputs[:1], ids)
        with torch.no_grad():
            ref = model.inner(z_H[:1], z_L[:1], inputs[:1], ids)
        report = compare(STEP_OUTPUTS, list(got), ref, ck.config.forward_dtype)
        assert report.passed, (row, report.failures())


def test_iree_run_module_runs_the_artifact_with_the_archive(exported, big_table, tmp_path):
    tool = shutil.which("iree-run-module") or str(Path(sys.executable).parent / "iree-run-module")
    mlir, archive = exported
    vmfb = tmp_path / "step.vmfb"
    assert main(["compile", str(mlir), "-o", str(vmfb), "--params", str(archive)]) == 0
    ck = load_checkpoint(big_table)
    args = random_step_inputs(ck.config, 1, seed=11)
    files = []
    for i, a in enumerate(args):
        files.append(tmp_path / f"in{i}.npy")
        np.save(files[-1], a.numpy())
    outs = [tmp_path / f"out{i}.npy" for i in range(5)]
    result = subprocess.run(
        [
            tool,
            f"--module={vmfb}",
            f"--parameters=model={archive}",
            "--function=step",
            *(f"--input=@{f}" for f in files),
            *(f"--output=@{f}" for f in outs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        ref = ck.build_model().inner(*args)
    got = [torch.from_numpy(np.load(f)) for f in outs]
    assert compare(STEP_OUTPUTS, got, ref, ck.config.forward_dtype).passed


@pytest.mark.parametrize("batch", ["4", "dynamic"])
def test_external_act_loop_matches_pytorch(big_table, tmp_path, batch):
    mlir, vmfb = tmp_path / "act.mlirbc", tmp_path / "act.vmfb"
    argv = ["export", str(big_table), "-o", str(mlir), "--entry", "act", "--batch_size", batch]
    argv += ["--output_type", "linalg-on-tensors", "--params_file", str(tmp_path / "w.irpa")]
    assert main(argv) == 0
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    compiled = CompiledACT.from_vmfb(vmfb, parameters=tmp_path / "w.irpa")
    g = torch.Generator().manual_seed(2)
    inputs = torch.randint(0, TINY_DIMS["vocab_size"], (4, 16), generator=g).to(torch.int32)
    ids = torch.tensor([0, 1, 77_777, ROWS - 1], dtype=torch.int32)
    logits, q_h, q_c, steps = compiled.act(inputs, ids, max_steps=3, q_halt=False)
    ref = load_checkpoint(big_table).build_model().act(inputs, ids, max_steps=3, q_halt=False)
    assert torch.equal(steps, ref.steps)
    assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
    torch.testing.assert_close(q_h, ref.q_halt_logits, **LOOP_TOL)  # 3 steps: see LOOP_TOL
    torch.testing.assert_close(q_c, ref.q_continue_logits, **LOOP_TOL)


def test_large_weights_switch_to_external_by_default(big_table, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(params_mod, "INLINE_LIMIT_BYTES", 1 << 20)  # the table is 32 MB
    mlir = tmp_path / "auto.mlirbc"
    assert main(["export", str(big_table), "-o", str(mlir)]) == 0
    text = capsys.readouterr().out
    assert "writing them to an external parameter archive" in text
    assert (tmp_path / "auto.irpa").is_file()
    inline = tmp_path / "in.mlirbc"
    assert main(["export", str(big_table), "-o", str(inline), "--params", "inline"]) == 0
    assert not (tmp_path / "in.irpa").exists()
    assert inline.stat().st_size > ROWS * 80 * 4  # the table is in the MLIR


def test_seed_command_takes_the_params_flags(tiny_checkpoint, tmp_path):
    out = tmp_path / "hrm_model.mlir"
    result = subprocess.run(
        [sys.executable, "generate_mlir.py", "--torch_checkpoint_dir", str(tiny_checkpoint),
         "--output_mlir_path", str(out), "--params", "external"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dense_resource" not in out.read_text()
    assert "inner.puzzle_emb.weights" in _entries(tmp_path / "hrm_model.irpa")


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrm-mlir: error: ") and err.count("\n") == 1
    return err


def test_params_user_errors(exported, big_table, tiny_checkpoint, tmp_path, capsys):
    mlir, _ = exported
    vmfb = tmp_path / "s.vmfb"
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    puzzle = REPO / "examples" / "sudoku6x6" / "puzzles.txt"
    # an external artifact run without its archive
    err = _error(["verify", str(big_table), "--mlir", str(mlir)], capsys)
    assert "built with external parameters" in err
    # another model's archive: every problem named, nothing compiled
    other = tmp_path / "other.mlir"
    assert main(["export", str(tiny_checkpoint), "-o", str(other), "--params", "external"]) == 0
    err = _error(["compile", str(mlir), "-o", str(tmp_path / "x.vmfb"), "--params",
                  str(tmp_path / "other.irpa")], capsys)  # fmt: skip
    assert "other.irpa: does not match the module's parameters: 1 of the wrong size" in err
    assert "inner.puzzle_emb.weights" in err and not (tmp_path / "x.vmfb").exists()
    err = _error(["run", str(vmfb), "--puzzle", str(puzzle), "--params", str(tmp_path / "no")],
                 capsys)  # fmt: skip
    assert "no such parameter archive" in err
    not_archive = tmp_path / "bad.irpa"
    not_archive.write_bytes(b"not an archive")
    err = _error(["verify", str(big_table), "--mlir", str(mlir), "--params", str(not_archive)],
                 capsys)  # fmt: skip
    assert "bad.irpa: not a readable parameter archive" in err
    err = _error(["export", str(big_table), "-o", str(tmp_path / "t.mlir"), "--output_type",
                  "tosa", "--params", "external"], capsys)  # fmt: skip
    assert "--params external supports torch, linalg-on-tensors, stablehlo, not tosa" in err
    assert not (tmp_path / "t.mlir").exists() and not (tmp_path / "t.irpa").exists()
