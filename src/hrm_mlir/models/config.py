"""Typed HRM ACT-v1 model configuration, validated at the boundary.

Field names are upstream's (`HierarchicalReasoningModel_ACTV1Config`), so the `arch:` section of an
upstream `all_config.yaml` maps onto `HRMConfig` directly. `vocab_size`, `seq_len` and
`num_puzzle_identifiers` are not in that file; `hrm_mlir.checkpoint` infers them.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hrm_mlir.core.types import DType


class HRMConfig(BaseModel):
    """Architecture of one HRM ACT-v1 model (upstream names and defaults)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Dimensions inferred from the checkpoint / dataset, not from `all_config.yaml`.
    vocab_size: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    num_puzzle_identifiers: int = Field(ge=0)

    H_cycles: int = Field(gt=0)
    L_cycles: int = Field(gt=0)
    H_layers: int = Field(gt=0)
    L_layers: int = Field(gt=0)

    hidden_size: int = Field(gt=0)
    expansion: float = Field(gt=0)
    num_heads: int = Field(gt=0)
    pos_encodings: Literal["rope", "learned"]
    puzzle_emb_ndim: int = Field(default=0, ge=0)

    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    halt_max_steps: int = Field(gt=0)
    halt_exploration_prob: float = 0.0

    forward_dtype: DType = DType.BFLOAT16

    @model_validator(mode="after")
    def _check_heads(self) -> HRMConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.pos_encodings == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")
        return self

    # Derived sizes, computed the way upstream computes them.
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def puzzle_emb_len(self) -> int:
        """Number of extra tokens the puzzle embedding occupies: ceil(D / hidden)."""
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @property
    def total_seq_len(self) -> int:
        """Length of the activations: puzzle-embedding tokens + puzzle tokens."""
        return self.seq_len + self.puzzle_emb_len

    @property
    def intermediate_size(self) -> int:
        """SwiGLU width: round(expansion * hidden * 2/3) rounded up to a multiple of 256."""
        return math.ceil(round(self.expansion * self.hidden_size * 2 / 3) / 256) * 256
