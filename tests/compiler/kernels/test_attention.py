"""The project's fused attention kernel (hrm_mlir.compiler.kernels.attention): the kernel against
float64 numpy, and the rewrite of exported steps against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from iree.compiler import ir

from hrm_mlir.compiler.kernels.attention import AttentionShape, attention_call, attention_executable
from hrm_mlir.compiler.kernels.fusion import fuse_attention
from hrm_mlir.compiler.kernels.writer import tensor
from hrm_mlir.core.types import OutputType
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.step import export_step
from tests.compiler.kernels.helpers import call_main, rel_err
from tests.conftest import random_model, requires_x86

pytestmark = requires_x86

F32_TOL = 1e-5  # relative to the output's norm, against float64


def _reference(q, kt, r, keys: int, scale: float, sums: int) -> np.ndarray:
    """exp(T - rowmax T) @ [R | 1], T = scale * Q @ KT with keys `keys`.. masked, in float64."""
    t = scale * (q.astype(np.float64) @ kt.astype(np.float64))
    t[..., keys:] = -np.inf
    ones = np.ones((*r.shape[:-1], sums))
    return np.exp(t - t.max(axis=-1, keepdims=True)) @ np.concatenate([r, ones], axis=-1)


@pytest.mark.parametrize(
    ("batch", "length", "depth", "n", "keys", "sums", "dynamic"),
    [
        (2, 24, 32, 40, 18, 0, False),  # a half-padded key panel, 2.5 R panels, 6 masked keys
        # (AVX-512: R panels in a tile of 2 and one of 1, the last half padding)
        (3, 88, 64, 64, 82, 8, False),  # Sudoku's 82 tokens, P @ [V | 1]; last row tile: 4 rows
        (2, 16, 8, 8, 16, 16, True),  # runtime batch; no key masked; half an R panel
        (1, 40, 16, 24, 37, 8, False),  # 3 key panels (AVX-512: a pair, then an odd last one)
    ],
)
@pytest.mark.parametrize("isa", ["avx2", "avx512"])  # AVX-512 code runs on AVX2 too, slower
def test_kernel_matches_float64(batch, length, depth, n, keys, sums, dynamic, isa):
    scale = depth**-0.5
    shape = AttentionShape(None if dynamic else batch, length, depth, n, keys, scale, sums, isa)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((batch, length, depth)).astype(np.float32)
    kt = rng.standard_normal((batch, depth, length)).astype(np.float32)
    r = rng.standard_normal((batch, length, n)).astype(np.float32)
    dims = ((length, depth), (depth, length), (length, n), (length, n + sums))
    q_t, kt_t, r_t, o_t = (tensor(shape.dims(*x)) for x in dims)
    main = (
        f"func.func @main(%q: {q_t}, %kt: {kt_t}, %r: {r_t}) -> {o_t} {{\n"
        f"  %o = func.call @call(%q, %kt, %r) : ({q_t}, {kt_t}, {r_t}) -> {o_t}\n"
        f"  return %o : {o_t}\n}}"
    )
    source = "\n".join([attention_executable(shape), attention_call("call", shape), main])
    got = call_main(source, q, kt, r)
    assert rel_err(got, _reference(q, kt, r, keys, scale, sums)) < F32_TOL


def test_scores_must_fit_the_stack_buffer():
    assert AttentionShape.supported(904, 72, 901)  # ARC / maze size: 6 x 912 floats
    assert not AttentionShape.supported(2048, 72, 2048)  # 48 KiB of scores: left to the GEMMs
    assert not AttentionShape.supported(90, 72, 82)  # not a multiple of 8


@pytest.mark.parametrize("batch_size", [1, None])
def test_rewrite_finds_every_attention_of_an_exported_step(batch_size):
    model = random_model()
    cfg = model.config
    options = ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=batch_size)
    exported = export_step(model, options)
    with ir.Context():
        module = ir.Module.parse(exported.text())
        shapes = [attention for attention, _ in fuse_attention(module)]
        text = str(module)
    layer_calls = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
    p = -(-cfg.total_seq_len // 8) * 8
    heads = None if batch_size is None else cfg.num_heads
    scale = float(np.float32(cfg.head_dim**-0.5))
    # P @ [V | 1]: the kernel reads V and writes the row sums in the 8 columns of ones
    want = AttentionShape(heads, p, cfg.head_dim, cfg.head_dim, cfg.total_seq_len, scale, 8)
    assert len(shapes) == layer_calls and set(shapes) == {want}
    step = text[text.index("func.func @step") :]
    step = step[: step.index("\n  }\n")]  # its body
    assert f"x{p}x{p}xf32>" not in step  # no score matrix is left
