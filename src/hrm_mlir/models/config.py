"""Typed model configurations, one per family, validated at the boundary.

Field names are upstream's (`HierarchicalReasoningModel_ACTV1Config` in sapientinc/HRM,
`TinyRecursiveReasoningModel_ACTV1Config` in SamsungSAILMontreal/TinyRecursiveModels), so the
`arch:` section of an upstream `all_config.yaml` maps onto its family's config directly.
`vocab_size`, `seq_len` and `num_puzzle_identifiers` are not in that file; `hrm_mlir.checkpoint`
infers them.

- `HRMConfig`: `hrm.hrm_act_v1`, HRM as published.
- `HRMCopyConfig`: `recursive_reasoning.hrm`, TRM's copy of HRM: the same model, plus TRM's
  `mlp_t` block and `pos_encodings: none` (its code accepts both; the published HRM's does not).
- `TRMConfig`: `recursive_reasoning.trm`, one network for both states, a fixed `puzzle_emb_len`,
  and its own halting rule.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hrm_mlir.core.types import DType, HaltRule


def swiglu_width(expansion: float, width: int) -> int:
    """SwiGLU's inner width, as upstream sizes it: round(expansion * width * 2/3) rounded up to
    a multiple of 256."""
    return math.ceil(round(expansion * width * 2 / 3) / 256) * 256


class ReasoningConfig(BaseModel):
    """What every family shares (upstream names and defaults); a family subclasses it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    FAMILY: ClassVar[str]  # the registry's key, `hrm_mlir.models.registry`
    family: str  # FAMILY, kept in the JSON an artifact records

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
    mlp_t: bool = False  # a SwiGLU across the sequence instead of attention

    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    halt_max_steps: int = Field(gt=0)
    halt_exploration_prob: float = 0.0

    forward_dtype: DType = DType.BFLOAT16

    @model_validator(mode="before")
    @classmethod
    def _family(cls, data: Any) -> Any:
        if isinstance(data, dict):
            family = data.get("family", cls.FAMILY)
            if family != cls.FAMILY:
                raise ValueError(f"family is {family!r}, not {cls.FAMILY!r}")
            data = {**data, "family": cls.FAMILY}
        return data

    @model_validator(mode="after")
    def _check_heads(self) -> ReasoningConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.pos_encodings == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")
        return self

    # Derived sizes and rules, computed the way upstream computes them.
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def puzzle_emb_len(self) -> int:
        """Number of extra tokens the puzzle embedding occupies: ceil(D / hidden)."""
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def prefix_len_of(cls, arch: dict[str, Any]) -> int:
        """`puzzle_emb_len` from an `arch:` section's raw settings, before validation (0 where
        they do not say): the checkpoint reader needs it to size a learned position table."""
        try:
            hidden, ndim = int(arch.get("hidden_size") or 0), int(arch.get("puzzle_emb_ndim") or 0)
        except (TypeError, ValueError):
            return 0
        return -(ndim // -hidden) if hidden > 0 else 0

    @property
    def total_seq_len(self) -> int:
        """Length of the activations: puzzle-embedding tokens + puzzle tokens."""
        return self.seq_len + self.puzzle_emb_len

    @property
    def intermediate_size(self) -> int:
        """The channel SwiGLU's width."""
        return swiglu_width(self.expansion, self.hidden_size)

    @property
    def token_mixer_size(self) -> int:
        """The width of `mlp_t`'s SwiGLU, which mixes the `total_seq_len` tokens."""
        return swiglu_width(self.expansion, self.total_seq_len)

    @property
    def shared_levels(self) -> bool:
        """True when z_H is updated by the L network (TRM), not by its own H network."""
        return False

    @property
    def halt_rule(self) -> HaltRule:
        return HaltRule.Q_CONTINUE


class HRMConfig(ReasoningConfig):
    """HRM ACT-v1 (`hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1`)."""

    FAMILY: ClassVar[str] = "hrm_act_v1"
    family: Literal["hrm_act_v1"] = "hrm_act_v1"

    @model_validator(mode="before")
    @classmethod
    def _no_mlp_t(cls, data: Any) -> Any:
        # upstream's HRM has no `mlp_t` setting (pydantic ignores the key); nor does this
        if cls is HRMConfig and isinstance(data, dict) and "mlp_t" in data:
            data = {k: v for k, v in data.items() if k != "mlp_t"}
        return data


class HRMCopyConfig(HRMConfig):
    """TRM's copy of HRM (`recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1`)."""

    FAMILY: ClassVar[str] = "recursive_reasoning_hrm"
    family: Literal["recursive_reasoning_hrm"] = "recursive_reasoning_hrm"  # type: ignore[assignment]
    pos_encodings: Literal["rope", "learned", "none"]  # type: ignore[assignment]


class TRMConfig(ReasoningConfig):
    """TRM (`recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1`)."""

    FAMILY: ClassVar[str] = "trm"
    family: Literal["trm"] = "trm"
    H_layers: int = Field(default=0, ge=0)  # upstream: "ignored"
    pos_encodings: Literal["rope", "learned", "none"]  # type: ignore[assignment]
    puzzle_emb_len_setting: int = Field(default=16, ge=0, alias="puzzle_emb_len")
    no_ACT_continue: bool = True

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_prefix(self) -> TRMConfig:
        room = self.puzzle_emb_len * self.hidden_size
        if self.puzzle_emb_len and not self.puzzle_emb_ndim:
            raise ValueError(
                f"puzzle_emb_len {self.puzzle_emb_len} needs puzzle_emb_ndim > 0: upstream's "
                "step adds the prefix only with a puzzle embedding (set puzzle_emb_len: 0)"
            )
        if self.puzzle_emb_ndim > room:
            raise ValueError(
                f"puzzle_emb_ndim {self.puzzle_emb_ndim} does not fit in puzzle_emb_len "
                f"{self.puzzle_emb_len} x hidden_size {self.hidden_size}"
            )
        return self

    @property
    def puzzle_emb_len(self) -> int:
        """Upstream's: the setting, or where it is 0, ceil(puzzle_emb_ndim / hidden)."""
        if self.puzzle_emb_len_setting:
            return self.puzzle_emb_len_setting
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def prefix_len_of(cls, arch: dict[str, Any]) -> int:
        setting = arch.get("puzzle_emb_len", 16)
        if isinstance(setting, int) and setting > 0:
            return setting
        return super().prefix_len_of(arch)

    @property
    def shared_levels(self) -> bool:
        return True

    @property
    def halt_rule(self) -> HaltRule:
        return HaltRule.POSITIVE if self.no_ACT_continue else HaltRule.Q_CONTINUE
