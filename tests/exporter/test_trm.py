"""TRM through the exporter and IREE: every dialect, both dtypes, static and symbolic batch,
external parameters, and `@act` under TRM's own halting rule."""

from __future__ import annotations

import pytest
import torch

from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.core.types import DType, HaltRule, OutputType
from hrm_mlir.exporter.act import export_act
from hrm_mlir.exporter.module import ExportOptions, prepare_model
from hrm_mlir.exporter.params import Params
from hrm_mlir.exporter.step import export_step
from hrm_mlir.runner import CompiledACT
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.verification import verify_step
from tests.conftest import LOOP_TOL, random_trm

LINALG = OutputType.LINALG_ON_TENSORS
BLOCKS = {"attention": {}, "mlp_t": {"mlp_t": True, "pos_encodings": "none"}}


@pytest.fixture(scope="module")
def models():
    return {name: random_trm(seed=7, **overrides) for name, overrides in BLOCKS.items()}


def _verified(model, exported, batch: int) -> None:
    compiled = CompiledModule(compile_module(exported))
    report = verify_step(prepare_model(model, exported.options.dtype), compiled, batch)
    assert report.passed, report.failures()
    assert report.argmax_agreement is not None and report.argmax_agreement >= 0.9


# mlp_t (TRM's own block) in every dialect and dtype; attention is HRM's block, whose every
# dialect tests/exporter/test_step.py runs, here in one dialect per dtype (the suite's time).
CASES = [("mlp_t", o, d) for o in OutputType for d in DType] + [
    ("attention", OutputType.TORCH, DType.FLOAT32),
    ("attention", OutputType.STABLEHLO, DType.BFLOAT16),
]


@pytest.mark.parametrize(("block", "output_type", "dtype"), CASES, ids=str)
def test_every_dialect_compiles_runs_and_matches_pytorch(models, block, output_type, dtype):
    model = models[block]
    exported = export_step(model, ExportOptions(output_type=output_type, dtype=dtype, batch_size=2))
    _verified(model, exported, 2)


def test_symbolic_batch_and_external_parameters(models, tmp_path):
    model = models["mlp_t"]
    options = ExportOptions(output_type=LINALG, batch_size=None, params=Params.EXTERNAL)
    exported = export_step(model, options)
    archive = exported.save_parameters(tmp_path / "w.irpa")
    compiled = CompiledModule(compile_module(exported), parameters=archive)
    for b in (1, 3):
        report = verify_step(model, compiled, b)
        assert report.passed, f"batch {b}: {report.failures()}"


def _act_inputs(cfg, batch: int = 8, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
    ids = torch.randint(0, cfg.num_puzzle_identifiers, (batch,), generator=g)
    return inputs.to(torch.int32), ids.to(torch.int32)


def _halting_trm(block: str):
    """A TRM whose halt logit crosses 0 at different steps for different rows, while its
    continue logit stays above it (so HRM's rule would never halt a row)."""
    model = random_trm(seed=2, **BLOCKS[block])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "o_proj" in name or "down_proj" in name:
                p.mul_(0.5)  # a calm recurrence: compiled and eager stay close over 8 steps
    inputs, ids = _act_inputs(model.config)

    def halting_steps(offset: float) -> set[int]:
        with torch.no_grad():
            model.inner.q_head.bias.copy_(torch.tensor([offset, 50.0]))
        return set(model.act(inputs, ids, max_steps=8, q_halt=True).steps.tolist())

    # the halt logit's offset at which the rows stop at the most different steps
    best = max((-0.25 * i for i in range(25)), key=lambda o: len(halting_steps(o)))
    assert len(halting_steps(best)) >= 3, "no offset makes rows halt at different steps"
    return model


@pytest.mark.parametrize(
    ("block", "batch_size"),
    [("mlp_t", 8), ("attention", None)],
    ids=["mlp_t-8", "attention-dynamic"],
)
def test_act_halts_rows_by_trms_rule_as_pytorch_does(block, batch_size):
    model = _halting_trm(block)
    exported = export_act(model, ExportOptions(output_type=LINALG, batch_size=batch_size))
    act = CompiledACT(CompiledModule(compile_module(exported)), exported.config, batch_size)
    assert act.module.reflection("act")["hrm.halt_rule"] == str(HaltRule.POSITIVE)
    inputs, ids = _act_inputs(model.config)
    for q_halt, budget in ((True, 8), (False, 5)):
        logits, q_h, q_c, steps = act.act(inputs, ids, budget, q_halt)
        ref = model.act(inputs, ids, max_steps=budget, q_halt=q_halt)
        assert steps.tolist() == ref.steps.tolist()
        assert torch.equal(logits.argmax(-1), ref.logits.argmax(-1))
        torch.testing.assert_close(q_h, ref.q_halt_logits, **LOOP_TOL)
        torch.testing.assert_close(q_c, ref.q_continue_logits, **LOOP_TOL)
    assert len(set(act.act(inputs, ids, 8, True)[3].tolist())) >= 3
