"""Model invariants, and the model against an independent float64 formulation of upstream's math."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from hrm_mlir.core.types import DType
from hrm_mlir.exporter.inputs import example_step_args
from hrm_mlir.exporter.module import prepare_model
from hrm_mlir.models.config import HRMConfig
from hrm_mlir.models.hrm import HRM, export_attention, sdpa_attention
from hrm_mlir.verification import STEP_OUTPUTS, compare
from tests.conftest import SUDOKU_ARCH, random_model, step_inputs, tiny_config


def _reference_step(model: HRM, z_H, z_L, inputs, ids):
    """Upstream's eval-mode step, re-derived in float64 with different primitives:
    complex-number RoPE, SDPA attention, F.rms_norm, explicit padding of the puzzle embedding."""
    cfg = model.config
    w = {k: v.double() for k, v in model.state_dict().items()}
    D, nh, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    S = cfg.total_seq_len

    tok = w["inner.embed_tokens.embedding_weight"][inputs.long()]
    if cfg.puzzle_emb_ndim:
        pe = torch.zeros(inputs.shape[0], cfg.puzzle_emb_len * D, dtype=torch.float64)
        pe[:, : cfg.puzzle_emb_ndim] = w["inner.puzzle_emb.weights"][ids.long()]
        tok = torch.cat([pe.view(-1, cfg.puzzle_emb_len, D), tok], dim=1)
    if cfg.pos_encodings == "learned":
        tok = (tok + w["inner.embed_pos.embedding_weight"]) / math.sqrt(2)
    x = math.sqrt(D) * tok

    inv = cfg.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rot = torch.polar(torch.ones(S, hd // 2, dtype=torch.float64), torch.arange(S)[:, None] * inv)

    def rope(t):  # (B, S, nh, hd): pairs (i, i + hd/2) rotate as complex numbers
        if cfg.pos_encodings != "rope":
            return t
        c = torch.complex(t[..., : hd // 2], t[..., hd // 2 :]) * rot[:, None, :]
        return torch.cat([c.real, c.imag], dim=-1)

    def block(h, p):
        b = h.shape[0]
        q, k, v = (h @ w[f"{p}.self_attn.qkv_proj.weight"].T).view(b, S, 3, nh, hd).unbind(2)
        q, k = rope(q), rope(k)
        a = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
        a = a.transpose(1, 2).reshape(b, S, D) @ w[f"{p}.self_attn.o_proj.weight"].T
        h = F.rms_norm(h + a, (D,), eps=cfg.rms_norm_eps)
        gate, up = (h @ w[f"{p}.mlp.gate_up_proj.weight"].T).chunk(2, -1)
        m = (F.silu(gate) * up) @ w[f"{p}.mlp.down_proj.weight"].T
        return F.rms_norm(h + m, (D,), eps=cfg.rms_norm_eps)

    def level(name, n_layers, h, inj):
        h = h + inj
        for i in range(n_layers):
            h = block(h, f"inner.{name}.layers.{i}")
        return h

    z_H, z_L = z_H.double(), z_L.double()
    for _ in range(cfg.H_cycles):
        for _ in range(cfg.L_cycles):
            z_L = level("L_level", cfg.L_layers, z_L, z_H + x)
        z_H = level("H_level", cfg.H_layers, z_H, z_L)
    logits = z_H[:, cfg.puzzle_emb_len :] @ w["inner.lm_head.weight"].T
    q = z_H[:, 0] @ w["inner.q_head.weight"].T + w["inner.q_head.bias"]
    return z_H, z_L, logits, q[:, 0], q[:, 1]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pos_encodings": "learned"},
        {"puzzle_emb_ndim": 0},
        {"puzzle_emb_ndim": 128},  # exactly two tokens, no padding
        {"H_cycles": 3, "L_cycles": 1, "H_layers": 2},
    ],
    ids=["rope+pad", "learned", "no-puzzle-emb", "puzzle-2-tokens", "cycles-3x1"],
)
@pytest.mark.parametrize("form", ["eager", "export", "sdpa"])
def test_step_matches_float64_reference(overrides, form, monkeypatch):
    """Every attention form: eager's softmax, the export's (padded to 8 with masked keys where
    S = 18 tokens, normalized after P @ V), and SDPA's (the GPU peer of `bench.kit_run`)."""
    model = random_model(**overrides)
    args = step_inputs(model.config)
    sdpa_calls = []
    sdpa = F.scaled_dot_product_attention

    def counted(*a, **k):
        sdpa_calls.append(1)
        return sdpa(*a, **k)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    ctx = {
        "eager": contextlib.nullcontext(),
        "export": export_attention(model, 8),
        "sdpa": sdpa_attention(model),
    }[form]
    with torch.no_grad(), ctx:
        got = model.inner(*args)
    cfg = model.config
    blocks = cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers)
    assert len(sdpa_calls) == (blocks if form == "sdpa" else 0)
    monkeypatch.undo()
    ref = _reference_step(model, *args)
    for name, g, r in zip(("z_H", "z_L", "logits", "q_halt", "q_cont"), got, ref, strict=True):
        assert g.dtype == torch.float32, name
        rel = float((g.double() - r).norm() / r.norm())
        assert rel < 1e-5, f"{name}: rel-L2 {rel:.3g} against the float64 reference"


def test_cycle_schedule_calls_levels_as_upstream():
    model = random_model(H_cycles=3, L_cycles=2)
    calls = []
    model.inner.L_level.register_forward_hook(lambda *a: calls.append("L"))
    model.inner.H_level.register_forward_hook(lambda *a: calls.append("H"))
    with torch.no_grad():
        model.inner(*step_inputs(model.config))
    assert "".join(calls) == "LLH" * 3


def test_bfloat16_step_keeps_q_logits_float32_and_tracks_float32():
    f32 = random_model()
    bf16 = HRM(tiny_config(forward_dtype="bfloat16"))
    bf16.load_state_dict(f32.state_dict())
    args = step_inputs(f32.config)
    with torch.no_grad():
        ref = f32.inner(*args)
        got = bf16.eval().inner(args[0].bfloat16(), args[1].bfloat16(), *args[2:])
    assert [t.dtype for t in got] == [torch.bfloat16] * 3 + [torch.float32] * 2
    rel = float((got[2].float() - ref[2]).norm() / ref[2].norm())
    assert rel < 0.1, f"bf16 logits drift {rel:.3g} from float32"


def test_input_embedding_pads_puzzle_embedding_to_whole_tokens():
    model = random_model(puzzle_emb_ndim=80)  # hidden 64: 2 tokens, 48 zeros of padding
    inputs = torch.zeros(2, 16, dtype=torch.int32)
    ids = torch.tensor([3, 1], dtype=torch.int32)
    with torch.no_grad():
        emb = model.inner.input_embeddings(inputs, ids) / 8.0  # sqrt(64)
    table = model.inner.puzzle_emb.weights
    assert emb.shape == (2, 18, 64)
    torch.testing.assert_close(emb[:, 0], table[ids.long(), :64])
    torch.testing.assert_close(emb[:, 1, :16], table[ids.long(), 64:])
    assert torch.all(emb[:, 1, 16:] == 0)


def test_published_parameter_counts():
    """Upstream's published checkpoints: Sudoku 27,275,266; maze 27,270,146; ARC-2 27,276,290."""
    for vocab, seq_len, expected in (
        (11, 81, 27_275_266),
        (6, 900, 27_270_146),
        (12, 900, 27_276_290),
    ):
        cfg = HRMConfig(**SUDOKU_ARCH, vocab_size=vocab, seq_len=seq_len, num_puzzle_identifiers=1)
        with torch.device("meta"):
            model = HRM(cfg)
        assert sum(p.numel() for p in model.parameters()) == expected


def test_state_dict_keys_are_upstreams():
    keys = set(random_model(pos_encodings="learned").state_dict())
    assert {
        "inner.embed_tokens.embedding_weight",
        "inner.lm_head.weight",
        "inner.q_head.weight",
        "inner.q_head.bias",
        "inner.puzzle_emb.weights",
        "inner.embed_pos.embedding_weight",
        "inner.H_init",
        "inner.L_init",
        "inner.H_level.layers.0.self_attn.qkv_proj.weight",
        "inner.L_level.layers.1.mlp.down_proj.weight",
    } <= keys
    assert not any("cos" in k or "sin" in k or "local_" in k for k in keys)


def test_rope_tables_stay_float32_when_the_model_is_cast():
    model = random_model().to(torch.bfloat16)
    cos, sin = model.inner._rope
    assert cos.dtype == sin.dtype == torch.float32


@pytest.mark.parametrize("dtype", [DType.FLOAT32, DType.BFLOAT16])
def test_export_graph_casts_only_where_dtypes_differ(dtype):
    """torch.export records even a same-dtype `.to()` as a node; each costs export time."""
    model = prepare_model(random_model(), dtype)
    args = example_step_args(model.config, 2)
    with torch.no_grad():
        graph = torch.export.export(model.inner, args, strict=False).graph
    casts = [n for n in graph.nodes if n.target == torch.ops.aten.to.dtype]
    assert casts, "no casts at all: the int32 ids must still become int64"
    for node in casts:
        assert node.args[0].meta["val"].dtype != node.args[1], node.format_node()
    if dtype == DType.BFLOAT16:  # the float32 RMSNorm / RoPE casts are still there
        assert any(node.args[1] == torch.float32 for node in casts)


def test_torch_compile_runs_the_step_like_eager():
    """`bench` times `torch.compile` (inductor): the step must compile and agree with eager.
    (Multiplying q by a permuted k made inductor 2.13 fail to compile it.)"""
    model = prepare_model(random_model(), DType.FLOAT32)
    args = example_step_args(model.config, 2)
    args = (torch.randn_like(args[0]), torch.randn_like(args[1]), *args[2:])
    with torch.no_grad():
        ref = model.inner(*args)
        got = torch.compile(model.inner)(*args)
    # the per-dtype table: inductor fuses and reorders reductions like any compiler (an atol of
    # 1e-5 failed on AVX-512, where one of 2,304 elements was 1.96e-5 off)
    report = compare(STEP_OUTPUTS, list(got), list(ref), DType.FLOAT32)
    assert report.passed, report.failures()


def test_act_without_q_halt_runs_max_steps_like_upstream_eval():
    model = random_model()
    _, _, inputs, ids = step_inputs(model.config)
    out = model.act(inputs, ids, max_steps=3)
    z = model.inner.initial_carry(inputs.shape[0])
    with torch.no_grad():
        for _ in range(3):
            *z, logits, qh, _ = model.inner(*z, inputs, ids)
    assert out.steps.tolist() == [3, 3, 3]
    torch.testing.assert_close(out.logits, logits, rtol=0, atol=0)
    torch.testing.assert_close(out.q_halt_logits, qh, rtol=0, atol=0)


def test_act_with_q_halt_freezes_each_row_at_its_first_halt():
    model = random_model(seed=3)
    _, _, inputs, ids = step_inputs(model.config, b=6, seed=5)
    max_steps = 6
    out = model.act(inputs, ids, max_steps=max_steps, q_halt=True)
    z = model.inner.initial_carry(inputs.shape[0])
    per_step = []
    with torch.no_grad():
        for _ in range(max_steps):
            *z, logits, qh, qc = model.inner(*z, inputs, ids)
            per_step.append((logits, qh, qc))
    for row in range(inputs.shape[0]):
        halts = [n for n, (_, qh, qc) in enumerate(per_step, 1) if qh[row] > qc[row]]
        want = halts[0] if halts else max_steps
        assert out.steps[row] == want
        torch.testing.assert_close(out.logits[row], per_step[want - 1][0][row], rtol=0, atol=0)
    # the configuration must actually exercise different halting steps
    assert len(set(out.steps.tolist())) > 1, out.steps
