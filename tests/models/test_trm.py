"""TRM against an independent float64 formulation of upstream's `recursive_reasoning/trm.py`,
its state-dict names, its config rules and its halting rule."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from hrm_mlir.core.types import HaltRule
from hrm_mlir.models.config import HRMCopyConfig, TRMConfig
from hrm_mlir.models.hrm import HRM, export_attention
from hrm_mlir.models.registry import family_of
from hrm_mlir.models.trm import TRM
from tests.conftest import TINY_DIMS, TINY_TRM_ARCH, random_trm, step_inputs, tiny_trm_config


def _reference_trm_step(model: TRM, z_H, z_L, inputs, ids):
    """Upstream TRM's eval-mode step in float64, written from the paper's recursion with other
    primitives than the model's: RoPE as an explicit 2x2 rotation of (i, i + hd/2) pairs,
    SDPA attention, F.rms_norm over the named axis, einsum for the token SwiGLU."""
    cfg = model.config
    w = {k: v.double() for k, v in model.state_dict().items()}
    D, nh, hd, S, P = (
        cfg.hidden_size,
        cfg.num_heads,
        cfg.head_dim,
        cfg.total_seq_len,
        cfg.puzzle_emb_len,
    )
    b = inputs.shape[0]

    tok = w["inner.embed_tokens.embedding_weight"][inputs.long()]
    if cfg.puzzle_emb_ndim:
        prefix = torch.zeros(b, P * D, dtype=torch.float64)
        prefix[:, : cfg.puzzle_emb_ndim] = w["inner.puzzle_emb.weights"][ids.long()]
        tok = torch.cat([prefix.view(b, P, D), tok], dim=1)
    if cfg.pos_encodings == "learned":
        tok = 0.707106781 * (tok + w["inner.embed_pos.embedding_weight"])
    x = D**0.5 * tok

    freq = 1.0 / cfg.rope_theta ** (torch.arange(hd // 2, dtype=torch.float64) * 2 / hd)
    angle = torch.arange(S, dtype=torch.float64)[:, None] * freq  # (S, hd/2)
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # (S, 1, hd/2)

    def rope(t):  # (B, S, nh, hd)
        if cfg.pos_encodings != "rope":
            return t
        a, c = t[..., : hd // 2], t[..., hd // 2 :]
        return torch.cat([a * cos - c * sin, a * sin + c * cos], dim=-1)

    def swiglu(t, p):
        gate, up = torch.einsum("...i,oi->...o", t, w[f"{p}.gate_up_proj.weight"]).chunk(2, -1)
        return torch.einsum("...i,oi->...o", F.silu(gate) * up, w[f"{p}.down_proj.weight"])

    def block(h, p):
        if cfg.mlp_t:
            t = h.transpose(1, 2)  # (B, D, S): the SwiGLU mixes tokens, the norm is over S
            h = F.rms_norm(t + swiglu(t, f"{p}.mlp_t"), (S,), eps=cfg.rms_norm_eps)
            h = h.transpose(1, 2)
        else:
            qkv = (h @ w[f"{p}.self_attn.qkv_proj.weight"].T).view(b, S, 3 * nh, hd)
            q, k, v = qkv[:, :, :nh], qkv[:, :, nh : 2 * nh], qkv[:, :, 2 * nh :]
            q, k = rope(q), rope(k)
            a = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
            a = a.transpose(1, 2).reshape(b, S, D) @ w[f"{p}.self_attn.o_proj.weight"].T
            h = F.rms_norm(h + a, (D,), eps=cfg.rms_norm_eps)
        return F.rms_norm(h + swiglu(h, f"{p}.mlp"), (D,), eps=cfg.rms_norm_eps)

    def net(h, injection):  # the one network, `L_level`
        h = h + injection
        for i in range(cfg.L_layers):
            h = block(h, f"inner.L_level.layers.{i}")
        return h

    z_H, z_L = z_H.double(), z_L.double()
    for _ in range(cfg.H_cycles):
        for _ in range(cfg.L_cycles):
            z_L = net(z_L, z_H + x)
        z_H = net(z_H, z_L)
    logits = z_H[:, P:] @ w["inner.lm_head.weight"].T
    q = z_H[:, 0] @ w["inner.q_head.weight"].T + w["inner.q_head.bias"]
    return z_H, z_L, logits, q[:, 0], q[:, 1]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pos_encodings": "none"},
        {"pos_encodings": "learned"},
        {"mlp_t": True, "pos_encodings": "none"},
        {"mlp_t": True, "pos_encodings": "rope"},  # the tables exist, the block ignores them
        {"puzzle_emb_len": 0, "puzzle_emb_ndim": 80},  # 0: ceil(80 / 64) = 2 tokens, padded
    ],
    ids=["attn-rope", "attn-none", "attn-learned", "mlp_t-none", "mlp_t-rope", "emb_len-0"],
)
@pytest.mark.parametrize("form", ["eager", "export"])
def test_trm_step_matches_float64_reference(overrides, form):
    model = random_trm(**overrides)
    args = step_inputs(model.config)
    ctx = export_attention(model, 8) if form == "export" else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        got = model.inner(*args)
    ref = _reference_trm_step(model, *args)
    assert got[0].shape == (3, TINY_DIMS["seq_len"] + model.config.puzzle_emb_len, 64)
    for name, g, r in zip(("z_H", "z_L", "logits", "q_halt", "q_cont"), got, ref, strict=True):
        assert g.dtype == torch.float32, name
        assert not g.isnan().any(), name
        rel = float((g.double() - r).norm() / r.norm())
        assert rel < 1e-5, f"{name}: rel-L2 {rel:.3g} against the float64 reference"


def test_state_dict_keys_are_upstreams():
    """The names upstream's TinyRecursiveReasoningModel_ACTV1 gives its state dict (inner.*,
    no H_level; `mlp_t` in place of `self_attn`; the RoPE tables are not persistent)."""
    attn = set(random_trm().state_dict())
    common = {
        "inner.embed_tokens.embedding_weight",
        "inner.lm_head.weight",
        "inner.q_head.weight",
        "inner.q_head.bias",
        "inner.puzzle_emb.weights",
        "inner.H_init",
        "inner.L_init",
    }

    def layers(mixer: list[str]) -> set[str]:
        per = [*mixer, "mlp.gate_up_proj.weight", "mlp.down_proj.weight"]
        return {f"inner.L_level.layers.{i}.{n}" for i in range(2) for n in per}

    assert attn == common | layers(["self_attn.qkv_proj.weight", "self_attn.o_proj.weight"])
    mlp_t = set(random_trm(mlp_t=True).state_dict())
    assert mlp_t == common | layers(["mlp_t.gate_up_proj.weight", "mlp_t.down_proj.weight"])


def test_published_parameter_counts():
    """TRM's paper: 5M parameters for Sudoku (mlp_t) and 7M for ARC (attention); upstream's
    sizes: SwiGLU inner width = ceil(round(expansion * width * 2/3) / 256) * 256."""
    arch = {**TINY_TRM_ARCH, "hidden_size": 512, "num_heads": 8, "L_layers": 2}
    sudoku = TRMConfig(
        **{**arch, "mlp_t": True, "pos_encodings": "none", "puzzle_emb_ndim": 512},
        vocab_size=11,
        seq_len=81,
        num_puzzle_identifiers=1,
    )
    with torch.device("meta"):
        model = TRM(sudoku)
    buffers = {"inner.puzzle_emb.weights", "inner.H_init", "inner.L_init"}
    count = sum(t.numel() for k, t in model.state_dict().items() if k not in buffers)
    channel = 512 * 2 * 1536 + 1536 * 512  # 512 -> 2 x 1536 -> 512
    tokens = 97 * 2 * 512 + 512 * 97  # 97 tokens (81 + 16) -> 2 x 512 -> 97
    heads = 11 * 512 + 512 * 11 + 512 * 2 + 2  # embedding, lm_head, q_head
    assert count == 2 * (channel + tokens) + heads == 5_028_866


@pytest.mark.parametrize("rule_setting", [True, False])
def test_q_halting_follows_trms_rule(rule_setting):
    """no_ACT_continue (the default): a row stops at its first step with q_halt > 0, whatever
    q_continue says; without it, at q_halt > q_continue as HRM."""
    model = random_trm(no_ACT_continue=rule_setting)
    with torch.no_grad():  # a Q head whose two logits disagree about halting
        model.inner.q_head.bias.copy_(torch.tensor([0.3, 5.0]))
    cfg = model.config
    g = torch.Generator().manual_seed(3)
    inputs = torch.randint(0, cfg.vocab_size, (8, cfg.seq_len), generator=g, dtype=torch.int32)
    ids = torch.randint(0, cfg.num_puzzle_identifiers, (8,), generator=g, dtype=torch.int32)
    rule = HaltRule.POSITIVE if rule_setting else HaltRule.Q_CONTINUE
    assert cfg.halt_rule is rule

    # the loop by hand: step from the reset carry, the first step meeting the rule is the answer
    z_H, z_L = model.inner.initial_carry(8)
    first: list[int | None] = [None] * 8
    q_at: list[float] = [0.0] * 8
    with torch.no_grad():
        for n in range(1, 9):
            z_H, z_L, _, q_h, q_c = model.inner(z_H, z_L, inputs, ids)
            stop = (q_h > 0) if rule_setting else (q_h > q_c)
            for r in range(8):
                if first[r] is None and (bool(stop[r]) or n == 8):
                    first[r], q_at[r] = n, float(q_h[r])
    out = model.act(inputs, ids, max_steps=8, q_halt=True)
    assert out.steps.tolist() == first
    assert len(set(first)) >= 2, first  # rows stop at different steps
    torch.testing.assert_close(out.q_halt_logits, torch.tensor(q_at), rtol=0, atol=0)


def test_config_rules():
    with pytest.raises(ValidationError, match="needs puzzle_emb_ndim > 0"):
        tiny_trm_config(puzzle_emb_ndim=0)  # upstream's step cannot add a 16-token prefix
    with pytest.raises(ValidationError, match="does not fit"):
        tiny_trm_config(puzzle_emb_len=1, puzzle_emb_ndim=80)
    assert tiny_trm_config(puzzle_emb_ndim=0, puzzle_emb_len=0).total_seq_len == 16
    assert tiny_trm_config(H_layers=7).shared_levels  # ignored, as upstream
    with torch.device("meta"):
        assert not hasattr(TRM(tiny_trm_config(H_layers=7)).inner, "H_level")


def test_registry_names_every_family_and_trms_copy_of_hrm_is_hrm():
    trm = family_of("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1")
    copy = family_of("recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1")
    assert trm is not None and trm.config is TRMConfig and trm.model is TRM
    assert copy is not None and copy.config is HRMCopyConfig and copy.model is HRM
    assert family_of("some.other@Model") is None


def test_training_differentiates_only_the_last_round_as_upstream():
    """Upstream runs H_cycles - 1 rounds under no_grad and the last round (L_cycles updates of
    z_L and one of z_H) with gradient; inference computes the same either way."""
    model = random_trm(H_cycles=3, L_cycles=2)
    grads: list[bool] = []
    model.inner.L_level.register_forward_hook(lambda *_: grads.append(torch.is_grad_enabled()))
    model.inner(*step_inputs(model.config))
    assert grads == [False] * 6 + [True] * 3
