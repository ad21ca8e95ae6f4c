"""The model families in PyTorch, with upstream's names: HRM ACT-v1 and its config, and the
registry that finds a family by upstream's `arch.name`."""

from hrm_mlir.models.config import HRMConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import FAMILIES, Family, family_of

__all__ = ["FAMILIES", "HRM", "Family", "HRMConfig", "family_of"]
