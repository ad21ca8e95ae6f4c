"""The closed sets of choices shared by every stage: forward dtypes, MLIR dialects, entry points."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    import torch


class ChoiceEnum(enum.StrEnum):
    """A closed set of string choices whose parser lists the valid values in its error."""

    @classmethod
    def parse(cls, value: str | Self) -> Self:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"invalid {cls.__name__} {value!r}; valid values: {valid}") from None


class DType(ChoiceEnum):
    """Forward dtypes the exporter supports."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"

    @property
    def torch(self) -> torch.dtype:
        import torch  # here: `hrm-mlir compile` and `run model.vmfb` need no torch at start-up

        return {DType.FLOAT32: torch.float32, DType.BFLOAT16: torch.bfloat16}[self]

    @property
    def mlir(self) -> str:
        return {DType.FLOAT32: "f32", DType.BFLOAT16: "bf16"}[self]


class OutputType(ChoiceEnum):
    """MLIR dialects the exporter writes (torch-mlir's output types)."""

    TORCH = "torch"
    LINALG_ON_TENSORS = "linalg-on-tensors"
    TOSA = "tosa"
    STABLEHLO = "stablehlo"


class Entry(ChoiceEnum):
    """What the exported module computes: one ACT step, or the whole ACT inference loop."""

    STEP = "step"
    ACT = "act"


class HaltRule(ChoiceEnum):
    """When a row stops under Q-halting: each model family's own rule.

    HRM (and TRM with `no_ACT_continue: false`) halts once `q_halt > q_continue`; TRM with
    `no_ACT_continue: true`, its default, trains no continue logit and halts once its halt logit
    is positive. `@act` records the rule it was built with (`hrm.halt_rule`).
    """

    Q_CONTINUE = "q_halt > q_continue"
    POSITIVE = "q_halt > 0"

    def halts(self, q_halt, q_continue):
        """The rows that stop: works on torch tensors and numpy arrays alike."""
        if self is HaltRule.POSITIVE:
            return q_halt > 0
        return q_halt > q_continue
