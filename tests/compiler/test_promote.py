"""bfloat16 modules on a CPU: computed in float32 behind their bf16 ABI by default
(`hrm_mlir.compiler.promote`), judged against the float32 truth relative to PyTorch's own bf16
(`numerics.judge_reduced`), and bf16 arithmetic for a CPU with bf16 units on request."""

from __future__ import annotations

import pytest
import torch

from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.errors import RuntimeFailure
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.step import export_step
from hrm_mlir.models.hrm import sdpa_attention
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.runtime.target import FEATURES_KEY, HOST, resolve_cpu
from hrm_mlir.verification import verify_step
from tests.conftest import random_model, requires_x86

BATCH = 2
BF16 = ExportOptions(OutputType.LINALG_ON_TENSORS, dtype=DType.BFLOAT16, batch_size=BATCH)


@pytest.fixture(scope="module")
def h3():
    """A bf16 step with 3 H cycles: with a fixed 0.1 tolerance against PyTorch bf16, `compile`
    refused every configuration of such a model ("z_L rel-L2 0.103 > 0.1")."""
    model = random_model(seed=5, H_cycles=3, forward_dtype="bfloat16")
    notes: list[str] = []
    stats: dict = {}
    vmfb = compile_module(export_step(model, BF16), notes=notes, stats=stats)
    return model, CompiledModule(vmfb), notes, stats


def test_a_bf16_module_is_computed_in_float32_behind_its_bf16_abi(h3):
    model, compiled, notes, stats = h3
    assert any("bfloat16 computed in float32" in n for n in notes), notes
    assert stats["checked"] == f"@step at batch {BATCH}"  # the self-check passed
    assert stats["gemm_kernels"] > 0 or not resolve_cpu(HOST).avx2_fma  # float32's kernels
    report = verify_step(model, compiled, BATCH, seed=11)
    assert report.passed, report.failures()
    assert report.rows >= 32  # 16 draws of 2 rows
    assert [o.dtype for o in report.outputs] == ["bfloat16"] * 3 + ["float32"] * 2
    assert report.reduced is not None
    for o in report.reduced.outputs:  # float32 arithmetic: nearer the truth than PyTorch bf16
        assert o.distance <= o.pytorch, o


def test_a_wrong_artifact_fails_against_the_truth(h3):
    """The 3-cycle artifact judged as the same weights with 2 H cycles: off by O(1)."""
    _, compiled, _, _ = h3
    h2 = random_model(seed=5, H_cycles=2, forward_dtype="bfloat16")
    report = verify_step(h2, compiled, BATCH, seed=11)
    assert not report.passed
    assert any("from the float32 truth" in f for f in report.failures()), report.failures()


class _PyTorchBf16WithSdpa:
    """PyTorch's own bf16 by another route (SDPA attention): rounding noise, not an error."""

    def __init__(self, model):
        self.model = model

    def call(self, function: str, *args):
        assert function == "step"
        with torch.no_grad(), sdpa_attention(self.model):
            return tuple(self.model.inner(*args))


def test_pytorchs_own_bf16_noise_passes(h3):
    model = h3[0]
    report = verify_step(model, _PyTorchBf16WithSdpa(model), BATCH, seed=11)
    assert report.passed, report.failures()


@requires_x86
def test_bf16_products_for_a_cpu_with_bf16_units_are_built_and_refused_here_in_one_line(
    tmp_path,
):
    """`--bf16-compute bfloat16` (bf16 products, float32 accumulation) for Sapphire Rapids: its
    target has AVX512_BF16 and AMX-BF16 (the instructions IREE's bf16 ukernels use), and the
    matmuls' inputs are demoted to bf16; a CPU without those units refuses the artifact in one
    line that names both, never a SIGILL."""
    model = random_model(seed=5, forward_dtype="bfloat16")
    options = CompileOptions(cpu="sapphirerapids", bf16_compute="bfloat16")
    notes: list[str] = []
    path = tmp_path / "spr.vmfb"
    compile_module(export_step(model, BF16), path, options, notes=notes)
    assert any("bfloat16 products with float32 accumulation" in n for n in notes), notes
    recorded = _reflection(path.read_bytes(), "step")[FEATURES_KEY].split(",")
    assert {"avx512bf16", "amx-bf16"} <= set(recorded)
    host = resolve_cpu(HOST)
    if {"avx512bf16", "amx-bf16"} <= host.features:
        pytest.skip(f"this CPU ({host.name}) runs Sapphire Rapids code")
    with pytest.raises(RuntimeFailure) as e:
        CompiledModule(path)
    message = str(e.value)
    assert "\n" not in message and "sapphirerapids" in message and host.name in message
    assert "amx-bf16" in message or "avx512bf16" in message


def _reflection(vmfb: bytes, function: str) -> dict[str, str]:
    from iree import runtime as rt

    module = rt.VmModule.copy_buffer(rt.VmInstance(), vmfb)
    return dict(module.lookup_function(function).reflection)
