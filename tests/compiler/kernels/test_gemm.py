"""The project's GEMM kernels (hrm_mlir.compiler.kernels.gemm): each kernel shape against float64
numpy, and the rewrite of a whole exported step against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.kernels import gemm
from hrm_mlir.compiler.kernels.writer import ISAS, PANEL, tensor
from hrm_mlir.compiler.options import CompileOptions, Target
from hrm_mlir.core.errors import CompileError
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.step import export_step
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.verification import STEP_OUTPUTS, compare, verify_step
from tests.compiler.kernels.helpers import call_main, rel_err
from tests.conftest import random_model, requires_x86

pytestmark = requires_x86

F32_TOL = 1e-5  # relative to the output's norm, against float64


def _run_kernel(shape: gemm.GemmShape, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Dispatch `shape`'s executable on A and R [.., K, N] (packed here, as the helper does)."""
    k, n, np_ = shape.k, shape.n, shape.panels
    pad = [(0, 0)] * (r.ndim - 1) + [(0, np_ * PANEL - n)]
    packed = np.pad(r, pad).reshape(*r.shape[:-1], np_, PANEL)
    packed = np.ascontiguousarray(np.moveaxis(packed, -2, -3))  # [.., panels, K, 16]
    a_t = tensor(shape.dims(shape.m, k))
    r_t = tensor(shape.dims(np_, k, PANEL))
    c_t = tensor(shape.dims(shape.m, n))
    sizes = [
        (i, v) for i, v in ((0, shape.batch), (1 if shape.batched else 0, shape.m)) if v is None
    ]
    lines = [f"func.func @main(%a: {a_t}, %r: {r_t}) -> {c_t} {{"]
    names = []
    for axis, _ in sizes:
        lines += [
            f"  %ax{axis} = arith.constant {axis} : index",
            f"  %d{axis} = tensor.dim %a, %ax{axis} : {a_t}",
            f"  %i{axis} = arith.index_cast %d{axis} : index to i32",
        ]
        names.append(axis)
    dims = ", ".join(f"%d{x}" for x in names)
    workload = f"[{dims}]" if names else ""
    a_dyn = f"{{{dims}}}" if names else ""
    r_dyn = "{%d0}" if shape.batch is None else ""
    extra = "".join(f", %i{x}" for x in names)
    types = ", ".join([f"{a_t}{a_dyn}", f"{r_t}{r_dyn}"] + ["i32"] * len(names))
    lines += [
        f"  %c = flow.dispatch @{shape.symbol}::@{shape.symbol}{workload}(%a, %r{extra}) "
        f": ({types}) -> {c_t}{a_dyn}",
        f"  return %c : {c_t}",
        "}",
    ]
    return call_main(gemm.gemm_executable(shape) + "\n" + "\n".join(lines), a, packed)


@pytest.mark.parametrize(
    ("m", "k", "n", "small_blocks"),
    [
        (82, 64, 48, False),  # full row tiles and a remainder (AVX2: 13 of 6 and 4 rows)
        (1, 37, 16, False),  # one row: only the remainder tile; odd K
        (6, 8, 8, False),  # one full tile; N is half a panel (the padded half is not stored)
        (41, 19, 40, True),  # row blocks of two tiles: several workgroups down, a short last;
        # 3 panels, the last half padding (AVX-512: a workgroup of 2 panels, then one of 1)
    ],
)
@pytest.mark.parametrize("isa", list(ISAS))  # AVX-512 code runs on AVX2 too, slower
def test_kernel_matches_float64(m, k, n, small_blocks, isa, monkeypatch):
    rows = ISAS[isa][1]
    if small_blocks:
        monkeypatch.setattr(gemm, "A_BLOCK_BYTES", 4 * k * 2 * rows)
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    r = rng.standard_normal((k, n), dtype=np.float32)
    shape = gemm.GemmShape(0, m, k, n, isa=isa)
    assert not small_blocks or shape.row_block == 2 * rows
    got = _run_kernel(shape, a, r)
    want = a.astype(np.float64) @ r.astype(np.float64)
    assert got.shape == (m, n) and rel_err(got, want) < F32_TOL


@pytest.mark.parametrize(
    ("batch", "m", "dynamic"),
    [(3, 10, None), (3, 10, "batch"), (0, 23, "m")],
)
@pytest.mark.parametrize("isa", list(ISAS))
def test_kernel_runtime_sizes(batch, m, dynamic, isa):
    """A batch of right-hand sides, and batch or row counts known only when it runs."""
    k, n = 24, 40
    rng = np.random.default_rng(batch + m)
    lead = (batch,) if batch else ()
    a = rng.standard_normal((*lead, m, k), dtype=np.float32)
    r = rng.standard_normal((*lead, k, n), dtype=np.float32)
    shape = gemm.GemmShape(
        None if dynamic == "batch" else batch, None if dynamic == "m" else m, k, n, isa=isa
    )
    got = _run_kernel(shape, a, r)
    want = a.astype(np.float64) @ r.astype(np.float64)
    assert got.shape == want.shape and rel_err(got, want) < F32_TOL


@pytest.mark.parametrize("isa", list(ISAS))
@pytest.mark.parametrize("n", [32, 48])  # AVX-512: 2 panels in one workgroup; 2 + 1
def test_kernel_with_a_swiglu_epilogue(isa, n):
    """C = silu(gate) * up of the two halves of A @ R, with R's panels holding 8 columns of
    each half (the packing the rewrite gives a fused weight)."""
    m, k = 13, 20
    silu_times_up = gemm.Epilogue(
        (
            ("%e0", "arith.negf", ("%g",)),
            ("%e1", "math.exp", ("%e0",)),
            ("%e2", "arith.addf", ("%e1", "1.0")),
            ("%e3", "arith.divf", ("%g", "%e2")),
            ("%e4", "arith.mulf", ("%e3", "%u")),
        ),
        output="%e4",
    )
    shape = gemm.GemmShape(0, m, k, n, silu_times_up, isa=isa)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k), dtype=np.float32)
    r = rng.standard_normal((k, n), dtype=np.float32)
    # [K, 2, panels, 8] -> [panels, K, 2, 8]: each panel is 8 gate columns, then 8 up columns
    interleaved = r.reshape(k, 2, n // 16, 8).transpose(2, 0, 1, 3).reshape(n // 16, k, 16)
    source = gemm.gemm_executable(shape) + (
        f"\nfunc.func @main(%a: tensor<{m}x{k}xf32>, %r: tensor<{n // 16}x{k}x16xf32>) "
        f"-> tensor<{m}x{n // 2}xf32> {{\n"
        f"  %c = flow.dispatch @{shape.symbol}::@{shape.symbol}(%a, %r) : (tensor<{m}x{k}xf32>, "
        f"tensor<{n // 16}x{k}x16xf32>) -> tensor<{m}x{n // 2}xf32>\n"
        f"  return %c : tensor<{m}x{n // 2}xf32>\n}}"
    )
    got = call_main(source, a, np.ascontiguousarray(interleaved))
    c = a.astype(np.float64) @ r.astype(np.float64)
    gate, up = c[:, : n // 2], c[:, n // 2 :]
    want = gate / (1 + np.exp(-gate)) * up
    assert got.shape == (m, n // 2) and rel_err(got, want) < F32_TOL


def test_unsupported_shapes_are_refused():
    assert not gemm.GemmShape.supported(64, 11)  # N not a multiple of 8 (a vocabulary)
    with pytest.raises(ValueError, match="unsupported"):
        gemm.gemm_executable(gemm.GemmShape(0, 4, 8, 12))


def test_gemm_kernels_follow_the_target_cpus_features_not_the_hosts():
    # named CPUs resolve the same on every machine: AVX2 and AVX-512 targets get the kernels
    for cpu in ("x86-64-v3", "znver3", "x86-64-v4", "icelake-server", "sapphirerapids"):
        assert CompileOptions(cpu=cpu).use_gemm_kernels(), cpu
    assert CompileOptions(cpu="x86-64-v4").cpu_target().isa == "avx512"
    assert CompileOptions(cpu="znver3").cpu_target().isa == "avx2"
    assert not CompileOptions(cpu="x86-64").use_gemm_kernels()  # SSE2 only: no AVX2/FMA
    assert not CompileOptions(cpu="x86-64", gemm_kernels=True).use_gemm_kernels()
    assert not CompileOptions(tuned=False).use_gemm_kernels()  # IREE's defaults, all of them
    assert not CompileOptions(target=Target.CUDA, gemm_kernels=True).use_gemm_kernels()
    assert CompileOptions(cpu="x86-64-v3", tuned=False, gemm_kernels=True).use_gemm_kernels()
    assert not CompileOptions(gemm_kernels=False).use_gemm_kernels()
    with pytest.raises(CompileError, match=r"LLVM knows no such CPU: one of .*znver4"):
        CompileOptions(cpu="zen9000").cpu_target()


@pytest.mark.parametrize(
    ("output_type", "batch"),
    [
        (OutputType.LINALG_ON_TENSORS, 2),
        (OutputType.TORCH, None),  # IREE's input conversion first; a symbolic batch
        (OutputType.STABLEHLO, 3),
    ],
)
def test_step_on_gemm_kernels_matches_pytorch(output_type, batch):
    model = random_model(seed=3)
    cfg = model.config
    exported = export_step(model, ExportOptions(output_type=output_type, batch_size=batch))
    stats: dict = {}
    vmfb = compile_module(exported, options=CompileOptions(gemm_kernels=True), stats=stats)
    # every block: the q/k/v, o, gate/up and down projections, and attention on its own
    # kernel (hrm_mlir.compiler.kernels.attention) where IREE's input conversion leaves the
    # exporter's form (torch); not the LM head (N = vocab 11) nor the Q head (N = 2)
    blocks = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
    fused = output_type != OutputType.STABLEHLO
    assert stats["attention_kernels"] == (blocks if fused else 0)
    # and their q, k and v made from the projection by one dispatch (hrm_mlir.compiler.kernels.qkv)
    assert stats["qkv_kernels"] == stats["attention_kernels"]
    assert stats["gemm_kernels"] == (4 if fused else 6) * blocks
    # SwiGLU's silu(gate) * up computed in gate_up's kernel; not with a symbolic batch, whose
    # halves are sliced to a runtime size the rewrite cannot prove is the whole batch
    assert stats["fused_epilogues"] == (blocks if batch else 0)
    compiled = CompiledModule(vmfb)
    for b in [batch] if batch else [1, 3]:
        assert verify_step(model, compiled, b, seed=b).passed


def test_gemm_kernels_off_and_bfloat16_products_leave_the_module_to_iree():
    """bf16 products (`--bf16-compute bfloat16`) leave the GEMMs to IREE, which demotes their
    inputs to bf16; by default a bf16 module is computed in float32 and its GEMMs go to the
    kernels like a float32 one's."""
    model = random_model(seed=3)
    exported = export_step(model, ExportOptions(output_type=OutputType.LINALG_ON_TENSORS))
    stats: dict = {}
    off = compile_module(exported, options=CompileOptions(gemm_kernels=False), stats=stats)
    assert stats["gemm_kernels"] == 0
    bf16 = export_step(
        model, ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, dtype=DType.BFLOAT16)
    )
    native = CompileOptions(gemm_kernels=True, bf16_compute="bfloat16")
    compile_module(bf16, options=native, stats=stats)
    assert stats["gemm_kernels"] == 0  # IREE's, with bf16 inputs
    compile_module(bf16, options=CompileOptions(gemm_kernels=True), stats=stats)
    assert stats["gemm_kernels"] > 0  # promoted to float32 behind its bf16 signature
    on = compile_module(exported, options=CompileOptions(gemm_kernels=True), stats=stats)
    assert stats["gemm_kernels"] > 0
    args = random_step_inputs(model.config, 1, seed=7)
    with torch.no_grad():
        ref = model.inner(*args)
    for vmfb in (off, on):
        got = CompiledModule(vmfb).call("step", *args)
        assert compare(STEP_OUTPUTS, list(got), ref, DType.FLOAT32).passed
