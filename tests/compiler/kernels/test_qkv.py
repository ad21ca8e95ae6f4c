"""The dispatch making the attention kernel's operands from the qkv projection
(hrm_mlir.compiler.kernels.qkv): the kernel against numpy, its matcher on exported steps, and
whole steps against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from iree import runtime as rt
from iree.compiler import ir, tools
from iree.compiler.passmanager import PassManager

from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.kernels.fusion import fuse_attention
from hrm_mlir.compiler.kernels.qkv import QkvShape, qkv_dispatch, qkv_executable
from hrm_mlir.compiler.kernels.writer import Lines
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.types import OutputType
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.step import export_step
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.verification import verify_step
from tests.conftest import random_model, requires_x86

pytestmark = requires_x86

# what IREE does first: drop code nothing reads, the sizes of runtime-batch pads included
DEAD_CODE = "builtin.module(resolve-shaped-type-result-dims, canonicalize)"


def _reference(e, cos, sin, length: int):
    """Q, KTp, Vp in float64; without tables no RoPE."""
    e = e.astype(np.float64)
    b, s, groups, d = e.shape
    h = groups // 3
    q, k, v = e[:, :, :h], e[:, :, h : 2 * h], e[:, :, 2 * h :]  # [B, S, H, D]
    if cos is not None:
        half = d // 2

        def rope(x):
            rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
            return x * cos[:, None, :] + rotated * sin[:, None, :]

        q, k = rope(q), rope(k)
    pad = ((0, 0), (0, 0), (0, length - s), (0, 0))
    q, k, v = (np.pad(x.transpose(0, 2, 1, 3), pad).reshape(b * h, length, d) for x in (q, k, v))
    panels = -(-length // 16)
    kt = np.zeros((b * h, d, panels * 16))
    kt[:, :, :length] = k.transpose(0, 2, 1)
    ktp = kt.reshape(b * h, d, panels, 16).transpose(0, 2, 1, 3)
    vp = v.reshape(b * h, length, d // 16, 16).transpose(0, 2, 1, 3)
    return q, ktp, vp


@pytest.mark.parametrize(
    ("batch", "seq", "heads", "depth", "length", "rope", "dynamic"),
    [
        (2, 18, 2, 32, 24, True, False),  # 6 padded tokens; the second key panel half padding
        (3, 82, 8, 64, 88, True, True),  # Sudoku's 82 tokens, 27M heads; runtime batch
        (1, 16, 3, 16, 16, False, False),  # learned positions: no RoPE, nothing padded
    ],
)
def test_kernel_matches_numpy(batch, seq, heads, depth, length, rope, dynamic):
    shape = QkvShape(None if dynamic else batch, seq, heads, depth, length, rope)
    rng = np.random.default_rng(0)
    e = rng.standard_normal((batch, seq, 3 * heads, depth)).astype(np.float32)
    cos, sin = (rng.standard_normal((seq, depth)).astype(np.float32) for _ in range(2))
    t = shape.types("tensor")
    args = "%e: " + t["e"] + (f", %cos2: {t['table']}, %sin2: {t['table']}" if rope else "")
    results = f"{t['q']}, {t['kt']}, {t['v']}"
    out = Lines()
    out.add(0, f"func.func @main({args}) -> ({results}) {{")
    qkv_dispatch(out, 2, shape, "%e", ("%cos2", "%sin2"))
    out.add(2, f"return %q, %ktp, %vp : {results}")
    out.add(0, "}")
    vmfb = tools.compile_str(
        qkv_executable(shape) + "\n" + out.text(),
        target_backends=["llvm-cpu"],
        extra_args=["--iree-llvmcpu-target-cpu=host"],
    )
    config = rt.Config("local-task")
    ctx = rt.SystemContext(config=config)
    ctx.add_vm_module(rt.VmModule.copy_buffer(config.vm_instance, vmfb))
    inputs = (e, cos, sin) if rope else (e,)
    got = [np.asarray(x.to_host()) for x in ctx.modules.module["main"](*inputs)]
    want = _reference(e, cos if rope else None, sin if rope else None, length)
    for name, g, w in zip(("Q", "KTp", "Vp"), got, want, strict=True):
        assert g.shape == w.shape, name
        if name == "Vp" or not rope:  # copies, and zeros where padded
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:  # float32 products and sums
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=name)
            assert np.all(g[w == 0] == 0), name  # the padding


def test_unsupported_shapes_are_refused():
    assert QkvShape.supported(901, 64, 904)  # ARC / maze size
    assert not QkvShape.supported(82, 8, 88)  # depth not a whole 16-column panel
    assert not QkvShape.supported(90, 64, 88)  # more tokens than the attention length
    with pytest.raises(ValueError):
        qkv_executable(QkvShape(1, 82, 8, 8, 88, True))


@pytest.mark.parametrize(("batch_size", "pos_encodings"), [(1, "rope"), (None, "learned")])
def test_rewrite_takes_every_attention_from_its_projection(batch_size, pos_encodings):
    model = random_model(pos_encodings=pos_encodings)
    cfg = model.config
    options = ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=batch_size)
    with ir.Context():
        module = ir.Module.parse(export_step(model, options).text())
        pads = _step_body(str(module)).count("tensor.pad")
        fused = fuse_attention(module)
        PassManager.parse(DEAD_CODE).run(module.operation)
        step = _step_body(str(module))
    p = -(-cfg.total_seq_len // 8) * 8
    want = QkvShape(
        batch_size, cfg.total_seq_len, cfg.num_heads, cfg.head_dim, p, pos_encodings == "rope"
    )
    blocks = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
    assert [qkv for _, qkv in fused] == [want] * blocks
    # RoPE's rotate_half and the q, k and v pads went with the code the dispatch replaces
    assert "tensor.concat dim(3)" not in step
    assert step.count("tensor.pad") == pads - 3 * blocks


def _step_body(text: str) -> str:
    step = text[text.index("func.func @step") :]
    return step[: step.index("\n  }\n")]


def test_step_without_rope_on_the_qkv_kernel_matches_pytorch():
    """Learned positions and a symbolic batch (RoPE and a static batch: `test_gemm`)."""
    model = random_model(seed=5, pos_encodings="learned")
    cfg = model.config
    options = ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=None)
    stats: dict = {}
    vmfb = compile_module(
        export_step(model, options), options=CompileOptions(gemm_kernels=True), stats=stats
    )
    blocks = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
    assert stats["attention_kernels"] == stats["qkv_kernels"] == blocks
    compiled = CompiledModule(vmfb)
    for b in (1, 3):
        assert verify_step(model, compiled, b, seed=b).passed
