"""Artifacts for other machines, executed and verified here: ARM64 under qemu-aarch64, Vulkan
on lavapipe (or whatever Vulkan device there is). CUDA and ROCm artifacts are built and checked
for their format in `tests/exporter/test_step.py`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hrm_mlir
from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.options import CompileOptions, Target
from hrm_mlir.core.errors import RuntimeFailure
from hrm_mlir.core.types import OutputType
from hrm_mlir.exporter.act import export_act
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.runtime.module import CompiledModule, recorded_target
from hrm_mlir.runtime.target import VULKAN_BASELINE, resolve_cpu
from hrm_mlir.runtime.tool import aarch64_runner, open_artifact, vulkan_devices
from tests.conftest import act_model, requires_x86, write_checkpoint

AARCH64 = CompileOptions(cpu_triple="aarch64-linux-gnu")
NO_QEMU = aarch64_runner()
needs_qemu = pytest.mark.skipif(isinstance(NO_QEMU, str), reason=f"no aarch64 runner: {NO_QEMU}")
needs_vulkan = pytest.mark.skipif(not vulkan_devices(), reason="no Vulkan device (lavapipe)")


@pytest.fixture(scope="module")
def act_mlir(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny checkpoint and its float32 `@act` (static batch 2), which holds `@step` too."""
    directory = tmp_path_factory.mktemp("port")
    ckpt = write_checkpoint(directory / "ckpt", act_model(), dataset_seq_len=16)
    exported = export_act(
        ckpt_model(ckpt), ExportOptions(OutputType.LINALG_ON_TENSORS, batch_size=2)
    )
    return ckpt, exported.save(directory / "act.mlirbc")


def ckpt_model(ckpt: Path):
    from hrm_mlir.checkpoint.load import load_checkpoint

    return load_checkpoint(ckpt).build_model("float32")


@requires_x86  # an x86 host: ARM64 is the other architecture, run under emulation
def test_the_aarch64_target_is_a_neon_baseline_without_the_x86_kernels(act_mlir, tmp_path):
    target = resolve_cpu("host", "aarch64-linux-gnu")  # `host` is "generic" on another arch
    assert target.name == "generic" and target.arch == "aarch64"
    assert not AARCH64.use_gemm_kernels() and target.isa == "none"
    stats: dict = {}
    dump = tmp_path / "dump"
    flags = (f"--iree-hal-dump-executable-intermediates-to={dump}",)
    options = CompileOptions(cpu_triple="aarch64-linux-gnu", extra_flags=flags)
    vmfb = compile_module(act_mlir[1], options=options, check=False, stats=stats)
    assert stats["gemm_kernels"] == stats["attention_kernels"] == 0  # no x86 code inside
    (asm,) = dump.glob("*arm_64*.s")
    assert re.search(r"fmla\tv\d+\.4s", asm.read_text())  # NEON: 4 float32 lanes per FMA
    assert recorded_target(vmfb)["triple"].startswith("aarch64")
    with pytest.raises(RuntimeFailure, match=r"built for aarch64.* not this x86_64 machine"):
        CompiledModule(vmfb)  # a clear line, not a SIGILL or a loader error


@requires_x86
@needs_qemu
def test_aarch64_artifacts_are_checked_and_verified_under_qemu(act_mlir):
    ckpt, mlir = act_mlir
    options = CompileOptions(cpu_triple="aarch64-linux-gnu", cpu="neoverse-n1")
    stats: dict = {}
    notes: list[str] = []
    compile_module(mlir, options=options, stats=stats, notes=notes)
    assert stats["checked_on"] == "qemu-aarch64", notes  # compile's self-check ran there
    assert stats["checked"] == "@step at batch 2; @initial_carry at batch 2; @act at batch 2"
    result = hrm_mlir.verify(ckpt, mlir=mlir, options=options)
    assert result.passed, result.failures
    assert result.ran_on == "qemu-aarch64"
    assert [b for b, _ in result.reports] == [2] and [b for b, _ in result.act_reports] == [2]
    step = result.reports[0][1]
    assert step.halt_agreement == 1.0 and step.argmax_agreement == 1.0


@needs_vulkan
def test_vulkan_artifacts_are_verified_on_the_device_here(act_mlir):
    ckpt, mlir = act_mlir
    options = CompileOptions(target=Target.VULKAN)
    assert options.vulkan_target == VULKAN_BASELINE
    stats: dict = {}
    compile_module(mlir, options=options, stats=stats)
    assert stats["checked_on"] == "iree-run-module --device=vulkan"
    result = hrm_mlir.verify(ckpt, mlir=mlir, options=options)
    assert result.passed, result.failures
    assert len(result.reports) == len(result.act_reports) == 1


@needs_vulkan
def test_a_device_specific_vulkan_artifact_is_refused_on_another_device(act_mlir):
    """IREE's `ampere` SPIR-V on lavapipe computes wrong numbers without an error; the
    artifact records its target, and loading it on a device of another vendor is refused."""
    _, mlir = act_mlir
    if "nvidia" in vulkan_devices()[0].lower():
        pytest.skip("this Vulkan device is an NVIDIA GPU, which ampere code suits")
    notes: list[str] = []
    options = CompileOptions(target=Target.VULKAN, vulkan_target="ampere")
    vmfb = compile_module(mlir, options=options, notes=notes)
    assert any(n.startswith("not checked: built for the Vulkan target ampere") for n in notes)
    with pytest.raises(RuntimeFailure, match=r"ampere \(NVIDIA GPUs\), but this device is"):
        open_artifact(vmfb)


def test_bfloat16_on_vulkan_still_fails_as_recorded(tmp_path):
    """docs/known-issues.md: IREE 3.13 cannot legalize bf16's `vector.bitcast` for SPIR-V;
    this fails once it can, so that the note and the float32 advice are revisited."""
    from hrm_mlir.core.errors import CompileError
    from hrm_mlir.core.types import DType
    from hrm_mlir.exporter.step import export_step
    from tests.conftest import random_model

    options = ExportOptions(OutputType.LINALG_ON_TENSORS, dtype=DType.BFLOAT16, batch_size=2)
    exported = export_step(random_model(), options)
    with pytest.raises(
        CompileError, match=re.escape("failed to legalize operation 'vector.bitcast'")
    ):
        compile_module(
            exported, tmp_path / "bf16.vmfb", options=CompileOptions(target=Target.VULKAN)
        )
    assert not (tmp_path / "bf16.vmfb").exists()
