"""The ACT loop in MLIR (`@act`): structure, runtime step budget, and parity with PyTorch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hrm_mlir.cli.app import main
from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.core.errors import ExportError
from hrm_mlir.core.types import OutputType
from hrm_mlir.exporter.abi import read_functions
from hrm_mlir.exporter.act import export_act
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.runner import CompiledACT
from hrm_mlir.runtime.module import CompiledModule
from tests.conftest import LOOP_TOL, act_inputs, act_model, write_checkpoint

LINALG = OutputType.LINALG_ON_TENSORS
BATCH = 8


# One compiled step differs from PyTorch by ~1e-6 (float32 rounding); the recurrence carries
# that through every step, so after 6-8 steps we allow 1e-3.
@pytest.fixture(scope="module")
def model():
    return act_model()


@pytest.fixture(scope="module")
def exported(model):
    return export_act(model, ExportOptions(output_type=LINALG, batch_size=BATCH))


@pytest.fixture(scope="module")
def compiled(exported):
    return CompiledModule(compile_module(exported))


def _act(compiled, inputs, ids, max_steps, q_halt):
    i32 = torch.int32
    return compiled.call(
        "act", inputs, ids, torch.tensor(max_steps, dtype=i32), torch.tensor(q_halt, dtype=i32)
    )


def test_module_has_the_documented_functions_and_a_real_loop(exported, tmp_path: Path):
    functions = read_functions(exported.save(tmp_path / "act.mlir"))
    assert sorted(functions) == ["act", "initial_carry", "step"]
    assert functions["act"] == (
        "(tensor<8x16xi32>, tensor<8xi32>, tensor<i32>, tensor<i32>) -> "
        "(tensor<8x16x11xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xi32>)"
    )
    text = exported.text()
    act_body = text[text.index("func.func @act") :]
    assert "scf.while" in act_body
    assert len(re.findall(r"call @step\(", text)) == 1  # not unrolled


def test_fixed_steps_match_pytorch_eval_loop(model, compiled):
    inputs, ids = act_inputs(BATCH)
    logits, q_h, q_c, steps = _act(compiled, inputs, ids, 6, 0)
    ref = model.act(inputs, ids, max_steps=6, q_halt=False)
    assert steps.tolist() == [6] * BATCH
    assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
    torch.testing.assert_close(logits, ref.logits, **LOOP_TOL)
    torch.testing.assert_close(q_h, ref.q_halt_logits, **LOOP_TOL)
    torch.testing.assert_close(q_c, ref.q_continue_logits, **LOOP_TOL)


def test_act_equals_calling_the_compiled_step_n_times(model, compiled):
    inputs, ids = act_inputs(BATCH)
    z = compiled.call("initial_carry", ids)
    torch.testing.assert_close(z[0][0, 0], model.inner.H_init, rtol=0, atol=0)
    for _ in range(3):
        *z, logits, q_h, _ = compiled.call("step", *z[:2], inputs, ids)
    act_logits, act_q_h, _, _ = _act(compiled, inputs, ids, 3, 0)
    assert torch.equal(act_logits, logits) and torch.equal(act_q_h, q_h)


def test_q_halting_matches_pytorch_with_rows_stopping_at_different_steps(model, compiled):
    inputs, ids = act_inputs(BATCH)
    logits, q_h, q_c, steps = _act(compiled, inputs, ids, 8, 1)
    ref = model.act(inputs, ids, max_steps=8, q_halt=True)
    assert steps.tolist() == ref.steps.tolist()
    assert len(set(steps.tolist())) >= 3, steps  # halting really fires at different steps
    assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
    torch.testing.assert_close(q_h, ref.q_halt_logits, **LOOP_TOL)
    torch.testing.assert_close(q_c, ref.q_continue_logits, **LOOP_TOL)


def test_step_budget_is_a_runtime_value(compiled):
    inputs, ids = act_inputs(BATCH)
    for budget in (1, 2, 11):  # 11 > the config's halt_max_steps of 4
        assert _act(compiled, inputs, ids, budget, 0)[3].tolist() == [budget] * BATCH


@pytest.mark.parametrize("output_type", [OutputType.TORCH, OutputType.TOSA, OutputType.STABLEHLO])
def test_other_dialects_are_refused_with_a_reason(model, output_type):
    with pytest.raises(ExportError, match="--entry act is built for linalg-on-tensors"):
        export_act(model, ExportOptions(output_type=output_type))


def test_cli_export_compile_run_from_vmfb(tmp_path: Path, model, capsys):
    ckpt = write_checkpoint(tmp_path / "ck", model, dataset_seq_len=16)
    mlir, vmfb = tmp_path / "act.mlirbc", tmp_path / "act.vmfb"
    argv = ["export", str(ckpt), "--entry", "act", "--output_type", "linalg-on-tensors"]
    assert main([*argv, "-o", str(mlir), "--dtype", "float32", "--batch_size", "2"]) == 0
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    act = CompiledACT.from_vmfb(vmfb)
    assert act.batch_size == 2 and act.config == model.config
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("12..34....21..43\n.2.1...4.3...1.2\n.2.1...4.3...1.2\n")
    assert main(["run", str(vmfb), "--puzzle", str(puzzles), "--max_steps", "3"]) == 0
    text = capsys.readouterr().out
    assert "3 puzzles; max_steps 3, fixed steps" in text and text.count("steps 3;") == 3


def test_one_dynamic_batch_artifact_matches_pytorch_at_several_sizes(model, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ck", model, dataset_seq_len=16)
    mlir, vmfb = tmp_path / "act.mlirbc", tmp_path / "act.vmfb"
    argv = ["export", str(ckpt), "--entry", "act", "--output_type", "linalg-on-tensors"]
    assert main([*argv, "-o", str(mlir), "--batch_size", "dynamic"]) == 0
    functions = read_functions(mlir)
    assert functions["act"].startswith("(tensor<?x16xi32>, tensor<?xi32>, tensor<i32>")
    assert functions["step"].startswith("(tensor<?x18x64xf32>")  # still there for callers
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    act = CompiledACT.from_vmfb(vmfb)
    assert act.batch_size is None
    for batch in (1, 3, 16):
        inputs, ids = act_inputs(batch, seed=batch)
        logits, q_h, q_c, steps = act.act(inputs, ids, max_steps=8, q_halt=True)
        ref = model.act(inputs, ids, max_steps=8, q_halt=True)
        assert steps.tolist() == ref.steps.tolist(), batch
        assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
        torch.testing.assert_close(q_h, ref.q_halt_logits, **LOOP_TOL)
        torch.testing.assert_close(q_c, ref.q_continue_logits, **LOOP_TOL)
    # the runner sends every puzzle in one call
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("12..34....21..43\n.2.1...4.3...1.2\n.2.1...4.3...1.2\n")
    assert main(["run", str(vmfb), "--puzzle", str(puzzles), "--max_steps", "2"]) == 0
    assert "3 puzzles; max_steps 2" in capsys.readouterr().out
