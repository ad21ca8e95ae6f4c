"""The Hierarchical Reasoning Model (HRM ACT-v1), written for export.

This computes what upstream `models/hrm/hrm_act_v1.py` computes in eval mode and keeps its
parameter and buffer names, so upstream state dicts load without a remap table. It differs from
upstream only where export needs it; each such place says so with an `# export:` comment:

- attention is plain matmul + softmax instead of CUDA-only FlashAttention;
- gather indices are cast to int64 (int32 indices lower to mixed i32/i64 compares that fail in
  the linalg lowering and in IREE);
- the RoPE tables are not buffers (non-persistent buffers break torch-mlir's FX importer); they
  are recomputed from the config, and `.to()` never casts them, as upstream keeps them float32;
- the puzzle embedding has no training-time `local_weights` / `local_ids` state;
- under `export_attention` (used by the exporter) attention pads its length to a multiple of 8
  with masked keys, and in float32 normalizes after P @ V instead of softmax before it; the
  results are the same up to float rounding.

Shapes: B batch, S = seq_len + puzzle_emb_len tokens, D hidden, nh heads, hd head dim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrm_mlir.models.config import ReasoningConfig


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal at +-2 std (the variance correction upstream applies is irrelevant here:
    these initial values only matter for freshly initialised models)."""
    if std == 0:
        return tensor.zero_()
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`x.to(dtype)`, leaving out the cast where `x` has that dtype already.

    Eager returns `x` itself either way, but torch.export records every `.to()` as a node (plus a
    metadata assert): at float32 these were 592 of the 27M step's 1,931 nodes, and each node costs
    export time.
    """
    return x if x.dtype == dtype else x.to(dtype)


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without a weight, computed in float32 and cast back (as upstream)."""
    dtype = x.dtype
    x = cast(x, torch.float32)
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return cast(x, dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(config: ReasoningConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [S, hd] in float32, with upstream's (freqs, freqs) permutation."""
    hd = config.head_dim
    f32, cpu = torch.float32, torch.device("cpu")  # real tensors even under a meta device
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=f32, device=cpu) / hd))
    t = torch.arange(config.total_seq_len, dtype=f32, device=cpu)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class CastedLinear(nn.Module):
    """Linear layer whose float32 weights are cast to the input dtype at use."""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5)
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = cast(self.bias, x.dtype) if self.bias is not None else None
        return F.linear(x, cast(self.weight, x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table cast to the forward dtype at use."""

    def __init__(self, num: int, dim: int, init_std: float, cast_to: torch.dtype) -> None:
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # export: int64 indices, see module docstring.
        return F.embedding(cast(ids, torch.int64), cast(self.embedding_weight, self.cast_to))


class PuzzleEmbedding(nn.Module):
    """Eval-mode view of upstream's `CastedSparseEmbedding`: a persistent table `weights`."""

    def __init__(self, num: int, dim: int, cast_to: torch.dtype) -> None:
        super().__init__()
        self.cast_to = cast_to
        self.weights = nn.Buffer(torch.zeros(num, dim), persistent=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return cast(self.weights[cast(ids, torch.int64)], self.cast_to)  # (B, D_puzzle)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with RoPE on q and k."""

    # export: the attention length is padded to a multiple of this, and in float32 the softmax
    # is normalized after P @ V (see `export_attention`).
    pad_multiple = 1
    normalize_after_pv = False
    # eager: attention by `F.scaled_dot_product_attention` (FlashAttention on CUDA), as upstream
    # computes it with flash_attn; see `sdpa_attention`.
    sdpa = False

    def __init__(self, config: ReasoningConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        d = config.hidden_size
        self.qkv_proj = CastedLinear(d, 3 * d, bias=False)
        self.o_proj = CastedLinear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None):
        b, s, d = x.shape
        nh = self.num_heads
        qkv = self.qkv_proj(x).view(b, s, 3 * nh, self.head_dim)  # (B, S, 3nh, hd)
        if cos_sin is None:
            q, k, v = qkv.split(nh, dim=2)  # each (B, S, nh, hd)
        else:
            # RoPE on q and k together: the same elementwise ops as on each, in half the
            # exported nodes.
            qk, v = qkv.split((2 * nh, nh), dim=2)
            cos, sin = cos_sin  # (S, 1, hd) float32
            dtype = qk.dtype
            qk = cast(qk, cos.dtype)
            q, k = cast(qk * cos + rotate_half(qk) * sin, dtype).split(nh, dim=2)
        # export: plain attention, not FlashAttention.
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, S, hd)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)  # non-causal, scale hd ** -0.5
            return self.o_proj(out.transpose(1, 2).reshape(b, s, d))
        pad = -s % self.pad_multiple
        if pad:
            # export: IREE's CPU row reductions slow down sharply when the row length is not
            # a multiple of 8 (softmax 8x901x901: 341 ms, 8x904x904: 5.75 ms; the fused
            # max/exp/pack of `_normalized_after_pv`: 19-22 ms against 6.5-7.6 ms). Pad to
            # P = S + pad with zero rows, mask the padded keys to -inf (exp -> exactly 0) and
            # drop the padded query rows: the same sums over the same real keys.
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))  # (B, nh, P, hd)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.head_dim**-0.5  # (B, nh, P, P)
        if pad:
            masked = torch.arange(s + pad, device=x.device) >= s  # (P,)
            scores = scores.masked_fill(masked, float("-inf"))
        if self.normalize_after_pv:
            out = _normalized_after_pv(scores, v)
        else:
            out = torch.matmul(scores.softmax(dim=-1), v)  # (B, nh, P, hd)
        if pad:
            out = out[:, :, :s]  # (B, nh, S, hd)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, d))


def _normalized_after_pv(scores: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(scores) @ v computed as (p @ v) / rowsum(p), p = exp(scores - rowmax(scores)).

    export: in this form IREE's CPU codegen fuses the scale, the mask, the row max, the exp and
    the packing of p for the data-tiled GEMM into one dispatch, and columns of ones appended to
    v give the row sums in that same GEMM: no softmax dispatch and no pass that re-reads its
    output to pack it. Eight columns keep the GEMM's N a multiple of IREE's 8-wide tile (it
    pads to that anyway; one column made P @ V slower at 88 tokens). They are a `cat`:
    `F.pad(v, (0, 1), value=1.0)` made IREE 3.13 fail with "write affecting operations on
    global resources are restricted to workgroup distributed contexts".
    """
    p = torch.exp(scores - scores.amax(dim=-1, keepdim=True))  # (B, nh, P, P)
    hd = v.shape[-1]
    pv = torch.matmul(p, torch.cat([v, torch.ones_like(v[..., :8])], dim=-1))  # (.., hd + 8)
    return pv[..., :hd] / pv[..., hd : hd + 1]


@contextlib.contextmanager
def export_attention(model: HRM, pad_multiple: int) -> Iterator[None]:
    """Within the block, every `Attention` of `model` computes in the form the exporter writes:
    its length padded to a multiple of `pad_multiple` (masked keys) and the softmax normalized
    after P @ V. The same results up to float rounding; restored afterwards.

    bfloat16 too: on a CPU a bf16 module is computed in float32 (`hrm_mlir.compiler.promote`),
    where this is the form the attention kernel takes. (With bf16 arithmetic, p and its row
    sums are rounded to bf16: against PyTorch's bf16 by a fixed 0.1, the tiny model's q_halt once
    drifted to 0.146. bf16 is now judged against the float32 truth; GPU targets, the ones that
    compute in bf16, have not run here.)
    """
    normalize = True
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.pad_multiple = pad_multiple
        layer.normalize_after_pv = normalize
    try:
        yield
    finally:
        for layer in layers:
            del layer.pad_multiple, layer.normalize_after_pv  # back to the class defaults


@contextlib.contextmanager
def float32_inits(model: HRM) -> Iterator[None]:
    """Within the block, a bf16 model keeps H_init and L_init as the float32 values they hold
    (exact), cast to bf16 at use: the same results. The export then writes them as float32
    constants: IREE 3.13's bf16-to-f32 promotion (`hrm_mlir.compiler.promote`) cannot retype a
    bf16 `dense_resource` constant ("'arith.constant' op failed to verify that all of {value,
    result} have same type"), and its folding of small ones is unreliable too."""
    inner = model.inner
    saved = {name: getattr(inner, name) for name in ("H_init", "L_init")}
    for name, value in saved.items():
        inner.register_buffer(name, value.float())
    try:
        yield
    finally:
        for name, value in saved.items():
            inner.register_buffer(name, value)


@contextlib.contextmanager
def sdpa_attention(model: nn.Module) -> Iterator[None]:
    """Within the block, every `Attention` of `model` computes through
    `F.scaled_dot_product_attention`: FlashAttention or memory-efficient attention on CUDA,
    which is how upstream runs (flash_attn, non-causal). The PyTorch peer of GPU measurements
    (`hrm_mlir.bench.kit_run`); the same results up to float rounding. Eager only: the export
    keeps plain attention, which IREE compiles."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.sdpa = True
    try:
        yield
    finally:
        for layer in layers:
            del layer.sdpa


class SwiGLU(nn.Module):
    """down(silu(gate) * up) over the last dimension, `width` wide (`inner` inside)."""

    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.gate_up_proj = CastedLinear(width, 2 * inner, bias=False)
        self.down_proj = CastedLinear(inner, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: token mixing, then a channel SwiGLU.

    The tokens are mixed by attention, or with `mlp_t` (TRM's) by a SwiGLU across the
    sequence: on the transposed activations (B, D, S), normed over S, as upstream computes it.
    """

    def __init__(self, config: ReasoningConfig) -> None:
        super().__init__()
        if config.mlp_t:
            self.mlp_t = SwiGLU(config.total_seq_len, config.token_mixer_size)
        else:
            self.self_attn = Attention(config)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        self.norm_eps = config.rms_norm_eps

    def forward(self, h: torch.Tensor, cos_sin) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            t = h.transpose(1, 2)  # (B, D, S)
            h = rms_norm(t + self.mlp_t(t), self.norm_eps).transpose(1, 2)
        else:
            h = rms_norm(h + self.self_attn(h, cos_sin), self.norm_eps)
        return rms_norm(h + self.mlp(h), self.norm_eps)


def level_schedule(config: ReasoningConfig) -> tuple[str, ...]:
    """The order of one step's level updates: H_cycles times (L_cycles x "L", then "H").

    TRM's step is the same order, with its one network in both roles (`HRMInner.levels`)."""
    return (("L",) * config.L_cycles + ("H",)) * config.H_cycles


class ReasoningModule(nn.Module):
    """One level (H or L): add the injection to the state, then run the blocks."""

    def __init__(self, config: ReasoningConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(num_layers))

    def forward(self, h: torch.Tensor, injection: torch.Tensor, cos_sin) -> torch.Tensor:
        h = h + injection
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h


@dataclass
class StepOutput:
    """Results of one ACT step, in the order of the exported `@step` ABI."""

    z_H: torch.Tensor  # (B, S, D) forward dtype
    z_L: torch.Tensor  # (B, S, D) forward dtype
    logits: torch.Tensor  # (B, seq_len, vocab) forward dtype
    q_halt_logits: torch.Tensor  # (B,) float32
    q_continue_logits: torch.Tensor  # (B,) float32

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (self.z_H, self.z_L, self.logits, self.q_halt_logits, self.q_continue_logits)


class HRMInner(nn.Module):
    """One ACT step (upstream `HierarchicalReasoningModel_ACTV1_Inner`)."""

    def __init__(self, config: ReasoningConfig) -> None:
        super().__init__()
        self.config = config
        self.forward_dtype = config.forward_dtype.torch
        d = config.hidden_size
        self.embed_scale = d**0.5
        init_std = 1.0 / self.embed_scale

        self.embed_tokens = CastedEmbedding(config.vocab_size, d, init_std, self.forward_dtype)
        self.lm_head = CastedLinear(d, config.vocab_size, bias=False)
        self.q_head = CastedLinear(d, 2, bias=True)
        self.puzzle_emb_len = config.puzzle_emb_len
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(
                config.num_puzzle_identifiers, config.puzzle_emb_ndim, self.forward_dtype
            )
        if config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(config.total_seq_len, d, init_std, self.forward_dtype)
        # export: plain attributes, not buffers; float32 whatever `.to()` is applied.
        self._rope = rope_tables(config) if config.pos_encodings == "rope" else None

        self.build_levels(config)
        self.H_init = nn.Buffer(trunc_normal_(torch.empty(d, dtype=self.forward_dtype), 1.0))
        self.L_init = nn.Buffer(trunc_normal_(torch.empty(d, dtype=self.forward_dtype), 1.0))
        with torch.no_grad():  # upstream's Q-head init: weight 0, bias -5
            self.q_head.weight.zero_()
            assert self.q_head.bias is not None
            self.q_head.bias.fill_(-5)

    def build_levels(self, config: ReasoningConfig) -> None:
        """HRM's two networks: `H_level` (H_layers blocks) and `L_level` (L_layers)."""
        self.H_level = ReasoningModule(config, config.H_layers)
        self.L_level = ReasoningModule(config, config.L_layers)

    @property
    def levels(self) -> dict[str, ReasoningModule]:
        """The network that updates each state: "H" (z_H) and "L" (z_L)."""
        return {"H": self.H_level, "L": self.L_level}

    def _apply(self, fn, recurse=True):
        # Keep the RoPE tables on the module's device but always in float32.
        super()._apply(fn, recurse)
        if self._rope is not None:
            device = self.embed_tokens.embedding_weight.device
            self._rope = tuple(t.to(device) for t in self._rope)  # type: ignore[assignment]
        return self

    def input_embeddings(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """sqrt(D) * [puzzle_emb ; embed_tokens(inputs)] (+ learned positions): (B, S, D)."""
        emb = self.embed_tokens(inputs)  # (B, seq_len, D)
        if self.config.puzzle_emb_ndim > 0:
            pe = self.puzzle_emb(puzzle_ids)  # (B, D_puzzle)
            pad = self.puzzle_emb_len * self.config.hidden_size - pe.shape[-1]
            if pad > 0:
                pe = F.pad(pe, (0, pad))
            pe = pe.view(-1, self.puzzle_emb_len, self.config.hidden_size)
            emb = torch.cat((pe, emb), dim=-2)  # (B, S, D)
        if self.config.pos_encodings == "learned":
            # scale by 1/sqrt(2) to keep the forward variance (upstream's literal)
            emb = 0.707106781 * (emb + cast(self.embed_pos.embedding_weight, self.forward_dtype))
        return self.embed_scale * emb

    def initial_carry(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_H, z_L) of a reset row: H_init / L_init broadcast to (B, S, D)."""
        shape = (batch_size, self.config.total_seq_len, self.config.hidden_size)
        dt = self.forward_dtype  # a no-op, but where `float32_inits` stores them as float32
        return self.H_init.to(dt).expand(shape).clone(), self.L_init.to(dt).expand(shape).clone()

    def forward(
        self,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        inputs: torch.Tensor,
        puzzle_identifiers: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One step: returns (z_H, z_L, logits, q_halt_logits, q_continue_logits)."""
        cos_sin = self.cos_sin()
        x = self.input_embeddings(inputs, puzzle_identifiers)
        # The first updates run without gradient (upstream's 1-step gradient: the last
        # `grad_updates` carry it); under torch.no_grad() (inference, export) this is a no-op.
        schedule = level_schedule(self.config)
        cut = len(schedule) - self.grad_updates
        with torch.no_grad():
            z_H, z_L = self.run_levels(schedule[:cut], z_H, z_L, x, cos_sin)
        z_H, z_L = self.run_levels(schedule[cut:], z_H, z_L, x, cos_sin)
        return (z_H, z_L, *self.heads(z_H))

    @property
    def grad_updates(self) -> int:
        """How many of a step's last level updates training differentiates: HRM's last L and
        H update."""
        return 2

    def cos_sin(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The RoPE tables as attention takes them, [S, 1, hd] each; None without RoPE."""
        if self._rope is None:
            return None
        cos, sin = self._rope
        return cos.unsqueeze(-2), sin.unsqueeze(-2)

    def run_levels(
        self, levels: Sequence[str], z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cos_sin
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply `levels` (from `level_schedule`) in order: L takes z_H + x as its injection, H
        takes z_L. `hrm_mlir.exporter.compose` writes the same sequence as calls in MLIR."""
        nets = self.levels
        for level in levels:
            if level == "L":
                z_L = nets["L"](z_L, z_H + x, cos_sin)
            else:
                z_H = nets["H"](z_H, z_L, cos_sin)
        return z_H, z_L

    def heads(self, z_H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B, seq_len, V], q_halt_logits [B] f32, q_continue_logits [B] f32)."""
        # export: the rows are sliced and flattened before the head, so its GEMM is a plain
        # (B*seq_len, D) x (D, V) one. Sliced after, IREE folds the slice into a batched GEMM
        # whose in-dispatch packing needs 130 KiB of stack at batch 16, past the 64 KiB that
        # keeps the fast CPU flags.
        tokens = z_H[:, self.puzzle_emb_len :]  # (B, seq_len, D)
        logits = self.lm_head(tokens.flatten(0, 1)).unflatten(0, tokens.shape[:2])
        # export: the Q head runs on every token and keeps the first (the same dot products;
        # 2 outputs x 82 tokens is nothing). On z_H[:, 0] it is a GEMM whose M is the batch,
        # and with a symbolic batch IREE packs those rows inside the dispatch: 263,168 B of
        # stack, which sent the whole step back to IREE's default flags. Over B*S rows it is
        # a plain GEMM like the LM head's, and the symbolic batch keeps the fast flags.
        q = self.q_head(z_H.flatten(0, 1)).unflatten(0, z_H.shape[:2])[:, 0]
        q = cast(q, torch.float32)  # (B, 2)
        return logits, q[..., 0], q[..., 1]

    def step(self, z_H, z_L, inputs, puzzle_identifiers) -> StepOutput:
        return StepOutput(*self(z_H, z_L, inputs, puzzle_identifiers))


@dataclass
class ACTOutput:
    """Results of a whole ACT inference (the exported `@act` ABI)."""

    logits: torch.Tensor  # (B, seq_len, V)
    q_halt_logits: torch.Tensor  # (B,) float32
    q_continue_logits: torch.Tensor  # (B,) float32
    steps: torch.Tensor  # (B,) int32, 1-based step count each row used


class HRM(nn.Module):
    """The ACT wrapper (upstream `HierarchicalReasoningModel_ACTV1`), inference only.

    Its state dict keys are upstream's after stripping `_orig_mod.` and the loss head's `model.`.
    """

    inner_class: type[HRMInner] = HRMInner

    def __init__(self, config: ReasoningConfig) -> None:
        super().__init__()
        self.config = config
        self.inner = self.inner_class(config)

    @torch.no_grad()
    def act(
        self,
        inputs: torch.Tensor,
        puzzle_identifiers: torch.Tensor,
        max_steps: int | None = None,
        q_halt: bool = False,
    ) -> ACTOutput:
        """Run the ACT loop from a reset carry.

        With `q_halt=False` this is upstream's eval-mode loop with `halt_max_steps = max_steps`:
        every row runs exactly `max_steps` steps. With `q_halt=True` a row stops after the first
        step where the family's `halt_rule` holds (HRM: `q_halt_logits > q_continue_logits`;
        TRM: `q_halt_logits > 0`), or at `max_steps`, and keeps that step's outputs; the loop
        ends when every row has stopped.
        """
        max_steps = self.config.halt_max_steps if max_steps is None else max_steps
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        b = inputs.shape[0]
        z_H, z_L = self.inner.initial_carry(b)
        done = torch.zeros(b, dtype=torch.bool)
        steps = torch.zeros(b, dtype=torch.int32)
        out: StepOutput | None = None
        for n in range(1, max_steps + 1):
            new = self.inner.step(z_H, z_L, inputs, puzzle_identifiers)
            keep = ~done
            if out is None:
                out = new
            else:  # rows that already stopped keep their outputs
                pairs = zip(new.as_tuple(), out.as_tuple(), strict=True)
                out = StepOutput(*(torch.where(_rows(keep, t), t, o) for t, o in pairs))
            steps = torch.where(keep, n, steps)
            z_H, z_L = out.z_H, out.z_L
            if q_halt:
                done = done | self.config.halt_rule.halts(new.q_halt_logits, new.q_continue_logits)
                if bool(done.all()):
                    break
        assert out is not None
        return ACTOutput(out.logits, out.q_halt_logits, out.q_continue_logits, steps)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B,) mask against a (B, ...) tensor."""
    return mask.view((-1,) + (1,) * (like.dim() - 1))
