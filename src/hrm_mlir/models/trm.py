"""Tiny Recursive Models (TRM ACT-v1), written for export.

This computes what upstream `models/recursive_reasoning/trm.py` (SamsungSAILMontreal/
TinyRecursiveModels) computes in eval mode and keeps its parameter and buffer names. TRM is
HRM's code arranged differently, so it reuses HRM's layers (`hrm_mlir.models.hrm`, with the
same `# export:` changes) and differs from HRM only here:

- one network, `L_level` (L_layers blocks), updates both states; there is no `H_level` and
  `H_layers` is ignored. A step is H_cycles rounds of L_cycles updates
  `z_L = L(z_L, z_H + x)` then `z_H = L(z_H, z_L)`, upstream's `no_grad` rounds included
  (under inference they compute the same);
- `puzzle_emb_len` is a setting (default 16), not ceil(puzzle_emb_ndim / hidden);
- `mlp_t: true` mixes the tokens with a SwiGLU across the sequence instead of attention, and
  `pos_encodings` may be `none` (`hrm_mlir.models.hrm.Block`);
- with `no_ACT_continue: true` (the default) a row halts once `q_halt_logits > 0`
  (`TRMConfig.halt_rule`).

The Q head reads `z_H[:, 0]`, as HRM's does.
"""

from __future__ import annotations

from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import HRM, HRMInner, ReasoningModule


class TRMInner(HRMInner):
    """One ACT step (upstream `TinyRecursiveReasoningModel_ACTV1_Inner`)."""

    def build_levels(self, config: ReasoningConfig) -> None:
        self.L_level = ReasoningModule(config, config.L_layers)

    @property
    def levels(self) -> dict[str, ReasoningModule]:
        return {"H": self.L_level, "L": self.L_level}

    @property
    def grad_updates(self) -> int:
        """Upstream runs H_cycles - 1 whole rounds under no_grad and the last round (L_cycles
        updates of z_L, one of z_H) with gradient."""
        return self.config.L_cycles + 1


class TRM(HRM):
    """The ACT wrapper (upstream `TinyRecursiveReasoningModel_ACTV1`), inference only.

    Its state dict keys are upstream's after stripping `_orig_mod.` and the loss head's `model.`.
    """

    inner_class = TRMInner
