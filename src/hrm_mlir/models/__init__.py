"""The model families in PyTorch, with upstream's names: HRM ACT-v1, TRM ACT-v1, their
configs, and the registry that finds a family by upstream's `arch.name`."""

from hrm_mlir.models.config import HRMConfig, HRMCopyConfig, ReasoningConfig, TRMConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import FAMILIES, Family, config_from_json, family_of, model_class
from hrm_mlir.models.trm import TRM

__all__ = [
    "FAMILIES",
    "HRM",
    "TRM",
    "Family",
    "HRMConfig",
    "HRMCopyConfig",
    "ReasoningConfig",
    "TRMConfig",
    "config_from_json",
    "family_of",
    "model_class",
]
