"""compile on any CPU: the flags that avoid IREE 3.13's data-tiling miscompile, the self-check
against the reference export records, and the target recorded in the artifact."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from iree import runtime as rt
from iree.compiler import ir
from iree.compiler import tools as iree_tools

import hrm_mlir.compiler.options as compile_mod
from hrm_mlir.cli.app import main
from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.options import DATA_TILING, CompileOptions
from hrm_mlir.compiler.selfcheck import run_cases
from hrm_mlir.core.errors import CompileError, RuntimeFailure
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.reference import DYNAMIC_BATCHES, Case, attach, detach
from hrm_mlir.exporter.step import export_step
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.runtime.target import CPU_KEY, FEATURES_KEY, HOST, TARGET_KEY, resolve_cpu
from hrm_mlir.verification import verify_step
from tests.conftest import random_model, requires_x86

pytestmark = requires_x86

REPO = Path(__file__).resolve().parents[2]
_CALLS = itertools.count(1)
REPRODUCER = REPO / "docs" / "repro" / "iree-3.13-data-tiling-symbolic-batch.mlir"
# CPUs whose features differ from most hosts': one of them is missing something on any machine
FOREIGN_CPUS = ("znver4", "sapphirerapids", "znver5", "graniterapids", "x86-64-v3")


def _run_reproducer(cpu: str, flags: list[str]) -> bool:
    """Whether the reproducer compiled with `flags` computes (s - rowmax(s) + 1) @ 1 right.

    The miscompile leaves rows of the packed left-hand side unwritten, so the matmul reads
    whatever a reused buffer held: each call takes an s of its own (c * k along the keys),
    so that what an earlier call packed cannot pass for right."""
    c = float(next(_CALLS))
    s = np.broadcast_to(c * np.arange(24, dtype=np.float32), (2, 20, 24)).copy()
    v = np.ones((2, 24, 40), np.float32)
    vmfb = iree_tools.compile_file(
        str(REPRODUCER),
        target_backends=["llvm-cpu"],
        extra_args=[f"--iree-llvmcpu-target-cpu={cpu}", *flags[1:]],
    )
    got = np.asarray(rt.load_vm_flatbuffer(vmfb, driver="local-task").pv(s, v))
    want = (s - s.max(-1, keepdims=True) + 1).astype(np.float64) @ v
    return bool(np.allclose(got, want, rtol=1e-6, atol=0))


@pytest.mark.parametrize("cpu", [HOST, "x86-64-v3", "x86-64-v4"])
def test_fast_flags_compile_the_data_tiling_reproducer_right(cpu):
    """docs/known-issues.md: 20 rows per batch are no multiple of the tile rows of any x86
    target (8 on AVX2, 16 on AVX-512), so the miscompile shows on every CPU that runs it."""
    if resolve_cpu(cpu).missing_on(resolve_cpu(HOST)):
        pytest.skip(f"this CPU cannot run {cpu} code")
    fast = CompileOptions(cpu=cpu).flags(DType.FLOAT32)
    assert DATA_TILING in fast and "--iree-opt-data-tiling" not in fast
    assert _run_reproducer(cpu, fast)
    # strict: the day IREE fixes its default path, this fails and the workaround can go
    bug = [fast[0], "--iree-opt-data-tiling"]
    assert not _run_reproducer(cpu, bug), "IREE's default data tiling is fixed"


def _unpadded_dynamic_step(model):
    """A symbolic-batch step whose attention length (18) is not padded to 8: the exported
    attention feeds IREE 3.13's miscompile on every x86 CPU (docs/known-issues.md)."""
    options = ExportOptions(
        output_type=OutputType.LINALG_ON_TENSORS, batch_size=None, attention_pad=1
    )
    return export_step(model, options)


def test_export_records_reference_cases_at_two_batch_sizes(model):
    exported = _unpadded_dynamic_step(model)
    with ir.Context():
        module = ir.Module.parse(exported.bytecode())
        cases = detach(module)
    assert [(c.function, c.batch) for c in cases] == [("step", b) for b in DYNAMIC_BATCHES]
    assert "hrm_mlir.reference" not in str(module)[:2000]  # detached
    args = [torch.from_numpy(a) for a in cases[1].inputs]
    with torch.no_grad():
        ref = model.inner(*args)
    for got, want in zip(cases[1].outputs, ref, strict=True):
        assert np.array_equal(got, want.numpy())  # what PyTorch computes for those inputs
    static = export_step(model, ExportOptions(output_type=OutputType.TORCH, batch_size=2))
    with ir.Context():
        assert [c.batch for c in detach(ir.Module.parse(static.bytecode()))] == [2]


def test_compile_falls_back_when_the_fast_flags_fail_the_self_check(model, monkeypatch):
    # The old default: the data-tiling path that miscompiles this module at batch 3
    broken = [
        f if f != DATA_TILING else "--iree-opt-data-tiling" for f in compile_mod.FAST_CPU_FLAGS
    ]
    monkeypatch.setattr(compile_mod, "FAST_CPU_FLAGS", broken)
    exported = _unpadded_dynamic_step(model)
    notes: list[str] = []
    stats: dict = {}
    options = CompileOptions(gemm_kernels=False)  # the kernels would take the attention
    vmfb = compile_module(exported, options=options, notes=notes, stats=stats)
    assert len(notes) == 1, notes
    assert notes[0].startswith("the fast llvm-cpu flags: they failed the self-check (@step at ")
    assert notes[0].endswith("compiled with IREE's defaults instead")
    assert stats["checked"] == "@step at batch 1, 3"
    compiled = CompiledModule(vmfb)
    for b in (1, 3, 5):
        assert verify_step(model, compiled, b, seed=b).passed
    # without the check, the broken artifact is handed out: the check is what caught it
    unchecked = CompiledModule(compile_module(exported, options=options, check=False))
    assert not verify_step(model, unchecked, 3, seed=3).passed


def test_compile_writes_nothing_when_every_configuration_fails(model, tmp_path, capsys):
    exported = export_step(model, ExportOptions(batch_size=2))
    with ir.Context():
        cases = detach(ir.Module.parse(exported.bytecode()))
    # a reference that no right artifact matches: PyTorch's z_H doubled
    wrong = replace(cases[0], outputs=(2 * cases[0].outputs[0], *cases[0].outputs[1:]))
    attach(exported.module, [wrong])
    mlir = exported.save(tmp_path / "s.mlirbc")
    out = tmp_path / "s.vmfb"
    assert main(["compile", str(mlir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrm-mlir: error: no configuration passed, no artifact written: ")
    for config in ("fast llvm-cpu flags and GEMM kernels", "fast llvm-cpu flags", "defaults"):
        assert config in err
    assert "(@step at batch 2: z_H rel-L2 " in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["compile", str(mlir), "-o", str(out), "--no-check"]) == 0
    assert out.exists()  # the user said not to check
    mlir = export_step(model, ExportOptions(batch_size=2)).save(tmp_path / "right.mlirbc")
    assert main(["compile", str(mlir), "-o", str(out)]) == 0
    assert "checked against PyTorch on this CPU: @step at batch 2" in capsys.readouterr().out


def test_the_artifact_records_its_target(model):
    vmfb = compile_module(export_step(model), options=CompileOptions(cpu="x86-64-v3"))
    reflection = CompiledModule(vmfb).reflection("step")
    assert reflection[TARGET_KEY] == "llvm-cpu:x86-64-v3" and reflection[CPU_KEY] == "x86-64-v3"
    assert {"avx2", "fma"} <= set(reflection[FEATURES_KEY].split(","))
    assert "avx512f" not in reflection[FEATURES_KEY]


def test_an_artifact_for_features_this_cpu_lacks_is_refused_in_one_line(model, tmp_path):
    host = resolve_cpu(HOST)
    foreign = next((c for c in FOREIGN_CPUS if resolve_cpu(c).missing_on(host)), None)
    if foreign is None:
        pytest.skip("this CPU has every feature of " + ", ".join(FOREIGN_CPUS))
    notes: list[str] = []
    path = tmp_path / "foreign.vmfb"
    compile_module(export_step(model), path, CompileOptions(cpu=foreign), notes=notes)
    assert any(n.startswith(f"not checked: built for {foreign}, whose ") for n in notes), notes
    with pytest.raises(RuntimeFailure) as e:
        CompiledModule(path)
    message = str(e.value)
    assert message.startswith(f"{path}: built for CPU {foreign}, whose features ")
    assert "--cpu host" in message and "\n" not in message


def test_a_named_cpu_this_machine_runs_is_checked_and_gpu_targets_say_they_are_not(model):
    host = resolve_cpu(HOST)
    baseline = next(c for c in ("x86-64-v3", "x86-64") if not resolve_cpu(c).missing_on(host))
    stats: dict = {}
    compile_module(export_step(model), options=CompileOptions(cpu=baseline), stats=stats)
    assert stats["checked"] == "@step at batch 1"
    notes: list[str] = []
    from hrm_mlir.compiler.options import Target

    compile_module(export_step(model), options=CompileOptions(target=Target.CUDA), notes=notes)
    assert notes == ["not checked: no cuda device here"]  # this machine has no CUDA GPU


def test_unknown_cpu_is_one_clear_line(tmp_path, capsys, model):
    mlir = export_step(model).save(tmp_path / "s.mlirbc")
    assert main(["compile", str(mlir), "-o", str(tmp_path / "s.vmfb"), "--cpu", "zen9"]) == 2
    err = capsys.readouterr().err
    assert "--cpu zen9: LLVM knows no such CPU: one of " in err and err.count("\n") == 1
    with pytest.raises(CompileError):
        CompileOptions(cpu="zen9").cpu_target()


@pytest.fixture
def model():
    return random_model(seed=1)


class _Returns:
    """A compiled module that returns `outputs` from every call."""

    def __init__(self, *outputs: np.ndarray) -> None:
        self.outputs = outputs

    def call_arrays(self, function: str, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.outputs


def test_the_self_check_judges_the_loop_by_the_loop_tolerance():
    """`@act`'s outputs carry the rounding of every step (numerics.LOOP_TOLERANCES): rel-L2 5e-4
    passes there and fails one step; 1e-2, a wrong step's size, fails both."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 16, 11)).astype(np.float32)
    noise = rng.standard_normal(ref.shape).astype(np.float32)
    noise *= np.linalg.norm(ref) / np.linalg.norm(noise)

    def case(function: str) -> Case:
        return Case(function, (np.zeros((1, 16), np.int32),), (ref,), ("logits",), ("int32",),
                    ("float32",))  # fmt: skip

    rounding, wrong = _Returns(ref + 5e-4 * noise), _Returns(ref + 1e-2 * noise)
    assert run_cases(rounding, [case("act")]) is None
    assert "logits rel-L2" in (run_cases(rounding, [case("step")]) or "")
    assert "logits rel-L2" in (run_cases(wrong, [case("act")]) or "")


def test_the_reproduce_command_runs_as_printed(tmp_path: Path):
    """Pasted into a shell, the command a failed compile prints fails the same way, on the kept
    input (a directory with a space in its name: the words are quoted)."""
    work = tmp_path / "my models"
    work.mkdir()
    bad = work / "bad.mlir"
    bad.write_text(
        "func.func @step(%a: tensor<2xf32>) -> tensor<3xf32> { return %a : tensor<2xf32> }"
    )
    with pytest.raises(CompileError) as e:
        compile_module(bad, work / "bad.vmfb", CompileOptions(tuned=False, gemm_kernels=False))
    message = str(e.value)
    command = message.split("reproduce: ", 1)[1].removesuffix(")")
    assert "iree-compile" in command.split()[0] and "bad.vmfb.failed-input.mlir" in command
    run = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "error:" in run.stderr and "tensor<3xf32>" in run.stderr, run.stderr[-2000:]
